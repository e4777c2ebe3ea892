//! nfnetlink without tools: per-rule packet counters of nf_tables (what `iptables-nft-save -c`
//! prints) and the conntrack table (what `conntrack -L` prints), read over a netlink socket
//! opened inside the node namespace.
//!
//! Why not the tools: the differential suite reads counters and conntrack after every flow, and
//! a tool process per read (plus its nf_tables cache build) cost more than everything else the
//! suite does. A socket keeps the namespace it was created in, so one socket per world serves
//! every read from any thread. The message layouts are the kernel's uapi
//! (`linux/netfilter/nfnetlink.h`, `nf_tables.h`, `nfnetlink_conntrack.h`); the parsers are pure
//! functions over the received bytes and never panic on malformed input.
//!
//! iptables-legacy keeps its rules in x_tables blobs, not nf_tables: with that backend counters
//! still come from `iptables-legacy-save -c`.

use super::netfilter::CtEntry;
use super::sys::{self, SysError};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;

const NETLINK_NETFILTER: libc::c_int = 12;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLA_TYPE_MASK: u16 = 0x3fff;

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const NFT_MSG_GETRULE: u16 = 7;

const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_COUNTER_PACKETS: u16 = 2;
const NFTA_IMMEDIATE_DATA: u16 = 2;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
/// Verdict codes (`linux/netfilter.h`, `nf_tables.h`).
const NF_DROP: i32 = 0;
const NFT_JUMP: i32 = -3;
const NFT_GOTO: i32 = -4;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;

/// nfgenmsg families.
pub const NFPROTO_IPV4: u8 = 2;
pub const NFPROTO_IPV6: u8 = 10;
const AF_UNSPEC: u8 = 0;

/// One rule's packet counter and whether the rule drops what it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RuleCount {
    pub packets: u64,
    /// `-j DROP`, or a jump to `KUBE-MARK-DROP` (whose mark the filter table drops).
    pub drops: bool,
}

/// Counters of every rule of one family, keyed (table, chain) → counters in rule order (so
/// index `i` is the rule `iptables-save` prints `i + 1`-th in that chain).
pub type RuleCounters = BTreeMap<(String, String), Vec<RuleCount>>;

/// A netlink socket of the netfilter family bound inside one network namespace.
pub struct NfSocket {
    fd: OwnedFd,
    /// Requests are answered in order; one caller at a time keeps the replies apart. Holds the
    /// sequence number and the receive buffer.
    lock: Mutex<(u32, Vec<u8>)>,
    ns: String,
}

impl std::fmt::Debug for NfSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NfSocket({})", self.ns)
    }
}

impl NfSocket {
    /// Open the socket from a thread inside `ns`; it stays bound to that namespace.
    pub fn open(ns: &str) -> Result<NfSocket, SysError> {
        let fd = sys::in_netns(ns, || {
            // SAFETY: plain socket(2); the returned fd is owned below.
            let fd = unsafe {
                libc::socket(
                    libc::AF_NETLINK,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    NETLINK_NETFILTER,
                )
            };
            if fd < 0 {
                return Err(SysError(format!(
                    "netlink socket in {ns}: {}",
                    std::io::Error::last_os_error()
                )));
            }
            // SAFETY: fd is a fresh descriptor nobody else owns.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        })??;
        // Replies of a dump must not be lost to a small receive buffer.
        let size: libc::c_int = 4 << 20;
        // SAFETY: setsockopt with a valid int option on our socket; failure only leaves the
        // default size, which recv handles (the kernel splits dumps to fit).
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        Ok(NfSocket {
            fd,
            lock: Mutex::new((0, vec![0u8; 1 << 20])),
            ns: ns.to_owned(),
        })
    }

    /// Send one request and collect the payloads (after the nlmsghdr) of every reply message
    /// until the dump ends or the ACK arrives. `ENOENT` is an empty answer.
    fn request(
        &self,
        msg_type: u16,
        flags: u16,
        family: u8,
        attrs: &[u8],
    ) -> Result<Vec<Vec<u8>>, SysError> {
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let (seq, buf) = &mut *guard;
        *seq = seq.wrapping_add(1);
        let len = 16 + 4 + attrs.len();
        let mut msg = Vec::with_capacity(len);
        msg.extend_from_slice(&(len as u32).to_ne_bytes());
        msg.extend_from_slice(&msg_type.to_ne_bytes());
        msg.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        // nfgenmsg: family, version 0 (NFNETLINK_V0), resource id 0 (big endian).
        msg.extend_from_slice(&[family, 0, 0, 0]);
        msg.extend_from_slice(attrs);
        let err = |what: &str| {
            SysError(format!(
                "netlink {what} in {}: {}",
                self.ns,
                std::io::Error::last_os_error()
            ))
        };
        // SAFETY: sending our own buffer on our socket (the kernel is the default peer).
        let sent = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if sent < 0 {
            return Err(err("send"));
        }
        let mut out = Vec::new();
        // Bounded: a dump of a few hundred rules or entries is a handful of datagrams.
        for _ in 0..100_000 {
            // SAFETY: receiving into our own buffer of the given length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(err("recv"));
            }
            for m in messages(&buf[..n as usize]) {
                if m.seq != *seq {
                    continue;
                }
                match m.kind {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let code = m
                            .payload
                            .get(..4)
                            .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                            .unwrap_or(-libc::EIO);
                        if code == 0 || code == -libc::ENOENT {
                            return Ok(out);
                        }
                        return Err(SysError(format!(
                            "netlink request {msg_type:#x} in {}: {}",
                            self.ns,
                            std::io::Error::from_raw_os_error(-code)
                        )));
                    }
                    _ => out.push(m.payload.to_vec()),
                }
            }
        }
        Err(SysError(format!(
            "netlink request {msg_type:#x} in {}: no end of dump",
            self.ns
        )))
    }

    /// Packet counters of every nf_tables rule of a family (`NFT_MSG_GETRULE` dump).
    pub fn rule_counters(&self, nfproto: u8) -> Result<RuleCounters, SysError> {
        let msgs = self.request(
            (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETRULE,
            NLM_F_DUMP,
            nfproto,
            &[],
        )?;
        let mut out = RuleCounters::new();
        let mut current: Option<((String, String), Vec<RuleCount>)> = None;
        // A dump lists each chain's rules together, in order: group runs, insert once per chain.
        for m in &msgs {
            let Some((table, chain, count)) = parse_rule(m) else {
                continue;
            };
            match &mut current {
                Some((key, v)) if key.0 == table && key.1 == chain => v.push(count),
                _ => {
                    if let Some((key, v)) = current.take() {
                        out.entry(key).or_default().extend(v);
                    }
                    current = Some(((table, chain), vec![count]));
                }
            }
        }
        if let Some((key, v)) = current {
            out.entry(key).or_default().extend(v);
        }
        Ok(out)
    }

    /// Every conntrack entry of both families (`IPCTNL_MSG_CT_GET` dump).
    pub fn conntrack(&self) -> Result<Vec<CtEntry>, SysError> {
        let msgs = self.request(
            (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET,
            NLM_F_DUMP,
            AF_UNSPEC,
            &[],
        )?;
        Ok(msgs.iter().filter_map(|m| parse_ct(m)).collect())
    }

    /// The conntrack entry whose original tuple is exactly this one, if any
    /// (`IPCTNL_MSG_CT_GET` with `CTA_TUPLE_ORIG`: one hash lookup; a dump walks every bucket of
    /// the host-wide table, tens of milliseconds).
    pub fn conntrack_get(
        &self,
        proto: u8,
        src: IpAddr,
        sport: u16,
        dst: IpAddr,
        dport: u16,
    ) -> Result<Option<CtEntry>, SysError> {
        let (family, ips) = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => (
                libc::AF_INET as u8,
                [
                    nla(CTA_IP_V4_SRC, &s.octets()),
                    nla(CTA_IP_V4_DST, &d.octets()),
                ]
                .concat(),
            ),
            (IpAddr::V6(s), IpAddr::V6(d)) => (
                libc::AF_INET6 as u8,
                [
                    nla(CTA_IP_V6_SRC, &s.octets()),
                    nla(CTA_IP_V6_DST, &d.octets()),
                ]
                .concat(),
            ),
            _ => return Ok(None),
        };
        let tuple = nested(
            CTA_TUPLE_ORIG,
            &[
                nested(CTA_TUPLE_IP, &[ips]),
                nested(
                    CTA_TUPLE_PROTO,
                    &[
                        nla(CTA_PROTO_NUM, &[proto]),
                        nla(CTA_PROTO_SRC_PORT, &sport.to_be_bytes()),
                        nla(CTA_PROTO_DST_PORT, &dport.to_be_bytes()),
                    ],
                ),
            ],
        );
        let msgs = self.request(
            (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET,
            NLM_F_ACK,
            family,
            &tuple,
        )?;
        Ok(msgs.iter().find_map(|m| parse_ct(m)))
    }

    /// Delete every conntrack entry of both families (`IPCTNL_MSG_CT_DELETE` without a tuple).
    pub fn flush_conntrack(&self) -> Result<(), SysError> {
        self.request(
            (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE,
            NLM_F_ACK,
            AF_UNSPEC,
            &[],
        )
        .map(|_| ())
    }
}

/// One attribute, padded to 4 bytes.
fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(align4(4 + value.len()));
    v.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
    v.extend_from_slice(&kind.to_ne_bytes());
    v.extend_from_slice(value);
    v.resize(align4(v.len()), 0);
    v
}

/// A nested attribute (`NLA_F_NESTED`) holding `parts`.
fn nested(kind: u16, parts: &[Vec<u8>]) -> Vec<u8> {
    nla(kind | 0x8000, &parts.concat())
}

/// One netlink message of a received datagram.
struct Msg<'a> {
    kind: u16,
    seq: u32,
    payload: &'a [u8],
}

/// Split a datagram into messages (nlmsghdr: len u32, type u16, flags u16, seq u32, pid u32).
fn messages(buf: &[u8]) -> Vec<Msg<'_>> {
    let mut out = Vec::new();
    let mut rest = buf;
    while rest.len() >= 16 {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len < 16 || len > rest.len() {
            break;
        }
        out.push(Msg {
            kind: u16::from_ne_bytes([rest[4], rest[5]]),
            seq: u32::from_ne_bytes([rest[8], rest[9], rest[10], rest[11]]),
            payload: &rest[16..len],
        });
        rest = &rest[align4(len).min(rest.len())..];
    }
    out
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Attributes (nlattr: len u16, type u16, value, padded to 4) as (type without flags, value).
fn attrs(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([buf[0], buf[1]]));
        if len < 4 || len > buf.len() {
            break;
        }
        out.push((
            u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK,
            &buf[4..len],
        ));
        buf = &buf[align4(len).min(buf.len())..];
    }
    out
}

fn attr(mut buf: &[u8], kind: u16) -> Option<&[u8]> {
    while buf.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([buf[0], buf[1]]));
        if len < 4 || len > buf.len() {
            return None;
        }
        if u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK == kind {
            return Some(&buf[4..len]);
        }
        buf = &buf[align4(len).min(buf.len())..];
    }
    None
}

fn nul_str(v: &[u8]) -> String {
    let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).into_owned()
}

fn be_u64(v: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(v.get(..8)?.try_into().ok()?))
}

fn be_u16(v: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(v.get(..2)?.try_into().ok()?))
}

/// One `NFT_MSG_NEWRULE` payload (nfgenmsg + attributes) → (table, chain, the packets of its
/// counter expression (0 when it has none) and whether its verdict drops).
pub fn parse_rule(payload: &[u8]) -> Option<(String, String, RuleCount)> {
    let a = payload.get(4..)?;
    let table = nul_str(attr(a, NFTA_RULE_TABLE)?);
    let chain = nul_str(attr(a, NFTA_RULE_CHAIN)?);
    let mut count = RuleCount::default();
    if let Some(exprs) = attr(a, NFTA_RULE_EXPRESSIONS) {
        for (t, e) in attrs(exprs) {
            if t != NFTA_LIST_ELEM {
                continue;
            }
            let name = attr(e, NFTA_EXPR_NAME).map(nul_str).unwrap_or_default();
            let data = attr(e, NFTA_EXPR_DATA).unwrap_or_default();
            match name.as_str() {
                "counter" => {
                    count.packets = attr(data, NFTA_COUNTER_PACKETS)
                        .and_then(be_u64)
                        .unwrap_or(0);
                }
                // iptables-nft writes `-j DROP` / `-j CHAIN` as an immediate verdict.
                "immediate" => {
                    if let Some(v) =
                        attr(data, NFTA_IMMEDIATE_DATA).and_then(|d| attr(d, NFTA_DATA_VERDICT))
                    {
                        let code = attr(v, NFTA_VERDICT_CODE)
                            .and_then(|c| Some(i32::from_be_bytes(c.get(..4)?.try_into().ok()?)));
                        let to = attr(v, NFTA_VERDICT_CHAIN).map(nul_str);
                        count.drops = match code {
                            Some(NF_DROP) => true,
                            Some(NFT_JUMP | NFT_GOTO) => to.as_deref() == Some("KUBE-MARK-DROP"),
                            _ => false,
                        };
                    }
                }
                _ => {}
            }
        }
    }
    Some((table, chain, count))
}

/// (src, dst, proto, sport, dport) of a CTA_TUPLE_* attribute.
fn tuple(t: &[u8]) -> Option<(IpAddr, IpAddr, u8, u16, u16)> {
    let ip = attr(t, CTA_TUPLE_IP)?;
    let v4 = |k| -> Option<IpAddr> {
        let b: [u8; 4] = attr(ip, k)?.get(..4)?.try_into().ok()?;
        Some(IpAddr::V4(Ipv4Addr::from(b)))
    };
    let v6 = |k| -> Option<IpAddr> {
        let b: [u8; 16] = attr(ip, k)?.get(..16)?.try_into().ok()?;
        Some(IpAddr::V6(Ipv6Addr::from(b)))
    };
    let (src, dst) = match (v4(CTA_IP_V4_SRC), v4(CTA_IP_V4_DST)) {
        (Some(s), Some(d)) => (s, d),
        _ => (v6(CTA_IP_V6_SRC)?, v6(CTA_IP_V6_DST)?),
    };
    let p = attr(t, CTA_TUPLE_PROTO)?;
    let num = *attr(p, CTA_PROTO_NUM)?.first()?;
    let sport = attr(p, CTA_PROTO_SRC_PORT).and_then(be_u16).unwrap_or(0);
    let dport = attr(p, CTA_PROTO_DST_PORT).and_then(be_u16).unwrap_or(0);
    Some((src, dst, num, sport, dport))
}

/// One `IPCTNL_MSG_CT_NEW` payload → its original and reply tuples.
pub fn parse_ct(payload: &[u8]) -> Option<CtEntry> {
    let a = payload.get(4..)?;
    let (os, od, num, osp, odp) = tuple(attr(a, CTA_TUPLE_ORIG)?)?;
    let (rs, rd, _, rsp, rdp) = tuple(attr(a, CTA_TUPLE_REPLY)?)?;
    let proto = match num {
        6 => "tcp".to_owned(),
        17 => "udp".to_owned(),
        132 => "sctp".to_owned(),
        1 => "icmp".to_owned(),
        58 => "icmpv6".to_owned(),
        n => n.to_string(),
    };
    Some(CtEntry {
        proto,
        orig_src: os,
        orig_dst: od,
        orig_sport: osp,
        orig_dport: odp,
        reply_src: rs,
        reply_dst: rd,
        reply_sport: rsp,
        reply_dport: rdp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rule as the uapi lays it out: table "nat", chain "KUBE-SERVICES", a payload
    /// expression, then a counter expression with 7 packets / 420 bytes (big endian).
    #[test]
    fn rule_counter_is_read_from_the_counter_expression() {
        let counter = nested(
            NFTA_LIST_ELEM,
            &[
                nla(NFTA_EXPR_NAME, b"counter\0"),
                nested(
                    NFTA_EXPR_DATA,
                    &[nla(1, &420u64.to_be_bytes()), nla(2, &7u64.to_be_bytes())],
                ),
            ],
        );
        let payload_expr = nested(NFTA_LIST_ELEM, &[nla(NFTA_EXPR_NAME, b"payload\0")]);
        let msg = [
            vec![2, 0, 0, 0],
            nla(NFTA_RULE_TABLE, b"nat\0"),
            nla(NFTA_RULE_CHAIN, b"KUBE-SERVICES\0"),
            nla(3, &5u64.to_be_bytes()),
            nested(NFTA_RULE_EXPRESSIONS, &[payload_expr, counter]),
        ]
        .concat();
        assert_eq!(
            parse_rule(&msg),
            Some((
                "nat".into(),
                "KUBE-SERVICES".into(),
                RuleCount {
                    packets: 7,
                    drops: false
                }
            ))
        );
        // `-j DROP`: an immediate expression with verdict code NF_DROP (0).
        let drop = nested(
            NFTA_LIST_ELEM,
            &[
                nla(NFTA_EXPR_NAME, b"immediate\0"),
                nested(
                    NFTA_EXPR_DATA,
                    &[
                        nla(1, &0u32.to_be_bytes()),
                        nested(
                            NFTA_IMMEDIATE_DATA,
                            &[nested(
                                NFTA_DATA_VERDICT,
                                &[nla(NFTA_VERDICT_CODE, &0i32.to_be_bytes())],
                            )],
                        ),
                    ],
                ),
            ],
        );
        let msg = [
            vec![2, 0, 0, 0],
            nla(NFTA_RULE_TABLE, b"filter\0"),
            nla(NFTA_RULE_CHAIN, b"KUBE-PROXY-FIREWALL\0"),
            nested(NFTA_RULE_EXPRESSIONS, &[drop]),
        ]
        .concat();
        assert!(parse_rule(&msg).unwrap().2.drops);
    }

    #[test]
    fn conntrack_tuples_are_read_from_nested_attributes() {
        let t = |src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16| {
            vec![
                nested(
                    CTA_TUPLE_IP,
                    &[nla(CTA_IP_V4_SRC, &src), nla(CTA_IP_V4_DST, &dst)],
                ),
                nested(
                    CTA_TUPLE_PROTO,
                    &[
                        nla(CTA_PROTO_NUM, &[6]),
                        nla(CTA_PROTO_SRC_PORT, &sp.to_be_bytes()),
                        nla(CTA_PROTO_DST_PORT, &dp.to_be_bytes()),
                    ],
                ),
            ]
        };
        let msg = [
            vec![2, 0, 0, 0],
            nested(
                CTA_TUPLE_ORIG,
                &t([192, 168, 0, 100], [10, 96, 0, 10], 40312, 80),
            ),
            nested(
                CTA_TUPLE_REPLY,
                &t([10, 244, 0, 10], [10, 244, 0, 1], 8080, 11877),
            ),
        ]
        .concat();
        let e = parse_ct(&msg).unwrap();
        assert_eq!(e.proto, "tcp");
        assert_eq!((e.orig_sport, e.orig_dport), (40312, 80));
        assert_eq!(e.dnat_to(), Some(("10.244.0.10".parse().unwrap(), 8080)));
        assert!(e.snat());
    }

    proptest::proptest! {
        /// Whatever bytes arrive, the parsers return instead of panicking.
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = messages(&bytes);
            let _ = parse_rule(&bytes);
            let _ = parse_ct(&bytes);
        }
    }
}
