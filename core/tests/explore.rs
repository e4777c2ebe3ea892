//! The forking outcome enumeration (`netfilter::walk::explore`) must find exactly the walks a
//! plain enumeration finds — one full walk per combination of random-match answers, "matches"
//! first, the shallowest untaken branch next — in the same order with the same decisions. The
//! reference below is that plain enumeration, written from its definition with the scripted
//! chooser: it shares no code with the forking walker beyond the single-walk engine.

use proxyscope_core::api::{client_presets, load_scenario, service_targets};
use proxyscope_core::generate::random_scenario;
use proxyscope_core::netfilter::walk::explore;
use proxyscope_core::netfilter::{
    Machine, NodeView, Scripted, State, WalkOutcome, WalkRequest, walk,
};
use proxyscope_core::proxier::iptables::{generate_all, node_ruleset};
use proxyscope_core::rules::iptables::Family;
use proxyscope_core::trace::Packet;

type Seen = (String, Vec<(bool, u64)>);

fn summary(o: &WalkOutcome) -> Seen {
    (
        format!("{:?} {:?} {:?} {}", o.verdict, o.dnat, o.snat, o.masq),
        o.choices
            .iter()
            .map(|c| (c.matched, c.p_match.to_bits()))
            .collect(),
    )
}

/// Every answer sequence, by re-walking from the start with a script of answers.
fn plain(m: &Machine, req: &WalkRequest) -> Vec<Seen> {
    let mut state = State::default();
    let mut out = Vec::new();
    let mut todo: Vec<Vec<bool>> = vec![Vec::new()];
    while let Some(script) = todo.pop() {
        let n = script.len();
        let mut ch = Scripted { script, pos: 0 };
        let (o, _) = walk(m, req, &mut state, &mut ch, false, false);
        for i in (n..o.choices.len()).rev() {
            if o.choices[i].matched && o.choices[i].p_match < 1.0 {
                let mut alt: Vec<bool> = o.choices[..i].iter().map(|c| c.matched).collect();
                alt.push(false);
                todo.push(alt);
            }
        }
        out.push(summary(&o));
        assert!(out.len() < 10_000, "runaway enumeration");
    }
    out
}

#[test]
fn forking_finds_the_same_walks_in_the_same_order() {
    let mut compared = 0;
    let mut branched = 0;
    for seed in 0..40u64 {
        let s = load_scenario(&random_scenario(seed))
            .expect("generated scenario loads")
            .scenario;
        let node: Vec<ipnet::IpNet> = s
            .network
            .interfaces
            .iter()
            .flat_map(|(_, a)| a.iter().copied())
            .collect();
        let clients = client_presets(&s);
        for fr in generate_all(&s) {
            let view = NodeView {
                local: node.clone(),
                masq_v4: node.iter().map(|n| n.addr()).find(|a| a.is_ipv4()),
                masq_v6: node.iter().map(|n| n.addr()).find(|a| a.is_ipv6()),
                ..Default::default()
            };
            let m = Machine::new(node_ruleset(&fr), fr.family, view);
            for t in service_targets(&s) {
                if (fr.family == Family::V6) != t.dst.is_ipv6() {
                    continue;
                }
                for c in clients
                    .iter()
                    .filter(|c| c.src.is_ipv6() == t.dst.is_ipv6())
                {
                    for local_origin in [false, true] {
                        let req = WalkRequest {
                            pkt: Packet {
                                src: c.src,
                                sport: 40000,
                                dst: t.dst,
                                dport: t.dport,
                                proto: t.proto,
                                mark: 0,
                            },
                            local_origin,
                            in_iface: (!local_origin).then(|| "eth0".to_string()),
                            now: 0.0,
                            bridge: None,
                            ipvs: None,
                        };
                        let want = plain(&m, &req);
                        let mut got = Vec::new();
                        explore(&m, &req, &mut State::default(), &mut |o| {
                            got.push(summary(o));
                            true
                        });
                        assert_eq!(got, want, "seed {seed}, {t:?}, from {}", c.src);
                        compared += 1;
                        branched += usize::from(want.len() > 1);
                    }
                }
            }
        }
    }
    // The comparison must have covered real branching, not only single-walk packets.
    assert!(
        compared > 500 && branched > 100,
        "{compared} packets, {branched} branching"
    );
}
