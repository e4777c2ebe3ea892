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
use crate::rules::iptables::{Family, Rule, Ruleset, Target};
use crate::trace::Proto;
use ipnet::IpNet;
use program::{INDEX_MIN_RULES, rule_dport_key, rule_dst_key, rule_key};
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

/// A chain compiled for walking: jump targets resolved to indices, and, for long chains, an
/// index from the packet's destination (or destination port) to the rules that can match it.
/// Names and policies stay in the ruleset: a big cluster has 100k+ chains, and a copy of each
/// name here was megabytes a session kept for nothing.
#[derive(Debug, Clone)]
pub struct CChain {
    pub builtin: bool,
    /// The policy is DROP (built-in chains only; anything else lets the packet go on).
    pub policy_drop: bool,
    /// For each rule, the resolved jump/goto target chain index ([`NO_JUMP`] when none).
    pub jumps: Vec<u32>,
    pub index: Option<Box<ChainIndex>>,
}

/// [`CChain::jumps`] entry of a rule that jumps nowhere (or to an undeclared chain).
pub const NO_JUMP: u32 = u32::MAX;

impl CChain {
    /// The chain a rule jumps or goes to.
    pub fn jump(&self, rule: usize) -> Option<usize> {
        self.jumps
            .get(rule)
            .copied()
            .filter(|j| *j != NO_JUMP)
            .map(|j| j as usize)
    }
}

/// Which rules of a long chain can match a packet, by one header field. Rules that test a
/// different exact value of that field cannot match, and the kernel tests the IP header before
/// any match extension, so skipping them changes nothing but our speed.
#[derive(Debug, Clone)]
pub struct ChainIndex {
    pub key: IndexKey,
    pub by_value: HashMap<u64, Vec<u32>>,
    /// Rules that do not pin the field (always candidates), in order.
    pub wildcard: Vec<u32>,
}

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

fn build_index(rules: &[Rule]) -> Option<Box<ChainIndex>> {
    if rules.len() < INDEX_MIN_RULES {
        return None;
    }
    let dst = rules.iter().filter(|r| rule_dst_key(*r).is_some()).count();
    let dport = rules
        .iter()
        .filter(|r| rule_dport_key(*r).is_some())
        .count();
    let key = if dst >= dport && dst * 2 >= rules.len() {
        IndexKey::Dst
    } else if dport * 2 >= rules.len() {
        IndexKey::Dport
    } else {
        return None;
    };
    let mut by_value: HashMap<u64, Vec<u32>> = HashMap::new();
    let mut wildcard = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        match rule_key(key, r) {
            Some(k) => by_value.entry(k).or_default().push(i as u32),
            None => wildcard.push(i as u32),
        }
    }
    by_value.shrink_to_fit();
    wildcard.shrink_to_fit();
    Some(Box::new(ChainIndex {
        key,
        by_value,
        wildcard,
    }))
}

/// A ruleset ready to walk.
#[derive(Debug, Clone)]
pub struct Machine {
    pub family: Family,
    pub rules: Ruleset,
    /// Per table: compiled chains, parallel to `rules.tables[t].chains`.
    pub chains: Vec<Vec<CChain>>,
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
    pub fn new(rules: Ruleset, family: Family, node: NodeView) -> Machine {
        let mut chains = Vec::new();
        let mut chain_index = Vec::new();
        for t in &rules.tables {
            // Borrowed names: the index lives only while the machine is built.
            let idx: HashMap<&str, u32> = t
                .chains
                .iter()
                .enumerate()
                .map(|(i, c)| (c.name.as_str(), i as u32))
                .collect();
            let cs = t
                .chains
                .iter()
                .map(|c| CChain {
                    builtin: crate::rules::iptables::is_builtin(&t.name, &c.name),
                    policy_drop: c.policy.as_deref() == Some("DROP"),
                    jumps: c
                        .rules
                        .iter()
                        .map(|r| match &r.target {
                            Some(Target::Jump { chain }) | Some(Target::Goto { chain }) => {
                                idx.get(chain.as_str()).copied().unwrap_or(NO_JUMP)
                            }
                            _ => NO_JUMP,
                        })
                        .collect(),
                    index: build_index(&c.rules),
                })
                .collect();
            chains.push(cs);
            chain_index.push(idx);
        }
        let mut hooks = [[None; HOOK_TABLES.len()]; 5];
        for h in [
            crate::trace::Hook::Prerouting,
            crate::trace::Hook::Input,
            crate::trace::Hook::Forward,
            crate::trace::Hook::Output,
            crate::trace::Hook::Postrouting,
        ] {
            for (slot, t) in HOOK_TABLES.iter().enumerate() {
                let Some(ti) = rules.tables.iter().position(|x| x.name == *t) else {
                    continue;
                };
                if let Some(ci) = chain_index[ti].get(h.as_str()) {
                    hooks[hook_slot(h)][slot] = Some((ti as u32, *ci));
                }
            }
        }
        drop(chain_index);
        Machine {
            family,
            rules,
            chains,
            node,
            hooks,
        }
    }

    /// The built-in chain a hook runs in `table` (`raw`, `mangle`, `nat`, `filter`, `security`),
    /// as (table index, chain index).
    pub fn hook_chain(&self, hook: crate::trace::Hook, table: &str) -> Option<(usize, usize)> {
        let slot = HOOK_TABLES.iter().position(|t| *t == table)?;
        self.hooks[hook_slot(hook)][slot].map(|(t, c)| (t as usize, c as usize))
    }

    pub fn table_index(&self, name: &str) -> Option<usize> {
        self.rules.tables.iter().position(|t| t.name == name)
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
