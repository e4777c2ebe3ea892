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

use crate::rules::iptables::parse::NameHasher;
pub use crate::rules::iptables::view::parse_nat_to;
use crate::rules::iptables::{Family, Ruleset};
use crate::trace::{Proto, Shared};
use ipnet::IpNet;
use program::Program;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

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
    /// Never replaced after construction ([`Machine::program`]): [`Texts`] caches what it prints.
    program: Program,
    pub node: NodeView,
    /// `(table, built-in chain)` of each hook and table, resolved once: a trace runs a dozen
    /// hook/table pairs per walk and many walks per packet, and looking them up by name each
    /// time cost more than the rules themselves.
    hooks: [[Option<(u32, u32)>; HOOK_TABLES.len()]; 5],
    /// Table names as recorded steps carry them.
    table_texts: Vec<Shared>,
    texts: Texts,
}

/// Chain names and rule texts handed to recorded steps, made once per Machine: a recorded walk
/// names the same few chains in most of its ~50 steps, and tracing the same Service again
/// prints the same ~25 rules again (printing was a sixth of a trace). Only what traces visited
/// is filled in, at most [`Texts::MAX`] rule texts; the Program itself stays compact. A cache,
/// not state: every entry is a pure function of the (immutable) program, so an empty cache
/// gives byte-identical traces.
/// (Filled lazily rather than a slot per chain up front: 110k chains at 10k Services would be
/// 2.6 MB more for the session to keep.)
#[derive(Default)]
struct Texts(Mutex<TextMaps>);

#[derive(Default)]
struct TextMaps {
    /// (table, chain) → name.
    chains: HashMap<(u32, u32), Shared, BuildHasherDefault<NameHasher>>,
    /// (table, chain, position) → `-A CHAIN ...`.
    rules: HashMap<(u32, u32, u32), Shared, BuildHasherDefault<NameHasher>>,
}

impl Texts {
    /// Rule texts kept before the cache starts over (~200 bytes each).
    const MAX: usize = 1 << 14;

    fn maps(&self) -> std::sync::MutexGuard<'_, TextMaps> {
        // Entries are inserted whole, so a lock poisoned by a panic elsewhere still holds only
        // good entries.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Clone for Texts {
    /// A clone starts empty (same program, so it fills in the same texts).
    fn clone(&self) -> Texts {
        Texts::default()
    }
}

impl std::fmt::Debug for Texts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.maps();
        write!(
            f,
            "Texts({} chains, {} rules)",
            m.chains.len(),
            m.rules.len()
        )
    }
}

/// The tables a hook can run; a table's position here is its slot in [`Machine::hook_chain_at`].
pub(crate) const HOOK_TABLES: [&str; 5] = ["raw", "mangle", "nat", "filter", "security"];

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
        let table_texts = (0..program.table_count())
            .map(|t| Shared::from(program.table_name(t)))
            .collect();
        Machine {
            family: program.family(),
            program,
            node,
            hooks,
            table_texts,
            texts: Texts::default(),
        }
    }

    /// The compiled rules.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// A table's name, shared.
    pub fn table_text(&self, ti: usize) -> Shared {
        self.table_texts[ti].clone()
    }

    /// A chain's name, shared.
    pub fn chain_text(&self, ti: usize, ci: usize) -> Shared {
        self.texts
            .maps()
            .chains
            .entry((ti as u32, ci as u32))
            .or_insert_with(|| Shared::from(self.program.chain_name(ti, ci)))
            .clone()
    }

    /// A rule as `iptables-save` prints it (`-A CHAIN ...`), shared; `buf` is scratch space.
    pub fn rule_text(&self, ti: usize, ci: usize, ri: usize, buf: &mut String) -> Shared {
        let key = (ti as u32, ci as u32, ri as u32);
        if let Some(t) = self.texts.maps().rules.get(&key) {
            return t.clone();
        }
        buf.clear();
        buf.push_str("-A ");
        buf.push_str(self.program.chain_name(ti, ci));
        crate::rules::iptables::print::print_rule_args(buf, self.program.rule(ti, ci, ri));
        let t = Shared::from(buf.as_str());
        let mut maps = self.texts.maps();
        if maps.rules.len() >= Texts::MAX {
            maps.rules.clear();
        }
        maps.rules.insert(key, t.clone());
        t
    }

    /// The rules in the owned model (decoded from the program).
    pub fn ruleset(&self) -> Ruleset {
        self.program.to_ruleset()
    }

    /// The built-in chain a hook runs in the table at `slot` of [`HOOK_TABLES`], as (table
    /// index, chain index). A walk's path names its tables by slot, not by string.
    pub(crate) fn hook_chain_at(
        &self,
        hook: crate::trace::Hook,
        slot: usize,
    ) -> Option<(usize, usize)> {
        self.hooks[hook_slot(hook)]
            .get(slot)
            .copied()
            .flatten()
            .map(|(t, c)| (t as usize, c as usize))
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
