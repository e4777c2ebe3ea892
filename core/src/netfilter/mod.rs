//! The netfilter machine: a packet walked through the hooks, tables, chains and rules exactly in
//! the kernel's order, with conntrack and `-m recent` state kept across packets.
//!
//! Kernel order (net/netfilter priorities): PREROUTING raw → conntrack → mangle → nat (DNAT);
//! routing; INPUT mangle → filter → security → nat (SNAT) or FORWARD mangle → filter → security;
//! locally generated: OUTPUT raw → conntrack → mangle → nat → filter → security; then
//! POSTROUTING mangle → nat (SNAT). The nat table is consulted only for a connection's first
//! packet; later packets get the NAT recorded in their conntrack entry.
//!
//! Architecture invariant: the machine knows nothing about Kubernetes. It runs any ruleset
//! (generated or pasted from a node) against a [`NodeView`].

pub mod eval;
mod explain;
pub mod program;
pub mod walk;

pub use explain::{MAX_OUTCOMES, trace};
pub use walk::{Choice, Chooser, Outcome as WalkOutcome, Sampler, Scripted, WalkRequest, walk};

pub use crate::rules::iptables::view::parse_nat_to;
use crate::rules::iptables::{Family, Ruleset};
use crate::trace::Proto;
use ipnet::IpNet;
use program::Program;
use std::collections::HashMap;
use std::net::IpAddr;

/// What the machine needs to know about the node.
#[derive(Debug, Clone, Default)]
pub struct NodeView {
    /// Every local address (interfaces, kube-ipvs0 VIPs in IPVS mode).
    pub local: Vec<IpNet>,
    /// Address MASQUERADE picks for each family (the outgoing interface's primary address).
    pub masq_v4: Option<IpAddr>,
    pub masq_v6: Option<IpAddr>,
    /// Connected routes: (network, the primary address of its interface). MASQUERADE takes the
    /// source from the interface the packet leaves by (`nf_nat_masquerade_ipv4` →
    /// `inet_select_addr`), so a packet to a Pod on this node's bridge gets the bridge's address.
    pub connected: Vec<(IpNet, IpAddr)>,
    /// ipset contents for `-m set` (IPVS mode): name → members.
    pub ipsets: HashMap<String, IpSet>,
}

/// An ipset as `-m set` sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IpSet {
    /// `hash:ip,port`, `hash:ip,port,ip`, `hash:ip,port,net`, `bitmap:port`, `hash:net`, ...
    pub set_type: String,
    pub members: Vec<IpSetMember>,
}

/// One member: the fields a set type uses (others None).
#[derive(Debug, Clone, PartialEq)]
pub struct IpSetMember {
    pub ip: Option<IpNet>,
    pub proto: Option<Proto>,
    pub port: Option<u16>,
    pub ip2: Option<IpNet>,
}

impl NodeView {
    /// The source address MASQUERADE picks for a packet to `dst`: the primary address of the
    /// interface of the longest connected route to `dst`, else the default route's (the node IP).
    pub fn masquerade_source(&self, dst: IpAddr) -> Option<IpAddr> {
        self.connected
            .iter()
            .filter(|(net, _)| net.contains(&dst))
            .max_by_key(|(net, _)| net.prefix_len())
            .map(|(_, a)| *a)
            .or(if dst.is_ipv4() {
                self.masq_v4
            } else {
                self.masq_v6
            })
    }

    /// RTN_LOCAL: an address of this node (127.0.0.0/8 is local as a whole on Linux).
    pub fn is_local(&self, ip: IpAddr) -> bool {
        if let IpAddr::V4(a) = ip
            && a.is_loopback()
        {
            return true;
        }
        self.local.iter().any(|n| n.addr() == ip)
    }
}

/// Which header field a long chain's trace index is keyed by. Rules that test a different
/// exact value of that field cannot match, and the kernel tests the IP header before any match
/// extension, so skipping them changes nothing but our speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexKey {
    /// `-d <host>` (no `!`).
    Dst,
    /// `--dport <port>` of a tcp/udp/sctp match (no `!`, no range).
    Dport,
}

pub(crate) fn ip_key(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u64,
        IpAddr::V6(a) => {
            let v = u128::from(a);
            (v as u64) ^ ((v >> 64) as u64).rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15
        }
    }
}

/// A ruleset ready to walk: the compact [`Program`] (rules, chain names, jump targets resolved
/// to chain indices, trace indexes of long chains) and the node it runs on.
#[derive(Debug, Clone)]
pub struct Machine {
    pub family: Family,
    pub program: Program,
    pub node: NodeView,
    /// `(table, built-in chain)` of each hook and table, resolved once: a trace runs a dozen
    /// hook/table pairs per walk and many walks per packet, and looking them up by name each
    /// time cost more than the rules themselves.
    hooks: [[Option<(u32, u32)>; HOOK_TABLES.len()]; 5],
}

/// The tables a hook can run, in the order of [`Machine::hook_chain`]'s table argument.
const HOOK_TABLES: [&str; 5] = ["raw", "mangle", "nat", "filter", "security"];

fn hook_slot(h: crate::trace::Hook) -> usize {
    use crate::trace::Hook;
    match h {
        Hook::Prerouting => 0,
        Hook::Input => 1,
        Hook::Forward => 2,
        Hook::Output => 3,
        Hook::Postrouting => 4,
    }
}

impl Machine {
    /// Compile a ruleset (which is dropped: a session keeps only the program).
    pub fn new(rules: Ruleset, family: Family, node: NodeView) -> Machine {
        Machine::from_program(Program::compile(&rules, family), node)
    }

    pub fn from_program(program: Program, node: NodeView) -> Machine {
        let mut hooks = [[None; HOOK_TABLES.len()]; 5];
        for h in [
            crate::trace::Hook::Prerouting,
            crate::trace::Hook::Input,
            crate::trace::Hook::Forward,
            crate::trace::Hook::Output,
            crate::trace::Hook::Postrouting,
        ] {
            for (slot, t) in HOOK_TABLES.iter().enumerate() {
                let Some(ti) = program.table_by_name(t) else {
                    continue;
                };
                // The last chain of that name, as a name map built over the table finds it.
                if let Some(ci) = (0..program.chain_count(ti))
                    .rev()
                    .find(|c| program.chain_name(ti, *c) == h.as_str())
                {
                    hooks[hook_slot(h)][slot] = Some((ti as u32, ci as u32));
                }
            }
        }
        Machine {
            family: program.family(),
            program,
            node,
            hooks,
        }
    }

    /// The rules in the owned model (decoded from the program).
    pub fn ruleset(&self) -> Ruleset {
        self.program.to_ruleset()
    }

    /// The built-in chain a hook runs in `table` (`raw`, `mangle`, `nat`, `filter`, `security`),
    /// as (table index, chain index).
    pub fn hook_chain(&self, hook: crate::trace::Hook, table: &str) -> Option<(usize, usize)> {
        let slot = HOOK_TABLES.iter().position(|t| *t == table)?;
        self.hooks[hook_slot(hook)][slot].map(|(t, c)| (t as usize, c as usize))
    }

    pub fn table_index(&self, name: &str) -> Option<usize> {
        self.program.table_by_name(name)
    }
}

/// Conntrack's view of a flow (original direction tuple).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub proto: Proto,
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
}

/// A conntrack entry: the NAT decided for the flow's first packet.
#[derive(Debug, Clone, PartialEq)]
pub struct CtEntry {
    pub dnat: Option<(IpAddr, u16)>,
    pub snat: Option<(IpAddr, u16)>,
    /// Verdict of the first packet (a dropped first packet leaves no confirmed entry).
    pub created_at: f64,
    pub last_seen: f64,
    pub mark: u32,
}

/// State that persists across packets: conntrack, `-m recent` lists, `statistic nth` counters.
#[derive(Debug, Clone, Default)]
pub struct State {
    pub conntrack: HashMap<FlowKey, CtEntry>,
    /// list name → (address → hit timestamps, newest last).
    pub recent: HashMap<String, HashMap<IpAddr, Vec<f64>>>,
    /// (table, chain, rule) → nth counter.
    pub nth: HashMap<(usize, usize, usize), u32>,
}

/// Conntrack timeouts (seconds) the kernel uses for an assured entry: TCP established
/// (`nf_conntrack_tcp_timeout_established`, 5 days) and UDP stream (120 s).
pub fn ct_timeout(proto: Proto) -> f64 {
    match proto {
        Proto::Tcp => 432_000.0,
        Proto::Udp => 120.0,
        Proto::Sctp => 210.0,
    }
}
