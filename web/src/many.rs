//! "Send many": up to 1,000 connections drawn as dots on a canvas (one `requestAnimationFrame`
//! loop, one fill per colour per frame), plus the distribution table as text.
//!
//! The canvas is decoration over data that is also in the table; with prefers-reduced-motion the
//! dots are drawn at their destinations at once.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::Closure;
use yew::prelude::*;

use crate::i18n::{K, Lang, t};
use crate::state::Many;

const CW: f64 = 640.0;
const CH: f64 = 240.0;
/// Colour-blind-safe palette (Okabe–Ito), dark enough on white for the 3:1 graphics contrast.
pub const PALETTE: [&str; 8] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#8a6d00", "#56B4E9", "#E69F00", "#000000",
];
/// All connections start within this window and each takes `TRAVEL_MS`, so with 1,000 of them
/// every dot is in flight at once between START_SPREAD_MS and TRAVEL_MS.
const START_SPREAD_MS: f64 = 700.0;
const TRAVEL_MS: f64 = 1600.0;

fn pod_y(k: usize, n: usize) -> f64 {
    30.0 + (k as f64 + 0.5) * (CH - 60.0) / n.max(1) as f64
}

/// Position of dot `i` at `t` ms after the start: client → node → its Pod.
fn dot_pos(i: usize, n: usize, k: usize, outs: usize, t: f64) -> Option<(f64, f64)> {
    let start = if n <= 1 {
        0.0
    } else {
        START_SPREAD_MS * i as f64 / (n - 1) as f64
    };
    let u = ((t - start) / TRAVEL_MS).clamp(0.0, 1.0);
    if t < start {
        return None;
    }
    // Deterministic jitter so dots do not sit on one line (golden-ratio sequence).
    let j = ((i as f64 * 0.618_033_988_75).fract() - 0.5) * 36.0;
    let (x0, y0) = (30.0, CH / 2.0 + j);
    let (x1, y1) = (CW / 2.0, CH / 2.0 + j * 0.5);
    let (x2, y2) = (CW - 40.0, pod_y(k, outs) + j * 0.3);
    Some(if u < 0.5 {
        let v = u * 2.0;
        (x0 + (x1 - x0) * v, y0 + (y1 - y0) * v)
    } else {
        let v = (u - 0.5) * 2.0;
        (x1 + (x2 - x1) * v, y1 + (y2 - y1) * v)
    })
}

fn draw(ctx: &web_sys::CanvasRenderingContext2d, many: &Many, t: f64) {
    ctx.clear_rect(0.0, 0.0, CW, CH);
    ctx.set_fill_style_str("#f3f4f6");
    ctx.fill_rect(CW / 2.0 - 60.0, 10.0, 120.0, CH - 20.0);
    let outs = many.outputs.len();
    ctx.set_font("12px system-ui, sans-serif");
    for (k, o) in many.outputs.iter().enumerate() {
        ctx.set_fill_style_str(PALETTE[k % PALETTE.len()]);
        let label = if o.is_empty() { "—" } else { o.as_str() };
        let _ = ctx.fill_text(label, CW - 150.0, pod_y(k, outs) - 12.0);
    }
    let n = many.per_packet.len();
    for k in 0..outs {
        ctx.set_fill_style_str(PALETTE[k % PALETTE.len()]);
        ctx.begin_path();
        for (i, &kk) in many.per_packet.iter().enumerate() {
            if kk != k {
                continue;
            }
            if let Some((x, y)) = dot_pos(i, n, k, outs, t) {
                ctx.rect(x - 2.0, y - 2.0, 4.0, 4.0);
            }
        }
        ctx.fill();
    }
}

#[derive(Properties, PartialEq)]
pub struct Props {
    pub lang: Lang,
    pub many: Rc<Many>,
    pub reduced_motion: bool,
}

#[function_component(ManyView)]
pub fn many_view(p: &Props) -> Html {
    let lang = p.lang;
    let canvas = use_node_ref();
    let fps = use_state(|| None::<f64>);
    {
        let canvas = canvas.clone();
        let fps = fps.setter();
        let reduced = p.reduced_motion;
        use_effect_with(p.many.clone(), move |many| {
            let many = many.clone();
            let alive = Rc::new(Cell::new(true));
            if let Some(ctx) = canvas
                .cast::<web_sys::HtmlCanvasElement>()
                .and_then(|c| c.get_context("2d").ok().flatten())
                .and_then(|c| c.dyn_into::<web_sys::CanvasRenderingContext2d>().ok())
            {
                if reduced {
                    draw(&ctx, &many, f64::INFINITY);
                } else {
                    run_animation(ctx, many, alive.clone(), canvas.clone(), fps);
                }
            }
            move || alive.set(false)
        });
    }
    let total: usize = p.many.counts.iter().sum();
    let expected = |o: &str| p.many.expected.iter().find(|e| e.0 == o).map(|e| e.1);
    html! {
        <div class="many">
            <canvas id="many-canvas" ref={canvas} width={CW.to_string()} height={CH.to_string()} aria-hidden="true"
                data-fps={fps.map(|f| format!("{f:.1}")).unwrap_or_default()} data-n={total.to_string()} />
            if let Some(f) = *fps {
                <p id="many-fps" class="muted">{ format!("{f:.0} {}", t(lang, K::FrameRate)) }</p>
            }
            <table id="distribution">
                <caption>{ format!("{} — {}: {total}", t(lang, K::Distribution), t(lang, if p.many.keepalive { K::Requests } else { K::Connections })) }</caption>
                <thead><tr><th>{ "→" }</th><th>{ "#" }</th><th>{ "%" }</th><th>{ t(lang, K::Probability) }</th></tr></thead>
                <tbody>
                    { for p.many.outputs.iter().zip(&p.many.counts).enumerate().map(|(k, (o, c))| {
                        let pct = 100.0 * *c as f64 / total.max(1) as f64;
                        html! {
                            <tr data-endpoint={o.clone()}>
                                <td><span class="swatch" style={format!("background:{}", PALETTE[k % PALETTE.len()])} />
                                    <code>{ if o.is_empty() { "—".to_string() } else { o.clone() } }</code></td>
                                <td class="count">{ *c }</td>
                                <td><span class="bar" style={format!("width:{:.1}%", pct)} />{ format!("{pct:.1}") }</td>
                                <td>{ expected(o).map(|e| format!("{:.1}%", e * 100.0)).unwrap_or_default() }</td>
                            </tr>
                        }
                    }) }
                </tbody>
            </table>
            if p.many.sched_after.is_some() || p.many.ipvsadm_after.is_some() {
                <details class="many-after" id="many-after">
                    <summary>{ t(lang, K::AfterMany) }</summary>
                    { crate::ipvs_view::sched_state(lang, p.many.sched_after.as_ref(), "many-sched-state") }
                    if let Some(l) = &p.many.ipvsadm_after { <pre id="many-ipvsadm" lang="en" class="ipvsadm">{ l.clone() }</pre> }
                </details>
            }
        </div>
    }
}

/// The rAF callback, which re-registers itself each frame and drops itself when done.
type FrameLoop = Rc<RefCell<Option<Closure<dyn FnMut(f64)>>>>;

/// One rAF loop for the whole flight; it measures its own frame rate with the page clock the
/// browser passes in (the timestamps are only for display, never fed back into core).
fn run_animation(
    ctx: web_sys::CanvasRenderingContext2d,
    many: Rc<Many>,
    alive: Rc<Cell<bool>>,
    canvas: NodeRef,
    fps: UseStateSetter<Option<f64>>,
) {
    let f: FrameLoop = Rc::new(RefCell::new(None));
    let g = f.clone();
    let start = Cell::new(None::<f64>);
    let frames = Cell::new(0u32);
    // (sum, worst) of the milliseconds spent drawing a frame.
    let work = Cell::new((0.0f64, 0.0f64));
    let n = many.per_packet.len();
    let end = if n <= 1 { 0.0 } else { START_SPREAD_MS } + TRAVEL_MS;
    *g.borrow_mut() = Some(Closure::new(move |ts: f64| {
        if !alive.get() {
            // Dropping our own closure from inside it is the pattern wasm-bindgen documents.
            let _ = f.borrow_mut().take();
            return;
        }
        let t0 = *start.get().get_or_insert(ts);
        start.set(Some(t0));
        let t = ts - t0;
        // Our own work per frame (drawing every dot), by the Performance API's clock: the
        // issue's bar is < 4 ms of it at 1,000 packets in flight.
        let perf = gloo_utils::window().performance();
        let w0 = perf.as_ref().map_or(0.0, |p| p.now());
        draw(&ctx, &many, t);
        let w = perf.as_ref().map_or(0.0, |p| p.now()) - w0;
        work.set((work.get().0 + w, work.get().1.max(w)));
        frames.set(frames.get() + 1);
        if t >= end {
            let rate = if t > 0.0 {
                (frames.get() - 1) as f64 * 1000.0 / t
            } else {
                0.0
            };
            if let Some(c) = canvas.cast::<web_sys::Element>() {
                let (sum, worst) = work.get();
                let _ = c.set_attribute(
                    "data-frame-ms",
                    &format!("{:.2}", sum / frames.get().max(1) as f64),
                );
                let _ = c.set_attribute("data-frame-ms-max", &format!("{worst:.2}"));
                let _ = c.set_attribute("data-fps", &format!("{rate:.1}"));
            }
            fps.set(Some(rate));
            let _ = f.borrow_mut().take();
            return;
        }
        if let Some(cb) = f.borrow().as_ref() {
            let _ = gloo_utils::window().request_animation_frame(cb.as_ref().unchecked_ref());
        }
    }));
    if let Some(cb) = g.borrow().as_ref() {
        let _ = gloo_utils::window().request_animation_frame(cb.as_ref().unchecked_ref());
    }
}
