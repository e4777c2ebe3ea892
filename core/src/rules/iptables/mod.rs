//! The iptables ruleset model and its text formats (`iptables-save` / `iptables-restore`).
//!
//! Two levels, as in smoltcp: [`parse`] is tolerant (never panics, reports every problem with its
//! line as a [`Diagnostic`](crate::diag::Diagnostic)) and builds the validated model below, in which
//! every match and target kube-proxy uses is structured data. Anything else is kept verbatim as
//! `Unknown` so the dump still round-trips, and the tracer reports it as unsupported instead of
//! guessing what it does.
//!
//! [`print`] writes the model the way `iptables-save` does (the kernel's canonical argument order:
//! `-s -d -i -o -p`, then the matches in load order, then the target), so
//! `parse(print(x)) == x` holds for every model `parse` can produce.

pub mod parse;
pub mod print;
pub mod view;

use ipnet::IpNet;
use serde::Serialize;
use std::net::Ipv4Addr;

pub use parse::parse;
pub use print::print_saved;

/// Address family of a ruleset (`iptables` vs `ip6tables`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    V4,
    V6,
}

/// `[packets:bytes]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
}

/// A whole dump: the tables in file order.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Ruleset {
    pub tables: Vec<Table>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Table {
    pub name: String,
    pub chains: Vec<Chain>,
    /// `-X CHAIN` lines (restore payloads only: kube-proxy deletes stale chains this way).
    pub deleted: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chain {
    pub name: String,
    /// `ACCEPT` / `DROP` for built-in chains, `None` (`-`) for user chains.
    pub policy: Option<String>,
    pub counters: Counters,
    pub rules: Vec<Rule>,
}

/// One `-A` line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    pub src: Option<Neg<IpNet>>,
    pub dst: Option<Neg<IpNet>>,
    pub in_iface: Option<Neg<String>>,
    pub out_iface: Option<Neg<String>>,
    pub proto: Option<Neg<ProtoNum>>,
    /// Matches in the order they were loaded (`-m`), which is the order the kernel evaluates and
    /// `iptables-save` prints them.
    pub matches: Vec<Match>,
    pub target: Option<Target>,
    /// `-c p b` or a leading `[p:b]`.
    pub counters: Option<Counters>,
    /// 1-based line of the dump this rule came from (0 when built in memory).
    #[serde(skip)]
    pub line: usize,
}

/// A value with iptables' `!` inversion.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Neg<T> {
    pub neg: bool,
    pub value: T,
}

impl<T> Neg<T> {
    pub fn new(neg: bool, value: T) -> Self {
        Neg { neg, value }
    }
}

/// `-p`: a protocol by number (iptables prints the name for the ones it knows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ProtoNum(pub u8);

impl ProtoNum {
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            1 => "icmp",
            6 => "tcp",
            17 => "udp",
            58 => "ipv6-icmp",
            132 => "sctp",
            _ => return None,
        })
    }
    pub fn from_name(s: &str) -> Option<ProtoNum> {
        // Case-insensitive without allocating: this runs for every `-p` of a dump.
        const NAMES: [(&str, u8); 7] = [
            ("tcp", 6),
            ("udp", 17),
            ("icmp", 1),
            ("sctp", 132),
            ("ipv6-icmp", 58),
            ("icmpv6", 58),
            ("all", 0),
        ];
        if let Some((_, n)) = NAMES.iter().find(|(name, _)| name.eq_ignore_ascii_case(s)) {
            return Some(ProtoNum(*n));
        }
        s.parse().ok().map(ProtoNum)
    }
}

/// A port or port range, `80` or `1000:2000`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PortSpec {
    pub lo: u16,
    pub hi: u16,
}

impl PortSpec {
    pub fn contains(self, p: u16) -> bool {
        self.lo <= p && p <= self.hi
    }
}

/// conntrack states (`--ctstate`), in the order iptables prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum CtState {
    Invalid,
    New,
    Related,
    Established,
    Untracked,
    Snat,
    Dnat,
}

impl CtState {
    pub const ALL: [CtState; 7] = [
        CtState::Invalid,
        CtState::New,
        CtState::Related,
        CtState::Established,
        CtState::Untracked,
        CtState::Snat,
        CtState::Dnat,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            CtState::Invalid => "INVALID",
            CtState::New => "NEW",
            CtState::Related => "RELATED",
            CtState::Established => "ESTABLISHED",
            CtState::Untracked => "UNTRACKED",
            CtState::Snat => "SNAT",
            CtState::Dnat => "DNAT",
        }
    }
}

/// `-m addrtype` address types (only the ones the kernel defines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum AddrType {
    Unspec,
    Unicast,
    Local,
    Broadcast,
    Anycast,
    Multicast,
    Blackhole,
    Unreachable,
    Prohibit,
    Throw,
    Nat,
    Xresolve,
}

impl AddrType {
    pub const ALL: [AddrType; 12] = [
        AddrType::Unspec,
        AddrType::Unicast,
        AddrType::Local,
        AddrType::Broadcast,
        AddrType::Anycast,
        AddrType::Multicast,
        AddrType::Blackhole,
        AddrType::Unreachable,
        AddrType::Prohibit,
        AddrType::Throw,
        AddrType::Nat,
        AddrType::Xresolve,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            AddrType::Unspec => "UNSPEC",
            AddrType::Unicast => "UNICAST",
            AddrType::Local => "LOCAL",
            AddrType::Broadcast => "BROADCAST",
            AddrType::Anycast => "ANYCAST",
            AddrType::Multicast => "MULTICAST",
            AddrType::Blackhole => "BLACKHOLE",
            AddrType::Unreachable => "UNREACHABLE",
            AddrType::Prohibit => "PROHIBIT",
            AddrType::Throw => "THROW",
            AddrType::Nat => "NAT",
            AddrType::Xresolve => "XRESOLVE",
        }
    }
}

/// `-m recent` action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecentAction {
    Set,
    Rcheck,
    Update,
    Remove,
}

/// `-m recent` as the kernel's xt_recent sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recent {
    pub neg: bool,
    pub action: RecentAction,
    pub seconds: Option<u32>,
    pub reap: bool,
    pub hitcount: Option<u32>,
    pub rttl: bool,
    /// List name; the kernel's default is `DEFAULT`.
    pub name: String,
    /// `--mask`; printed by iptables-save as a full address (all ones by default).
    pub mask: std::net::IpAddr,
    /// `--rdest` (false = `--rsource`, the default).
    pub rdest: bool,
}

/// `-m statistic`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum Statistic {
    /// The kernel keeps the probability as a 31-bit fixed-point integer
    /// (`lround(p * 2^31)`, xt_statistic) and matches when `(random & 0x7fffffff) < value`.
    Random {
        neg: bool,
        fixed: u32,
    },
    Nth {
        neg: bool,
        every: u32,
        packet: u32,
    },
}

impl Statistic {
    /// What a probability argument becomes in the kernel (libxt_statistic's `lround`).
    pub fn fixed_from_probability(p: f64) -> u32 {
        (p * 2147483648.0).round() as u32
    }
    /// The kernel's real probability for a fixed-point value.
    pub fn probability_of(fixed: u32) -> f64 {
        fixed as f64 / 2147483648.0
    }
}

/// `-m multiport` direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MultiportKind {
    Sports,
    Dports,
    Ports,
}

/// `-m physdev` (xt_physdev): the bridge ports a bridged packet came in on / goes out by. Each
/// option is `Some(neg)` when given; a port name may end in `+` (prefix wildcard, as `-i`).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Physdev {
    pub is_in: Option<bool>,
    pub physdev_in: Option<Neg<String>>,
    pub is_out: Option<bool>,
    pub physdev_out: Option<Neg<String>>,
    pub is_bridged: Option<bool>,
}

/// `--vdir` of `-m ipvs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum VDir {
    Original,
    Reply,
}

/// `--vmethod` of `-m ipvs`: the connection's forwarding method (`IP_VS_CONN_F_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum VMethod {
    /// Direct routing (`IP_VS_CONN_F_DROUTE`, ipvsadm `-g`).
    Gate,
    /// Tunnelling (`IP_VS_CONN_F_TUNNEL`, ipvsadm `-i`).
    Ipip,
    /// NAT (`IP_VS_CONN_F_MASQ`, ipvsadm `-m`; what kube-proxy uses).
    Masq,
}

impl VMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            VMethod::Gate => "GATE",
            VMethod::Ipip => "IPIP",
            VMethod::Masq => "MASQ",
        }
    }
}

/// `-m ipvs` (xt_ipvs) as the kernel keeps it (`struct xt_ipvs_mtinfo`). Any option but `--ipvs`
/// implies `--ipvs` (libxt_ipvs sets `XT_IPVS_IPVS_PROPERTY` with it, and iptables-save then
/// omits `--ipvs`), so `ipvs_neg` is the `!` of a lone `--ipvs` and false otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct IpvsMatch {
    pub ipvs_neg: bool,
    pub vproto: Option<Neg<u8>>,
    /// Address and prefix as given: neither libxt_ipvs nor the kernel masks the address.
    pub vaddr: Option<Neg<IpNet>>,
    pub vport: Option<Neg<u16>>,
    pub vdir: Option<VDir>,
    pub vmethod: Option<Neg<VMethod>>,
    pub vportctl: Option<Neg<u16>>,
}

impl IpvsMatch {
    /// Only `[!] --ipvs` (the kernel's `bitmask == XT_IPVS_IPVS_PROPERTY`).
    pub fn property_only(&self) -> bool {
        self.vproto.is_none()
            && self.vaddr.is_none()
            && self.vport.is_none()
            && self.vdir.is_none()
            && self.vmethod.is_none()
            && self.vportctl.is_none()
    }
}

/// One `-m <module> ...` match.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "match", rename_all = "lowercase")]
pub enum Match {
    Comment {
        comment: String,
    },
    /// `-m tcp` / `-m udp` / `-m sctp` (with or without port options).
    Ports {
        module: String,
        sport: Option<Neg<PortSpec>>,
        dport: Option<Neg<PortSpec>>,
    },
    Multiport {
        neg: bool,
        kind: MultiportKind,
        ports: Vec<PortSpec>,
    },
    Statistic(Statistic),
    Recent(Recent),
    Mark {
        neg: bool,
        value: u32,
        mask: u32,
    },
    AddrType {
        src: Option<Neg<Vec<AddrType>>>,
        dst: Option<Neg<Vec<AddrType>>>,
        limit_iface_in: bool,
        limit_iface_out: bool,
    },
    Conntrack {
        ctstate: Option<Neg<Vec<CtState>>>,
    },
    Nfacct {
        name: String,
    },
    /// `-m set --match-set NAME src,dst` (IPVS mode keys its rules on ipsets).
    Set {
        neg: bool,
        name: String,
        dirs: Vec<bool /* true = src */>,
    },
    /// `-m physdev` (kube-proxy: `! --physdev-is-in` on externalIP rules).
    Physdev(Physdev),
    /// `-m ipvs` (kube-proxy: KUBE-IPVS-OUT-FILTER's `--vaddr --vproto --vport`).
    Ipvs(IpvsMatch),
    /// Any module we don't model: kept verbatim, reported as unsupported by the tracer.
    Unknown {
        module: String,
        args: Vec<String>,
    },
}

/// The `-j` / `-g` part.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "target", rename_all = "UPPERCASE")]
pub enum Target {
    Accept,
    Drop,
    Return,
    /// `-j CHAIN`
    Jump {
        chain: String,
    },
    /// `-g CHAIN`
    Goto {
        chain: String,
    },
    Reject {
        with: String,
    },
    Dnat {
        to: String,
        random: bool,
        persistent: bool,
    },
    Snat {
        to: String,
        random: bool,
        random_fully: bool,
        persistent: bool,
    },
    Masquerade {
        to_ports: Option<String>,
        random: bool,
        random_fully: bool,
    },
    /// MARK in the kernel's form: `mark = (mark & !mask) ^ value` (`--set-xmark value/mask`).
    Mark {
        value: u32,
        mask: u32,
    },
    Log {
        prefix: Option<String>,
        level: Option<String>,
    },
    /// A target we don't model.
    Unknown {
        name: String,
        args: Vec<String>,
    },
}

impl Ruleset {
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }
    pub fn table_mut(&mut self, name: &str) -> Option<&mut Table> {
        self.tables.iter_mut().find(|t| t.name == name)
    }
    /// Total number of rules in all tables.
    pub fn rule_count(&self) -> usize {
        self.tables
            .iter()
            .flat_map(|t| &t.chains)
            .map(|c| c.rules.len())
            .sum()
    }
}

impl Table {
    pub fn new(name: &str) -> Table {
        Table {
            name: name.to_string(),
            chains: Vec::new(),
            deleted: Vec::new(),
        }
    }
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }
    pub fn chain_mut(&mut self, name: &str) -> Option<&mut Chain> {
        self.chains.iter_mut().find(|c| c.name == name)
    }
}

/// The built-in chains of each table, in the order `iptables-save` lists them.
pub fn builtin_chains(table: &str) -> &'static [&'static str] {
    match table {
        "filter" => &["INPUT", "FORWARD", "OUTPUT"],
        "nat" => &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
        "mangle" => &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
        "raw" => &["PREROUTING", "OUTPUT"],
        "security" => &["INPUT", "FORWARD", "OUTPUT"],
        _ => &[],
    }
}

pub fn is_builtin(table: &str, chain: &str) -> bool {
    builtin_chains(table).contains(&chain)
}

impl Rule {
    /// An empty rule (matches everything, no target).
    pub fn empty() -> Rule {
        Rule {
            src: None,
            dst: None,
            in_iface: None,
            out_iface: None,
            proto: None,
            matches: Vec::new(),
            target: None,
            counters: None,
            line: 0,
        }
    }

    /// The `--comment` of the rule, if any.
    pub fn comment(&self) -> Option<&str> {
        self.matches.iter().find_map(|m| match m {
            Match::Comment { comment } => Some(comment.as_str()),
            _ => None,
        })
    }
}

/// A decimal number of at most five digits in canonical form (no leading zero) at the start of
/// `b`: (value, digits).
pub(crate) fn canonical_decimal(b: &[u8]) -> Option<(u32, usize)> {
    let mut v = 0u32;
    let mut n = 0;
    while let Some(d) = b.get(n).filter(|d| d.is_ascii_digit()) {
        if n == 5 {
            return None;
        }
        v = v * 10 + u32::from(d - b'0');
        n += 1;
    }
    if n == 0 || (n > 1 && b[0] == b'0') {
        return None;
    }
    Some((v, n))
}

/// An IPv4 address in the form iptables-save prints (`a.b.c.d`, canonical decimal octets) at
/// the start of `b`: the address and the bytes it took. Every address this reads, std's
/// `Ipv4Addr` parser reads the same; it is the parser's fast path for the 100k+ addresses of
/// a big dump, where std's general parser was 4% of a 10k-Service parse (callgrind). Other
/// text (leading zeros, IPv6) is left to std.
pub(crate) fn canonical_v4(b: &[u8]) -> Option<(Ipv4Addr, usize)> {
    let mut octets = [0u8; 4];
    let mut i = 0;
    for (k, o) in octets.iter_mut().enumerate() {
        if k > 0 {
            if b.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        // At most four digits read: a fourth makes the octet too long either way.
        let start = i;
        let mut v = 0u32;
        while i - start < 4
            && let Some(d) = b.get(i).filter(|d| d.is_ascii_digit())
        {
            v = v * 10 + u32::from(d - b'0');
            i += 1;
        }
        let n = i - start;
        if n == 0 || n > 3 || (n > 1 && b[start] == b'0') || v > 255 {
            return None;
        }
        *o = v as u8;
    }
    Some((Ipv4Addr::from(octets), i))
}
