//! IPVS mode's own panel: the scheduler picker (all 14 kernel schedulers), the virtual server
//! table as `ipvsadm -Ln` prints it, and the chosen virtual server's scheduler state.

use wasm_bindgen::JsCast;
use yew::prelude::*;

use crate::i18n::{self, K, Lang, t};
use crate::model::{SchedView, SchedulerKind};
use crate::state::Action;

#[derive(Properties, PartialEq)]
pub struct IpvsProps {
    pub lang: Lang,
    pub scheduler: SchedulerKind,
    /// `ipvsadm -Ln` of the live session.
    pub table: Option<AttrValue>,
    pub state: Option<SchedView>,
    /// A dump brings its own schedulers: the picker is then off.
    #[prop_or_default]
    pub dump: bool,
    pub on_action: Callback<Action>,
}

#[function_component(IpvsPanel)]
pub fn ipvs_panel(p: &IpvsProps) -> Html {
    let lang = p.lang;
    let on_sched = p.on_action.reform(|e: Event| {
        let v = e
            .target()
            .and_then(|t| t.dyn_into::<web_sys::HtmlSelectElement>().ok())
            .map(|s| s.value())
            .unwrap_or_default();
        Action::SetScheduler(SchedulerKind::parse(&v).unwrap_or(SchedulerKind::Rr))
    });
    html! {
        <section class="panel ipvs-panel" aria-labelledby="ipvs-title" id="ipvs-panel">
            <h2 id="ipvs-title">{ t(lang, K::IpvsTitle) }</h2>
            <p class="sched-pick">
                <label>{ t(lang, K::Scheduler) }{ " " }
                    <select id="scheduler" onchange={on_sched} disabled={p.dump}>
                        { for SchedulerKind::ALL.into_iter().map(|k| html! {
                            <option value={k.name()} selected={k == p.scheduler}>{ k.name() }</option>
                        }) }
                    </select>
                </label>
                { " " }<span id="sched-desc">{ i18n::sched_desc(lang, p.scheduler) }</span>
            </p>
            <p class="muted">{ t(lang, K::SchedHint) }</p>
            <div class="ipvs-grid">
                <div>
                    <h3>{ t(lang, K::IpvsTable) }</h3>
                    <pre id="ipvsadm" lang="en">{ p.table.clone().unwrap_or_default() }</pre>
                </div>
                <div>
                    <h3>{ t(lang, K::SchedState) }</h3>
                    { sched_state(lang, p.state.as_ref(), "sched-state") }
                </div>
            </div>
        </section>
    }
}

/// The scheduler's private state as a definition list plus the server table it scans.
pub fn sched_state(lang: Lang, v: Option<&SchedView>, id: &'static str) -> Html {
    let Some(v) = v else {
        return html! { <p class="muted" id={id}>{ t(lang, K::SchedNoVs) }</p> };
    };
    let has_buckets = v.servers.iter().any(|s| s.buckets.is_some());
    html! {
        <div id={id} class="sched-state" data-scheduler={v.scheduler.name()}>
            <p><code>{ format!("{} {}", v.service, v.scheduler.name()) }</code></p>
            if !v.facts.is_empty() {
                <dl class="facts">
                    { for v.facts.iter().map(|(f, val)| html! {
                        <><dt>{ i18n::fact_label(lang, *f) }</dt><dd data-fact={format!("{f:?}")}><code>{ val.clone() }</code></dd></>
                    }) }
                </dl>
            }
            <table class="servers">
                <thead><tr>
                    <th>{ t(lang, K::Server) }</th><th>{ t(lang, K::Weight) }</th>
                    <th>{ t(lang, K::Active) }</th><th>{ t(lang, K::Inactive) }</th>
                    if has_buckets { <th>{ t(lang, K::Buckets) }</th> }
                </tr></thead>
                <tbody>
                    { for v.servers.iter().map(|s| html! {
                        <tr data-server={s.addr.clone()} class={classes!(s.overloaded.then_some("overloaded"))}>
                            <td><code>{ s.addr.clone() }</code></td>
                            <td>{ s.weight }</td>
                            <td class="active">{ s.active }</td>
                            <td class="inactive">{ s.inactive }</td>
                            if has_buckets { <td class="buckets">{ s.buckets.unwrap_or(0) }</td> }
                        </tr>
                    }) }
                </tbody>
            </table>
            if !v.cache.is_empty() {
                <h4>{ t(lang, K::Cache) }</h4>
                <ul class="cache">
                    { for v.cache.iter().map(|(a, s)| html! { <li><code>{ format!("{a} → {}", s.join(", ")) }</code></li> }) }
                </ul>
            }
        </div>
    }
}
