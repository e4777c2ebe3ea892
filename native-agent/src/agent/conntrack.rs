//! `conntrack -L` text → entries. Tolerant: a line it cannot read becomes a diagnostic naming the
//! line, never a panic.
//!
//! Line shape (conntrack-tools `conntrack -L`, default output):
//! `tcp 6 117 TIME_WAIT src=A dst=B sport=P dport=Q src=C dst=D sport=R dport=S [ASSURED] mark=0 use=1`
//! — protocol name and number, seconds left, the protocol state when the protocol has one (TCP,
//! SCTP, DCCP), then the original-direction tuple, then the reply tuple (the second `src=` starts
//! it), flags in brackets and attributes. With `-o extended` the line starts with
//! `ipv4 2` / `ipv6 10`, which is skipped.

use serde::Serialize;

/// One direction of a connection as the kernel tracks it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Tuple {
    pub src: String,
    pub dst: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dport: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub proto: String,
    pub protonum: u8,
    /// Seconds until the entry expires. Left out of change detection: it ticks every second.
    pub timeout: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    pub orig: Tuple,
    pub reply: Tuple,
    /// `ASSURED`, `UNREPLIED`, `OFFLOAD`, ... without brackets.
    pub flags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mark: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<u16>,
    /// Where the connection really goes when it was DNATed (a Service's ClusterIP → a Pod): the
    /// kernel stores the translated address as the *source* of the reply tuple, so DNAT shows as
    /// `reply.src:sport != orig.dst:dport`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dnat: Option<String>,
    /// The source the connection was rewritten to (MASQUERADE / SNAT): `reply.dst != orig.src`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snat: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Parsed {
    pub entries: Vec<Entry>,
    pub diagnostics: Vec<Diagnostic>,
}

fn endpoint(addr: &str, port: Option<u16>) -> String {
    match port {
        Some(p) if addr.contains(':') => format!("[{addr}]:{p}"),
        Some(p) => format!("{addr}:{p}"),
        None => addr.to_string(),
    }
}

fn parse_line(line: &str) -> Result<Entry, String> {
    let mut toks: Vec<&str> = line.split_whitespace().collect();
    if matches!(toks.first(), Some(&"ipv4") | Some(&"ipv6")) {
        toks.drain(..toks.len().min(2));
    }
    let [proto, num, timeout, rest @ ..] = toks.as_slice() else {
        return Err("expected `PROTO NUMBER TIMEOUT ...`".into());
    };
    let protonum = num
        .parse::<u8>()
        .map_err(|_| format!("protocol number {num:?} is not 0-255"))?;
    let timeout = timeout
        .parse::<u64>()
        .map_err(|_| format!("timeout {timeout:?} is not a number of seconds"))?;
    let mut e = Entry {
        proto: proto.to_string(),
        protonum,
        timeout,
        state: None,
        orig: Tuple::default(),
        reply: Tuple::default(),
        flags: Vec::new(),
        mark: None,
        zone: None,
        dnat: None,
        snat: None,
    };
    // 0 = before the first tuple, 1 = original, 2 = reply.
    let mut dir = 0;
    for t in rest {
        if let Some(flag) = t.strip_prefix('[').and_then(|f| f.strip_suffix(']')) {
            e.flags.push(flag.to_string());
            continue;
        }
        let Some((k, v)) = t.split_once('=') else {
            if dir == 0 && e.state.is_none() {
                e.state = Some(t.to_string());
                continue;
            }
            return Err(format!("unexpected word {t:?}"));
        };
        if k == "src" {
            dir += 1;
            if dir > 2 {
                return Err("more than two src= tuples".into());
            }
        }
        let port = |v: &str| {
            v.parse::<u16>()
                .map(Some)
                .map_err(|_| format!("{k}={v:?} is not a port"))
        };
        let tuple = match dir {
            1 => &mut e.orig,
            2 => &mut e.reply,
            _ => return Err(format!("{k}= before the first src=")),
        };
        match k {
            "src" | "dst" => {
                v.parse::<std::net::IpAddr>()
                    .map_err(|_| format!("{k}={v:?} is not an IP address"))?;
                if k == "src" {
                    tuple.src = v.to_string();
                } else {
                    tuple.dst = v.to_string();
                }
            }
            "sport" => tuple.sport = port(v)?,
            "dport" => tuple.dport = port(v)?,
            "mark" => {
                e.mark = Some(
                    v.parse()
                        .map_err(|_| format!("mark={v:?} is not a number"))?,
                )
            }
            "zone" => {
                e.zone = Some(
                    v.parse()
                        .map_err(|_| format!("zone={v:?} is not a number"))?,
                )
            }
            // type/code/id (ICMP), use, secctx, labels, delta-time ...: not modelled.
            _ => {}
        }
    }
    if dir != 2 || e.orig.dst.is_empty() || e.reply.src.is_empty() {
        return Err("expected an original and a reply tuple (src=… dst=… twice)".into());
    }
    let orig_dst = endpoint(&e.orig.dst, e.orig.dport);
    let real_dst = endpoint(&e.reply.src, e.reply.sport);
    if orig_dst != real_dst {
        e.dnat = Some(real_dst);
    }
    let orig_src = endpoint(&e.orig.src, e.orig.sport);
    let seen_src = endpoint(&e.reply.dst, e.reply.dport);
    if orig_src != seen_src {
        e.snat = Some(seen_src);
    }
    Ok(e)
}

/// Parse `conntrack -L` stdout. The summary line (`N flow entries have been shown`) goes to
/// stderr and is not expected here, but is tolerated.
pub fn parse(text: &str) -> Parsed {
    let mut p = Parsed::default();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with("conntrack v") {
            continue;
        }
        match parse_line(line) {
            Ok(e) => p.entries.push(e),
            Err(message) => p.diagnostics.push(Diagnostic {
                line: i + 1,
                message,
            }),
        }
    }
    p
}
