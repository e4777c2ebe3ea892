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
        // Everything an outcome carries: a reused table run (exploring walks share the runs
        // of tables that made no random decision) must count and warn as a fresh one.
        format!(
            "{:?} {:?} {:?} {} {:?} {} {:?}",
            o.verdict, o.dnat, o.snat, o.masq, o.packet, o.rules_evaluated, o.warnings
        ),
        o.choices
            .iter()
            .map(|c| (c.matched, c.p_match.to_bits()))
            .collect(),
    )
}

/// Every answer sequence, by re-walking from the start with a script of answers.
fn plain(m: &Machine, req: &WalkRequest, start: &State) -> Vec<Seen> {
    let mut state = start.clone();
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
                // The presets, plus every endpoint of the Service as a client of its own
                // Service: the hairpin rule marks only the branch back to the client, so the
                // branches after a random match differ in their mark.
                let mut srcs: Vec<std::net::IpAddr> = clients.iter().map(|c| c.src).collect();
                let probe = WalkRequest {
                    pkt: Packet {
                        src: srcs.first().copied().unwrap_or(t.dst),
                        sport: 40000,
                        dst: t.dst,
                        dport: t.dport,
                        proto: t.proto,
                        mark: 0,
                    },
                    local_origin: false,
                    in_iface: Some("eth0".to_string()),
                    now: 0.0,
                    bridge: None,
                    ipvs: None,
                };
                explore(&m, &probe, &mut State::default(), &mut |o| {
                    if let Some((ip, _)) = o.dnat
                        && !srcs.contains(&ip)
                    {
                        srcs.push(ip);
                    }
                    true
                });
                for c in srcs.iter().filter(|c| c.is_ipv6() == t.dst.is_ipv6()) {
                    for local_origin in [false, true] {
                        let req = WalkRequest {
                            pkt: Packet {
                                src: *c,
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
                        // Before any packet, and after one from another port of the same
                        // client went through for real (its `-m recent` entries make the
                        // affinity rules match; its conntrack entry is not this flow's).
                        let mut after_one = State::default();
                        let mut first = req.clone();
                        first.pkt.sport = 40001;
                        let mut ch = Scripted {
                            script: Vec::new(),
                            pos: 0,
                        };
                        walk(&m, &first, &mut after_one, &mut ch, false, true);
                        for start in [State::default(), after_one] {
                            let want = plain(&m, &req, &start);
                            let mut got = Vec::new();
                            let mut state = start.clone();
                            explore(&m, &req, &mut state, &mut |o| {
                                got.push(summary(o));
                                true
                            });
                            assert_eq!(got, want, "seed {seed}, {t:?}, from {c}");
                            compared += 1;
                            branched += usize::from(want.len() > 1);
                        }
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
