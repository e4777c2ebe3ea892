//! Parser for `iptables-save` output and `iptables-restore` input (both backends, with or without
//! counters). Tolerant: it never panics, and every line it cannot use becomes a diagnostic.
//!
//! Option ownership follows iptables' own command parser: an option after `-j TARGET` belongs to
//! the target; otherwise to the most recently loaded match that knows it; `--dport`/`--sport`
//! with `-p tcp|udp|sctp` and no port match loaded implicitly loads the protocol's match (that is
//! why `-p tcp --dport 80` is saved as `-p tcp -m tcp --dport 80`).

use super::*;
use crate::diag::Diagnostic;
use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A multiply-rotate hasher for the chain index (FxHash's scheme). Chain names come from the
/// dump being parsed, not from an attacker racing the parser, and SipHash over 100k+ chain
/// names per dump was a tenth of the parse.
#[derive(Default, Clone, Copy)]
pub struct NameHasher(u64);

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut h = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            h = (h.rotate_left(5) ^ w).wrapping_mul(K);
        }
        for b in chunks.remainder() {
            h = (h.rotate_left(5) ^ u64::from(*b)).wrapping_mul(K);
        }
        self.0 = h;
    }
    fn write_u8(&mut self, i: u8) {
        self.write(&[i]);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type ChainIndex = HashMap<String, usize, BuildHasherDefault<NameHasher>>;

/// The result of parsing a dump: the model plus every problem found.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    pub ruleset: Ruleset,
    pub diagnostics: Vec<Diagnostic>,
}

impl Parsed {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(|d| d.is_error())
    }
}

/// Guess the family of a dump from the first address-looking argument (`ip6tables-save` output
/// has `/128`, `::` ...). Defaults to IPv4.
pub fn detect_family(text: &str) -> Family {
    for line in text.lines().take(5000) {
        let line = line.trim_start();
        if !(line.starts_with("-A") || line.starts_with('[')) {
            continue;
        }
        for w in line.split_whitespace() {
            if let Some(prev) = w.split('/').next() {
                if prev.contains(':') && prev.parse::<Ipv6Addr>().is_ok() {
                    return Family::V6;
                }
                if prev.parse::<Ipv4Addr>().is_ok() {
                    return Family::V4;
                }
            }
        }
    }
    Family::V4
}

/// Parse a whole dump.
pub fn parse(text: &str, family: Family) -> Parsed {
    let mut p = Parser {
        family,
        out: Parsed::default(),
        table: None,
        table_name: String::new(),
        table_line: 0,
        index: ChainIndex::default(),
        tokens: Vec::with_capacity(32),
    };
    for (i, raw) in text.lines().enumerate() {
        p.line(i + 1, raw);
    }
    if let Some(t) = p.table.take() {
        p.out.diagnostics.push(Diagnostic::error(
            Some(p.table_line),
            format!("table {}", t.name),
            "table is not closed by COMMIT (iptables-restore would reject the whole table)",
        ));
        p.out.ruleset.tables.push(t);
    }
    p.out
}

struct Parser<'t> {
    family: Family,
    out: Parsed,
    table: Option<Table>,
    /// The current table's name (borrowed by every rule's diagnostics).
    table_name: String,
    table_line: usize,
    /// Chain name → position in the current table (dumps of big clusters have 100k+ chains).
    index: ChainIndex,
    /// The words of the current line (one buffer for the whole dump).
    tokens: Vec<Cow<'t, str>>,
}

impl<'t> Parser<'t> {
    fn err(&mut self, line: usize, msg: impl Into<String>) {
        self.out
            .diagnostics
            .push(Diagnostic::error(Some(line), "", msg));
    }

    fn line(&mut self, n: usize, raw: &'t str) {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            return;
        }
        if let Some(name) = line.strip_prefix('*') {
            if let Some(t) = self.table.take() {
                self.err(
                    n,
                    format!("table {} is not closed by COMMIT before *{name}", t.name),
                );
                self.out.ruleset.tables.push(t);
            }
            self.table = Some(Table::new(name.trim()));
            self.table_name = name.trim().to_string();
            self.table_line = n;
            self.index.clear();
            return;
        }
        if line == "COMMIT" {
            match self.table.take() {
                Some(mut t) => {
                    // Growth slack of 100k-rule chains is megabytes that a session keeps.
                    for c in &mut t.chains {
                        c.rules.shrink_to_fit();
                    }
                    self.out.ruleset.tables.push(t)
                }
                None => self.err(n, "COMMIT outside of a table"),
            }
            return;
        }
        let Some(table) = self.table.as_mut() else {
            self.err(
                n,
                format!("line outside of a table (expected `*filter`, `*nat`, ...): {line}"),
            );
            return;
        };
        if let Some(decl) = line.strip_prefix(':') {
            match parse_chain_decl(decl) {
                Ok(chain) => {
                    if self.index.contains_key(&chain.name) {
                        self.err(n, format!("chain {} declared twice", chain.name));
                    } else {
                        self.index.insert(chain.name.clone(), table.chains.len());
                        table.chains.push(chain);
                    }
                }
                Err(e) => self.err(n, e),
            }
            return;
        }
        let (counters, rest) = match split_counter_prefix(line) {
            Ok(v) => v,
            Err(e) => return self.err(n, e),
        };
        let mut tokens = std::mem::take(&mut self.tokens);
        if let Err(e) = tokenize_into(rest, &mut tokens) {
            self.tokens = tokens;
            return self.err(n, e);
        }
        self.command(n, &tokens, counters);
        tokens.clear();
        self.tokens = tokens;
    }

    fn command(&mut self, n: usize, tokens: &[Cow<'t, str>], counters: Option<Counters>) {
        let Some(table) = self.table.as_mut() else {
            return;
        };
        let Some(cmd) = tokens.first() else {
            return self.err(n, "empty command");
        };
        match cmd.as_ref() {
            "-A" | "--append" | "-I" | "--insert" => {
                let insert = matches!(cmd.as_ref(), "-I" | "--insert");
                let Some(chain_name) = tokens.get(1) else {
                    return self.err(n, format!("{cmd} without a chain name"));
                };
                let mut args = &tokens[2..];
                let mut pos = None;
                if insert && let Some(Ok(p)) = args.first().map(|a| a.parse::<usize>()) {
                    pos = Some(p);
                    args = &args[1..];
                }
                let table_name = self.table_name.as_str();
                let rule = parse_rule_args(
                    args,
                    self.family,
                    table_name,
                    &self.index,
                    n,
                    &mut self.out.diagnostics,
                );
                let Some(mut rule) = rule else { return };
                if rule.counters.is_none() {
                    rule.counters = counters;
                }
                let table = self.table.as_mut().expect("checked above");
                match self.index.get(chain_name.as_ref()) {
                    Some(&ci) => {
                        let chain = &mut table.chains[ci];
                        if insert {
                            let at = pos.unwrap_or(1).saturating_sub(1).min(chain.rules.len());
                            chain.rules.insert(at, rule);
                        } else {
                            chain.rules.push(rule);
                        }
                    }
                    None => {
                        let msg = format!(
                            "rule for chain {chain_name}, which is not declared in table {table_name}"
                        );
                        self.err(n, msg)
                    }
                }
            }
            "-X" | "--delete-chain" => match tokens.get(1) {
                Some(c) => table.deleted.push(c.to_string()),
                None => self.err(n, "-X without a chain name"),
            },
            "-N" | "--new-chain" => match tokens.get(1) {
                Some(c) => {
                    if !self.index.contains_key(c.as_ref()) {
                        self.index.insert(c.to_string(), table.chains.len());
                        table.chains.push(Chain {
                            name: c.to_string(),
                            policy: None,
                            counters: Counters::default(),
                            rules: Vec::new(),
                        });
                    }
                }
                None => self.err(n, "-N without a chain name"),
            },
            other => self.err(
                n,
                format!("unsupported command `{other}` (expected -A, -I, -N or -X)"),
            ),
        }
    }
}

fn parse_chain_decl(decl: &str) -> Result<Chain, String> {
    let mut it = decl.split_whitespace();
    let name = it.next().ok_or("chain declaration without a name")?;
    let policy = it
        .next()
        .ok_or_else(|| format!("chain {name}: missing policy (`-` for user chains)"))?;
    let counters = match it.next() {
        Some(c) => parse_counters(c).ok_or_else(|| format!("chain {name}: bad counters {c}"))?,
        None => Counters::default(),
    };
    if let Some(extra) = it.next() {
        return Err(format!("chain {name}: unexpected `{extra}`"));
    }
    Ok(Chain {
        name: name.to_string(),
        policy: if policy == "-" {
            None
        } else {
            Some(policy.to_string())
        },
        counters,
        rules: Vec::new(),
    })
}

fn parse_counters(s: &str) -> Option<Counters> {
    let inner = s.strip_prefix('[')?.strip_suffix(']')?;
    let (p, b) = inner.split_once(':')?;
    Some(Counters {
        packets: p.parse().ok()?,
        bytes: b.parse().ok()?,
    })
}

fn split_counter_prefix(line: &str) -> Result<(Option<Counters>, &str), String> {
    if line.starts_with('[') {
        let end = line.find(']').ok_or("unterminated counter prefix")?;
        let c = parse_counters(&line[..=end])
            .ok_or_else(|| format!("bad counters {}", &line[..=end]))?;
        Ok((Some(c), line[end + 1..].trim_start()))
    } else {
        Ok((None, line))
    }
}

/// Split a command line into words the way iptables-restore does: whitespace separated, double
/// quotes group words, a backslash inside quotes escapes the next character.
pub fn tokenize(s: &str) -> Result<Vec<Cow<'_, str>>, String> {
    let mut out = Vec::with_capacity(24);
    tokenize_into(s, &mut out)?;
    Ok(out)
}

/// [`tokenize`] into a caller's buffer (appended).
pub fn tokenize_into<'s>(s: &'s str, out: &mut Vec<Cow<'s, str>>) -> Result<(), String> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= bytes.len() {
            break;
        }
        if bytes[i] == b'"' {
            let start = i + 1;
            let mut j = start;
            let mut owned: Option<String> = None;
            loop {
                if j >= bytes.len() {
                    return Err("unterminated quoted string".into());
                }
                match bytes[j] {
                    b'"' => break,
                    b'\\' if j + 1 < bytes.len() => {
                        let o = owned.get_or_insert_with(|| s[start..j].to_string());
                        // Push the escaped character (may be multi-byte: take the whole char).
                        let ch = s[j + 1..].chars().next().unwrap_or('\\');
                        o.push(ch);
                        j += 1 + ch.len_utf8();
                        continue;
                    }
                    _ => {
                        let ch = s[j..].chars().next().unwrap_or(' ');
                        if let Some(o) = owned.as_mut() {
                            o.push(ch);
                        }
                        j += ch.len_utf8();
                    }
                }
            }
            out.push(match owned {
                Some(o) => Cow::Owned(o),
                None => Cow::Borrowed(&s[start..j]),
            });
            i = j + 1;
        } else {
            let start = i;
            while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            out.push(Cow::Borrowed(&s[start..i]));
        }
    }
    Ok(())
}

pub(crate) fn parse_net(s: &str, family: Family) -> Option<IpNet> {
    if let Some((a, p)) = s.split_once('/') {
        let addr: IpAddr = a.parse().ok()?;
        // iptables also accepts a dotted mask (`/255.255.255.0`).
        let prefix: u8 = match p.parse::<u8>() {
            Ok(v) => v,
            Err(_) => {
                let m: Ipv4Addr = p.parse().ok()?;
                let bits = u32::from(m);
                if bits.leading_ones() + bits.trailing_zeros() != 32 {
                    return None;
                }
                bits.leading_ones() as u8
            }
        };
        // The kernel stores address & mask, so `-s 10.1.2.3/8` is saved as `10.0.0.0/8`.
        let net = IpNet::new(addr, prefix).ok()?.trunc();
        fam_ok(addr, family).then_some(net)
    } else {
        let addr: IpAddr = s.parse().ok()?;
        fam_ok(addr, family).then(|| IpNet::from(addr))
    }
}

fn fam_ok(a: IpAddr, f: Family) -> bool {
    matches!(
        (a, f),
        (IpAddr::V4(_), Family::V4) | (IpAddr::V6(_), Family::V6)
    )
}

fn parse_port(s: &str) -> Option<PortSpec> {
    match s.split_once(':') {
        Some((a, b)) => {
            let lo = if a.is_empty() { 0 } else { a.parse().ok()? };
            let hi = if b.is_empty() { 65535 } else { b.parse().ok()? };
            (lo <= hi).then_some(PortSpec { lo, hi })
        }
        None => {
            let p = s.parse().ok()?;
            Some(PortSpec { lo: p, hi: p })
        }
    }
}

fn parse_u32(s: &str) -> Option<u32> {
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u32::from_str_radix(h, 16).ok()
    } else {
        s.parse().ok()
    }
}

/// `value[/mask]`, the mask defaulting to all ones.
fn parse_mark(s: &str) -> Option<(u32, u32)> {
    match s.split_once('/') {
        Some((v, m)) => Some((parse_u32(v)?, parse_u32(m)?)),
        None => Some((parse_u32(s)?, u32::MAX)),
    }
}

fn is_option(tok: &str) -> bool {
    tok.len() > 1 && tok.starts_with('-') && tok.parse::<i64>().is_err()
}

/// A match being built.
struct Building {
    m: Match,
}

/// The words of a partly built match (to turn it into `Match::Unknown` without losing text).
fn raw_words(m: &Match) -> Vec<String> {
    let mut s = String::new();
    super::print::print_match(&mut s, m);
    match tokenize(&s) {
        Ok(t) => t.into_iter().skip(2).map(|w| w.into_owned()).collect(),
        Err(_) => Vec::new(),
    }
}

enum Accept {
    /// The option belongs to this match; the number of value words it consumed.
    Yes(usize),
    /// Not an option of this module.
    No,
    /// An option of this module that we don't model (the match becomes Unknown).
    Unmodelled,
}

fn new_match(module: &str, family: Family) -> Match {
    match module {
        "comment" => Match::Comment {
            comment: String::new(),
        },
        "tcp" | "udp" | "sctp" => Match::Ports {
            module: module.to_string(),
            sport: None,
            dport: None,
        },
        "multiport" => Match::Multiport {
            neg: false,
            kind: MultiportKind::Ports,
            ports: Vec::new(),
        },
        "statistic" => Match::Statistic(Statistic::Random {
            neg: false,
            fixed: 0,
        }),
        "recent" => Match::Recent(Recent {
            neg: false,
            action: RecentAction::Rcheck,
            seconds: None,
            reap: false,
            hitcount: None,
            rttl: false,
            name: "DEFAULT".to_string(),
            mask: match family {
                Family::V4 => IpAddr::V4(Ipv4Addr::BROADCAST),
                Family::V6 => IpAddr::V6(Ipv6Addr::from(u128::MAX)),
            },
            rdest: false,
        }),
        "mark" => Match::Mark {
            neg: false,
            value: 0,
            mask: u32::MAX,
        },
        "addrtype" => Match::AddrType {
            src: None,
            dst: None,
            limit_iface_in: false,
            limit_iface_out: false,
        },
        "conntrack" => Match::Conntrack { ctstate: None },
        "nfacct" => Match::Nfacct {
            name: String::new(),
        },
        "set" => Match::Set {
            neg: false,
            name: String::new(),
            dirs: Vec::new(),
        },
        other => Match::Unknown {
            module: other.to_string(),
            args: Vec::new(),
        },
    }
}

fn list<T: Copy>(s: &str, all: &[T], name: impl Fn(T) -> &'static str) -> Option<Vec<T>> {
    let mut v = Vec::new();
    for part in s.split(',') {
        let t = all
            .iter()
            .copied()
            .find(|t| name(*t).eq_ignore_ascii_case(part))?;
        v.push(t);
    }
    Some(v)
}

/// Offer option `opt` (with `neg` and the following words `vals`) to match `m`.
fn match_accept(
    m: &mut Match,
    opt: &str,
    neg: bool,
    vals: &[Cow<str>],
    family: Family,
) -> Result<Accept, String> {
    let val = |i: usize| -> Result<&str, String> {
        vals.get(i)
            .map(|v| v.as_ref())
            .ok_or_else(|| format!("{opt} needs a value"))
    };
    match m {
        Match::Comment { comment } => match opt {
            "--comment" => {
                *comment = val(0)?.to_string();
                Ok(Accept::Yes(1))
            }
            _ => Ok(Accept::No),
        },
        Match::Ports {
            module,
            sport,
            dport,
        } => match opt {
            "--sport" | "--source-port" | "--dport" | "--destination-port" => {
                let v = val(0)?;
                let p = parse_port(v).ok_or_else(|| format!("{opt}: bad port `{v}`"))?;
                let slot = if matches!(opt, "--sport" | "--source-port") {
                    sport
                } else {
                    dport
                };
                *slot = Some(Neg::new(neg, p));
                Ok(Accept::Yes(1))
            }
            "--tcp-flags" if module == "tcp" => Ok(Accept::Unmodelled),
            "--syn" | "--tcp-option" if module == "tcp" => Ok(Accept::Unmodelled),
            "--chunk-types" if module == "sctp" => Ok(Accept::Unmodelled),
            _ => Ok(Accept::No),
        },
        Match::Multiport {
            neg: n,
            kind,
            ports,
        } => {
            let k = match opt {
                "--sports" | "--source-ports" => MultiportKind::Sports,
                "--dports" | "--destination-ports" => MultiportKind::Dports,
                "--ports" => MultiportKind::Ports,
                _ => return Ok(Accept::No),
            };
            let v = val(0)?;
            let mut ps = Vec::new();
            for part in v.split(',') {
                ps.push(parse_port(part).ok_or_else(|| format!("{opt}: bad port `{part}`"))?);
            }
            *n = neg;
            *kind = k;
            *ports = ps;
            Ok(Accept::Yes(1))
        }
        Match::Statistic(st) => match opt {
            "--mode" => {
                let v = val(0)?;
                let n = match *st {
                    Statistic::Random { neg, .. } | Statistic::Nth { neg, .. } => neg,
                };
                *st = match v {
                    "random" => Statistic::Random { neg: n, fixed: 0 },
                    "nth" => Statistic::Nth {
                        neg: n,
                        every: 0,
                        packet: 0,
                    },
                    _ => return Err(format!("--mode: unknown statistic mode `{v}`")),
                };
                Ok(Accept::Yes(1))
            }
            "--probability" => {
                let v = val(0)?;
                let p: f64 = v
                    .parse()
                    .map_err(|_| format!("--probability: bad number `{v}`"))?;
                if !(0.0..=1.0).contains(&p) {
                    return Err(format!("--probability must be between 0 and 1, got {v}"));
                }
                *st = Statistic::Random {
                    neg,
                    fixed: Statistic::fixed_from_probability(p),
                };
                Ok(Accept::Yes(1))
            }
            "--every" | "--packet" => {
                let v = val(0)?;
                let x: u32 = v.parse().map_err(|_| format!("{opt}: bad number `{v}`"))?;
                if let Statistic::Nth {
                    neg: n,
                    every,
                    packet,
                } = st
                {
                    *n |= neg;
                    if opt == "--every" {
                        if x == 0 {
                            return Err("--every must be at least 1".into());
                        }
                        *every = x - 1; // the kernel stores every-1 (libxt_statistic)
                    } else {
                        *packet = x;
                    }
                    Ok(Accept::Yes(1))
                } else {
                    Err(format!("{opt} needs --mode nth"))
                }
            }
            _ => Ok(Accept::No),
        },
        Match::Recent(r) => match opt {
            "--set" | "--rcheck" | "--update" | "--remove" => {
                r.action = match opt {
                    "--set" => RecentAction::Set,
                    "--rcheck" => RecentAction::Rcheck,
                    "--update" => RecentAction::Update,
                    _ => RecentAction::Remove,
                };
                r.neg = neg;
                Ok(Accept::Yes(0))
            }
            "--seconds" | "--hitcount" => {
                let v = val(0)?;
                let x: u32 = v.parse().map_err(|_| format!("{opt}: bad number `{v}`"))?;
                if opt == "--seconds" {
                    r.seconds = Some(x);
                } else {
                    r.hitcount = Some(x);
                }
                Ok(Accept::Yes(1))
            }
            "--reap" => {
                r.reap = true;
                Ok(Accept::Yes(0))
            }
            "--rttl" => {
                r.rttl = true;
                Ok(Accept::Yes(0))
            }
            "--name" => {
                r.name = val(0)?.to_string();
                Ok(Accept::Yes(1))
            }
            "--mask" => {
                let v = val(0)?;
                let a: IpAddr = v
                    .parse()
                    .map_err(|_| format!("--mask: bad address `{v}`"))?;
                if !fam_ok(a, family) {
                    return Err(format!("--mask {v} is not of this table's family"));
                }
                r.mask = a;
                Ok(Accept::Yes(1))
            }
            "--rsource" => {
                r.rdest = false;
                Ok(Accept::Yes(0))
            }
            "--rdest" => {
                r.rdest = true;
                Ok(Accept::Yes(0))
            }
            _ => Ok(Accept::No),
        },
        Match::Mark {
            neg: n,
            value,
            mask,
        } => match opt {
            "--mark" => {
                let v = val(0)?;
                let (a, b) = parse_mark(v).ok_or_else(|| format!("--mark: bad value `{v}`"))?;
                *n = neg;
                *value = a;
                *mask = b;
                Ok(Accept::Yes(1))
            }
            _ => Ok(Accept::No),
        },
        Match::AddrType {
            src,
            dst,
            limit_iface_in,
            limit_iface_out,
        } => match opt {
            "--src-type" | "--dst-type" => {
                let v = val(0)?;
                let types = list(v, &AddrType::ALL, AddrType::as_str)
                    .ok_or_else(|| format!("{opt}: bad type list `{v}`"))?;
                let slot = if opt == "--src-type" { src } else { dst };
                *slot = Some(Neg::new(neg, types));
                Ok(Accept::Yes(1))
            }
            "--limit-iface-in" => {
                *limit_iface_in = true;
                Ok(Accept::Yes(0))
            }
            "--limit-iface-out" => {
                *limit_iface_out = true;
                Ok(Accept::Yes(0))
            }
            _ => Ok(Accept::No),
        },
        Match::Conntrack { ctstate } => match opt {
            "--ctstate" => {
                let v = val(0)?;
                let mut states = list(v, &CtState::ALL, CtState::as_str)
                    .ok_or_else(|| format!("--ctstate: bad state list `{v}`"))?;
                states.sort();
                states.dedup();
                *ctstate = Some(Neg::new(neg, states));
                Ok(Accept::Yes(1))
            }
            o if o.starts_with("--ct") => Ok(Accept::Unmodelled),
            _ => Ok(Accept::No),
        },
        Match::Nfacct { name } => match opt {
            "--nfacct-name" => {
                *name = val(0)?.to_string();
                Ok(Accept::Yes(1))
            }
            _ => Ok(Accept::No),
        },
        Match::Set { neg: n, name, dirs } => match opt {
            "--match-set" => {
                *name = val(0)?.to_string();
                let d = val(1)?;
                let mut v = Vec::new();
                for part in d.split(',') {
                    v.push(match part {
                        "src" => true,
                        "dst" => false,
                        _ => return Err(format!("--match-set: bad direction `{part}`")),
                    });
                }
                *n = neg;
                *dirs = v;
                Ok(Accept::Yes(2))
            }
            "--return-nomatch"
            | "--update-counters"
            | "--update-subcounters"
            | "--packets-eq"
            | "--packets-lt"
            | "--packets-gt"
            | "--bytes-eq"
            | "--bytes-lt"
            | "--bytes-gt"
            | "--no-update-counters"
            | "--no-update-subcounters" => Ok(Accept::Unmodelled),
            _ => Ok(Accept::No),
        },
        Match::Unknown { .. } => Ok(Accept::No),
    }
}

fn new_target(name: &str) -> Target {
    match name {
        "ACCEPT" => Target::Accept,
        "DROP" => Target::Drop,
        "RETURN" => Target::Return,
        "REJECT" => Target::Reject {
            with: String::new(),
        },
        "DNAT" => Target::Dnat {
            to: String::new(),
            random: false,
            persistent: false,
        },
        "SNAT" => Target::Snat {
            to: String::new(),
            random: false,
            random_fully: false,
            persistent: false,
        },
        "MASQUERADE" => Target::Masquerade {
            to_ports: None,
            random: false,
            random_fully: false,
        },
        "MARK" => Target::Mark {
            value: 0,
            mask: u32::MAX,
        },
        "LOG" => Target::Log {
            prefix: None,
            level: None,
        },
        other => Target::Unknown {
            name: other.to_string(),
            args: Vec::new(),
        },
    }
}

fn target_accept(t: &mut Target, opt: &str, vals: &[Cow<str>]) -> Result<Option<usize>, String> {
    let val = |i: usize| -> Result<&str, String> {
        vals.get(i)
            .map(|v| v.as_ref())
            .ok_or_else(|| format!("{opt} needs a value"))
    };
    Ok(match t {
        Target::Reject { with } if opt == "--reject-with" => {
            *with = val(0)?.to_string();
            Some(1)
        }
        Target::Dnat {
            to,
            random,
            persistent,
        } => match opt {
            "--to-destination" | "--to" => {
                *to = val(0)?.to_string();
                Some(1)
            }
            "--random" => {
                *random = true;
                Some(0)
            }
            "--persistent" => {
                *persistent = true;
                Some(0)
            }
            _ => None,
        },
        Target::Snat {
            to,
            random,
            random_fully,
            persistent,
        } => match opt {
            "--to-source" | "--to" => {
                *to = val(0)?.to_string();
                Some(1)
            }
            "--random" => {
                *random = true;
                Some(0)
            }
            "--random-fully" => {
                *random_fully = true;
                Some(0)
            }
            "--persistent" => {
                *persistent = true;
                Some(0)
            }
            _ => None,
        },
        Target::Masquerade {
            to_ports,
            random,
            random_fully,
        } => match opt {
            "--to-ports" => {
                *to_ports = Some(val(0)?.to_string());
                Some(1)
            }
            "--random" => {
                *random = true;
                Some(0)
            }
            "--random-fully" => {
                *random_fully = true;
                Some(0)
            }
            _ => None,
        },
        Target::Mark { value, mask } => {
            let v = match opt {
                "--set-xmark" | "--set-mark" | "--or-mark" | "--and-mark" | "--xor-mark" => val(0)?,
                _ => return Ok(None),
            };
            let bad = || format!("{opt}: bad mark `{v}`");
            // The kernel target only knows "xmark": mark = (mark & ~mask) ^ value; libxt_MARK
            // translates every user form into it, and iptables-save prints the xmark form.
            let (nv, nm) = match opt {
                "--set-xmark" => parse_mark(v).ok_or_else(bad)?,
                "--set-mark" => {
                    let (a, m) = parse_mark(v).ok_or_else(bad)?;
                    (a, a | m)
                }
                "--or-mark" => {
                    let a = parse_u32(v).ok_or_else(bad)?;
                    (a, a)
                }
                "--and-mark" => {
                    let a = parse_u32(v).ok_or_else(bad)?;
                    (0, !a)
                }
                _ => {
                    let a = parse_u32(v).ok_or_else(bad)?;
                    (a, 0)
                }
            };
            *value = nv;
            *mask = nm;
            Some(1)
        }
        Target::Log { prefix, level } => match opt {
            "--log-prefix" => {
                *prefix = Some(val(0)?.to_string());
                Some(1)
            }
            "--log-level" => {
                *level = Some(val(0)?.to_string());
                Some(1)
            }
            _ => None,
        },
        _ => None,
    })
}

/// Parse the arguments of one `-A CHAIN ...` line. Returns None (with an error diagnostic) when
/// the rule cannot be used at all.
pub(crate) fn parse_rule_args<S: BuildHasher>(
    args: &[Cow<str>],
    family: Family,
    table_name: &str,
    chains: &HashMap<String, usize, S>,
    line: usize,
    diags: &mut Vec<Diagnostic>,
) -> Option<Rule> {
    let mut rule = Rule::empty();
    rule.line = line;
    let mut building: Vec<Building> = Vec::new();
    let mut target: Option<Target> = None;
    let mut neg = false;
    let mut i = 0;
    let fail = |diags: &mut Vec<Diagnostic>, msg: String| {
        diags.push(Diagnostic::error(Some(line), "", msg));
        None
    };
    while i < args.len() {
        let tok = args[i].as_ref();
        i += 1;
        if tok == "!" {
            neg = true;
            continue;
        }
        let take_neg = std::mem::take(&mut neg);
        let next = |i: usize| args.get(i).map(|s| s.as_ref());
        match tok {
            "-s" | "--source" | "--src" | "-d" | "--destination" | "--dst" => {
                let Some(v) = next(i) else {
                    return fail(diags, format!("{tok} needs an address"));
                };
                i += 1;
                let Some(net) = parse_net(v, family) else {
                    return fail(
                        diags,
                        format!("{tok}: `{v}` is not an address or CIDR of this family"),
                    );
                };
                let slot = if tok.starts_with("-s") || tok.starts_with("--s") {
                    &mut rule.src
                } else {
                    &mut rule.dst
                };
                *slot = Some(Neg::new(take_neg, net));
            }
            "-i" | "--in-interface" | "-o" | "--out-interface" => {
                let Some(v) = next(i) else {
                    return fail(diags, format!("{tok} needs an interface"));
                };
                i += 1;
                // Linux interface names: 1..=15 bytes (IFNAMSIZ - 1), no whitespace, no '/'
                // (xtables_parse_interface refuses longer ones; the kernel refuses the rest).
                if v.is_empty()
                    || v.len() > 15
                    || v.bytes().any(|b| b.is_ascii_whitespace() || b == b'/')
                {
                    return fail(diags, format!("{tok}: `{v}` is not a valid interface name"));
                }
                let slot = if tok.starts_with("-i") || tok.starts_with("--in") {
                    &mut rule.in_iface
                } else {
                    &mut rule.out_iface
                };
                *slot = Some(Neg::new(take_neg, v.to_string()));
            }
            "-p" | "--protocol" => {
                let Some(v) = next(i) else {
                    return fail(diags, "-p needs a protocol".into());
                };
                i += 1;
                let Some(p) = ProtoNum::from_name(v) else {
                    return fail(diags, format!("-p: unknown protocol `{v}`"));
                };
                rule.proto = Some(Neg::new(take_neg, p));
            }
            "-m" | "--match" => {
                let Some(v) = next(i) else {
                    return fail(diags, "-m needs a module name".into());
                };
                i += 1;
                let m = new_match(v, family);
                if let Match::Unknown { module, .. } = &m {
                    diags.push(Diagnostic::warning(
                        Some(line),
                        "",
                        format!("unsupported match `-m {module}`: kept verbatim; the tracer cannot evaluate it"),
                    ));
                }
                building.push(Building { m });
            }
            "-j" | "--jump" | "-g" | "--goto" => {
                let Some(v) = next(i) else {
                    return fail(diags, format!("{tok} needs a target"));
                };
                i += 1;
                let goto = tok.starts_with("-g") || tok == "--goto";
                let declared = chains.contains_key(v);
                let t = if goto {
                    Target::Goto {
                        chain: v.to_string(),
                    }
                } else if declared {
                    Target::Jump {
                        chain: v.to_string(),
                    }
                } else {
                    let t = new_target(v);
                    if let Target::Unknown { name, .. } = &t {
                        diags.push(Diagnostic::warning(
                            Some(line),
                            "",
                            format!(
                                "unsupported target `-j {name}` (not a chain declared in table {}): kept verbatim; the tracer cannot follow it",
                                table_name
                            ),
                        ));
                    }
                    t
                };
                if goto && !declared {
                    diags.push(Diagnostic::error(
                        Some(line),
                        "",
                        format!("-g {v}: chain not declared in table {table_name}"),
                    ));
                }
                target = Some(t);
            }
            "-c" | "--set-counters" => {
                let (Some(p), Some(b)) = (next(i), next(i + 1)) else {
                    return fail(diags, "-c needs packets and bytes".into());
                };
                i += 2;
                match (p.parse(), b.parse()) {
                    (Ok(packets), Ok(bytes)) => rule.counters = Some(Counters { packets, bytes }),
                    _ => return fail(diags, format!("-c: bad counters `{p} {b}`")),
                }
            }
            "-f" | "--fragment" => {
                return fail(diags, "-f (fragments) is not supported".into());
            }
            opt if is_option(opt) => {
                // Values are the following words up to the next option or `!`.
                let mut end = i;
                while end < args.len() && !is_option(&args[end]) && args[end] != "!" {
                    end += 1;
                }
                let vals = &args[i..end];
                // 1. the target, if one was given
                if let Some(t) = target.as_mut() {
                    if let Target::Unknown { args: uargs, .. } = t {
                        if take_neg {
                            uargs.push("!".into());
                        }
                        uargs.push(opt.to_string());
                        uargs.extend(vals.iter().map(|v| v.to_string()));
                        i = end;
                        continue;
                    }
                    match target_accept(t, opt, vals) {
                        Ok(Some(n)) => {
                            i += n;
                            continue;
                        }
                        Ok(None) => {}
                        Err(e) => return fail(diags, e),
                    }
                }
                // 2. the most recent match that knows the option
                let mut taken = false;
                for b in building.iter_mut().rev() {
                    match match_accept(&mut b.m, opt, take_neg, vals, family) {
                        Ok(Accept::Yes(n)) => {
                            i += n;
                            taken = true;
                            break;
                        }
                        Ok(Accept::No) => {}
                        Ok(Accept::Unmodelled) => {
                            let module = match_module_name(&b.m);
                            diags.push(Diagnostic::warning(
                                Some(line),
                                "",
                                format!("unsupported option `{opt}` of `-m {module}`: match kept verbatim; the tracer cannot evaluate it"),
                            ));
                            let mut raw = raw_words(&b.m);
                            if take_neg {
                                raw.push("!".into());
                            }
                            raw.push(opt.to_string());
                            raw.extend(vals.iter().map(|v| v.to_string()));
                            b.m = Match::Unknown { module, args: raw };
                            i = end;
                            taken = true;
                            break;
                        }
                        Err(e) => return fail(diags, e),
                    }
                }
                if taken {
                    continue;
                }
                // 3. an unknown module swallows options nobody else knows
                if let Some(b) = building
                    .iter_mut()
                    .rev()
                    .find(|b| matches!(b.m, Match::Unknown { .. }))
                {
                    if let Match::Unknown { args: uargs, .. } = &mut b.m {
                        if take_neg {
                            uargs.push("!".into());
                        }
                        uargs.push(opt.to_string());
                        uargs.extend(vals.iter().map(|v| v.to_string()));
                    }
                    i = end;
                    continue;
                }
                // 4. implicit protocol match (`-p tcp --dport 80`)
                if let Some(p) = rule.proto.as_ref().and_then(|p| p.value.name())
                    && matches!(p, "tcp" | "udp" | "sctp")
                    && !building
                        .iter()
                        .any(|b| matches!(&b.m, Match::Ports { module, .. } if module == p))
                {
                    let mut m = new_match(p, family);
                    match match_accept(&mut m, opt, take_neg, vals, family) {
                        Ok(Accept::Yes(n)) => {
                            building.push(Building { m });
                            i += n;
                            continue;
                        }
                        Err(e) => return fail(diags, e),
                        _ => {}
                    }
                }
                return fail(diags, format!("unknown option `{opt}`"));
            }
            other => return fail(diags, format!("unexpected word `{other}`")),
        }
    }
    if neg {
        return fail(diags, "`!` at the end of the rule".into());
    }
    // Exactly sized: a dump's rules are kept for the whole session.
    rule.matches.reserve_exact(building.len());
    for b in building {
        if let Err(e) = validate_match(&b.m) {
            return fail(diags, e);
        }
        rule.matches.push(b.m);
    }
    if let Some(mut t) = target {
        if let Target::Reject { with } = &mut t
            && with.is_empty()
        {
            // What REJECT does (and iptables-save prints) when no --reject-with is given.
            *with = match family {
                Family::V4 => "icmp-port-unreachable",
                Family::V6 => "icmp6-port-unreachable",
            }
            .to_string();
        }
        if let Err(e) = validate_target(&t) {
            return fail(diags, e);
        }
        rule.target = Some(t);
    }
    Some(rule)
}

fn match_module_name(m: &Match) -> String {
    match m {
        Match::Comment { .. } => "comment".into(),
        Match::Ports { module, .. } => module.clone(),
        Match::Multiport { .. } => "multiport".into(),
        Match::Statistic(_) => "statistic".into(),
        Match::Recent(_) => "recent".into(),
        Match::Mark { .. } => "mark".into(),
        Match::AddrType { .. } => "addrtype".into(),
        Match::Conntrack { .. } => "conntrack".into(),
        Match::Nfacct { .. } => "nfacct".into(),
        Match::Set { .. } => "set".into(),
        Match::Unknown { module, .. } => module.clone(),
    }
}

/// Reject what the real iptables would refuse to load.
fn validate_match(m: &Match) -> Result<(), String> {
    match m {
        Match::Comment { comment } if comment.len() > 255 => {
            Err("--comment is longer than 255 characters".into())
        }
        Match::Multiport { ports, .. } if ports.is_empty() => {
            Err("-m multiport needs --ports/--sports/--dports".into())
        }
        Match::Nfacct { name } if name.is_empty() => Err("-m nfacct needs --nfacct-name".into()),
        Match::Set { name, .. } if name.is_empty() => Err("-m set needs --match-set".into()),
        Match::AddrType {
            src: None,
            dst: None,
            ..
        } => Err("-m addrtype needs --src-type or --dst-type".into()),
        Match::Mark { .. } | Match::Conntrack { .. } | Match::Comment { .. } => Ok(()),
        _ => Ok(()),
    }
}

fn validate_target(t: &Target) -> Result<(), String> {
    match t {
        Target::Dnat { to, .. } if to.is_empty() => Err("-j DNAT needs --to-destination".into()),
        Target::Snat { to, .. } if to.is_empty() => Err("-j SNAT needs --to-source".into()),
        _ => Ok(()),
    }
}
