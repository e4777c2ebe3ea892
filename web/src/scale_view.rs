//! Scale view: rules per packet, rules on the node and full-sync work against the number of
//! Services, iptables mode vs IPVS mode, measured by core on generated clusters.
//!
//! Sizes up to 3,000 Services are measured here, one size per timer tick so the page keeps
//! painting between them; 10,000 is core's table measured natively by the same code
//! ([`proxyscope_core::scale::PRECOMPUTED`]) and marked as such on screen.

use proxyscope_core::scale::{self, ModeCost, ScalePoint};
use wasm_bindgen::JsCast;
use yew::prelude::*;

use crate::i18n::{K, Lang, t};
use crate::state::Action;

const CW: f64 = 360.0;
const CH: f64 = 220.0;
const PAD_L: f64 = 52.0;
const PAD_B: f64 = 34.0;
const PAD_T: f64 = 12.0;
const PAD_R: f64 = 12.0;
const IPT_COLOUR: &str = "#0072B2";
const IPVS_COLOUR: &str = "#D55E00";

#[derive(Properties, PartialEq)]
pub struct Props {
    pub lang: Lang,
    pub endpoints: usize,
    pub on_action: Callback<Action>,
}

/// One measured (or precomputed) point and where it came from.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Pt {
    p: ScalePoint,
    precomputed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Metric {
    PerPacket,
    Total,
    Sync,
}

fn value(c: &ModeCost, m: Metric) -> usize {
    match m {
        Metric::PerPacket => c.rules_per_packet,
        Metric::Total => c.total_rules,
        Metric::Sync => c.sync_lines,
    }
}

fn log_pos(v: f64, lo: f64, hi: f64, len: f64) -> f64 {
    let v = v.max(1.0);
    (v.ln() - lo.ln()) / (hi.ln() - lo.ln()) * len
}

/// Powers of ten covering `lo..=hi`.
fn decades(lo: f64, hi: f64) -> Vec<f64> {
    let mut v = Vec::new();
    let mut d = 10f64.powf(lo.log10().floor());
    while d <= hi * 1.0001 {
        if d >= lo * 0.9999 {
            v.push(d);
        }
        d *= 10.0;
    }
    v
}

fn fmt_n(v: f64) -> String {
    if v >= 1_000_000.0 {
        format!("{}M", v / 1_000_000.0)
    } else if v >= 1000.0 {
        format!("{}k", v / 1000.0)
    } else {
        format!("{v}")
    }
}

fn chart(lang: Lang, id: &'static str, title: K, metric: Metric, pts: &[Pt]) -> Html {
    let (x_lo, x_hi) = (10.0, 10_000.0);
    let ys: Vec<f64> = pts
        .iter()
        .flat_map(|p| [value(&p.p.iptables, metric), value(&p.p.ipvs, metric)])
        .map(|v| v.max(1) as f64)
        .collect();
    let y_lo = 10f64.powf(
        ys.iter()
            .cloned()
            .fold(f64::INFINITY, f64::min)
            .log10()
            .floor(),
    );
    let y_hi = 10f64.powf(ys.iter().cloned().fold(1.0, f64::max).log10().ceil());
    let (y_lo, y_hi) = if y_hi <= y_lo || !y_lo.is_finite() {
        (1.0, 10.0)
    } else {
        (y_lo, y_hi)
    };
    let w = CW - PAD_L - PAD_R;
    let h = CH - PAD_T - PAD_B;
    let x = |s: f64| PAD_L + log_pos(s, x_lo, x_hi, w);
    let y = |v: f64| PAD_T + h - log_pos(v, y_lo, y_hi, h);
    let series = |pick: fn(&ScalePoint) -> &ModeCost, colour: &'static str, cls: &'static str| {
        let coords: Vec<(f64, f64, bool)> = pts
            .iter()
            .map(|p| {
                (
                    x(p.p.services as f64),
                    y(value(pick(&p.p), metric) as f64),
                    p.precomputed,
                )
            })
            .collect();
        let live: Vec<String> = coords
            .iter()
            .filter(|c| !c.2)
            .map(|c| format!("{:.1},{:.1}", c.0, c.1))
            .collect();
        // The segment to a precomputed point is dashed: it was not measured on this page.
        let tail = coords
            .iter()
            .rposition(|c| !c.2)
            .map(|i| &coords[i..])
            .filter(|t| t.len() > 1)
            .map(|t| {
                t.iter()
                    .map(|c| format!("{:.1},{:.1}", c.0, c.1))
                    .collect::<Vec<_>>()
                    .join(" ")
            });
        html! {
            <g class={cls}>
                <polyline points={live.join(" ")} fill="none" stroke={colour} stroke-width="2.5" />
                if let Some(t) = tail { <polyline points={t} fill="none" stroke={colour} stroke-width="2" stroke-dasharray="5 4" /> }
                { for coords.iter().map(|c| html! {
                    <circle cx={format!("{:.1}", c.0)} cy={format!("{:.1}", c.1)} r="3.5"
                        fill={if c.2 { "#fff" } else { colour }} stroke={colour} stroke-width="2" />
                }) }
            </g>
        }
    };
    html! {
        <figure class="scale-chart">
            <svg id={id} viewBox={format!("0 0 {CW} {CH}")} role="img" aria-labelledby={format!("{id}-t")}>
                <title id={format!("{id}-t")}>{ format!("{} ({})", t(lang, title), t(lang, K::LogScale)) }</title>
                { for decades(x_lo, x_hi).into_iter().map(|d| html! {
                    <g class="tick">
                        <line x1={format!("{:.1}", x(d))} x2={format!("{:.1}", x(d))} y1={PAD_T.to_string()} y2={(PAD_T + h).to_string()} />
                        <text x={format!("{:.1}", x(d))} y={(CH - PAD_B + 14.0).to_string()}>{ fmt_n(d) }</text>
                    </g>
                }) }
                { for decades(y_lo, y_hi).into_iter().map(|d| html! {
                    <g class="tick">
                        <line x1={PAD_L.to_string()} x2={(PAD_L + w).to_string()} y1={format!("{:.1}", y(d))} y2={format!("{:.1}", y(d))} />
                        <text x={(PAD_L - 6.0).to_string()} y={format!("{:.1}", y(d) + 4.0)} class="ylab">{ fmt_n(d) }</text>
                    </g>
                }) }
                <text x={(PAD_L + w / 2.0).to_string()} y={(CH - 4.0).to_string()} class="axis">{ t(lang, K::ServicesAxis) }</text>
                { series(|p| &p.iptables, IPT_COLOUR, "s-iptables") }
                { series(|p| &p.ipvs, IPVS_COLOUR, "s-ipvs") }
            </svg>
            <figcaption>{ t(lang, title) }</figcaption>
        </figure>
    }
}

#[function_component(ScaleView)]
pub fn scale_view(p: &Props) -> Html {
    let lang = p.lang;
    let endpoints = p.endpoints;
    // Measured points for this endpoint count; filled one size per tick.
    let pts = use_state(Vec::<Pt>::new);
    let error = use_state(|| None::<String>);
    {
        let pts = pts.clone();
        let error = error.clone();
        use_effect_with(endpoints, move |_| {
            pts.set(Vec::new());
            error.set(None);
        });
    }
    let measured = pts.iter().filter(|p| !p.precomputed).count();
    let done = measured >= scale::LIVE_SERVICES.len() || error.is_some();
    {
        let pts = pts.clone();
        let error = error.clone();
        use_effect_with((endpoints, measured, done), move |&(e, n, done)| {
            // A short timeout, not a microtask: the browser paints the previous point first.
            let timer = (!done).then(|| {
                gloo_timers::callback::Timeout::new(30, move || {
                    let Some(&s) = scale::LIVE_SERVICES.get(n) else {
                        return;
                    };
                    match scale::measure(s, e) {
                        Ok(p) => {
                            let mut v: Vec<Pt> =
                                (*pts).iter().filter(|p| !p.precomputed).copied().collect();
                            v.push(Pt {
                                p,
                                precomputed: false,
                            });
                            if v.len() == scale::LIVE_SERVICES.len() {
                                v.extend(
                                    scale::PRECOMPUTED
                                        .iter()
                                        .filter(|q| q.endpoints_per_service == e)
                                        .map(|q| Pt {
                                            p: *q,
                                            precomputed: true,
                                        }),
                                );
                            }
                            pts.set(v);
                        }
                        Err(err) => error.set(Some(err.to_string())),
                    }
                })
            });
            move || drop(timer)
        });
    }
    let on_endpoints = p.on_action.reform(|e: Event| {
        let v = e
            .target()
            .and_then(|t| t.dyn_into::<web_sys::HtmlSelectElement>().ok())
            .and_then(|s| s.value().parse().ok())
            .unwrap_or(4);
        Action::SetScale(Some(v))
    });
    let next = scale::LIVE_SERVICES.get(measured).copied();
    html! {
        <section class="panel scale-panel" id="scale-panel" aria-labelledby="scale-title" aria-busy={(!done).to_string()}>
            <h2 id="scale-title">{ t(lang, K::ScaleTitle) }</h2>
            <p class="muted">{ t(lang, K::ScaleHint) }</p>
            <p>
                <label>{ t(lang, K::EndpointsPerService) }{ " " }
                    <select id="scale-endpoints" onchange={on_endpoints}>
                        { for scale::ENDPOINT_CHOICES.iter().map(|&n| html! {
                            <option value={n.to_string()} selected={n == endpoints}>{ n }</option>
                        }) }
                    </select>
                </label>
                { " " }
                <span class="legend"><span class="swatch" style={format!("background:{IPT_COLOUR}")} />{ "iptables" }
                    { " " }<span class="swatch" style={format!("background:{IPVS_COLOUR}")} />{ "IPVS" }</span>
            </p>
            <p id="scale-status" role="status">
                    { match (&*error, next) {
                        (Some(e), _) => e.clone(),
                        (None, Some(n)) if !done => format!("{} {n}…", t(lang, K::Measuring)),
                        _ => t(lang, K::ScaleDone).to_string(),
                    } }
            </p>
            <div class="scale-charts">
                { chart(lang, "scale-per-packet", K::RulesPerPacket, Metric::PerPacket, &pts) }
                { chart(lang, "scale-total", K::TotalRules, Metric::Total, &pts) }
                { chart(lang, "scale-sync", K::SyncWork, Metric::Sync, &pts) }
            </div>
            <table id="scale-table">
                <caption>{ t(lang, K::ScaleTable) }</caption>
                <thead>
                    <tr><th rowspan="2">{ t(lang, K::ServicesAxis) }</th>
                        <th colspan="3">{ "iptables" }</th><th colspan="5">{ "IPVS" }</th></tr>
                    <tr><th>{ t(lang, K::RulesPerPacket) }</th><th>{ t(lang, K::TotalRules) }</th><th>{ t(lang, K::SyncWork) }</th>
                        <th>{ t(lang, K::RulesPerPacket) }</th><th>{ t(lang, K::TotalRules) }</th><th>{ t(lang, K::SyncWork) }</th>
                        <th>{ t(lang, K::IpvsObjects) }</th><th>{ t(lang, K::IpsetEntries) }</th></tr>
                </thead>
                <tbody>
                    { for pts.iter().map(|q| html! {
                        <tr data-services={q.p.services.to_string()} class={classes!(q.precomputed.then_some("precomputed"))}>
                            <th scope="row">{ q.p.services }{ if q.precomputed { format!(" ({})", t(lang, K::Precomputed)) } else { String::new() } }</th>
                            <td class="ipt-packet">{ q.p.iptables.rules_per_packet }</td>
                            <td class="ipt-total">{ q.p.iptables.total_rules }</td>
                            <td class="ipt-sync">{ q.p.iptables.sync_lines }</td>
                            <td class="ipvs-packet">{ q.p.ipvs.rules_per_packet }</td>
                            <td class="ipvs-total">{ q.p.ipvs.total_rules }</td>
                            <td class="ipvs-sync">{ q.p.ipvs.sync_lines }</td>
                            <td>{ q.p.ipvs.ipvs_objects }</td>
                            <td>{ q.p.ipvs.ipset_entries }</td>
                        </tr>
                    }) }
                </tbody>
            </table>
        </section>
    }
}
