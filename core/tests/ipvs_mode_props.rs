//! Properties of IPVS mode: the node-dump reader never panics on any text (and every problem
//! it reports has a place), a session built from any readable dump traces any packet without
//! panicking, and outcome probabilities always sum to 1.

#![cfg(not(target_arch = "wasm32"))]

use proptest::prelude::*;
use proxyscope_core::api::{self, Session, TraceRequest};
use proxyscope_core::k8s::Scenario;
use proxyscope_core::trace::Proto;
use std::net::IpAddr;

fn demo() -> Scenario {
    api::load_scenario(include_str!("../../examples/ipvs-demo.yaml"))
        .unwrap()
        .scenario
}

fn dump() -> String {
    api::ipvs_rules(&demo()).text()
}

/// A line-level mutation of a real dump: drop, duplicate, truncate or garble one line.
fn mutate(text: &str, op: u8, at: usize, junk: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if lines.is_empty() {
        return junk.to_string();
    }
    let i = at % lines.len();
    match op % 4 {
        0 => {
            lines.remove(i);
        }
        1 => {
            let l = lines[i].clone();
            lines.insert(i, l);
        }
        2 => {
            let cut = lines[i].char_indices().nth(at % 7).map(|(c, _)| c);
            if let Some(c) = cut {
                lines[i].truncate(c);
            }
        }
        _ => lines[i].push_str(junk),
    }
    lines.join("\n") + "\n"
}

fn trace_all(s: &mut Session) {
    for (src, dst, port) in [
        ("10.0.0.100", "10.104.14.67", 80),
        ("203.0.113.10", "10.104.14.67", 80),
        ("192.168.0.2", "10.104.14.67", 80),
        ("10.0.0.100", "10.104.14.67", 81),
    ] {
        let src: IpAddr = src.parse().unwrap();
        let dst: IpAddr = dst.parse().unwrap();
        for now in [0.0, 500.0, 5000.0] {
            let t = s.trace(&TraceRequest {
                src,
                dst,
                dport: port,
                proto: Proto::Tcp,
                sport: Some(1234),
                seed: 3,
                now,
            });
            let total: f64 = t.outcomes.iter().map(|o| o.probability).sum();
            assert!((total - 1.0).abs() < 1e-9, "{:?}", t.outcomes);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn arbitrary_text_never_panics(text in "(# (ipvsadm -Sn|ipset save|iptables-save|ip -brief address show dev kube-ipvs0)\n)?[ -~\n]{0,400}") {
        let (_, diags) = Session::from_ipvs_dump(&demo(), &text);
        for d in diags {
            prop_assert!(!d.location.is_empty(), "{d}");
        }
    }

    #[test]
    fn mutated_dumps_load_and_trace(op in 0u8..4, at in 0usize..200, junk in "[ -~]{0,12}") {
        let text = mutate(&dump(), op, at, &junk);
        let (mut s, _) = Session::from_ipvs_dump(&demo(), &text);
        trace_all(&mut s);
    }
}

#[test]
fn generated_session_traces_sum_to_one() {
    let mut s = Session::new_ipvs(&demo());
    trace_all(&mut s);
}
