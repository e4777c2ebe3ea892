//! Evaluating one rule's matches against a packet, as the kernel does: the IP header part
//! (`ip_packet_match`: -s, -d, -i, -o, -p) first, then each match extension in order, stopping
//! at the first that fails.

use super::{IpSet, Machine, State};
use crate::rules::iptables::print::{push_hex, push_net};
use crate::rules::iptables::view::{
    HeaderPart, MatchRef, PhysdevRef, RecentRef, RuleView, iface_matches,
};
use crate::rules::iptables::{
    AddrType, CtState, IpvsMatch, MultiportKind, RecentAction, Statistic, VDir, VMethod,
};
use crate::trace::{Packet, Proto};
use std::cell::Cell;
use std::net::IpAddr;

/// The packet facts a rule can look at, as bits of [`PacketCtx::reads`]: what a table run
/// depended on, so an exploring walk can reuse the run for another branch whose packet agrees
/// on exactly these (see `walk::Memo`).
pub mod field {
    pub const SRC: u16 = 1;
    pub const DST: u16 = 1 << 1;
    pub const SPORT: u16 = 1 << 2;
    pub const DPORT: u16 = 1 << 3;
    pub const PROTO: u16 = 1 << 4;
    pub const MARK: u16 = 1 << 5;
    pub const IN_IFACE: u16 = 1 << 6;
    pub const OUT_IFACE: u16 = 1 << 7;
    /// conntrack's view: NEW/ESTABLISHED and whether NAT is set up.
    pub const CT: u16 = 1 << 8;
    /// br_netfilter's bridge ports (`-m physdev`).
    pub const BRIDGE: u16 = 1 << 9;
    /// The packet's IPVS connection (`-m ipvs`).
    pub const IPVS: u16 = 1 << 10;
    pub const HEADER: u16 = SRC | DST | SPORT | DPORT | PROTO;
}

/// Per-packet facts the matches look at besides the header.
#[derive(Debug, Clone)]
pub struct PacketCtx<'a> {
    pub pkt: Packet,
    /// Borrowed from the request: every explored walk builds a context.
    pub in_iface: Option<&'a str>,
    pub out_iface: Option<&'a str>,
    /// conntrack state of the packet: NEW or ESTABLISHED, plus DNAT/SNAT once NAT is set up.
    pub ct_new: bool,
    pub ct_dnat: bool,
    pub ct_snat: bool,
    /// Time in seconds (for `-m recent`).
    pub now: f64,
    /// The [`field`]s the matches and targets have read so far (the walker clears it when it
    /// starts a table it may reuse). Every read of the facts above must be recorded here:
    /// a missing bit would let an exploring walk reuse a table run for a packet it does not
    /// fit.
    pub reads: Cell<u16>,
    /// br_netfilter's bridge info of the packet (`-m physdev`); `None`: not bridged, or
    /// br_netfilter is off.
    pub bridge: Option<&'a BridgeInfo>,
    /// The IPVS connection the packet belongs to (`-m ipvs`); `None` before IPVS handled it.
    pub ipvs: Option<IpvsConn>,
}

impl PacketCtx<'_> {
    /// Record that `f` was read.
    #[inline]
    pub fn saw(&self, f: u16) {
        self.reads.set(self.reads.get() | f);
    }
}

/// What br_netfilter attaches to a packet that entered the stack through a bridge port with
/// `net.bridge.bridge-nf-call-iptables=1` (`struct nf_bridge_info`): the port it came in on and,
/// for a packet the bridge forwards port to port, the port it leaves by. It stays on the packet
/// after the bridge hands it to IP (routed traffic keeps `physindev`, has no `physoutdev`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BridgeInfo {
    pub physindev: Option<String>,
    pub physoutdev: Option<String>,
}

/// The IPVS connection of a packet IPVS has handled (`skb->ipvs_property` set, and the entry
/// `conn_out_get` finds for it): what `-m ipvs` compares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IpvsConn {
    pub vaddr: IpAddr,
    pub vport: u16,
    pub method: VMethod,
    /// The packet is in the reply direction of its conntrack entry.
    pub reply: bool,
    /// `cp->control->vport`: the virtual port of the controlling connection (FTP data
    /// connections); `None` for every connection kube-proxy's services make.
    pub control_vport: Option<u16>,
}

/// Why a rule did not match, or that it matched.
#[derive(Debug, Clone, PartialEq)]
pub enum MatchResult {
    Matched,
    /// Index into the rule's parts: which part failed, with a description.
    Failed(String),
    /// A random statistic match decided by a coin (the caller supplies the outcome).
    Random {
        fixed: u32,
        neg: bool,
    },
    /// A match the model does not support: treated as not matching, with a warning.
    Unsupported(String),
}

/// The kernel's route type of an address (one per address, as `inet_addr_type` returns).
fn addr_type(m: &Machine, ip: IpAddr) -> AddrType {
    if m.node.is_local(ip) {
        return AddrType::Local;
    }
    match ip {
        IpAddr::V4(a) if a.is_broadcast() => AddrType::Broadcast,
        IpAddr::V4(a) if a.is_multicast() => AddrType::Multicast,
        IpAddr::V6(a) if a.is_multicast() => AddrType::Multicast,
        _ => AddrType::Unicast,
    }
}

fn set_matches(set: &IpSet, pkt: &Packet, dirs: &[bool]) -> bool {
    // Each direction flag picks the packet field for the set's next dimension:
    // `src` = source address/port, `dst` = destination address/port.
    let ip_of = |src: bool| if src { pkt.src } else { pkt.dst };
    let port_of = |src: bool| if src { pkt.sport } else { pkt.dport };
    let dims: Vec<&str> = set
        .set_type
        .split(':')
        .nth(1)
        .unwrap_or("")
        .split(',')
        .collect();
    set.members.iter().any(|mem| {
        let mut ips_seen = 0;
        for (di, dim) in dims.iter().enumerate() {
            let src = dirs.get(di).copied().unwrap_or(false);
            let ok = match *dim {
                "ip" | "net" => {
                    let target = if ips_seen == 0 { mem.ip } else { mem.ip2 };
                    ips_seen += 1;
                    target.is_some_and(|n| n.contains(&ip_of(src)))
                }
                "port" => {
                    mem.port == Some(port_of(src)) && mem.proto.is_none_or(|p| p == pkt.proto)
                }
                _ => false,
            };
            if !ok {
                return false;
            }
        }
        true
    })
}

/// Failure texts are built only for recorded walks: exploring walks evaluate thousands of rules
/// and must not allocate for each.
fn lazy(describe: bool, f: impl FnOnce() -> String) -> String {
    if describe { f() } else { String::new() }
}

/// `-s 10.0.0.2/32` / `! -d ...` (most failed matches of a trace are addresses).
fn net_text(neg: bool, flag: &str, net: ipnet::IpNet) -> String {
    let mut t = String::with_capacity(48);
    if neg {
        t.push_str("! ");
    }
    t.push_str(flag);
    push_net(&mut t, net);
    t
}

/// What a failed header part says (recorded walks only).
fn header_text<'r>(rule: impl RuleView<'r>, part: HeaderPart) -> String {
    let neg = |n: bool| if n { "! " } else { "" };
    let iface = |flag: &str, i: Option<crate::rules::iptables::Neg<&str>>| {
        i.map(|i| format!("{}{flag} {}", neg(i.neg), i.value))
            .unwrap_or_default()
    };
    match part {
        HeaderPart::Src => rule
            .src()
            .map(|s| net_text(s.neg, "-s ", s.value))
            .unwrap_or_default(),
        HeaderPart::Dst => rule
            .dst()
            .map(|d| net_text(d.neg, "-d ", d.value))
            .unwrap_or_default(),
        HeaderPart::In => iface("-i", rule.in_iface()),
        HeaderPart::Out => iface("-o", rule.out_iface()),
        HeaderPart::Proto => rule
            .proto()
            .map(|pr| format!("-p {}", pr.value.name().unwrap_or("?")))
            .unwrap_or_default(),
    }
}

/// Evaluate the IP-header part and the matches. Matches with side effects (`recent --set`) are
/// applied to `state` only when `effects` is true and every earlier part matched.
// The walker lends its fields separately (machine, packet, state, random source, notes) so the
// borrows stay disjoint; bundling them would need a second struct mirroring `Walker`.
#[allow(clippy::too_many_arguments)]
pub fn eval_rule<'r>(
    m: &Machine,
    rule: impl RuleView<'r>,
    cx: &PacketCtx,
    state: &mut State,
    effects: bool,
    rule_id: (usize, usize, usize),
    coin: &mut dyn FnMut(u32, bool) -> bool,
    notes: &mut Vec<String>,
    describe: bool,
) -> MatchResult {
    let p = &cx.pkt;
    if let Some(part) = rule.header_mismatch(p, cx.in_iface, cx.out_iface, |f| cx.saw(f)) {
        return MatchResult::Failed(lazy(describe, || header_text(rule, part)));
    }
    for mt in rule.tests() {
        match mt {
            MatchRef::Comment(_) | MatchRef::Nfacct(_) => {}
            MatchRef::Ports {
                module,
                sport,
                dport,
            } => {
                cx.saw(field::PROTO);
                if Proto::parse(module) != Some(p.proto) {
                    return MatchResult::Failed(lazy(describe, || {
                        format!("-m {module} (packet is {})", p.proto)
                    }));
                }
                if let Some(sp) = sport
                    && {
                        cx.saw(field::SPORT);
                        sp.value.contains(p.sport) == sp.neg
                    }
                {
                    return MatchResult::Failed(lazy(describe, || {
                        format!("--sport {}:{}", sp.value.lo, sp.value.hi)
                    }));
                }
                if let Some(dp) = dport
                    && {
                        cx.saw(field::DPORT);
                        dp.value.contains(p.dport) == dp.neg
                    }
                {
                    return MatchResult::Failed(lazy(describe, || {
                        let want = if dp.value.lo == dp.value.hi {
                            dp.value.lo.to_string()
                        } else {
                            format!("{}:{}", dp.value.lo, dp.value.hi)
                        };
                        format!("{}--dport {want}", if dp.neg { "! " } else { "" })
                    }));
                }
            }
            MatchRef::Multiport { neg, kind, ports } => {
                cx.saw(field::SPORT | field::DPORT);
                let hit = ports.iter().any(|r| match kind {
                    MultiportKind::Sports => r.contains(p.sport),
                    MultiportKind::Dports => r.contains(p.dport),
                    MultiportKind::Ports => r.contains(p.sport) || r.contains(p.dport),
                });
                if hit == neg {
                    return MatchResult::Failed(lazy(describe, || "-m multiport".into()));
                }
            }
            MatchRef::Statistic(Statistic::Random { neg, fixed }) => {
                if !coin(fixed, neg) {
                    return MatchResult::Failed(lazy(describe, || {
                        "-m statistic --mode random (the random draw did not hit)".into()
                    }));
                }
            }
            MatchRef::Statistic(Statistic::Nth { neg, every, packet }) => {
                let counter = state.nth.get(&rule_id).copied().unwrap_or(packet);
                // xt_statistic: nval = (oval == every) ? 0 : oval + 1; match when nval == 0.
                let next = if counter == every { 0 } else { counter + 1 };
                if effects {
                    state.nth.insert(rule_id, next);
                }
                if (next == 0) == neg {
                    return MatchResult::Failed(lazy(describe, || {
                        "-m statistic --mode nth".into()
                    }));
                }
            }
            MatchRef::Recent(r) => {
                if !eval_recent(r, cx, state, effects, notes, describe) {
                    return MatchResult::Failed(lazy(describe, || {
                        format!(
                            "-m recent --{} --name {}",
                            match r.action {
                                RecentAction::Set => "set",
                                RecentAction::Rcheck => "rcheck",
                                RecentAction::Update => "update",
                                RecentAction::Remove => "remove",
                            },
                            r.name
                        )
                    }));
                }
            }
            MatchRef::Mark { neg, value, mask } => {
                cx.saw(field::MARK);
                if ((p.mark & mask) == value) == neg {
                    return MatchResult::Failed(lazy(describe, || {
                        let mut t = String::with_capacity(32);
                        t.push_str(if neg { "! --mark " } else { "--mark " });
                        push_hex(&mut t, value);
                        t.push('/');
                        push_hex(&mut t, mask);
                        t
                    }));
                }
            }
            MatchRef::AddrType { src, dst, .. } => {
                for (label, spec, ip) in [("--src-type", src, p.src), ("--dst-type", dst, p.dst)] {
                    if let Some(t) = spec {
                        cx.saw(if label == "--src-type" {
                            field::SRC
                        } else {
                            field::DST
                        });
                        let ty = addr_type(m, ip);
                        let hit = t.value.contains(&ty);
                        if hit == t.neg {
                            return MatchResult::Failed(lazy(describe, || {
                                let names: Vec<&str> = t.value.iter().map(|x| x.as_str()).collect();
                                format!(
                                    "{}{label} {} ({ip} is {})",
                                    if t.neg { "! " } else { "" },
                                    names.join(","),
                                    if ty == AddrType::Local {
                                        "local"
                                    } else {
                                        "not local"
                                    }
                                )
                            }));
                        }
                    }
                }
            }
            MatchRef::Conntrack { ctstate } => {
                if let Some(st) = ctstate {
                    cx.saw(field::CT);
                    let state_of = |c: &CtState| match c {
                        CtState::New => cx.ct_new,
                        CtState::Established => !cx.ct_new,
                        CtState::Dnat => cx.ct_dnat,
                        CtState::Snat => cx.ct_snat,
                        CtState::Invalid | CtState::Related | CtState::Untracked => false,
                    };
                    let hit = st.value.iter().any(state_of);
                    if hit == st.neg {
                        // Every traced packet fails kube-proxy's `--ctstate INVALID` rule:
                        // built in place, not through a name vector and the formatter.
                        return MatchResult::Failed(lazy(describe, || {
                            let mut t = String::with_capacity(48);
                            t.push_str(if st.neg { "! --ctstate " } else { "--ctstate " });
                            for (i, c) in st.value.iter().enumerate() {
                                if i > 0 {
                                    t.push(',');
                                }
                                t.push_str(c.as_str());
                            }
                            t
                        }));
                    }
                }
            }
            MatchRef::Set { neg, name, dirs } => match m.node.ipsets.get(name) {
                Some(set) => {
                    cx.saw(field::HEADER);
                    if set_matches(set, p, dirs) == neg {
                        return MatchResult::Failed(lazy(describe, || {
                            format!("{}--match-set {name}", if neg { "! " } else { "" })
                        }));
                    }
                }
                None => {
                    return MatchResult::Unsupported(format!("-m set: ipset {name} is unknown"));
                }
            },
            MatchRef::Physdev(pd) => {
                cx.saw(field::BRIDGE);
                if let Err(why) = physdev_match(pd, cx.bridge) {
                    return MatchResult::Failed(lazy(describe, || {
                        let has = match cx.bridge {
                            None => "the packet has no bridge info: it did not come in through a bridge port, or br_netfilter is off".to_string(),
                            Some(b) => format!(
                                "br_netfilter's bridge info: in port {}, out port {}",
                                b.physindev.as_deref().unwrap_or("none"),
                                b.physoutdev.as_deref().unwrap_or("none")
                            ),
                        };
                        format!("-m physdev {why} ({has})")
                    }));
                }
            }
            MatchRef::Ipvs(i) => {
                cx.saw(field::IPVS | field::PROTO);
                if let Err(why) = ipvs_match(i, p.proto.number(), cx.ipvs) {
                    return MatchResult::Failed(lazy(describe, || {
                        let has = match cx.ipvs {
                            None => "the packet has no IPVS connection".to_string(),
                            Some(c) => format!(
                                "IPVS connection to {} (vproto {}, {}{})",
                                crate::k8s::ip::join_host_port(c.vaddr, c.vport),
                                p.proto.number(),
                                c.method.as_str(),
                                if c.reply { ", reply" } else { ", original" }
                            ),
                        };
                        format!("-m ipvs {why} ({has})")
                    }));
                }
            }
            MatchRef::Unknown { module, .. } => {
                return MatchResult::Unsupported(format!("-m {module} is not modelled"));
            }
        }
    }
    MatchResult::Matched
}

fn neg_str(n: bool) -> &'static str {
    if n { "! " } else { "" }
}

/// xt_physdev's `physdev_mt`; `Err` names the option that failed.
/// * No bridge info (`!nf_bridge_info_exists`): the match holds only if every option given is
///   inverted.
/// * Otherwise `--physdev-is-bridged` means "has an output port", `--physdev-is-in/-out` "has
///   an input/output port"; `--physdev-in NAME` is not checked at all when there is no input
///   port (the kernel skips it), while `--physdev-out NAME` fails without an output port, even
///   inverted. Names compare like `-i` (`ifname_compare_aligned`, `+` a prefix wildcard).
pub fn physdev_match(pd: PhysdevRef, bridge: Option<&BridgeInfo>) -> Result<(), String> {
    let Some(b) = bridge else {
        let given = [
            (pd.is_bridged, "--physdev-is-bridged"),
            (pd.is_in, "--physdev-is-in"),
            (pd.is_out, "--physdev-is-out"),
            (pd.physdev_in.map(|n| n.neg), "--physdev-in"),
            (pd.physdev_out.map(|n| n.neg), "--physdev-out"),
        ];
        return match given.iter().find(|(g, _)| *g == Some(false)) {
            Some((_, name)) => Err(format!("{name} needs bridge info")),
            None => Ok(()),
        };
    };
    let (indev, outdev) = (b.physindev.as_deref(), b.physoutdev.as_deref());
    if let Some(n) = pd.is_bridged
        && outdev.is_some() == n
    {
        return Err(format!("{}--physdev-is-bridged", neg_str(n)));
    }
    if let Some(n) = pd.is_in
        && indev.is_some() == n
    {
        return Err(format!("{}--physdev-is-in", neg_str(n)));
    }
    if let Some(n) = pd.is_out
        && outdev.is_some() == n
    {
        return Err(format!("{}--physdev-is-out", neg_str(n)));
    }
    if let (Some(want), Some(_)) = (pd.physdev_in, indev)
        && iface_matches(want.value, indev) == want.neg
    {
        return Err(format!("{}--physdev-in {}", neg_str(want.neg), want.value));
    }
    if let Some(want) = pd.physdev_out
        && (outdev.is_none() || iface_matches(want.value, outdev) == want.neg)
    {
        return Err(format!("{}--physdev-out {}", neg_str(want.neg), want.value));
    }
    Ok(())
}

/// xt_ipvs's `ipvs_mt` for a packet of protocol `proto`; `Err` names the option that failed.
/// A lone `[!] --ipvs` tests `skb->ipvs_property` (with its `!`); with any other option a packet
/// IPVS has not handled fails whatever the inversions, and the options are then tested in the
/// kernel's order: vproto (the packet's protocol), vport, vportctl, vdir, vmethod, vaddr
/// (address under the mask).
pub fn ipvs_match(i: IpvsMatch, proto: u8, conn: Option<IpvsConn>) -> Result<(), String> {
    if i.property_only() {
        return if conn.is_some() == i.ipvs_neg {
            Err(format!("{}--ipvs", neg_str(i.ipvs_neg)))
        } else {
            Ok(())
        };
    }
    let Some(c) = conn else {
        return Err("(no IPVS connection: every option but a lone ! --ipvs fails)".into());
    };
    if let Some(v) = i.vproto
        && (proto == v.value) == v.neg
    {
        return Err(format!("{}--vproto {}", neg_str(v.neg), v.value));
    }
    if let Some(v) = i.vport
        && (c.vport == v.value) == v.neg
    {
        return Err(format!("{}--vport {}", neg_str(v.neg), v.value));
    }
    if let Some(v) = i.vportctl
        && (c.control_vport == Some(v.value)) == v.neg
    {
        return Err(format!("{}--vportctl {}", neg_str(v.neg), v.value));
    }
    if let Some(d) = i.vdir
        && c.reply != (d == VDir::Reply)
    {
        return Err(format!(
            "--vdir {}",
            if d == VDir::Reply {
                "REPLY"
            } else {
                "ORIGINAL"
            }
        ));
    }
    if let Some(m) = i.vmethod
        && (c.method == m.value) == m.neg
    {
        return Err(format!("{}--vmethod {}", neg_str(m.neg), m.value.as_str()));
    }
    if let Some(a) = i.vaddr
        && a.value.contains(&c.vaddr) == a.neg
    {
        return Err(format!("{}--vaddr {}", neg_str(a.neg), a.value));
    }
    Ok(())
}

/// xt_recent: `--set` records the address (always matches); `--rcheck`/`--update` match when the
/// address was seen (within `--seconds`, at least `--hitcount` times); `--update` also refreshes;
/// `--remove` deletes. `--reap` drops timestamps older than `--seconds`.
fn eval_recent(
    r: RecentRef,
    cx: &PacketCtx,
    state: &mut State,
    effects: bool,
    notes: &mut Vec<String>,
    describe: bool,
) -> bool {
    cx.saw(if r.rdest { field::DST } else { field::SRC });
    let addr = if r.rdest { cx.pkt.dst } else { cx.pkt.src };
    let hit = match r.action {
        RecentAction::Set => {
            if effects {
                state
                    .recent
                    .entry(r.name.to_string())
                    .or_default()
                    .entry(addr)
                    .or_default()
                    .push(cx.now);
                if describe {
                    notes.push(format!("recent: {addr} recorded in list {}", r.name));
                }
            }
            true
        }
        RecentAction::Rcheck | RecentAction::Update | RecentAction::Remove => {
            let empty = Vec::new();
            let stamps = state
                .recent
                .get(r.name)
                .and_then(|l| l.get(&addr))
                .unwrap_or(&empty);
            let mut ok = !stamps.is_empty();
            if ok && r.action != RecentAction::Remove {
                if let Some(secs) = r.seconds {
                    // The kernel counts stamps newer than now - seconds (time_after).
                    let fresh = stamps.iter().filter(|t| **t > cx.now - secs as f64).count();
                    let need = r.hitcount.unwrap_or(1).max(1) as usize;
                    ok = fresh >= need;
                } else if let Some(h) = r.hitcount {
                    ok = stamps.len() >= h as usize;
                }
            }
            if effects {
                let list = state.recent.entry(r.name.to_string()).or_default();
                if r.reap
                    && let (Some(secs), Some(v)) = (r.seconds, list.get_mut(&addr))
                {
                    v.retain(|t| *t > cx.now - secs as f64);
                }
                if ok && r.action == RecentAction::Update {
                    list.entry(addr).or_default().push(cx.now);
                }
                if ok && r.action == RecentAction::Remove {
                    list.remove(&addr);
                }
            }
            if describe {
                notes.push(format!(
                    "recent: {addr} {} list {}{}",
                    if ok { "found in" } else { "not found in" },
                    r.name,
                    r.seconds
                        .map(|s| format!(" (last {s} s)"))
                        .unwrap_or_default()
                ));
            }
            ok
        }
    };
    hit != r.neg
}
