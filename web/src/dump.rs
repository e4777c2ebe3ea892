//! Paste a real node's rules (`iptables-save`, or IPVS mode's `ipvsadm -Sn` + `ipset save` +
//! `iptables-save`) and trace through them; problems are listed at their dump line.

use std::rc::Rc;

use wasm_bindgen::JsCast;
use yew::prelude::*;

use crate::i18n::{K, Lang, t};
use crate::model::{Diag, Mode};
use crate::state::Action;

#[derive(Properties, PartialEq)]
pub struct Props {
    pub lang: Lang,
    pub mode: Mode,
    pub text: AttrValue,
    /// A dump is in use.
    pub active: bool,
    pub errors: Rc<Vec<Diag>>,
    pub custom_dst: AttrValue,
    /// The typed destination parses.
    pub custom_ok: bool,
    pub on_action: Callback<Action>,
}

fn input_value(e: &InputEvent) -> String {
    let Some(t) = e.target() else {
        return String::new();
    };
    if let Some(a) = t.dyn_ref::<web_sys::HtmlTextAreaElement>() {
        return a.value();
    }
    t.dyn_into::<web_sys::HtmlInputElement>()
        .map(|i| i.value())
        .unwrap_or_default()
}

#[function_component(DumpEditor)]
pub fn dump_editor(p: &Props) -> Html {
    let lang = p.lang;
    let area = use_node_ref();
    let goto_line = {
        let (area, text) = (area.clone(), p.text.clone());
        move |line: usize| crate::views::select_line(area.clone(), text.clone(), line)
    };
    let hint = match p.mode {
        Mode::Iptables => t(lang, K::DumpHintIptables),
        Mode::Ipvs => t(lang, K::DumpHintIpvs),
    };
    html! {
        <section class="panel dump" aria-labelledby="dump-title">
            <h2 id="dump-title">{ t(lang, K::DumpTitle) }</h2>
            <p class="muted" id="dump-hint">{ hint }</p>
            <textarea id="dump" ref={area} spellcheck="false" rows="8" aria-label={t(lang, K::DumpTitle)}
                aria-describedby="dump-hint dump-errors" value={p.text.clone()}
                oninput={p.on_action.reform(|e: InputEvent| Action::EditDump(input_value(&e)))} />
            <p>
                <button id="load-dump" type="button" onclick={p.on_action.reform(|_: MouseEvent| Action::LoadDump)}>{ t(lang, K::LoadDump) }</button>
                { " " }
                <button id="clear-dump" type="button" disabled={!p.active} onclick={p.on_action.reform(|_: MouseEvent| Action::ClearDump)}>{ t(lang, K::ClearDump) }</button>
            </p>
            <label>{ t(lang, K::CustomDst) }{ " " }
                <input id="custom-dst" type="text" placeholder="10.96.0.10:53" value={p.custom_dst.clone()}
                    aria-invalid={(!p.custom_dst.is_empty() && !p.custom_ok).to_string()}
                    oninput={p.on_action.reform(|e: InputEvent| Action::SetCustomDst(input_value(&e)))} />
            </label>
            if p.active { <p id="dump-active" class="badge ok">{ t(lang, K::DumpActive) }</p> }
            if p.active && p.text.len() > crate::state::MAX_SHARED_DUMP {
                <p id="dump-not-shared" class="muted">{ t(lang, K::DumpNotShared) }</p>
            }
            <div id="dump-errors" role="alert" class={classes!((!p.errors.iter().any(|d| d.error)).then_some("warn"))}>
                if !p.errors.is_empty() {
                    <h3>{ t(lang, K::DumpProblems) }</h3>
                    <ul>
                        { for p.errors.iter().map(|d| {
                            let loc = match d.line {
                                Some(l) if d.location.is_empty() => format!("{} {l}", t(lang, K::Line)),
                                Some(l) => format!("{} {l}: {}", t(lang, K::Line), d.location),
                                None => d.location.clone(),
                            };
                            html! {
                                <li data-line={d.line.map(|l| l.to_string())}>
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
