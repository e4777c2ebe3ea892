//! `ipset save` and `ipset list` text (ipset 7.x), printed byte for byte and parsed back.
//!
//! kube-proxy's IPVS mode keeps its match lists in ipsets (`KUBE-CLUSTER-IP` hash:ip,port,
//! `KUBE-LOOP-BACK` hash:ip,port,ip, `KUBE-NODE-PORT-TCP` bitmap:port,
//! `KUBE-LOAD-BALANCER-SOURCE-CIDR` hash:ip,port,net, ...). Elements of those types are typed;
//! any other type keeps its elements as text ([`Element::Other`]) so nothing is lost.
//!
//! What the real tool does that this reproduces: `save` writes `create NAME TYPE header...` then
//! one `add NAME ELEMENT [options]` per member; `list` writes the eight header lines per set and
//! separates sets with one empty line; the protocol of an `ip,port` element is always spelled
//! out (`tcp:80`); a host-sized net (`/32`, `/128`) prints without its prefix; member
//! comments are double-quoted. Members keep the kernel's (hash) order.

use serde::{Deserialize, Serialize};
use std::fmt::{self, Write as _};
use std::net::IpAddr;

/// One `key [value]` of a header or a member, in the order printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Opt {
    pub key: String,
    /// `None` for flags (`comment` and `counters` in a header, `nomatch` on a member).
    pub value: Option<String>,
}

/// A member of a set, typed for the kube-proxy set types.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Element {
    /// hash:ip
    Ip(IpAddr),
    /// hash:net (prefix omitted when it covers a single host)
    Net(IpAddr, u8),
    /// hash:ip,port
    IpPort {
        ip: IpAddr,
        proto: String,
        port: u16,
    },
    /// hash:ip,port,ip
    IpPortIp {
        ip: IpAddr,
        proto: String,
        port: u16,
        ip2: IpAddr,
    },
    /// hash:ip,port,net
    IpPortNet {
        ip: IpAddr,
        proto: String,
        port: u16,
        net: IpAddr,
        prefix: u8,
    },
    /// bitmap:port
    Port(u16),
    /// Any other set type: the text as printed.
    Other(String),
}

fn host_prefix(a: IpAddr) -> u8 {
    if a.is_ipv4() { 32 } else { 128 }
}

fn net_text(a: IpAddr, p: u8) -> String {
    if p == host_prefix(a) {
        a.to_string()
    } else {
        format!("{a}/{p}")
    }
}

impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Element::Ip(a) => write!(f, "{a}"),
            Element::Net(a, p) => f.write_str(&net_text(*a, *p)),
            Element::IpPort { ip, proto, port } => write!(f, "{ip},{proto}:{port}"),
            Element::IpPortIp {
                ip,
                proto,
                port,
                ip2,
            } => write!(f, "{ip},{proto}:{port},{ip2}"),
            Element::IpPortNet {
                ip,
                proto,
                port,
                net,
                prefix,
            } => {
                write!(f, "{ip},{proto}:{port},{}", net_text(*net, *prefix))
            }
            Element::Port(p) => write!(f, "{p}"),
            Element::Other(s) => f.write_str(s),
        }
    }
}

fn parse_net(s: &str) -> Result<(IpAddr, u8), String> {
    let (a, p) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let a: IpAddr = a.parse().map_err(|_| format!("{a:?} is not an address"))?;
    let p = match p {
        None => host_prefix(a),
        Some(p) => {
            let p: u8 = p
                .parse()
                .map_err(|_| format!("{p:?} is not a prefix length"))?;
            if p > host_prefix(a) {
                return Err(format!("prefix /{p} is too long for {a}"));
            }
            p
        }
    };
    Ok((a, p))
}

/// `proto:port`; ipset also accepts a bare port (tcp).
fn parse_proto_port(s: &str) -> Result<(String, u16), String> {
    let (proto, port) = s.split_once(':').unwrap_or(("tcp", s));
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{port:?} is not a port"))?;
    Ok((proto.to_string(), port))
}

impl Element {
    /// Parse an element as the given set type prints it.
    pub fn parse(set_type: &str, s: &str) -> Result<Element, String> {
        let parts: Vec<&str> = s.split(',').collect();
        let ip = |t: &str| {
            t.parse::<IpAddr>()
                .map_err(|_| format!("{t:?} is not an address"))
        };
        Ok(match (set_type, parts.as_slice()) {
            ("hash:ip", [a]) => Element::Ip(ip(a)?),
            ("hash:net", [n]) => {
                let (a, p) = parse_net(n)?;
                Element::Net(a, p)
            }
            ("hash:ip,port", [a, pp]) => {
                let (proto, port) = parse_proto_port(pp)?;
                Element::IpPort {
                    ip: ip(a)?,
                    proto,
                    port,
                }
            }
            ("hash:ip,port,ip", [a, pp, b]) => {
                let (proto, port) = parse_proto_port(pp)?;
                Element::IpPortIp {
                    ip: ip(a)?,
                    proto,
                    port,
                    ip2: ip(b)?,
                }
            }
            ("hash:ip,port,net", [a, pp, n]) => {
                let (proto, port) = parse_proto_port(pp)?;
                let (net, prefix) = parse_net(n)?;
                Element::IpPortNet {
                    ip: ip(a)?,
                    proto,
                    port,
                    net,
                    prefix,
                }
            }
            ("bitmap:port", [p]) => {
                Element::Port(p.parse().map_err(|_| format!("{p:?} is not a port"))?)
            }
            (t, _)
                if matches!(
                    t,
                    "hash:ip"
                        | "hash:net"
                        | "hash:ip,port"
                        | "hash:ip,port,ip"
                        | "hash:ip,port,net"
                        | "bitmap:port"
                ) =>
            {
                return Err(format!("{s:?} is not an element of a {t} set"));
            }
            _ => Element::Other(s.to_string()),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub elem: Element,
    /// `timeout N`, `packets N`, `bytes N`, `comment "..."`, `nomatch`, ...
    pub opts: Vec<Opt>,
}

/// One set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpSet {
    pub name: String,
    /// e.g. `hash:ip,port`.
    pub set_type: String,
    /// `family inet hashsize 1024 maxelem 65536 comment bucketsize 12 initval 0x...` as tokens.
    pub header: Vec<Opt>,
    /// Kernel-reported fields only `list` shows (the type's revision, its memory use, how many
    /// rules reference it); `None` when read from `save` output.
    pub revision: Option<u32>,
    pub size_in_memory: Option<u64>,
    pub references: Option<u32>,
    pub members: Vec<Member>,
}

fn write_opts(out: &mut String, opts: &[Opt]) {
    for o in opts {
        out.push(' ');
        out.push_str(&o.key);
        if let Some(v) = &o.value {
            if o.key == "comment" {
                let _ = write!(out, " \"{v}\"");
            } else {
                let _ = write!(out, " {v}");
            }
        }
    }
}

/// `ipset save`.
pub fn print_save(sets: &[IpSet]) -> String {
    let mut out = String::new();
    for s in sets {
        let _ = write!(out, "create {} {}", s.name, s.set_type);
        write_opts(&mut out, &s.header);
        out.push('\n');
        for m in &s.members {
            let _ = write!(out, "add {} {}", s.name, m.elem);
            write_opts(&mut out, &m.opts);
            out.push('\n');
        }
    }
    out
}

/// `ipset list`. Kernel-reported fields that are unknown print as 0.
pub fn print_list(sets: &[IpSet]) -> String {
    let mut out = String::new();
    for (i, s) in sets.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let mut header = String::new();
        write_opts(&mut header, &s.header);
        let _ = write!(
            out,
            "Name: {}\nType: {}\nRevision: {}\nHeader:{}\nSize in memory: {}\nReferences: {}\n\
             Number of entries: {}\nMembers:\n",
            s.name,
            s.set_type,
            s.revision.unwrap_or(0),
            header,
            s.size_in_memory.unwrap_or(0),
            s.references.unwrap_or(0),
            s.members.len()
        );
        for m in &s.members {
            let _ = write!(out, "{}", m.elem);
            let mut o = String::new();
            write_opts(&mut o, &m.opts);
            out.push_str(&o);
            out.push('\n');
        }
    }
    out
}

/// A problem found while parsing, with its 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Parsed {
    pub sets: Vec<IpSet>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Split on blanks, keeping a `"double quoted"` run (a comment) as one token (quotes removed;
/// ipset refuses `"` inside a comment, so there is no escaping).
fn tokens(s: &str) -> Result<Vec<(String, bool)>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            chars.next();
            let mut t = String::new();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some(ch) => t.push(ch),
                    None => return Err("unterminated quoted string".into()),
                }
            }
            out.push((t, true));
        } else {
            let mut t = String::new();
            while let Some(&ch) = chars.peek() {
                if ch.is_whitespace() {
                    break;
                }
                t.push(ch);
                chars.next();
            }
            out.push((t, false));
        }
    }
    Ok(out)
}

/// Header keywords that stand alone; every other header keyword takes a value.
const HEADER_FLAGS: [&str; 4] = ["comment", "counters", "skbinfo", "forceadd"];
/// Member keywords that stand alone.
const MEMBER_FLAGS: [&str; 1] = ["nomatch"];

fn opts(toks: &[(String, bool)], flags: &[&str]) -> Result<Vec<Opt>, String> {
    let mut out = Vec::new();
    let mut it = toks.iter();
    while let Some((k, quoted)) = it.next() {
        if *quoted {
            return Err(format!("unexpected quoted {k:?}"));
        }
        if flags.contains(&k.as_str()) {
            out.push(Opt {
                key: k.clone(),
                value: None,
            });
        } else {
            let (v, _) = it.next().ok_or_else(|| format!("{k:?} needs a value"))?;
            out.push(Opt {
                key: k.clone(),
                value: Some(v.clone()),
            });
        }
    }
    Ok(out)
}

/// Parse `ipset save` output (`create` / `add` lines).
pub fn parse_save(text: &str) -> Parsed {
    let mut p = Parsed::default();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        if let Err(message) = save_line(raw, &mut p.sets) {
            p.diagnostics.push(Diagnostic { line, message });
        }
    }
    p
}

fn save_line(raw: &str, sets: &mut Vec<IpSet>) -> Result<(), String> {
    let toks = tokens(raw)?;
    match toks.as_slice() {
        [(cmd, false), (name, false), (ty, false), rest @ ..] if cmd == "create" => {
            if sets.iter().any(|s| &s.name == name) {
                return Err(format!("set {name:?} is created twice"));
            }
            sets.push(IpSet {
                name: name.clone(),
                set_type: ty.clone(),
                header: opts(rest, &HEADER_FLAGS)?,
                revision: None,
                size_in_memory: None,
                references: None,
                members: Vec::new(),
            });
            Ok(())
        }
        [(cmd, false), (name, false), (elem, false), rest @ ..] if cmd == "add" => {
            let set = sets
                .iter_mut()
                .find(|s| &s.name == name)
                .ok_or_else(|| format!("add to set {name:?} before its create line"))?;
            let elem = Element::parse(&set.set_type, elem)?;
            set.members.push(Member {
                elem,
                opts: member_opts(rest)?,
            });
            Ok(())
        }
        _ => Err("expected \"create NAME TYPE ...\" or \"add NAME ELEMENT ...\"".into()),
    }
}

/// Member options: `comment` takes the (quoted) next token.
fn member_opts(toks: &[(String, bool)]) -> Result<Vec<Opt>, String> {
    opts(toks, &MEMBER_FLAGS)
}

/// Parse `ipset list` output.
pub fn parse_list(text: &str) -> Parsed {
    let mut p = Parsed::default();
    let mut in_members = false;
    let mut declared: Option<(usize, usize)> = None; // (line, count) of "Number of entries"
    let check_count = |p: &mut Parsed, declared: Option<(usize, usize)>| {
        if let (Some((line, n)), Some(s)) = (declared, p.sets.last())
            && s.members.len() != n
        {
            let message = format!("says {n} entries but {} members follow", s.members.len());
            p.diagnostics.push(Diagnostic { line, message });
        }
    };
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.is_empty() {
            continue;
        }
        let r: Result<(), String> = (|| {
            if let Some(name) = raw.strip_prefix("Name: ") {
                check_count(&mut p, declared.take());
                in_members = false;
                p.sets.push(IpSet {
                    name: name.to_string(),
                    set_type: String::new(),
                    header: Vec::new(),
                    revision: None,
                    size_in_memory: None,
                    references: None,
                    members: Vec::new(),
                });
                return Ok(());
            }
            let set = p
                .sets
                .last_mut()
                .ok_or("text before the first \"Name:\" line")?;
            if in_members {
                let toks = tokens(raw)?;
                let ((elem, _), rest) = toks.split_first().ok_or("empty member")?;
                let elem = Element::parse(&set.set_type, elem)?;
                set.members.push(Member {
                    elem,
                    opts: member_opts(rest)?,
                });
                return Ok(());
            }
            let num = |v: &str| {
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("{v:?} is not a number"))
            };
            if let Some(v) = raw.strip_prefix("Type: ") {
                set.set_type = v.to_string();
            } else if let Some(v) = raw.strip_prefix("Revision: ") {
                set.revision = Some(num(v)? as u32);
            } else if let Some(v) = raw.strip_prefix("Header:") {
                set.header = opts(&tokens(v)?, &HEADER_FLAGS)?;
            } else if let Some(v) = raw.strip_prefix("Size in memory: ") {
                set.size_in_memory = Some(num(v)?);
            } else if let Some(v) = raw.strip_prefix("References: ") {
                set.references = Some(num(v)? as u32);
            } else if let Some(v) = raw.strip_prefix("Number of entries: ") {
                declared = Some((line, num(v)? as usize));
            } else if raw == "Members:" {
                in_members = true;
            } else {
                return Err(format!("unexpected line {raw:?}"));
            }
            Ok(())
        })();
        if let Err(message) = r {
            p.diagnostics.push(Diagnostic { line, message });
        }
    }
    check_count(&mut p, declared);
    p
}
