//! Recorded steps carry rule texts and chain names from a per-Machine cache
//! (`Machine::rule_text` / `chain_text`). A cache must never change an answer: every text it
//! hands out, first time, from the cache, and after the cache has started over, must be the
//! rule's line in the `iptables-save` text of the same rules (that printer is the one the
//! kernel round-trip tests hold to the kernel's own `iptables-save`), and a trace must read the
//! same from a warm machine as from a fresh one.

use proxyscope_core::api::{Session, TraceRequest, client_presets, load_scenario, service_targets};
use proxyscope_core::generate::large_cluster;
use proxyscope_core::netfilter::{Machine, NodeView};
use proxyscope_core::proxier::iptables::{generate_all, node_ruleset, saved_text};
use std::collections::BTreeMap;

type ByChain = BTreeMap<(usize, String), Vec<String>>;

/// Every rule text of the machine by (table, chain), in rule order.
fn all_texts(m: &Machine) -> ByChain {
    let p = m.program();
    let mut buf = String::new();
    let mut out = ByChain::new();
    for t in 0..p.table_count() {
        for c in 0..p.chain_count(t) {
            assert_eq!(&*m.chain_text(t, c), p.chain_name(t, c));
            let texts = (0..p.chain_len(t, c))
                .map(|r| m.rule_text(t, c, r, &mut buf).to_string())
                .collect::<Vec<_>>();
            if !texts.is_empty() {
                out.insert((t, p.chain_name(t, c).to_string()), texts);
            }
        }
    }
    out
}

#[test]
fn cached_rule_texts_are_the_saved_lines_before_and_after_the_cache_starts_over() {
    // 700 Services x 10 endpoints: more rules (~23k) than the cache keeps (16k), so the second
    // pass reads some texts from the cache and prints the rest again after a clear.
    let s = load_scenario(&large_cluster(700, 10))
        .expect("generated cluster loads")
        .scenario;
    let fr = generate_all(&s)
        .into_iter()
        .next()
        .expect("an IPv4 ruleset");
    let saved = saved_text(&fr);
    // The dump's `-A` lines per (table, chain), in the order iptables-save prints them.
    let mut expected = ByChain::new();
    let mut table = None;
    for line in saved.lines() {
        if line.starts_with('*') {
            table = Some(table.map_or(0, |t| t + 1));
        } else if let Some(rest) = line.strip_prefix("-A ") {
            let chain = rest.split(' ').next().expect("a chain name");
            expected
                .entry((table.expect("rules follow a table line"), chain.to_string()))
                .or_default()
                .push(line.to_string());
        }
    }
    let rules: usize = expected.values().map(Vec::len).sum();
    assert!(
        rules > 20_000,
        "only {rules} rules: the cache never starts over"
    );
    let m = Machine::new(node_ruleset(&fr), fr.family, NodeView::default());
    for pass in ["first", "second"] {
        let got = all_texts(&m);
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "{pass} pass: chains with rules"
        );
        for (k, e) in &expected {
            assert_eq!(&got[k], e, "{pass} pass, chain {k:?}");
        }
    }
}

#[test]
fn a_warm_session_traces_exactly_as_a_fresh_one() {
    let s = load_scenario(&large_cluster(50, 5))
        .expect("generated cluster loads")
        .scenario;
    let src = client_presets(&s).first().expect("a client").src;
    let mut warm = Session::new(&s);
    for t in service_targets(&s) {
        let req = TraceRequest {
            src,
            dst: t.dst,
            dport: t.dport,
            proto: t.proto,
            sport: Some(40000),
            seed: 7,
            now: 0.0,
        };
        // The same packet twice in the warm session (the second from the cache), once in a
        // session that has traced nothing; state reset so only the texts could differ.
        warm.state = Default::default();
        let a = warm.trace(&req);
        warm.state = Default::default();
        let b = warm.trace(&req);
        let c = Session::new(&s).trace(&req);
        assert!(a.steps.len() > 5, "{t:?}: {} steps", a.steps.len());
        assert_eq!(a, b, "{t:?}");
        assert_eq!(a, c, "{t:?}");
    }
}
