//! Side by side: the last packet as iptables mode and as IPVS mode handled it, with what differs
//! called out in words (chain walk with random draws vs hash lookup + scheduler, where DNAT
//! happens, masquerade, which Pod).

use std::rc::Rc;

use proxyscope_core::trace::Trace;
use yew::prelude::*;

use crate::i18n::{self, K, Lang, t};
use crate::model::{Mode, ModeSummary, summarize};

#[derive(Properties, PartialEq)]
pub struct Props {
    pub lang: Lang,
    /// (iptables, IPVS) traces of the same packet.
    pub traces: Option<(Rc<Trace>, Rc<Trace>)>,
}

fn column(lang: Lang, s: &ModeSummary) -> Html {
    let yes_no = |b: bool| if b { t(lang, K::Yes) } else { t(lang, K::No) };
    let (title, id) = match s.mode {
        Mode::Iptables => ("iptables", "compare-iptables"),
        Mode::Ipvs => ("IPVS", "compare-ipvs"),
    };
    let lookup = match s.mode {
        Mode::Iptables if s.nat_chains.is_empty() => "—".to_string(),
        Mode::Iptables => s.nat_chains.join(" → "),
        Mode::Ipvs => match &s.ipvs_service {
            Some(vs) => format!(
                "{} → {vs}",
                if lang == Lang::Zh {
                    "哈希查找"
                } else {
                    "hash lookup"
                }
            ),
            None => "—".into(),
        },
    };
    let how = if s.established {
        "conntrack (ESTABLISHED)".to_string()
    } else {
        match (&s.scheduler, s.random_rules) {
            // Core's reasons usually start with the scheduler's name already.
            (Some((name, reason)), _) if reason.starts_with(name.as_str()) => reason.clone(),
            (Some((name, reason)), _) => format!("{name}: {reason}"),
            (None, n) if n > 0 => format!(
                "-m statistic --mode random × {n} (p = {:.3})",
                s.probability
            ),
            _ => "—".into(),
        }
    };
    html! {
        <div class="compare-col" id={id} data-output={s.output.clone()}>
            <h3>{ title }</h3>
            <dl>
                <dt>{ t(lang, K::RulesEvaluated) }</dt><dd class="rules">{ s.rules_evaluated }</dd>
                <dt>{ t(lang, K::Lookup) }</dt><dd><code>{ lookup }</code></dd>
                <dt>{ t(lang, K::HowChosen) }</dt><dd class="how" lang="en"><code>{ how }</code></dd>
                <dt>{ t(lang, K::DnatAt) }</dt><dd>{ s.dnat_hook.map(|h| i18n::hook_name(h).to_string()).unwrap_or_else(|| "—".into()) }</dd>
                <dt>{ t(lang, K::Masq) }</dt><dd class="masq">{ yes_no(s.masquerade) }</dd>
                <dt>{ t(lang, K::WentTo) }</dt><dd class="went"><code>{ if s.output.is_empty() { "—".to_string() } else { s.output.clone() } }</code></dd>
            </dl>
        </div>
    }
}

#[function_component(ComparePanel)]
pub fn compare_panel(p: &Props) -> Html {
    let lang = p.lang;
    let body = match &p.traces {
        None => html! { <p class="muted">{ t(lang, K::CompareNone) }</p> },
        Some((a, b)) => {
            let (sa, sb) = (summarize(Mode::Iptables, a), summarize(Mode::Ipvs, b));
            html! {
                <>
                    <div class="compare-cols">{ column(lang, &sa) }{ column(lang, &sb) }</div>
                    <h3>{ t(lang, K::Differences) }</h3>
                    <ul id="compare-notes">
                        { for i18n::compare_notes(lang, &sa, &sb).into_iter().map(|n| html! { <li>{ n }</li> }) }
                    </ul>
                </>
            }
        }
    };
    html! {
        <section class="panel compare-panel" aria-labelledby="compare-title" id="compare-panel">
            <h2 id="compare-title">{ t(lang, K::CompareTitle) }</h2>
            { body }
        </section>
    }
}
