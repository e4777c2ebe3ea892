//! The trace: what happened to one packet, as a closed list of events.
//!
//! Every mode (iptables, IPVS, later nftables) produces a [`Trace`]; the CLI and the web app only
//! render it. Field names are part of the CLI's `--json` contract (`output`, `masq`, `outcomes`,
//! `rules_evaluated`, `steps`).

use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::sync::Arc;

/// Text a trace shares with the ruleset it walked and with other traces: table and chain names,
/// a rule's `iptables-save` text. A recorded walk repeats the same few names in most of its
/// ~50 steps and the same rule texts trace after trace, so they are reference-counted rather
/// than copied per step (serialized as plain strings).
pub type Shared = Arc<str>;

/// Transport protocol of a packet or a rule (`-p`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    /// The lower-case name iptables and kube-proxy print (`tcp`, `udp`, `sctp`).
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }

    /// Parse a protocol name case-insensitively (`TCP` as in the API, `tcp` as in rules).
    pub fn parse(s: &str) -> Option<Proto> {
        // No allocation: this runs for every `-m tcp` a packet meets.
        [Proto::Tcp, Proto::Udp, Proto::Sctp]
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
    }

    /// IANA protocol number (what `-p 6` means).
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Sctp => 132,
        }
    }
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A packet's header fields that netfilter and IPVS look at, plus its skb mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Packet {
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
    pub proto: Proto,
    /// skb->mark (`-m mark`, `-j MARK`).
    pub mark: u32,
}

/// A point in the kernel's packet path. The order of the variants is the order in which a packet
/// meets them (for a given path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

impl Hook {
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Prerouting => "PREROUTING",
            Hook::Input => "INPUT",
            Hook::Forward => "FORWARD",
            Hook::Output => "OUTPUT",
            Hook::Postrouting => "POSTROUTING",
        }
    }
}

/// How the walk came into a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entry {
    /// A built-in chain entered from its hook.
    Hook,
    /// `-j CHAIN`: returns here afterwards.
    Jump,
    /// `-g CHAIN`: a RETURN goes back past the caller.
    Goto,
}

/// Final fate of the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    /// Delivered to a local socket (INPUT accepted).
    Accept,
    Drop,
    Reject,
    /// Sent out of the node (FORWARD / OUTPUT then POSTROUTING accepted).
    Forwarded,
}

/// One step of a packet's walk. A closed enum: renderers match on it exhaustively.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Step {
    /// The packet reaches a netfilter hook (e.g. nat PREROUTING).
    Hook { hook: Hook, table: Shared },
    /// A conntrack lookup: an existing entry means NAT is replayed from it and nat chains are
    /// skipped (the kernel runs nat tables only for a connection's first packet).
    Conntrack { established: bool, note: String },
    /// The routing decision after PREROUTING / OUTPUT.
    Route { local: bool, note: String },
    /// The walk entered a chain.
    Chain {
        table: Shared,
        chain: Shared,
        entry: Entry,
    },
    /// A rule was evaluated. `failed` names the first match that did not match (None = matched).
    Rule {
        table: Shared,
        chain: Shared,
        /// 1-based position in the chain (what `iptables -L --line-numbers` shows).
        index: usize,
        /// The rule as `iptables-save` prints it.
        text: Shared,
        /// Line in the dump the rule came from, when it came from a dump.
        line: Option<usize>,
        matched: bool,
        failed: Option<String>,
        /// Extra explanation (e.g. the random draw of `-m statistic`).
        note: Option<String>,
    },
    /// A run of rules that cannot match because the header field the chain is indexed on
    /// differs (e.g. 9,999 KUBE-SERVICES rules for other ClusterIPs). The kernel still evaluates
    /// them one by one; they count in `rules_evaluated`.
    Skipped {
        table: Shared,
        chain: Shared,
        first: usize,
        last: usize,
        reason: String,
    },
    /// End of a chain reached without a verdict: the built-in chain's policy applies, or a
    /// user chain returns to its caller.
    ChainEnd {
        table: Shared,
        chain: Shared,
        policy: Option<Verdict>,
    },
    /// `-j RETURN` or falling off a user chain.
    Return { table: Shared, chain: Shared },
    /// The skb mark changed.
    Mark { from: u32, to: u32 },
    /// Destination rewritten.
    Dnat { from: String, to: String },
    /// Source rewritten (SNAT or MASQUERADE).
    Snat {
        from: String,
        to: String,
        masquerade: bool,
    },
    /// A `-m recent` list was read or written.
    Recent {
        name: String,
        action: String,
        addr: IpAddr,
        hit: bool,
    },
    /// IPVS: a virtual service lookup at LOCAL_IN.
    IpvsLookup {
        service: Option<String>,
        note: String,
    },
    /// IPVS: the scheduler picked a real server (or none), with the kernel's reason.
    IpvsSchedule {
        scheduler: String,
        server: Option<String>,
        reason: String,
    },
    /// IPVS: an existing connection entry or persistence template was reused.
    IpvsConnection { server: String, note: String },
    /// Plain-words narration for a learner, attached after the events it explains.
    Note { text: String },
    /// The walk ended.
    Verdict { verdict: Verdict },
}

/// One possible result of the packet with its exact probability (from the full tree of random
/// choices, not from sampling).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// DNAT destination `ip:port` (`[ip]:port` for IPv6), or `REJECT` / `DROP`, or "" when no
    /// kube-proxy rule touched the packet.
    pub output: String,
    pub probability: f64,
    pub masq: bool,
}

/// The result of tracing one packet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    pub mode: String,
    pub packet: Packet,
    /// Every DNAT destination reachable, comma+space separated in rule order, or `REJECT`,
    /// `DROP`, or "" when no kube-proxy rule touched the packet.
    pub output: String,
    /// Whether the sampled walk marked the packet for masquerade.
    pub masq: bool,
    /// Every reachable outcome with its exact probability.
    pub outcomes: Vec<Outcome>,
    /// The outcome of the sampled walk (the one `steps` shows).
    pub chosen: Outcome,
    /// Rules evaluated by the sampled walk.
    pub rules_evaluated: usize,
    /// The packet as it leaves (after DNAT/SNAT), if it was not dropped.
    pub final_packet: Option<Packet>,
    pub verdict: Verdict,
    pub steps: Vec<Step>,
    /// Diagnostics that make the answer less than certain (unsupported matches, ...).
    pub warnings: Vec<String>,
}
