//! Dumb views: each renders part of the state and reports clicks as [`Action`]s.

use std::rc::Rc;

use proxyscope_core::trace::{Packet, Proto, Trace};
use wasm_bindgen::JsCast;
use yew::prelude::*;

use crate::engine::{Frame, Timeline};
use crate::i18n::{self, GLOSSARY, K, Lang, t};
use crate::model::{self, Diag, Model};
use crate::state::{Action, MANY_CHOICES, SPEEDS_MS};

fn select_value(e: &Event) -> String {
    e.target()
        .and_then(|t| t.dyn_into::<web_sys::HtmlSelectElement>().ok())
        .map(|s| s.value())
        .unwrap_or_default()
}

#[derive(Properties, PartialEq)]
pub struct SendProps {
    pub lang: Lang,
    pub model: Rc<Model>,
    pub client: usize,
    pub target: usize,
    pub proto: Proto,
    pub on_action: Callback<Action>,
    pub on_send: Callback<()>,
    pub on_send_again: Callback<()>,
    /// A connection exists to continue.
    pub can_send_again: bool,
    /// A destination typed by hand replaces the picker.
    #[prop_or_default]
    pub custom_dst: Option<AttrValue>,
}

#[function_component(SendForm)]
pub fn send_form(p: &SendProps) -> Html {
    let lang = p.lang;
    let on_client = p
        .on_action
        .reform(|e: Event| Action::SelectClient(select_value(&e).parse().unwrap_or(0)));
    let on_target = p
        .on_action
        .reform(|e: Event| Action::SelectTarget(select_value(&e).parse().unwrap_or(0)));
    let on_proto = p.on_action.reform(|e: Event| {
        Action::SelectProto(Proto::parse(&select_value(&e)).unwrap_or(Proto::Tcp))
    });
    let on_send = p.on_send.reform(|_: MouseEvent| ());
    html! {
        <form class="send" onsubmit={Callback::from(|e: SubmitEvent| e.prevent_default())}>
            <label>{ t(lang, K::Client) }
                <select id="client" onchange={on_client}>
                    { for p.model.clients.iter().enumerate().map(|(i, c)| html! {
                        <option value={i.to_string()} selected={i == p.client}>{ format!("{} ({})", i18n::client_label(lang, &c.label), c.src) }</option>
                    }) }
                </select>
            </label>
            <label>{ t(lang, K::Destination) }
                <select id="target" onchange={on_target} disabled={p.custom_dst.is_some()}>
                    { for p.model.targets.iter().enumerate().map(|(i, tg)| html! {
                        <option value={i.to_string()} selected={i == p.target}>
                            { i18n::target_label(lang, &tg.kind, &tg.service, &hostport(tg.dst, tg.dport), &tg.label) }
                        </option>
                    }) }
                </select>
            </label>
            if let Some(d) = &p.custom_dst {
                <label>{ t(lang, K::CustomDst) }<output id="custom-dst-note"><code>{ d.clone() }</code></output></label>
            }
            <label>{ t(lang, K::Protocol) }
                <select id="proto" onchange={on_proto}>
                    { for [Proto::Tcp, Proto::Udp, Proto::Sctp].into_iter().map(|pr| html! {
                        <option value={pr.as_str()} selected={pr == p.proto}>{ pr.as_str().to_uppercase() }</option>
                    }) }
                </select>
            </label>
            <button id="send" type="button" class="primary" onclick={on_send}>{ t(lang, K::Send) }</button>
            <button id="send-again" type="button" disabled={!p.can_send_again} aria-keyshortcuts="N"
                onclick={p.on_send_again.reform(|_: MouseEvent| ())}>{ t(lang, K::SendAgain) }</button>
        </form>
    }
}

/// A 24×24 icon drawn as a path: system fonts often lack the media-control glyphs (⏮ ⏭).
fn icon_svg(d: &'static str) -> Html {
    html! {
        <svg class="icon" viewBox="0 0 24 24" width="16" height="16" aria-hidden="true" focusable="false"><path d={d} /></svg>
    }
}

#[derive(Properties, PartialEq)]
pub struct ControlsProps {
    pub lang: Lang,
    pub timeline: Rc<Timeline>,
    pub cursor: usize,
    pub playing: bool,
    pub speed: usize,
    pub on_action: Callback<Action>,
}

#[function_component(Controls)]
pub fn controls(p: &ControlsProps) -> Html {
    let lang = p.lang;
    let empty = p.timeline.is_empty();
    let last = p.timeline.len().saturating_sub(1);
    let btn = |id: &'static str,
               label: &'static str,
               key: &'static str,
               icon: &'static str,
               a: fn() -> Action,
               disabled: bool| {
        let cb = p.on_action.reform(move |_: MouseEvent| a());
        html! {
            <button id={id} type="button" onclick={cb} disabled={disabled} aria-label={label} title={format!("{label} ({key})")} aria-keyshortcuts={key}>
                { icon_svg(icon) }
            </button>
        }
    };
    let play_label = if p.playing {
        t(lang, K::Pause)
    } else {
        t(lang, K::Play)
    };
    html! {
        <div class="controls" role="toolbar" aria-label={t(lang, K::Steps)}>
            { btn("reset", t(lang, K::Reset), "Home", "M6 5h2v14H6z M20 5L9 12l11 7z", || Action::Reset, empty || p.cursor == 0) }
            { btn("prev-hook", t(lang, K::PrevHook), "[", "M11 5L2 12l9 7z M22 5l-9 7 9 7z", || Action::PrevHook, empty || p.cursor == 0) }
            { btn("back", t(lang, K::StepBack), "ArrowLeft", "M16 5L7 12l9 7z", || Action::StepBack, empty || p.cursor == 0) }
            <button id="play" type="button" class="primary" disabled={empty} aria-pressed={p.playing.to_string()}
                onclick={p.on_action.reform(|_: MouseEvent| Action::TogglePlay)} aria-keyshortcuts="Space" title={format!("{play_label} (Space)")}>
                { icon_svg(if p.playing { "M6 5h4v14H6z M14 5h4v14h-4z" } else { "M7 5l12 7-12 7z" }) }{ " " }{ play_label }
            </button>
            { btn("fwd", t(lang, K::StepForward), "ArrowRight", "M8 5l9 7-9 7z", || Action::StepForward, empty || p.cursor >= last) }
            { btn("next-hook", t(lang, K::NextHook), "]", "M2 5l9 7-9 7z M13 5l9 7-9 7z", || Action::NextHook, empty || p.timeline.next_hook(p.cursor).is_none()) }
            { btn("end", "End", "End", "M4 5l11 7-11 7z M16 5h2v14h-2z", || Action::End, empty || p.cursor >= last) }
            <span class="speed">
                { t(lang, K::Speed) }{ ": " }
                { btn("slower", "−", "-", "M5 11h14v2H5z", || Action::Slower, p.speed == 0) }
                <output id="speed-value">{ format!("{:.1}×", 800.0 / SPEEDS_MS[p.speed] as f64) }</output>
                { btn("faster", "+", "+", "M11 5h2v6h6v2h-6v6h-2v-6H5v-2h6z", || Action::Faster, p.speed + 1 >= SPEEDS_MS.len()) }
            </span>
            <span class="position" id="position">{ if empty { String::new() } else { format!("{} / {}", p.cursor + 1, p.timeline.len()) } }</span>
            if !empty {
                <span class="hook-jumps" role="group" aria-label={t(lang, K::JumpToHook)}>
                    { for p.timeline.hooks.iter().map(|v| {
                        let i = v.frame;
                        let current = p.timeline.hooks.iter().rev().find(|w| w.frame <= p.cursor).is_some_and(|w| w.frame == i);
                        html! {
                            <button type="button" class={classes!("hook-jump", current.then_some("current"))} data-hook={v.hook.as_str()}
                                title={v.tables.join(" → ")} aria-current={current.then_some("step")}
                                onclick={p.on_action.reform(move |_: MouseEvent| Action::Seek(i))}>
                                { v.hook.as_str() }
                                // A locally generated packet visits OUTPUT twice (nat, then filter
                                // after the re-route): name the tables so the buttons differ.
                                if p.timeline.hooks.iter().filter(|w| w.hook == v.hook).count() > 1 {
                                    <span class="tables">{ format!(" ({})", v.tables.join("/")) }</span>
                                }
                            </button>
                        }
                    }) }
                </span>
            }
        </div>
    }
}

#[derive(Properties, PartialEq)]
pub struct HeaderProps {
    pub lang: Lang,
    pub original: Packet,
    pub frame: Option<Frame>,
}

#[function_component(PacketHeader)]
pub fn packet_header(p: &HeaderProps) -> Html {
    let lang = p.lang;
    let cur = p.frame.as_ref().map(|f| f.packet).unwrap_or(p.original);
    let ch = p.frame.as_ref().map(|f| f.changed).unwrap_or_default();
    let o = p.original;
    let row = |id: &str, name: &str, now: String, was: String, changed: bool| {
        let rewritten = now != was;
        html! {
            <tr id={id.to_string()} class={classes!(changed.then_some("changed"), rewritten.then_some("rewritten"))}>
                <th scope="row">{ name.to_string() }</th>
                <td><code>{ now.clone() }</code>
                    if rewritten { <span class="was">{ " ← " }<del>{ was }</del></span> }
                </td>
            </tr>
        }
    };
    html! {
        <section class="panel header-panel" aria-labelledby="hdr-title">
            <h2 id="hdr-title">{ t(lang, K::PacketHeader) }</h2>
            <table class="packet-header">
                <tbody>
                    { row("hdr-proto", t(lang, K::Protocol), cur.proto.as_str().to_string(), o.proto.as_str().to_string(), false) }
                    { row("hdr-src", t(lang, K::Source), hostport(cur.src, cur.sport), hostport(o.src, o.sport), ch.src) }
                    { row("hdr-dst", t(lang, K::Dest), hostport(cur.dst, cur.dport), hostport(o.dst, o.dport), ch.dst) }
                    { row("hdr-mark", t(lang, K::Mark), format!("{:#x}", cur.mark), format!("{:#x}", o.mark), ch.mark) }
                </tbody>
            </table>
        </section>
    }
}

/// A click handler that focuses `area` and selects its 1-based `line` of `text` (offsets in
/// UTF-16 units, as the DOM counts them): clicking a reported problem lands on its line.
pub fn select_line(area: NodeRef, text: AttrValue, line: usize) -> Callback<MouseEvent> {
    Callback::from(move |_: MouseEvent| {
        if let Some(a) = area.cast::<web_sys::HtmlTextAreaElement>() {
            let start: usize = text
                .split_inclusive('\n')
                .take(line.saturating_sub(1))
                .map(|l| l.encode_utf16().count())
                .sum();
            let len = text
                .split('\n')
                .nth(line.saturating_sub(1))
                .map(|l| l.encode_utf16().count())
                .unwrap_or(0);
            let _ = a.focus();
            let _ = a.set_selection_range(start as u32, (start + len) as u32);
        }
    })
}

pub fn hostport(ip: std::net::IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(ip, port).to_string()
}

#[derive(Properties, PartialEq)]
pub struct RuleProps {
    pub lang: Lang,
    pub frame: Option<Frame>,
}

/// The current rule as `iptables-save` prints it, with the first failing match marked.
#[function_component(RulePanel)]
pub fn rule_panel(p: &RuleProps) -> Html {
    let lang = p.lang;
    let chains = p
        .frame
        .as_ref()
        .map(|f| f.chains.clone())
        .unwrap_or_default();
    let body = match p.frame.as_ref().and_then(|f| f.rule.clone()) {
        None => html! { <p class="muted">{ t(lang, K::NoRuleYet) }</p> },
        Some(r) => {
            let text = match r
                .failed
                .as_deref()
                .and_then(|f| r.text.find(f).map(|i| (i, f.len())))
            {
                Some((i, n)) => html! {
                    <>{ r.text[..i].to_string() }<mark class="fail">{ r.text[i..i + n].to_string() }</mark>{ r.text[i + n..].to_string() }</>
                },
                None => html! { { r.text.clone() } },
            };
            let status = if r.matched {
                t(lang, K::Matched)
            } else {
                t(lang, K::NotMatched)
            };
            html! {
                <>
                    <p class="rule-where">
                        <code>{ format!("{}/{} #{}", r.table, r.chain, r.index) }</code>
                        if let Some(l) = r.line { { format!(" · {} {l}", t(lang, K::Line)) } }
                        <span class={classes!("badge", if r.matched { "ok" } else { "no" })} id="rule-status">{ status }</span>
                    </p>
                    <pre id="rule-text" class={classes!(if r.matched { "matched" } else { "unmatched" })}>{ text }</pre>
                    if let Some(f) = r.failed { <p id="rule-failed">{ format!("{}: ", t(lang, K::FailedMatch)) }<code>{ f }</code></p> }
                    if let Some(n) = r.note { <p class="rule-note">{ n }</p> }
                </>
            }
        }
    };
    html! {
        <section class="panel rule-panel" aria-labelledby="rule-title">
            <h2 id="rule-title">{ t(lang, K::RulePanel) }</h2>
            <p class="chain-stack" aria-label={t(lang, K::ChainStack)} id="chain-stack">
                { for chains.iter().enumerate().map(|(i, c)| html! { <>{ if i > 0 { " → " } else { "" } }<code>{ c.clone() }</code></> }) }
            </p>
            { body }
        </section>
    }
}

#[derive(Properties, PartialEq)]
pub struct StepsProps {
    pub lang: Lang,
    pub trace: Option<Rc<Trace>>,
    pub timeline: Rc<Timeline>,
    pub cursor: usize,
    pub on_action: Callback<Action>,
}

/// The narration line (aria-live) and the text version of every animated step.
#[function_component(StepText)]
pub fn step_text(p: &StepsProps) -> Html {
    let lang = p.lang;
    let Some(trace) = &p.trace else {
        return html! {
            <section class="panel narration-panel" aria-labelledby="narr-title">
                <h2 id="narr-title">{ t(lang, K::Narration) }</h2>
                <p id="narration" aria-live="polite">{ t(lang, K::NoPacketYet) }</p>
            </section>
        };
    };
    let local_origin = p
        .timeline
        .hooks
        .first()
        .is_some_and(|h| h.hook == proxyscope_core::trace::Hook::Output);
    let line = |f: &Frame| {
        let cx = i18n::NarrCtx {
            dst: f.packet.dst.to_string(),
            local_origin,
            output_path: f.place == crate::engine::Place::Reroute,
        };
        i18n::narrate(lang, &trace.steps[f.step], &cx)
    };
    let cur = p.timeline.frames.get(p.cursor);
    let narration = cur.map(line).unwrap_or_default();
    let notes = cur.map(|f| f.notes.clone()).unwrap_or_default();
    html! {
        <section class="panel narration-panel" aria-labelledby="narr-title">
            <h2 id="narr-title">{ t(lang, K::Narration) }</h2>
            <p id="narration" aria-live="polite" aria-atomic="true">{ narration }</p>
            { for notes.iter().map(|n| {
                let (text, in_lang) = i18n::core_note(lang, n);
                html! { <p class="core-note" lang={in_lang.code()}>{ text }</p> }
            }) }
            <details class="steps" open=true>
                <summary>{ format!("{} ({})", t(lang, K::Steps), p.timeline.len()) }</summary>
                <ol id="step-list">
                    { for p.timeline.frames.iter().enumerate().map(|(i, f)| {
                        let current = i == p.cursor;
                        html! {
                            <li aria-current={current.then_some("step")} class={classes!(current.then_some("current"), (i > p.cursor).then_some("future"))}>
                                <button type="button" class="linklike" onclick={p.on_action.reform(move |_: MouseEvent| Action::Seek(i))}>
                                    { line(f) }
                                </button>
                            </li>
                        }
                    }) }
                </ol>
            </details>
        </section>
    }
}

#[derive(Properties, PartialEq)]
pub struct OutcomesProps {
    pub lang: Lang,
    pub trace: Rc<Trace>,
}

#[function_component(Outcomes)]
pub fn outcomes(p: &OutcomesProps) -> Html {
    let lang = p.lang;
    let tr = &p.trace;
    html! {
        <section class="panel" aria-labelledby="out-title">
            <h2 id="out-title">{ t(lang, K::Outcomes) }</h2>
            <table id="outcomes">
                <thead><tr><th>{ "→" }</th><th>{ t(lang, K::Probability) }</th><th>{ "MASQUERADE" }</th></tr></thead>
                <tbody>
                    { for tr.outcomes.iter().map(|o| html! {
                        <tr class={classes!((o.output == tr.chosen.output).then_some("chosen"))}>
                            <td><code>{ if o.output.is_empty() { "—".to_string() } else { o.output.clone() } }</code></td>
                            <td>{ format!("{:.4}", o.probability) }</td>
                            <td>{ if o.masq { "✓" } else { "" } }</td>
                        </tr>
                    }) }
                </tbody>
            </table>
            <p>{ format!("{}: {:?}", t(lang, K::Verdict), tr.verdict) }</p>
            if !tr.warnings.is_empty() {
                <div class="warnings"><h3>{ t(lang, K::Warnings) }</h3>
                    <ul>{ for tr.warnings.iter().map(|w| html! { <li lang="en">{ w.clone() }</li> }) }</ul>
                </div>
            }
        </section>
    }
}

#[derive(Properties, PartialEq)]
pub struct EditorProps {
    pub lang: Lang,
    pub text: AttrValue,
    pub errors: Rc<Vec<Diag>>,
    pub on_action: Callback<Action>,
}

#[function_component(ScenarioEditor)]
pub fn scenario_editor(p: &EditorProps) -> Html {
    let lang = p.lang;
    let area = use_node_ref();
    let on_input = p.on_action.reform(|e: InputEvent| {
        let v = e
            .target()
            .and_then(|t| t.dyn_into::<web_sys::HtmlTextAreaElement>().ok())
            .map(|t| t.value())
            .unwrap_or_default();
        Action::EditScenario(v)
    });
    let on_preset = p
        .on_action
        .reform(|e: Event| match select_value(&e).parse::<usize>() {
            Ok(i) => Action::LoadPreset(i),
            Err(_) => Action::Pause,
        });
    // Clicking an error puts the caret on its line, so the learner lands where the problem is.
    let goto_line = {
        let (area, text) = (area.clone(), p.text.clone());
        move |line: usize| crate::views::select_line(area.clone(), text.clone(), line)
    };
    html! {
        <section class="panel editor" aria-labelledby="ed-title">
            <h2 id="ed-title">{ t(lang, K::Scenario) }</h2>
            <label>{ t(lang, K::Presets) }{ " " }
                <select id="preset" onchange={on_preset}>
                    <option value="" selected=true>{ "—" }</option>
                    { for model::PRESETS.iter().enumerate().map(|(i, (name, _))| html! { <option value={i.to_string()}>{ *name }</option> }) }
                    <option value={model::PRESETS.len().to_string()}>{ t(lang, K::LargePreset) }</option>
                </select>
            </label>
            <textarea id="scenario" ref={area} spellcheck="false" rows="14" aria-describedby="scenario-errors"
                value={p.text.clone()} oninput={on_input} aria-label={t(lang, K::Scenario)} />
            <button id="load-scenario" type="button" onclick={p.on_action.reform(|_: MouseEvent| Action::LoadScenario)}>{ t(lang, K::LoadScenario) }</button>
            <div id="scenario-errors" role="alert" class={classes!((!p.errors.iter().any(|d| d.error)).then_some("warn"))}>
                if !p.errors.is_empty() {
                    <h3>{ if p.errors.iter().any(|d| d.error) { t(lang, K::ScenarioErrors) } else { t(lang, K::Warnings) } }</h3>
                    <ul>
                        { for p.errors.iter().map(|d| {
                            let loc = match d.line {
                                Some(l) if d.location.is_empty() => format!("{} {l}", t(lang, K::Line)),
                                Some(l) => format!("{} {l}: {}", t(lang, K::Line), d.location),
                                None => d.location.clone(),
                            };
                            html! {
                                <li>
                                    if let Some(l) = d.line {
                                        <button type="button" class="linklike" onclick={goto_line(l)}>{ loc }</button>
                                    } else { { loc } }
                                    { ": " }<span lang="en">{ d.message.clone() }</span>
                                </li>
                            }
                        }) }
                    </ul>
                }
            </div>
        </section>
    }
}

#[derive(Properties, PartialEq)]
pub struct ShareProps {
    pub lang: Lang,
    pub url: AttrValue,
    pub embed_url: AttrValue,
    pub has_trace: bool,
    pub on_export: Callback<()>,
    pub on_export_svg: Callback<()>,
    pub on_export_png: Callback<()>,
}

#[function_component(SharePanel)]
pub fn share_panel(p: &ShareProps) -> Html {
    let lang = p.lang;
    let snippet = format!(
        r#"<iframe src="{}" width="980" height="640" title="proxyscope" loading="lazy"></iframe>"#,
        p.embed_url
    );
    let select_all = Callback::from(|e: FocusEvent| {
        if let Some(i) = e
            .target()
            .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
        {
            i.select();
        }
    });
    html! {
        <section class="panel share" aria-labelledby="share-title">
            <h2 id="share-title">{ t(lang, K::Share) }</h2>
            <label>{ t(lang, K::CopyLink) }<input id="share-url" type="text" readonly=true value={p.url.clone()} onfocus={select_all} /></label>
            <label>{ format!("{} — {}", t(lang, K::Embed), t(lang, K::EmbedSnippet)) }
                <textarea id="embed-snippet" readonly=true rows="2" value={snippet} /></label>
            <p class="exports">
                <button id="export" type="button" disabled={!p.has_trace} onclick={p.on_export.reform(|_: MouseEvent| ())}>{ t(lang, K::ExportJson) }</button>
                { " " }<button id="export-svg" type="button" onclick={p.on_export_svg.reform(|_: MouseEvent| ())}>{ t(lang, K::ExportSvg) }</button>
                { " " }<button id="export-png" type="button" onclick={p.on_export_png.reform(|_: MouseEvent| ())}>{ t(lang, K::ExportPng) }</button>
            </p>
        </section>
    }
}

#[derive(Properties, PartialEq)]
pub struct GlossaryProps {
    pub lang: Lang,
}

#[function_component(Glossary)]
pub fn glossary(p: &GlossaryProps) -> Html {
    let lang = p.lang;
    html! {
        <section class="panel glossary" aria-labelledby="gl-title">
            <h2 id="gl-title">{ t(lang, K::Glossary) }</h2>
            <dl id="glossary">
                { for GLOSSARY.iter().map(|(en, zh, den, dzh)| {
                    let (term, other, def) = match lang { Lang::En => (en, zh, den), Lang::Zh => (zh, en, dzh) };
                    html! { <><dt>{ *term }{ " " }<span class="alt">{ format!("({other})") }</span></dt><dd>{ *def }</dd></> }
                }) }
            </dl>
            <h3>{ t(lang, K::Shortcuts) }</h3>
            <p id="shortcut-help">{ t(lang, K::ShortcutHelp) }</p>
        </section>
    }
}

#[derive(Properties, PartialEq)]
pub struct ManyButtonsProps {
    pub lang: Lang,
    pub on_many: Callback<usize>,
}

#[function_component(ManyButtons)]
pub fn many_buttons(p: &ManyButtonsProps) -> Html {
    html! {
        <div class="many-buttons" role="group" aria-label={t(p.lang, K::SendMany)}>
            <span class="muted">{ t(p.lang, K::Connections) }{ ":" }</span>
            { for MANY_CHOICES.iter().map(|&n| html! {
                <button type="button" class="many-n" data-n={n.to_string()} onclick={p.on_many.reform(move |_: MouseEvent| n)}>
                    { n }
                </button>
            }) }
        </div>
    }
}
