//! Borrowed views of a rule: what the printer and the evaluator read, whether the rule is an
//! owned [`Rule`] or a rule of a compact [`Program`](crate::netfilter::program::Program). One
//! printer and one evaluator serve both, so the compact form cannot drift from the model.

use super::*;
use std::net::IpAddr;

/// One match, borrowed. Mirrors [`Match`] field for field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MatchRef<'a> {
    Comment(&'a str),
    Ports {
        module: &'a str,
        sport: Option<Neg<PortSpec>>,
        dport: Option<Neg<PortSpec>>,
    },
    Multiport {
        neg: bool,
        kind: MultiportKind,
        ports: &'a [PortSpec],
    },
    Statistic(Statistic),
    Recent(RecentRef<'a>),
    Mark {
        neg: bool,
        value: u32,
        mask: u32,
    },
    AddrType {
        src: Option<Neg<&'a [AddrType]>>,
        dst: Option<Neg<&'a [AddrType]>>,
        limit_iface_in: bool,
        limit_iface_out: bool,
    },
    Conntrack {
        ctstate: Option<Neg<&'a [CtState]>>,
    },
    Nfacct(&'a str),
    Set {
        neg: bool,
        name: &'a str,
        dirs: &'a [bool],
    },
    Physdev(PhysdevRef<'a>),
    Ipvs(IpvsMatch),
    Unknown {
        module: &'a str,
        args: Args<'a>,
    },
}

/// [`Physdev`] with its port names borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PhysdevRef<'a> {
    pub is_in: Option<bool>,
    pub physdev_in: Option<Neg<&'a str>>,
    pub is_out: Option<bool>,
    pub physdev_out: Option<Neg<&'a str>>,
    pub is_bridged: Option<bool>,
}

impl PhysdevRef<'_> {
    pub fn to_physdev(self) -> Physdev {
        let own = |n: Option<Neg<&str>>| n.map(|n| Neg::new(n.neg, n.value.to_string()));
        Physdev {
            is_in: self.is_in,
            physdev_in: own(self.physdev_in),
            is_out: self.is_out,
            physdev_out: own(self.physdev_out),
            is_bridged: self.is_bridged,
        }
    }
    /// No option given (libxt_physdev refuses that: "no physdev option specified").
    pub fn is_empty(self) -> bool {
        self == PhysdevRef::default()
    }
}

impl<'a> From<&'a Physdev> for PhysdevRef<'a> {
    fn from(p: &'a Physdev) -> PhysdevRef<'a> {
        let b = |n: &'a Option<Neg<String>>| n.as_ref().map(|n| Neg::new(n.neg, n.value.as_str()));
        PhysdevRef {
            is_in: p.is_in,
            physdev_in: b(&p.physdev_in),
            is_out: p.is_out,
            physdev_out: b(&p.physdev_out),
            is_bridged: p.is_bridged,
        }
    }
}

/// [`Recent`] with its list name borrowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecentRef<'a> {
    pub neg: bool,
    pub action: RecentAction,
    pub seconds: Option<u32>,
    pub reap: bool,
    pub hitcount: Option<u32>,
    pub rttl: bool,
    pub name: &'a str,
    pub mask: IpAddr,
    pub rdest: bool,
}

/// Verbatim words of an unknown match or target: owned strings, or symbols of a program's
/// string pool.
#[derive(Clone, Copy)]
pub enum Args<'a> {
    Owned(&'a [String]),
    Pooled(&'a StrPool, &'a [u8]),
    /// Words of a line being parsed: its tokens and the text the parser made.
    Words(&'a [Word], &'a [&'a str], &'a str),
}

/// A string of a line being parsed: one of its tokens, a range of text the parser made, or a
/// constant (a default). Lets the parser describe a rule without allocating for it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Word {
    Tok(u32),
    Own(u32, u32),
    Static(&'static str),
}

impl Word {
    pub fn get<'a>(self, toks: &'a [&'a str], text: &'a str) -> &'a str {
        match self {
            Word::Tok(i) => toks[i as usize],
            Word::Own(a, b) => &text[a as usize..b as usize],
            Word::Static(s) => s,
        }
    }
}

/// Byte-string equality in word-sized compares, without a call into libc's `memcmp`: the
/// parser compares chain names (25 bytes: `KUBE-SEP-` and a 16-letter hash) a few times per
/// rule, and the call and its setup were 3% of a 10k-Service parse (callgrind). The last eight
/// bytes go first: names that sort next to each other share their prefix.
#[inline]
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        return a == b;
    }
    let w = |x: &[u8], at: usize| u64::from_le_bytes(x[at..at + 8].try_into().expect("8 bytes"));
    if w(a, n - 8) != w(b, n - 8) {
        return false;
    }
    let mut i = 0;
    while i + 8 < n {
        if w(a, i) != w(b, i) {
            return false;
        }
        i += 8;
    }
    true
}

/// Interned strings: one buffer, symbols are indices into `ends`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StrPool {
    text: String,
    ends: Vec<u32>,
}

impl StrPool {
    pub fn get(&self, sym: u32) -> &str {
        let i = sym as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[start..self.ends[i] as usize]
    }
    /// Whether symbol `sym` is `s` (bytes compared: no UTF-8 boundary checks on a hot path;
    /// lengths first, without slicing: most candidates differ there).
    #[inline]
    pub fn is(&self, sym: u32, s: &str) -> bool {
        let i = sym as usize;
        let Some(&end) = self.ends.get(i) else {
            return false;
        };
        let start = match i.checked_sub(1) {
            Some(p) => self.ends[p],
            None => 0,
        };
        end - start == s.len() as u32
            && self
                .text
                .as_bytes()
                .get(start as usize..end as usize)
                .is_some_and(|b| same_bytes(b, s.as_bytes()))
    }
    /// Where symbol `sym` is in [`StrPool::bytes`]: start and end.
    pub fn span(&self, sym: u32) -> (u32, u32) {
        let i = sym as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        (start, self.ends[i])
    }
    /// Every string, one after another.
    pub fn bytes(&self) -> &[u8] {
        self.text.as_bytes()
    }
    /// Append a string (no deduplication: the caller interns).
    pub fn push(&mut self, s: &str) -> u32 {
        self.text.push_str(s);
        self.ends.push(self.text.len() as u32);
        (self.ends.len() - 1) as u32
    }
    pub fn len(&self) -> usize {
        self.ends.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
    pub fn reserve(&mut self, bytes: usize, strings: usize) {
        self.text.reserve(bytes);
        self.ends.reserve(strings);
    }
    pub fn shrink_to_fit(&mut self) {
        self.text.shrink_to_fit();
        self.ends.shrink_to_fit();
    }
    pub fn heap_bytes(&self) -> usize {
        self.text.capacity() + self.ends.capacity() * 4
    }
}

impl<'a> Args<'a> {
    pub fn iter(self) -> impl Iterator<Item = &'a str> {
        let (owned, pooled, words) = match self {
            Args::Owned(v) => (v, None, None),
            Args::Pooled(p, b) => (&[][..], Some((p, b)), None),
            Args::Words(w, t, x) => (&[][..], None, Some((w, t, x))),
        };
        owned
            .iter()
            .map(String::as_str)
            .chain(
                pooled
                    .into_iter()
                    .flat_map(|(p, b)| b.chunks_exact(4).map(move |c| p.get(le32(c)))),
            )
            .chain(
                words
                    .into_iter()
                    .flat_map(|(w, t, x)| w.iter().map(move |w| w.get(t, x))),
            )
    }
    pub fn len(self) -> usize {
        match self {
            Args::Owned(v) => v.len(),
            Args::Pooled(_, b) => b.len() / 4,
            Args::Words(w, ..) => w.len(),
        }
    }
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for Args<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for Args<'_> {
    fn eq(&self, o: &Self) -> bool {
        self.len() == o.len() && self.iter().eq(o.iter())
    }
}

pub(crate) fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// A `--to-destination` / `--to-source` value: the text as loaded, or (what every kube-proxy
/// rule has) an address with an optional port kept parsed, printed back to the same text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NatTo<'a> {
    Text(&'a str),
    Addr(IpAddr, Option<u16>),
}

impl NatTo<'_> {
    /// The address and port the NAT picks (the first of a range).
    pub fn dest(self) -> Option<(IpAddr, Option<u16>)> {
        match self {
            NatTo::Text(t) => parse_nat_to(t),
            NatTo::Addr(a, p) => Some((a, p)),
        }
    }
    pub fn write(self, out: &mut String) {
        use std::fmt::Write;
        let _ = match self {
            NatTo::Text(t) => {
                out.push_str(t);
                Ok(())
            }
            NatTo::Addr(a, None) => write!(out, "{a}"),
            NatTo::Addr(IpAddr::V4(a), Some(p)) => write!(out, "{a}:{p}"),
            NatTo::Addr(IpAddr::V6(a), Some(p)) => write!(out, "[{a}]:{p}"),
        };
    }
}

impl std::fmt::Display for NatTo<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = String::new();
        self.write(&mut s);
        f.write_str(&s)
    }
}

/// `--to-destination` / `--to-source` text → address and optional port (first of a range):
/// `ADDR[-ADDR][:PORT[-PORT]]`, IPv6 in brackets when a port follows.
pub fn parse_nat_to(to: &str) -> Option<(IpAddr, Option<u16>)> {
    let (addr, port) = if let Some(rest) = to.strip_prefix('[') {
        let (a, p) = rest.split_once(']')?;
        (a, p.strip_prefix(':'))
    } else if to.matches(':').count() == 1 {
        let (a, p) = to.split_once(':')?;
        (a, Some(p))
    } else {
        (to, None)
    };
    let addr = addr.split('-').next()?;
    let ip: IpAddr = addr.parse().ok()?;
    let port = match port {
        Some(p) => Some(p.split('-').next()?.parse().ok()?),
        None => None,
    };
    Some((ip, port))
}

/// The `-j` / `-g` part, borrowed. Jump targets carry the resolved chain index when the rule
/// comes from a program (`None` for an undeclared chain or an owned rule).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TargetRef<'a> {
    Accept,
    Drop,
    Return,
    Jump {
        chain: &'a str,
        to: Option<u32>,
    },
    Goto {
        chain: &'a str,
        to: Option<u32>,
    },
    Reject {
        with: &'a str,
    },
    Dnat {
        to: NatTo<'a>,
        random: bool,
        persistent: bool,
    },
    Snat {
        to: NatTo<'a>,
        random: bool,
        random_fully: bool,
        persistent: bool,
    },
    Masquerade {
        to_ports: Option<&'a str>,
        random: bool,
        random_fully: bool,
    },
    Mark {
        value: u32,
        mask: u32,
    },
    Log {
        prefix: Option<&'a str>,
        level: Option<&'a str>,
    },
    Unknown {
        name: &'a str,
        args: Args<'a>,
    },
}

fn neg_ref<T>(n: &Option<Neg<Vec<T>>>) -> Option<Neg<&[T]>> {
    n.as_ref().map(|n| Neg::new(n.neg, n.value.as_slice()))
}

impl<'a> From<&'a Match> for MatchRef<'a> {
    fn from(m: &'a Match) -> MatchRef<'a> {
        match m {
            Match::Comment { comment } => MatchRef::Comment(comment),
            Match::Ports {
                module,
                sport,
                dport,
            } => MatchRef::Ports {
                module,
                sport: *sport,
                dport: *dport,
            },
            Match::Multiport { neg, kind, ports } => MatchRef::Multiport {
                neg: *neg,
                kind: *kind,
                ports,
            },
            Match::Statistic(s) => MatchRef::Statistic(*s),
            Match::Recent(r) => MatchRef::Recent(RecentRef {
                neg: r.neg,
                action: r.action,
                seconds: r.seconds,
                reap: r.reap,
                hitcount: r.hitcount,
                rttl: r.rttl,
                name: &r.name,
                mask: r.mask,
                rdest: r.rdest,
            }),
            Match::Mark { neg, value, mask } => MatchRef::Mark {
                neg: *neg,
                value: *value,
                mask: *mask,
            },
            Match::AddrType {
                src,
                dst,
                limit_iface_in,
                limit_iface_out,
            } => MatchRef::AddrType {
                src: neg_ref(src),
                dst: neg_ref(dst),
                limit_iface_in: *limit_iface_in,
                limit_iface_out: *limit_iface_out,
            },
            Match::Conntrack { ctstate } => MatchRef::Conntrack {
                ctstate: neg_ref(ctstate),
            },
            Match::Nfacct { name } => MatchRef::Nfacct(name),
            Match::Set { neg, name, dirs } => MatchRef::Set {
                neg: *neg,
                name,
                dirs,
            },
            Match::Physdev(p) => MatchRef::Physdev(p.into()),
            Match::Ipvs(i) => MatchRef::Ipvs(*i),
            Match::Unknown { module, args } => MatchRef::Unknown {
                module,
                args: Args::Owned(args),
            },
        }
    }
}

impl<'a> From<&'a Target> for TargetRef<'a> {
    fn from(t: &'a Target) -> TargetRef<'a> {
        match t {
            Target::Accept => TargetRef::Accept,
            Target::Drop => TargetRef::Drop,
            Target::Return => TargetRef::Return,
            Target::Jump { chain } => TargetRef::Jump { chain, to: None },
            Target::Goto { chain } => TargetRef::Goto { chain, to: None },
            Target::Reject { with } => TargetRef::Reject { with },
            Target::Dnat {
                to,
                random,
                persistent,
            } => TargetRef::Dnat {
                to: NatTo::Text(to),
                random: *random,
                persistent: *persistent,
            },
            Target::Snat {
                to,
                random,
                random_fully,
                persistent,
            } => TargetRef::Snat {
                to: NatTo::Text(to),
                random: *random,
                random_fully: *random_fully,
                persistent: *persistent,
            },
            Target::Masquerade {
                to_ports,
                random,
                random_fully,
            } => TargetRef::Masquerade {
                to_ports: to_ports.as_deref(),
                random: *random,
                random_fully: *random_fully,
            },
            Target::Mark { value, mask } => TargetRef::Mark {
                value: *value,
                mask: *mask,
            },
            Target::Log { prefix, level } => TargetRef::Log {
                prefix: prefix.as_deref(),
                level: level.as_deref(),
            },
            Target::Unknown { name, args } => TargetRef::Unknown {
                name,
                args: Args::Owned(args),
            },
        }
    }
}

impl MatchRef<'_> {
    /// The owned match (what [`Program::to_ruleset`](crate::netfilter::program::Program) gives back).
    pub fn to_match(self) -> Match {
        let owned = |n: Option<Neg<&[AddrType]>>| n.map(|n| Neg::new(n.neg, n.value.to_vec()));
        match self {
            MatchRef::Comment(c) => Match::Comment {
                comment: c.to_string(),
            },
            MatchRef::Ports {
                module,
                sport,
                dport,
            } => Match::Ports {
                module: module.to_string(),
                sport,
                dport,
            },
            MatchRef::Multiport { neg, kind, ports } => Match::Multiport {
                neg,
                kind,
                ports: ports.to_vec(),
            },
            MatchRef::Statistic(s) => Match::Statistic(s),
            MatchRef::Recent(r) => Match::Recent(Recent {
                neg: r.neg,
                action: r.action,
                seconds: r.seconds,
                reap: r.reap,
                hitcount: r.hitcount,
                rttl: r.rttl,
                name: r.name.to_string(),
                mask: r.mask,
                rdest: r.rdest,
            }),
            MatchRef::Mark { neg, value, mask } => Match::Mark { neg, value, mask },
            MatchRef::AddrType {
                src,
                dst,
                limit_iface_in,
                limit_iface_out,
            } => Match::AddrType {
                src: owned(src),
                dst: owned(dst),
                limit_iface_in,
                limit_iface_out,
            },
            MatchRef::Conntrack { ctstate } => Match::Conntrack {
                ctstate: ctstate.map(|n| Neg::new(n.neg, n.value.to_vec())),
            },
            MatchRef::Nfacct(n) => Match::Nfacct {
                name: n.to_string(),
            },
            MatchRef::Set { neg, name, dirs } => Match::Set {
                neg,
                name: name.to_string(),
                dirs: dirs.to_vec(),
            },
            MatchRef::Physdev(p) => Match::Physdev(p.to_physdev()),
            MatchRef::Ipvs(i) => Match::Ipvs(i),
            MatchRef::Unknown { module, args } => Match::Unknown {
                module: module.to_string(),
                args: args.iter().map(str::to_string).collect(),
            },
        }
    }
}

impl TargetRef<'_> {
    pub fn to_target(self) -> Target {
        let nat = |t: NatTo| t.to_string();
        match self {
            TargetRef::Accept => Target::Accept,
            TargetRef::Drop => Target::Drop,
            TargetRef::Return => Target::Return,
            TargetRef::Jump { chain, .. } => Target::Jump {
                chain: chain.to_string(),
            },
            TargetRef::Goto { chain, .. } => Target::Goto {
                chain: chain.to_string(),
            },
            TargetRef::Reject { with } => Target::Reject {
                with: with.to_string(),
            },
            TargetRef::Dnat {
                to,
                random,
                persistent,
            } => Target::Dnat {
                to: nat(to),
                random,
                persistent,
            },
            TargetRef::Snat {
                to,
                random,
                random_fully,
                persistent,
            } => Target::Snat {
                to: nat(to),
                random,
                random_fully,
                persistent,
            },
            TargetRef::Masquerade {
                to_ports,
                random,
                random_fully,
            } => Target::Masquerade {
                to_ports: to_ports.map(str::to_string),
                random,
                random_fully,
            },
            TargetRef::Mark { value, mask } => Target::Mark { value, mask },
            TargetRef::Log { prefix, level } => Target::Log {
                prefix: prefix.map(str::to_string),
                level: level.map(str::to_string),
            },
            TargetRef::Unknown { name, args } => Target::Unknown {
                name: name.to_string(),
                args: args.iter().map(str::to_string).collect(),
            },
        }
    }
}

/// What the printer and the evaluator read of a rule.
pub trait RuleView<'a>: Copy {
    fn src(self) -> Option<Neg<ipnet::IpNet>>;
    fn dst(self) -> Option<Neg<ipnet::IpNet>>;
    fn in_iface(self) -> Option<Neg<&'a str>>;
    fn out_iface(self) -> Option<Neg<&'a str>>;
    fn proto(self) -> Option<Neg<ProtoNum>>;
    /// The matches in load order.
    fn matches(self) -> impl Iterator<Item = MatchRef<'a>>;
    /// The matches that decide whether a packet matches, in load order: `comment` and
    /// `nfacct` (which only count) may be left out. The evaluator reads these.
    fn tests(self) -> impl Iterator<Item = MatchRef<'a>> {
        self.matches()
    }
    fn target(self) -> Option<TargetRef<'a>>;
    /// 1-based dump line (0 when built in memory).
    fn line(self) -> usize;
    /// The IP-header part (`-s`, `-d`, `-i`, `-o`, `-p`) against a packet, in the kernel's order
    /// (`ip_packet_match`): the first part that fails, or `None` when all hold. `saw` is told
    /// each [`field`](crate::netfilter::eval::field) a part reads, up to and including the
    /// failing one. This is the reference, part by part; the compiled program's rules answer
    /// in one pass over their encoding, and a property test holds the two equal.
    fn header_mismatch(
        self,
        pkt: &crate::trace::Packet,
        in_iface: Option<&str>,
        out_iface: Option<&str>,
        saw: impl Fn(u16),
    ) -> Option<HeaderPart> {
        use crate::netfilter::eval::field;
        if let Some(s) = self.src() {
            saw(field::SRC);
            if s.value.contains(&pkt.src) == s.neg {
                return Some(HeaderPart::Src);
            }
        }
        if let Some(d) = self.dst() {
            saw(field::DST);
            if d.value.contains(&pkt.dst) == d.neg {
                return Some(HeaderPart::Dst);
            }
        }
        if let Some(i) = self.in_iface() {
            saw(field::IN_IFACE);
            if iface_matches(i.value, in_iface) == i.neg {
                return Some(HeaderPart::In);
            }
        }
        if let Some(o) = self.out_iface() {
            saw(field::OUT_IFACE);
            if iface_matches(o.value, out_iface) == o.neg {
                return Some(HeaderPart::Out);
            }
        }
        if let Some(pr) = self.proto() {
            saw(field::PROTO);
            let is = pr.value.0 == 0 || pr.value.0 == pkt.proto.number();
            if is == pr.neg {
                return Some(HeaderPart::Proto);
            }
        }
        None
    }
}

/// Which part of a rule's IP header failed (see [`RuleView::header_mismatch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderPart {
    Src,
    Dst,
    In,
    Out,
    Proto,
}

/// `-i` / `-o`: an exact name, or a prefix ending in `+`; a packet without that interface
/// never matches (the negation then holds).
pub fn iface_matches(pattern: &str, iface: Option<&str>) -> bool {
    let Some(i) = iface else { return false };
    match pattern.strip_suffix('+') {
        Some(prefix) => i.starts_with(prefix),
        None => i == pattern,
    }
}

impl<'a> RuleView<'a> for &'a Rule {
    fn src(self) -> Option<Neg<ipnet::IpNet>> {
        self.src
    }
    fn dst(self) -> Option<Neg<ipnet::IpNet>> {
        self.dst
    }
    fn in_iface(self) -> Option<Neg<&'a str>> {
        self.in_iface
            .as_ref()
            .map(|n| Neg::new(n.neg, n.value.as_str()))
    }
    fn out_iface(self) -> Option<Neg<&'a str>> {
        self.out_iface
            .as_ref()
            .map(|n| Neg::new(n.neg, n.value.as_str()))
    }
    fn proto(self) -> Option<Neg<ProtoNum>> {
        self.proto
    }
    fn matches(self) -> impl Iterator<Item = MatchRef<'a>> {
        self.matches.iter().map(MatchRef::from)
    }
    fn target(self) -> Option<TargetRef<'a>> {
        self.target.as_ref().map(TargetRef::from)
    }
    fn line(self) -> usize {
        self.line
    }
}

/// The owned rule a view shows (with the rule's counters, which views leave to their owner).
pub fn to_rule<'a>(r: impl RuleView<'a>, counters: Option<Counters>) -> Rule {
    Rule {
        src: r.src(),
        dst: r.dst(),
        in_iface: r.in_iface().map(|n| Neg::new(n.neg, n.value.to_string())),
        out_iface: r.out_iface().map(|n| Neg::new(n.neg, n.value.to_string())),
        proto: r.proto(),
        matches: r.matches().map(MatchRef::to_match).collect(),
        target: r.target().map(TargetRef::to_target),
        counters,
        line: r.line(),
    }
}
