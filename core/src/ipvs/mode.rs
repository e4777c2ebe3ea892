//! kube-proxy's IPVS mode on a node, packet by packet: netfilter up to the point where IPVS
//! hooks in, IPVS itself ([`super::path`]), then netfilter again on the rewritten packet.
//!
//! Where IPVS sits (`net/netfilter/ipvs/ip_vs_core.c` `ip_vs_ops_v4`):
//! * a packet arriving for a local address: PREROUTING (raw, conntrack, mangle, nat), routing
//!   says "local" (the VIP is on kube-ipvs0, or it is a node IP), INPUT mangle and filter
//!   (KUBE-IPVS-FILTER, KUBE-PROXY-FIREWALL, KUBE-NODE-PORT), then `ip_vs_remote_request` at
//!   LOCAL_IN priority `NF_IP_PRI_NAT_SRC - 1` (99) — before nat INPUT (100). The nat INPUT
//!   chain is therefore not run for a packet IPVS takes;
//! * a packet the node itself sends: OUTPUT raw, conntrack, mangle, nat (KUBE-SERVICES), then
//!   `ip_vs_local_request` at LOCAL_OUT priority `NF_IP_PRI_NAT_DST + 2` (-98) — before filter
//!   OUTPUT (0);
//! * IPVS rewrites the destination (masq forwarding), updates the conntrack entry
//!   (`net.ipv4.vs.conntrack=1`) and re-sends the packet through LOCAL_OUT
//!   (`ip_vs_nat_send_or_cont`): filter OUTPUT (KUBE-IPVS-OUT-FILTER) and POSTROUTING
//!   (KUBE-POSTROUTING's MASQUERADE when marked) run on the rewritten packet. nat OUTPUT does not
//!   run again: the connection's destination NAT was settled when its first packet passed nat
//!   PREROUTING/OUTPUT.
//!
//! Packets IPVS does not take (no virtual service for the destination, or a destination that is
//! not local for a packet that arrives) walk the plain netfilter path.

use super::path::IpvsNode;
use super::sched::SplitMix64;
use crate::netfilter::eval::IpvsConn;
use crate::netfilter::walk::{Sampler, Scripted};
use crate::netfilter::{Machine, State, WalkRequest, trace as nf_trace, walk};
use crate::rules::iptables::{Ruleset, VMethod};
use crate::trace::{Hook, Outcome, Packet, Step, Trace, Verdict};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::net::SocketAddr;

/// The node's ruleset compiled for each part of the path.
#[derive(Debug, Clone)]
pub struct Stages {
    /// Every hook: packets IPVS does not take.
    pub full: Machine,
    /// Arriving packets up to LOCAL_IN: nat INPUT hidden (it runs after IPVS).
    pre_in: Machine,
    /// The node's own packets up to LOCAL_OUT's IPVS hook: only OUTPUT raw/mangle/nat.
    pre_out: Machine,
    /// The rewritten packet re-sent through LOCAL_OUT: nat OUTPUT hidden.
    post: Machine,
}

/// A built-in chain renamed so no hook finds it.
fn hide(rs: &Ruleset, hidden: &[(&str, Hook)]) -> Ruleset {
    let mut rs = rs.clone();
    for t in &mut rs.tables {
        for c in &mut t.chains {
            if hidden
                .iter()
                .any(|(tn, h)| *tn == t.name && c.name == h.as_str())
            {
                c.name = format!("(not reached) {}", c.name);
            }
        }
    }
    rs
}

impl Stages {
    pub fn new(full: Machine) -> Stages {
        // The machine keeps a compact program: decode it once for the three variants.
        let rules = full.ruleset();
        let mk = |hidden: &[(&str, Hook)]| {
            Machine::new(hide(&rules, hidden), full.family, full.node.clone())
        };
        let pre_in = mk(&[("nat", Hook::Input)]);
        let pre_out = mk(&[
            ("filter", Hook::Output),
            ("security", Hook::Output),
            ("mangle", Hook::Postrouting),
            ("nat", Hook::Postrouting),
            ("mangle", Hook::Input),
            ("filter", Hook::Input),
            ("security", Hook::Input),
            ("nat", Hook::Input),
        ]);
        let post = mk(&[("nat", Hook::Output)]);
        Stages {
            full,
            pre_in,
            pre_out,
            post,
        }
    }
}

fn join(a: SocketAddr) -> String {
    crate::k8s::ip::join_host_port(a.ip(), a.port())
}

fn dropped(v: Verdict) -> bool {
    matches!(v, Verdict::Drop | Verdict::Reject)
}

fn verdict_output(v: Verdict) -> Option<String> {
    match v {
        Verdict::Drop => Some("DROP".into()),
        Verdict::Reject => Some("REJECT".into()),
        _ => None,
    }
}

/// Trace one packet in IPVS mode. `state` is netfilter's (conntrack of the original flow);
/// `post_state` is conntrack as seen after IPVS's rewrite (it carries the masquerade of a
/// connection to its later packets).
pub fn trace(
    st: &Stages,
    node: &mut IpvsNode,
    req: &WalkRequest,
    state: &mut State,
    post_state: &mut State,
    seed: u64,
) -> Trace {
    let pkt = req.pkt;
    let vip = SocketAddr::new(pkt.dst, pkt.dport);
    let vs = node.lookup(pkt.proto, vip);
    let local = st.full.node.is_local(pkt.dst);
    let Some(vs) = vs.filter(|_| req.local_origin || local) else {
        let mut t = nf_trace(&st.full, req, state, seed, "ipvs");
        let text = if local {
            format!(
                "no IPVS virtual service for {} {vip}: IPVS lets the packet through to the node's own sockets",
                pkt.proto.as_str().to_uppercase()
            )
        } else {
            format!(
                "{} is not an address of this node (not on kube-ipvs0): IPVS never sees the packet",
                pkt.dst
            )
        };
        let at = t.steps.len().saturating_sub(1);
        t.steps.insert(
            at,
            Step::IpvsLookup {
                service: None,
                note: text,
            },
        );
        return t;
    };
    let mut sampler = Sampler(StdRng::seed_from_u64(seed));
    let pre = if req.local_origin {
        &st.pre_out
    } else {
        &st.pre_in
    };
    let (oa, mut steps) = walk(pre, req, state, &mut sampler, true, true);
    let mut warnings = oa.warnings.clone();
    let mut rules = oa.rules_evaluated;
    if dropped(oa.verdict) {
        let out = verdict_output(oa.verdict).unwrap_or_default();
        let o = Outcome {
            output: out.clone(),
            probability: 1.0,
            masq: oa.masq,
        };
        return Trace {
            mode: "ipvs".into(),
            packet: pkt,
            output: out,
            masq: oa.masq,
            outcomes: vec![o.clone()],
            chosen: o,
            rules_evaluated: rules,
            final_packet: None,
            verdict: oa.verdict,
            steps,
            warnings,
        };
    }
    // Drop the walk's end (verdict, and for the node's packets the routing step a local VIP
    // would get): IPVS takes the packet before that.
    if matches!(steps.last(), Some(Step::Verdict { .. })) {
        steps.pop();
    }
    if req.local_origin && matches!(steps.last(), Some(Step::Route { .. })) {
        steps.pop();
    }
    steps.push(Step::Note {
        text: if req.local_origin {
            "IPVS hooks LOCAL_OUT right after nat OUTPUT (ip_vs_local_request, priority -98): it sees the packet before filter OUTPUT".into()
        } else {
            "IPVS hooks LOCAL_IN after filter INPUT (ip_vs_remote_request, priority 99, before nat INPUT): the destination is local and has a virtual service, so IPVS takes the packet here".into()
        },
    });
    let after_nf: Packet = oa.packet;
    let key = super::ConnKey {
        proto: pkt.proto,
        client: SocketAddr::new(after_nf.src, after_nf.sport),
        dst: SocketAddr::new(after_nf.dst, after_nf.dport),
    };
    let mut rng = SplitMix64(seed);
    let r = node.packet(vs, key, req.now, &mut rng);
    steps.extend(r.steps.iter().cloned());
    warnings.extend(r.warnings.iter().cloned());
    let post_req = |server: SocketAddr| WalkRequest {
        pkt: Packet {
            dst: server.ip(),
            dport: server.port(),
            ..after_nf
        },
        local_origin: true,
        in_iface: None,
        now: req.now,
        // The re-sent packet is the same skb: br_netfilter's info stays on it, and IPVS has
        // set `ipvs_property` and holds the connection `-m ipvs` finds (original direction,
        // masq: kube-proxy's only forwarding method; no controlling connection).
        bridge: req.bridge.clone(),
        ipvs: Some(IpvsConn {
            vaddr: vip.ip(),
            vport: vip.port(),
            method: VMethod::Masq,
            reply: false,
            control_vport: None,
        }),
    };
    let mut outcomes: Vec<Outcome> = Vec::new();
    for (server, p) in &r.candidates {
        let (output, masq) = match server {
            None => ("REJECT".to_string(), false),
            Some(s) => {
                let mut ch = Scripted {
                    script: Vec::new(),
                    pos: 0,
                };
                let (o, _) = walk(&st.post, &post_req(*s), post_state, &mut ch, false, false);
                (
                    verdict_output(o.verdict).unwrap_or_else(|| join(*s)),
                    o.masq,
                )
            }
        };
        match outcomes
            .iter_mut()
            .find(|x| x.output == output && x.masq == masq)
        {
            Some(x) => x.probability += p,
            None => outcomes.push(Outcome {
                output,
                probability: *p,
                masq,
            }),
        }
    }
    let outputs = |outcomes: &[Outcome]| {
        let mut v: Vec<&str> = Vec::new();
        for o in outcomes {
            if !o.output.is_empty() && !v.contains(&o.output.as_str()) {
                v.push(&o.output);
            }
        }
        v.join(", ")
    };
    let Some(server) = r.server else {
        let (verdict, word) = if r.silent_drop {
            (Verdict::Drop, "DROP")
        } else {
            (Verdict::Reject, "REJECT")
        };
        if r.silent_drop {
            outcomes = vec![Outcome {
                output: word.into(),
                probability: 1.0,
                masq: false,
            }];
        }
        steps.push(Step::Verdict { verdict });
        let chosen = outcomes
            .iter()
            .find(|o| o.output == word)
            .cloned()
            .unwrap_or(Outcome {
                output: word.into(),
                probability: 1.0,
                masq: false,
            });
        return Trace {
            mode: "ipvs".into(),
            packet: pkt,
            output: outputs(&outcomes),
            masq: false,
            outcomes,
            chosen,
            rules_evaluated: rules,
            final_packet: None,
            verdict,
            steps,
            warnings,
        };
    };
    steps.push(Step::Dnat {
        from: join(vip),
        to: join(server),
    });
    steps.push(Step::Note {
        text: "IPVS (masq forwarding) rewrote the destination, recorded it in the conntrack entry (net.ipv4.vs.conntrack=1) and re-sends the packet through LOCAL_OUT: filter OUTPUT and POSTROUTING run on the rewritten packet; nat OUTPUT does not (the connection's DNAT step is settled)".into(),
    });
    let (ob, steps_b) = walk(
        &st.post,
        &post_req(server),
        post_state,
        &mut sampler,
        true,
        true,
    );
    rules += ob.rules_evaluated;
    warnings.extend(ob.warnings.iter().cloned());
    let mut steps_b = steps_b.into_iter().peekable();
    if let Some(Step::Conntrack { established, .. }) = steps_b.peek() {
        let est = *established;
        steps_b.next();
        if est {
            steps.push(Step::Conntrack {
                established: true,
                note: "conntrack: the rewritten flow is already tracked; its masquerade (if any) is replayed and nat POSTROUTING is skipped".into(),
            });
        }
    }
    steps.extend(steps_b);
    let output = verdict_output(ob.verdict).unwrap_or_else(|| join(server));
    let chosen = outcomes
        .iter()
        .find(|o| o.output == output && o.masq == ob.masq)
        .cloned()
        .unwrap_or(Outcome {
            output,
            probability: 0.0,
            masq: ob.masq,
        });
    Trace {
        mode: "ipvs".into(),
        packet: pkt,
        output: outputs(&outcomes),
        masq: ob.masq,
        outcomes,
        chosen,
        rules_evaluated: rules,
        final_packet: (!dropped(ob.verdict)).then_some(ob.packet),
        verdict: ob.verdict,
        steps,
        warnings,
    }
}
