//! A hand-written trace of the textbook flow, written down from kube-proxy's rule layout
//! (shared/specs/kube-proxy-iptables.md §2, §8, §12), not produced by our code: a Pod on another
//! node sends to ClusterIP 10.104.14.67:80; nat PREROUTING jumps to KUBE-SERVICES, which matches
//! the ClusterIP and jumps to KUBE-SVC-X; the masquerade rule fails because the source is inside
//! the cluster CIDR; the first probability rule wins; KUBE-SEP-Y DNATs to 10.0.0.2:8080; routing
//! sees a non-local destination, so filter FORWARD and nat POSTROUTING follow; KUBE-POSTROUTING
//! RETURNs because the packet has no 0x4000 mark.
#![allow(dead_code)]

use proxyscope_core::trace::*;

pub fn ip(s: &str) -> std::net::IpAddr {
    s.parse().unwrap()
}

fn rule(chain: &str, index: usize, text: &str, matched: bool, failed: Option<&str>) -> Step {
    Step::Rule {
        table: "nat".into(),
        chain: chain.into(),
        index,
        text: text.into(),
        line: None,
        matched,
        failed: failed.map(Into::into),
        note: None,
    }
}

pub fn sample_trace() -> Trace {
    let packet = Packet {
        src: ip("10.0.1.5"),
        sport: 40000,
        dst: ip("10.104.14.67"),
        dport: 80,
        proto: Proto::Tcp,
        mark: 0,
    };
    let steps = vec![
        Step::Conntrack {
            established: false,
            note: "new".into(),
        },
        Step::Hook {
            hook: Hook::Prerouting,
            table: "nat".into(),
        },
        Step::Chain {
            table: "nat".into(),
            chain: "PREROUTING".into(),
            entry: Entry::Hook,
        },
        rule(
            "PREROUTING",
            1,
            "-A PREROUTING -j KUBE-SERVICES",
            true,
            None,
        ),
        Step::Chain {
            table: "nat".into(),
            chain: "KUBE-SERVICES".into(),
            entry: Entry::Jump,
        },
        rule(
            "KUBE-SERVICES",
            1,
            "-A KUBE-SERVICES -d 10.104.14.67/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-X",
            true,
            None,
        ),
        Step::Chain {
            table: "nat".into(),
            chain: "KUBE-SVC-X".into(),
            entry: Entry::Jump,
        },
        rule(
            "KUBE-SVC-X",
            1,
            "-A KUBE-SVC-X ! -s 10.0.0.0/16 -d 10.104.14.67/32 -p tcp -m tcp --dport 80 -j KUBE-MARK-MASQ",
            false,
            Some("! -s 10.0.0.0/16"),
        ),
        Step::Note {
            text: "The source is a Pod, so no masquerade mark.".into(),
        },
        rule(
            "KUBE-SVC-X",
            2,
            "-A KUBE-SVC-X -m statistic --mode random --probability 0.33333333349 -j KUBE-SEP-Y",
            true,
            None,
        ),
        Step::Chain {
            table: "nat".into(),
            chain: "KUBE-SEP-Y".into(),
            entry: Entry::Jump,
        },
        rule(
            "KUBE-SEP-Y",
            2,
            "-A KUBE-SEP-Y -p tcp -m tcp -j DNAT --to-destination 10.0.0.2:8080",
            true,
            None,
        ),
        Step::Dnat {
            from: "10.104.14.67:80".into(),
            to: "10.0.0.2:8080".into(),
        },
        Step::Route {
            local: false,
            note: "via cni0".into(),
        },
        Step::Hook {
            hook: Hook::Forward,
            table: "filter".into(),
        },
        Step::Hook {
            hook: Hook::Postrouting,
            table: "nat".into(),
        },
        Step::Chain {
            table: "nat".into(),
            chain: "POSTROUTING".into(),
            entry: Entry::Hook,
        },
        rule(
            "POSTROUTING",
            1,
            "-A POSTROUTING -j KUBE-POSTROUTING",
            true,
            None,
        ),
        Step::Chain {
            table: "nat".into(),
            chain: "KUBE-POSTROUTING".into(),
            entry: Entry::Jump,
        },
        rule(
            "KUBE-POSTROUTING",
            1,
            "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
            true,
            None,
        ),
        Step::Return {
            table: "nat".into(),
            chain: "KUBE-POSTROUTING".into(),
        },
        Step::Verdict {
            verdict: Verdict::Forwarded,
        },
    ];
    let chosen = Outcome {
        output: "10.0.0.2:8080".into(),
        probability: 1.0 / 3.0,
        masq: false,
    };
    Trace {
        mode: "iptables".into(),
        packet,
        output: "10.0.0.2:8080, 10.0.0.3:8080, 10.0.0.4:8080".into(),
        masq: false,
        outcomes: vec![
            chosen.clone(),
            Outcome {
                output: "10.0.0.3:8080".into(),
                probability: 1.0 / 3.0,
                masq: false,
            },
            Outcome {
                output: "10.0.0.4:8080".into(),
                probability: 1.0 / 3.0,
                masq: false,
            },
        ],
        chosen,
        rules_evaluated: 6,
        final_packet: None,
        verdict: Verdict::Forwarded,
        steps,
        warnings: vec![],
    }
}

/// Frame index (the Note has no frame of its own) of the DNAT step: 13th step, minus the note.
pub const DNAT_FRAME: usize = 11;
/// Frame of the failing masquerade rule.
pub const MASQ_RULE_FRAME: usize = 7;
