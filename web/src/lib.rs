//! The proxyscope web explainer: core compiled to WASM, rendered with Yew.
//!
//! Code map:
//! - [`state`]: the one reducer (`State`, `Action`); deterministic, seeds and time come in actions.
//! - [`engine`]: trace → debugger frames (packet header after each step, chain stack, rule).
//! - [`i18n`]: English/Chinese labels, narration generated from trace steps, glossary.
//! - [`share`]: the URL-fragment format (deflate + base64url JSON).
//! - [`model`]: the only module that calls `proxyscope_core`'s facade.
//! - [`diagram`], [`views`], [`many`], [`compare`], [`ipvs_view`], [`dump`]: dumb views.
//!
//! Architecture invariant: side effects (URL, localStorage, timers, keyboard, clock, randomness,
//! downloads) happen only in [`App`]; views receive data and emit actions.

pub mod chains;
pub mod compare;
pub mod diagram;
pub mod dump;
pub mod engine;
pub mod i18n;
pub mod ipvs_view;
pub mod live;
pub mod many;
pub mod model;
pub mod scale_view;
pub mod share;
pub mod state;
pub mod views;

use std::rc::Rc;

use gloo_events::{EventListener, EventListenerOptions};
use wasm_bindgen::JsCast;
use yew::prelude::*;

use crate::compare::ComparePanel;
use crate::diagram::Diagram;
use crate::dump::DumpEditor;
use crate::i18n::{K, Lang, t};
use crate::ipvs_view::IpvsPanel;
use crate::many::ManyView;
use crate::state::{Action, SPEEDS_MS, State};
use crate::views::*;

const LANG_KEY: &str = "proxyscope.lang";

fn window() -> web_sys::Window {
    gloo_utils::window()
}

fn reduced_motion() -> bool {
    window()
        .match_media("(prefers-reduced-motion: reduce)")
        .ok()
        .flatten()
        .is_some_and(|m| m.matches())
}

/// Language: a shared link's choice wins, then the learner's last toggle, then the browser.
fn initial_lang() -> Lang {
    let stored = window()
        .local_storage()
        .ok()
        .flatten()
        .and_then(|s| s.get_item(LANG_KEY).ok().flatten());
    match stored.as_deref() {
        Some("zh") => Lang::Zh,
        Some("en") => Lang::En,
        _ => Lang::from_browser(&window().navigator().language().unwrap_or_default()),
    }
}

fn initial_state() -> State {
    let loc = window().location();
    let embed = loc
        .search()
        .ok()
        .and_then(|s| web_sys::UrlSearchParams::new_with_str(&s).ok())
        .and_then(|p| p.get("embed"))
        .is_some_and(|v| v == "1");
    let mut s = State::new(initial_lang(), embed);
    if let Some(r) = share::from_hash(&loc.hash().unwrap_or_default()) {
        match r {
            Ok(sh) => s.apply(Action::Restore(sh)),
            Err(e) => s.apply(Action::ShareFailed(e.to_string())),
        }
    }
    s
}

/// Seed for a new packet: the one place the app draws randomness (core takes it as a parameter).
fn fresh_seed() -> u64 {
    (js_sys::Math::random() * 9_007_199_254_740_992.0) as u64
}

fn now_secs() -> f64 {
    js_sys::Date::now() / 1000.0
}

fn page_url(query: &str, hash: &str) -> String {
    let loc = window().location();
    format!(
        "{}{}{query}{hash}",
        loc.origin().unwrap_or_default(),
        loc.pathname().unwrap_or_default()
    )
}

fn download_text(name: &str, mime: &str, text: &str) {
    let parts = js_sys::Array::of1(&text.into());
    let opts = web_sys::BlobPropertyBag::new();
    opts.set_type(mime);
    let Ok(blob) = web_sys::Blob::new_with_str_sequence_and_options(&parts, &opts) else {
        return;
    };
    let Ok(url) = web_sys::Url::create_object_url_with_blob(&blob) else {
        return;
    };
    download_url(name, &url);
    let _ = web_sys::Url::revoke_object_url(&url);
}

fn download_url(name: &str, url: &str) {
    let doc = gloo_utils::document();
    if let Ok(a) = doc
        .create_element("a")
        .map(|e| e.unchecked_into::<web_sys::HtmlAnchorElement>())
    {
        a.set_href(url);
        a.set_download(name);
        a.click();
    }
}

/// The diagram as a standalone SVG document: the live `<svg>` with the page's diagram styles
/// copied in (an exported file cannot see the page's stylesheet).
fn diagram_svg() -> Option<String> {
    let svg = gloo_utils::document().get_element_by_id("diagram")?;
    let copy: web_sys::Element = svg.clone_node_with_deep(true).ok()?.dyn_into().ok()?;
    copy.set_attribute("xmlns", "http://www.w3.org/2000/svg")
        .ok()?;
    copy.set_attribute("width", &diagram::W.to_string()).ok()?;
    copy.set_attribute("height", &diagram::H.to_string()).ok()?;
    let style = gloo_utils::document().create_element("style").ok()?;
    style.set_text_content(Some(diagram::EXPORT_CSS));
    copy.insert_before(&style, copy.first_child().as_ref())
        .ok()?;
    Some(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{}",
        copy.outer_html()
    ))
}

/// PNG through a canvas: the SVG is drawn as an image at twice its size, on white.
fn export_png(svg: String) {
    let Ok(img) = web_sys::HtmlImageElement::new() else {
        return;
    };
    let src = format!(
        "data:image/svg+xml;charset=utf-8,{}",
        js_sys::encode_uri_component(&svg)
    );
    let img2 = img.clone();
    let onload = wasm_bindgen::closure::Closure::once_into_js(move || {
        let doc = gloo_utils::document();
        let Some(canvas) = doc
            .create_element("canvas")
            .ok()
            .and_then(|c| c.dyn_into::<web_sys::HtmlCanvasElement>().ok())
        else {
            return;
        };
        let scale = 2.0;
        canvas.set_width((diagram::W * scale) as u32);
        canvas.set_height((diagram::H * scale) as u32);
        let Some(ctx) = canvas
            .get_context("2d")
            .ok()
            .flatten()
            .and_then(|c| c.dyn_into::<web_sys::CanvasRenderingContext2d>().ok())
        else {
            return;
        };
        ctx.set_fill_style_str("#ffffff");
        ctx.fill_rect(0.0, 0.0, diagram::W * scale, diagram::H * scale);
        let _ = ctx.draw_image_with_html_image_element_and_dw_and_dh(
            &img2,
            0.0,
            0.0,
            diagram::W * scale,
            diagram::H * scale,
        );
        if let Ok(url) = canvas.to_data_url_with_type("image/png") {
            download_url("proxyscope-diagram.png", &url);
        }
    });
    img.set_onload(Some(onload.unchecked_ref()));
    img.set_src(&src);
}

#[function_component(App)]
pub fn app() -> Html {
    let state = use_reducer(initial_state);
    let dispatch = state.dispatcher();
    // Callbacks handed to views stay the same object across renders (`use_callback`): a view's
    // props then compare equal and Yew skips it; a fresh closure per render would redraw e.g.
    // the 11,000 destinations of the large-cluster preset on every step.
    let on_action: Callback<Action> = {
        let d = dispatch.clone();
        use_callback((), move |a, _| d.dispatch(a))
    };
    let reduced = use_memo((), |_| reduced_motion());
    // The Live node panel opens by itself when the page was opened with `?agent=…`.
    let show_live = use_state(|| {
        window()
            .location()
            .search()
            .ok()
            .and_then(|s| web_sys::UrlSearchParams::new_with_str(&s).ok())
            .and_then(|p| p.get("agent"))
            .is_some()
    });

    // <html lang> and the title follow the language, so screen readers pronounce it right.
    use_effect_with(state.lang, |lang| {
        let doc = gloo_utils::document();
        if let Some(el) = doc.document_element() {
            let _ = el.set_attribute("lang", lang.code());
        }
        doc.set_title(&format!("proxyscope — {}", t(*lang, K::Subtitle)));
        if let Some(s) = window().local_storage().ok().flatten() {
            let _ = s.set_item(LANG_KEY, if *lang == Lang::Zh { "zh" } else { "en" });
        }
    });

    // The URL fragment mirrors the state (replaceState: stepping should not flood history).
    let share_hash = use_memo(state.share_state(), share::to_hash);
    let has_shareable = !state.sent.is_empty() || state.is_custom_scenario();
    use_effect_with((share_hash.clone(), has_shareable), |(hash, on)| {
        if let (true, Ok(h)) = (*on, window().history()) {
            let _ = h.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(hash.as_str()));
        }
    });

    // Playback: one timeout per frame while playing.
    {
        let d = dispatch.clone();
        use_effect_with(
            (
                state.playing,
                state.speed,
                state.cursor,
                state.timeline.clone(),
            ),
            move |(playing, speed, _, _)| {
                let timer = playing.then(|| {
                    let d = d.clone();
                    gloo_timers::callback::Timeout::new(SPEEDS_MS[*speed], move || {
                        d.dispatch(Action::Tick)
                    })
                });
                move || drop(timer)
            },
        );
    }

    let on_send = {
        let d = dispatch.clone();
        use_callback((), move |(), _| {
            d.dispatch(Action::Send {
                seed: fresh_seed(),
                now: now_secs(),
            })
        })
    };
    let on_send_again = {
        let d = dispatch.clone();
        use_callback((), move |(), _| {
            d.dispatch(Action::SendAgain {
                seed: fresh_seed(),
                now: now_secs(),
            })
        })
    };
    let on_many = {
        let d = dispatch.clone();
        Callback::from(move |n: usize| {
            d.dispatch(Action::SendMany {
                n,
                seed: fresh_seed(),
                now: now_secs(),
            })
        })
    };
    let on_export = {
        let trace = state.trace.clone();
        Callback::from(move |()| {
            if let Some(json) = trace
                .as_ref()
                .and_then(|tr| serde_json::to_string_pretty(&**tr).ok())
            {
                download_text("proxyscope-trace.json", "application/json", &json);
            }
        })
    };

    let on_export_svg = Callback::from(|()| {
        if let Some(svg) = diagram_svg() {
            download_text("proxyscope-diagram.svg", "image/svg+xml", &svg);
        }
    });
    let on_export_png = Callback::from(|()| {
        if let Some(svg) = diagram_svg() {
            export_png(svg);
        }
    });

    // Keyboard shortcuts for every control; ignored while typing in a form field.
    {
        let d = dispatch.clone();
        let on_send = on_send.clone();
        let on_send_again = on_send_again.clone();
        use_effect_with((), move |_| {
            let opts = EventListenerOptions::enable_prevent_default();
            let l = EventListener::new_with_options(
                &gloo_utils::document(),
                "keydown",
                opts,
                move |e| {
                    let Some(e) = e.dyn_ref::<web_sys::KeyboardEvent>() else {
                        return;
                    };
                    if e.ctrl_key() || e.meta_key() || e.alt_key() {
                        return;
                    }
                    let typing = e
                        .target()
                        .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
                        .is_some_and(|el| {
                            matches!(el.tag_name().as_str(), "INPUT" | "TEXTAREA" | "SELECT")
                        });
                    if typing {
                        return;
                    }
                    let action = match e.key().as_str() {
                        " " => Some(Action::TogglePlay),
                        "ArrowRight" => Some(Action::StepForward),
                        "ArrowLeft" => Some(Action::StepBack),
                        "]" => Some(Action::NextHook),
                        "[" => Some(Action::PrevHook),
                        "+" | "=" => Some(Action::Faster),
                        "-" | "_" => Some(Action::Slower),
                        "Home" => Some(Action::Reset),
                        "End" => Some(Action::End),
                        "l" | "L" => Some(Action::ToggleLang),
                        "s" | "S" => {
                            on_send.emit(());
                            e.prevent_default();
                            None
                        }
                        "n" | "N" => {
                            on_send_again.emit(());
                            e.prevent_default();
                            None
                        }
                        _ => None,
                    };
                    if let Some(a) = action {
                        e.prevent_default();
                        d.dispatch(a);
                    }
                },
            );
            move || drop(l)
        });
    }

    // The chain graph is built only while its panel is open (10,000 Services are ~40,000 chains),
    // once per ruleset.
    let show_chains = use_state(|| false);
    let chain_graphs = use_memo(
        (
            *show_chains,
            state.model().map(|m| m as *const model::Model as usize),
            state.mode,
            state.dump.as_ref().map(|d| (d.as_ptr() as usize, d.len())),
        ),
        {
            let (model, dump) = (state.model.clone(), state.dump.clone());
            move |(show, _, mode, _)| -> Vec<chains::Shared> {
                let m = match model.as_ref() {
                    Ok(m) if *show => m,
                    _ => return vec![],
                };
                let sources = match &dump {
                    Some(d) => chains::dump_sources(d, *mode == model::Mode::Ipvs),
                    None => m.saved_rules(*mode),
                };
                sources
                    .into_iter()
                    .map(
                        |(fam, text): (proxyscope_core::rules::iptables::Family, String)| {
                            Rc::new(chains::ChainGraph::from_text(&text, fam))
                        },
                    )
                    .collect()
            }
        },
    );
    // The graph of the family the packet travels in.
    let chain_graph = {
        let v6 = state.trace.as_ref().is_some_and(|t| t.packet.dst.is_ipv6());
        chain_graphs
            .iter()
            .find(|g| (g.family == proxyscope_core::rules::iptables::Family::V6) == v6)
            .or(chain_graphs.first())
            .cloned()
    };

    let lang = state.lang;
    let frame = state.timeline.frames.get(state.cursor).cloned();
    let embed_url = page_url("?embed=1", &share_hash);
    let share_url = page_url("", &share_hash);
    // Large clusters list no Pods up front (model::load): draw the current packet's endpoints.
    let pods = Rc::new(match state.model() {
        Some(m) if m.pods.is_empty() => state
            .trace
            .as_ref()
            .map(|tr| {
                let mut v: Vec<String> = tr
                    .outcomes
                    .iter()
                    .filter(|o| engine::parse_endpoint(&o.output).is_some())
                    .map(|o| o.output.clone())
                    .collect();
                v.sort();
                v.dedup();
                v
            })
            .unwrap_or_default(),
        Some(m) => m.pods.clone(),
        None => vec![],
    });
    let local_pods = Rc::new(
        state
            .model()
            .map(|m| m.local_pods.clone())
            .unwrap_or_default(),
    );
    let client_label: AttrValue = state
        .model()
        .and_then(|m| m.clients.get(state.client))
        .map(|c| i18n::client_label(lang, &c.label).into())
        .unwrap_or_else(|| t(lang, K::Client).into());

    html! {
        <main id="app" class={classes!(state.embed.then_some("embed"))} data-ready="1">
            <header class="top">
                <div>
                    <h1>{ t(lang, K::Title) }</h1>
                    if !state.embed { <p class="subtitle">{ t(lang, K::Subtitle) }</p> }
                </div>
                <div class="top-actions">
                    <label class="mode">{ t(lang, K::Mode) }{ " " }
                        <select id="mode" onchange={on_action.reform(|e: Event| {
                            let v = e.target().and_then(|t| t.dyn_into::<web_sys::HtmlSelectElement>().ok()).map(|s| s.value()).unwrap_or_default();
                            Action::SetMode(model::Mode::parse(&v).unwrap_or_default())
                        })}>
                            { for [model::Mode::Iptables, model::Mode::Ipvs].into_iter().map(|m| html! {
                                <option value={m.as_str()} selected={m == state.mode}>{ if m == model::Mode::Ipvs { "IPVS" } else { "iptables" } }</option>
                            }) }
                        </select>
                    </label>
                    <label class="mode"><input id="compare" type="checkbox" checked={state.compare} disabled={state.dump.is_some()}
                        onchange={on_action.reform(|e: Event| Action::SetCompare(e.target().and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok()).is_some_and(|i| i.checked())))} />
                        { " " }{ t(lang, K::SideBySide) }</label>
                    if !state.embed {
                        <button id="tab-live" type="button" aria-expanded={show_live.to_string()} aria-controls="live"
                            onclick={{ let s = show_live.clone(); Callback::from(move |_: MouseEvent| s.set(!*s)) }}>{ t(lang, K::LiveNode) }</button>
                    }
                    if !state.embed {
                        <button id="tab-chains" type="button" aria-expanded={show_chains.to_string()} aria-controls="chains"
                            onclick={{ let s = show_chains.clone(); Callback::from(move |_: MouseEvent| s.set(!*s)) }}>{ t(lang, K::ChainsTab) }</button>
                    }
                    if !state.embed {
                        <button id="tab-scale" type="button" aria-expanded={state.scale.is_some().to_string()} aria-controls="scale-panel"
                            onclick={on_action.reform({ let open = state.scale.is_some(); move |_: MouseEvent| Action::SetScale((!open).then_some(4)) })}>{ t(lang, K::ScaleTab) }</button>
                    }
                    <button id="lang" type="button" lang={lang.other().code()} aria-keyshortcuts="L"
                        onclick={on_action.reform(|_: MouseEvent| Action::ToggleLang)}>{ t(lang, K::LangToggle) }</button>
                    if state.embed {
                        <a href={share_url.clone()} target="_blank" rel="noopener">{ "proxyscope ↗" }</a>
                    }
                </div>
            </header>
            if let Some(e) = &state.share_error {
                <p class="error" role="alert" id="share-error">{ format!("{}: ", t(lang, K::ShareError)) }<span lang="en">{ e.clone() }</span></p>
            }
            if *show_live && !state.embed {
                <section id="live" class="panel live-panel" aria-label={t(lang, K::LiveNode)}><live::LiveNode lang={lang} /></section>
            }
            if let Some(e) = state.scale {
                <scale_view::ScaleView lang={lang} endpoints={e} on_action={on_action.clone()} />
            }
            if let Ok(m) = &state.model {
                <SendForm lang={lang} model={m.clone()} client={state.client} target={state.target} proto={state.proto}
                    on_action={on_action.clone()} on_send={on_send.clone()}
                    on_send_again={on_send_again.clone()} can_send_again={state.trace.is_some()}
                    custom_dst={state.custom_dst.map(|d| AttrValue::from(d.to_string()))} />
            }
            <Controls lang={lang} timeline={state.timeline.clone()} cursor={state.cursor} playing={state.playing}
                speed={state.speed} on_action={on_action.clone()} />
            <Diagram lang={lang} client_label={client_label} pods={pods} local_pods={local_pods} timeline={state.timeline.clone()}
                trace={state.trace.clone()} cursor={state.cursor} />
            if let Some(g) = chain_graph {
                <chains::ChainPanel lang={lang} graph={g} trace={state.trace.clone()}
                    current={frame.as_ref().and_then(|f| Some((AttrValue::from(f.table.as_deref()?.to_string()), AttrValue::from(f.chains.last()?.to_string()))))} />
            }
            <div class="grid">
                <StepText lang={lang} trace={state.trace.clone()} timeline={state.timeline.clone()} cursor={state.cursor} on_action={on_action.clone()} />
                <div class="side">
                    if let Some(tr) = &state.trace {
                        <PacketHeader lang={lang} original={tr.packet} frame={frame.clone()} />
                    }
                    <RulePanel lang={lang} frame={frame.clone()} />
                    if let Some(tr) = &state.trace {
                        <Outcomes lang={lang} trace={tr.clone()} />
                    }
                </div>
            </div>
            if state.compare {
                <ComparePanel lang={lang} traces={state.compared()} />
            }
            if state.mode == model::Mode::Ipvs {
                <IpvsPanel lang={lang} scheduler={state.effective_scheduler()} dump={state.dump.is_some()}
                    table={state.ipvsadm_list().map(AttrValue::from)} state={state.sched_view()} on_action={on_action.clone()} />
            }
            if !state.embed {
                <section class="panel many-panel" aria-labelledby="many-title">
                    <h2 id="many-title">{ t(lang, K::SendMany) }</h2>
                    <ManyButtons lang={lang} on_many={on_many} />
                    <label class="keepalive"><input id="keepalive" type="checkbox" checked={state.keepalive}
                        onchange={on_action.reform(|e: Event| Action::SetKeepalive(e.target().and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok()).is_some_and(|i| i.checked())))} />
                        { " " }{ t(lang, K::Keepalive) }</label>
                    if let Some(m) = &state.many {
                        <ManyView lang={lang} many={m.clone()} reduced_motion={*reduced} />
                    }
                </section>
                <div class="grid">
                    <ScenarioEditor lang={lang} text={AttrValue::from(state.scenario_text.clone())}
                        errors={match &state.model {
                            Err(d) if state.editor_errors.is_empty() => d.clone(),
                            // The loaded scenario's warnings (what core did not model or ignored).
                            Ok(m) if state.editor_errors.is_empty() => Rc::new(m.warnings.clone()),
                            _ => state.editor_errors.clone(),
                        }}
                        on_action={on_action.clone()} />
                    <div class="side">
                        <SharePanel lang={lang} url={AttrValue::from(share_url)} embed_url={AttrValue::from(embed_url)}
                            has_trace={state.trace.is_some()} on_export={on_export} on_export_svg={on_export_svg} on_export_png={on_export_png} />
                        <DumpEditor lang={lang} mode={state.mode} text={AttrValue::from(state.dump_text.clone())} active={state.dump.is_some()}
                            errors={state.dump_errors.clone()} custom_dst={AttrValue::from(state.custom_dst_text.clone())}
                            custom_ok={state.custom_dst.is_some()} on_action={on_action.clone()} />
                        <Glossary lang={lang} />
                    </div>
                </div>
            }
        </main>
    }
}
