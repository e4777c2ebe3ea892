//! `ipvsadm -Sn` (rules, what `ipvsadm-save -n` prints and `ipvsadm-restore` reads) and
//! `ipvsadm -Ln` (the listing, also with `--stats`, `--rate`, `--thresholds`,
//! `--persistent-conn`), printed byte for byte as ipvsadm 1.31 prints them and parsed back.
//!
//! Formats follow ipvsadm's `print_title` / `print_service_entry` / `print_largenum` /
//! `print_sched_flags` and libipvs's `ipvs_cmp_services` / `ipvs_cmp_dests` (both listings are
//! sorted unless `--nosort`). Only numeric output (`-n`) is modelled: name lookups need a
//! resolver. Tunnel real servers carry ipvsadm 1.31's tunnel options (`--tun-type ipip|gue|gre`,
//! `--tun-port`, `--tun-nocsum|--tun-csum|--tun-remcsum`; `-Ln --tun-info`), added to ipvsadm with
//! the kernel's GUE/GRE encapsulation (Linux 5.2/5.3).

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// How a real server is reached (`IP_VS_CONN_F_FWD_MASK`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Forward {
    /// NAT, `-m`; what kube-proxy uses.
    Masq,
    /// Local node (printed `Local`, saved as `-g`).
    Local,
    /// IP-in-IP, `-i`.
    Tunnel,
    /// Direct routing, `-g`.
    Route,
}

impl Forward {
    /// `fwd_name`.
    pub fn name(self) -> &'static str {
        match self {
            Forward::Masq => "Masq",
            Forward::Local => "Local",
            Forward::Tunnel => "Tunnel",
            Forward::Route => "Route",
        }
    }
    /// `fwd_switch`: LOCALNODE and DROUTE both save as `-g`.
    pub fn switch(self) -> &'static str {
        match self {
            Forward::Masq => "-m",
            Forward::Tunnel => "-i",
            Forward::Local | Forward::Route => "-g",
        }
    }
}

/// Protocol of an address-based virtual service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum IpvsProto {
    Tcp,
    Udp,
    Sctp,
}

impl IpvsProto {
    fn number(self) -> i32 {
        match self {
            IpvsProto::Tcp => 6,
            IpvsProto::Udp => 17,
            IpvsProto::Sctp => 132,
        }
    }
    /// `protocol_name`.
    fn list_name(self) -> &'static str {
        match self {
            IpvsProto::Tcp => "TCP",
            IpvsProto::Udp => "UDP",
            IpvsProto::Sctp => "SCTP",
        }
    }
    /// `option_from_protocol`.
    fn rule_switch(self) -> &'static str {
        match self {
            IpvsProto::Tcp => "-t",
            IpvsProto::Udp => "-u",
            IpvsProto::Sctp => "--sctp-service",
        }
    }
}

/// What identifies a virtual service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ServiceKey {
    Addr { proto: IpvsProto, addr: SocketAddr },
    Fwmark { mark: u32, v6: bool },
}

impl ServiceKey {
    fn v6(&self) -> bool {
        match self {
            ServiceKey::Addr { addr, .. } => addr.is_ipv6(),
            ServiceKey::Fwmark { v6, .. } => *v6,
        }
    }
}

/// The five counters of `struct ip_vs_stats_user` as ipvsadm prints them (`--stats`:
/// conns, inpkts, outpkts, inbytes, outbytes; `--rate`: cps, inpps, outpps, inbps, outbps).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters(pub [u64; 5]);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealServer {
    pub addr: SocketAddr,
    pub forward: Forward,
    pub weight: i32,
    pub u_threshold: u32,
    pub l_threshold: u32,
    pub activeconns: u32,
    pub inactconns: u32,
    pub persistconns: u32,
    pub stats: Counters,
    pub rate: Counters,
    /// Encapsulation of a `Tunnel` real server (`IPVS_DEST_ATTR_TUN_*`); unused otherwise.
    #[serde(default)]
    pub tunnel: Tunnel,
}

/// `IP_VS_CONN_F_TUNNEL_TYPE_*`, in the kernel's numbering (ipip = 0 is the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TunType {
    #[default]
    Ipip,
    Gue,
    Gre,
}

impl TunType {
    pub fn name(self) -> &'static str {
        match self {
            TunType::Ipip => "ipip",
            TunType::Gue => "gue",
            TunType::Gre => "gre",
        }
    }
}

/// `IP_VS_TUNNEL_ENCAP_FLAG_*`: no checksum (0, the default), checksum, remote checksum offload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TunCsum {
    #[default]
    NoCsum,
    Csum,
    RemCsum,
}

impl TunCsum {
    /// ipvsadm's `tun_flags_opts`, indexed by the flag value.
    fn option(self) -> &'static str {
        match self {
            TunCsum::NoCsum => "--tun-nocsum",
            TunCsum::Csum => "--tun-csum",
            TunCsum::RemCsum => "--tun-remcsum",
        }
    }
    /// ipvsadm's `tunflags` (the `--tun-info` column).
    fn short(self) -> &'static str {
        match self {
            TunCsum::NoCsum => "-c",
            TunCsum::Csum => "+c",
            TunCsum::RemCsum => "r+c",
        }
    }
}

/// A tunnel real server's encapsulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Tunnel {
    pub kind: TunType,
    /// GUE's UDP destination port (0 = not set; only GUE has one).
    pub port: u16,
    pub csum: TunCsum,
}

impl Tunnel {
    /// The options `print_tunnel_rule` appends after `-w W`: ipip names its type, GUE adds its
    /// port and checksum option, GRE its checksum option.
    fn save_options(self) -> String {
        match self.kind {
            TunType::Ipip => " --tun-type ipip".into(),
            TunType::Gue => format!(
                " --tun-type gue --tun-port {} {}",
                self.port,
                self.csum.option()
            ),
            TunType::Gre => format!(" --tun-type gre {}", self.csum.option()),
        }
    }
    /// `fwd_tun_info`: `ipip`, `gue:PORT:FLAGS`, `gre:FLAGS`.
    fn info(self) -> String {
        match self.kind {
            TunType::Ipip => "ipip".into(),
            TunType::Gue => format!("gue:{}:{}", self.port, self.csum.short()),
            TunType::Gre => format!("gre:{}", self.csum.short()),
        }
    }
    fn parse_info(s: &str) -> Result<Tunnel, String> {
        let csum = |f: &str| match f {
            "-c" => Ok(TunCsum::NoCsum),
            "+c" => Ok(TunCsum::Csum),
            "r+c" => Ok(TunCsum::RemCsum),
            _ => Err(format!("unknown tunnel checksum flags {f:?}")),
        };
        let parts: Vec<&str> = s.split(':').collect();
        match parts.as_slice() {
            ["ipip"] => Ok(Tunnel::default()),
            ["gue", port, f] => Ok(Tunnel {
                kind: TunType::Gue,
                port: port
                    .parse()
                    .map_err(|_| format!("tunnel port {port:?} is not a number"))?,
                csum: csum(f)?,
            }),
            ["gre", f] => Ok(Tunnel {
                kind: TunType::Gre,
                port: 0,
                csum: csum(f)?,
            }),
            _ => Err(format!("unknown tunnel info {s:?}")),
        }
    }
}

impl RealServer {
    pub fn new(addr: SocketAddr, forward: Forward, weight: i32) -> RealServer {
        RealServer {
            addr,
            forward,
            weight,
            u_threshold: 0,
            l_threshold: 0,
            activeconns: 0,
            inactconns: 0,
            persistconns: 0,
            stats: Counters::default(),
            rate: Counters::default(),
            tunnel: Tunnel::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub key: ServiceKey,
    /// Scheduler name as the kernel reports it (`rr`, `wlc`, ...).
    pub scheduler: String,
    /// `IP_VS_SVC_F_SCHED1..3` bits (0x08, 0x10, 0x20).
    pub sched_flags: u32,
    /// `-p timeout` (persistence), seconds.
    pub persistent: Option<u32>,
    /// Persistence granularity: a v4 mask as a prefix or dotted mask, a v6 prefix length.
    /// `None` = the default (/32, /128), which ipvsadm does not print.
    pub netmask: Option<Netmask>,
    /// `--pe` persistence engine.
    pub pe: Option<String>,
    /// `-o` one-packet scheduling.
    pub ops: bool,
    pub stats: Counters,
    pub rate: Counters,
    pub dests: Vec<RealServer>,
}

/// Persistence netmask: IPv4 services carry a dotted mask, IPv6 a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Netmask {
    V4(Ipv4Addr),
    V6(u8),
}

impl Service {
    pub fn new(key: ServiceKey, scheduler: &str) -> Service {
        Service {
            key,
            scheduler: scheduler.to_string(),
            sched_flags: 0,
            persistent: None,
            netmask: None,
            pe: None,
            ops: false,
            stats: Counters::default(),
            rate: Counters::default(),
            dests: Vec::new(),
        }
    }
}

/// Which `ipvsadm -L` listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ListFormat {
    #[default]
    Plain,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    /// `--tun-info`: a TunnelInfo column after Forward.
    TunInfo,
}

/// Options of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListOptions {
    pub format: ListFormat,
    /// `--exact`: no K/M/G/T abbreviation of large numbers.
    pub exact: bool,
    /// `--nosort`: keep the kernel's order.
    pub nosort: bool,
    /// The `size=` of the header: the connection table size (`ip_vs_conn_tab_size`,
    /// 4096 by default).
    pub conn_tab_size: u32,
}

impl Default for ListOptions {
    fn default() -> Self {
        ListOptions {
            format: ListFormat::Plain,
            exact: false,
            nosort: false,
            conn_tab_size: 4096,
        }
    }
}

/// libipvs compares addresses as `ntohl(a) - ntohl(b)` in `int`: the u32 difference is read as
/// signed, so addresses more than 2^31 apart compare "backwards" (192.168.x sorts before 10.x).
fn wrapping_cmp(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

fn addr_words(ip: IpAddr) -> [u32; 4] {
    match ip {
        IpAddr::V4(a) => [u32::from(a), 0, 0, 0],
        IpAddr::V6(a) => {
            let o = a.octets();
            let w = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            [w(0), w(4), w(8), w(12)]
        }
    }
}

fn cmp_addr(a: IpAddr, b: IpAddr) -> i32 {
    let (wa, wb) = (addr_words(a), addr_words(b));
    let n = if a.is_ipv6() { 4 } else { 1 };
    let mut r = 0;
    for i in 0..n {
        r = wrapping_cmp(wa[i], wb[i]);
        if r != 0 {
            break;
        }
    }
    r
}

/// `ipvs_cmp_services`: fwmark, family, protocol, address, port.
fn cmp_services(a: &Service, b: &Service) -> Ordering {
    let (fa, fb) = match (a.key, b.key) {
        (ServiceKey::Fwmark { mark: x, .. }, ServiceKey::Fwmark { mark: y, .. }) => (x, y),
        (ServiceKey::Fwmark { mark, .. }, _) => (mark, 0),
        (_, ServiceKey::Fwmark { mark, .. }) => (0, mark),
        _ => (0, 0),
    };
    let r = wrapping_cmp(fa, fb);
    if r != 0 {
        return r.cmp(&0);
    }
    let af = |s: &Service| if s.key.v6() { 10 } else { 2 };
    let r = af(a) - af(b);
    if r != 0 {
        return r.cmp(&0);
    }
    match (a.key, b.key) {
        (
            ServiceKey::Addr {
                proto: pa,
                addr: aa,
            },
            ServiceKey::Addr {
                proto: pb,
                addr: ab,
            },
        ) => {
            let r = pa.number() - pb.number();
            if r != 0 {
                return r.cmp(&0);
            }
            let r = cmp_addr(aa.ip(), ab.ip());
            if r != 0 {
                return r.cmp(&0);
            }
            (i32::from(aa.port()) - i32::from(ab.port())).cmp(&0)
        }
        _ => Ordering::Equal,
    }
}

/// `ipvs_cmp_dests`: address, then port.
fn cmp_dests(a: &RealServer, b: &RealServer) -> Ordering {
    let r = cmp_addr(a.addr.ip(), b.addr.ip());
    if r != 0 {
        return r.cmp(&0);
    }
    (i32::from(a.addr.port()) - i32::from(b.addr.port())).cmp(&0)
}

/// `print_largenum`.
fn largenum(out: &mut String, i: u64, exact: bool) {
    if exact {
        let len = i.to_string().len();
        let w = if len <= 8 { 9 } else { len + 1 };
        let _ = write!(out, "{i:>w$}");
        return;
    }
    let _ = if i < 100_000_000 {
        write!(out, "{i:>9}")
    } else if i < 1_000_000_000 {
        write!(out, "{:>8}K", i / 1000)
    } else if i < 100_000_000_000 {
        write!(out, "{:>8}M", i / 1_000_000)
    } else if i < 100_000_000_000_000 {
        write!(out, "{:>8}G", i / 1_000_000_000)
    } else {
        write!(out, "{:>8}T", i / 1_000_000_000_000)
    };
}

/// `print_sched_flags` (1.31): names depend on the scheduler; comma-separated.
pub fn sched_flag_names(scheduler: &str, flags: u32) -> String {
    let mut v: Vec<&str> = Vec::new();
    let (one, two) = match scheduler {
        "sh" => ("sh-fallback", "sh-port"),
        "mh" => ("mh-fallback", "mh-port"),
        _ => ("flag-1", "flag-2"),
    };
    if flags & 0x08 != 0 {
        v.push(one);
    }
    if flags & 0x10 != 0 {
        v.push(two);
    }
    if flags & 0x20 != 0 {
        v.push("flag-3");
    }
    v.join(",")
}

/// `addrport_to_anyname` with `-n`: `a.b.c.d:port` or `[v6]:port`.
fn addrport(a: SocketAddr) -> String {
    a.to_string()
}

fn sorted_services(services: &[Service], nosort: bool) -> Vec<Service> {
    let mut s: Vec<Service> = services.to_vec();
    if !nosort {
        s.sort_by(cmp_services);
        for svc in &mut s {
            svc.dests.sort_by(cmp_dests);
        }
    }
    s
}

/// `ipvsadm -Sn` (and `ipvsadm-save -n`).
pub fn print_rules(services: &[Service], nosort: bool) -> String {
    let mut out = String::new();
    for se in sorted_services(services, nosort) {
        let svc_name = match se.key {
            ServiceKey::Fwmark { mark, v6: true } => format!("-f {mark} -6"),
            ServiceKey::Fwmark { mark, v6: false } => format!("-f {mark}"),
            ServiceKey::Addr { proto, addr } => {
                format!("{} {}", proto.rule_switch(), addrport(addr))
            }
        };
        let _ = write!(out, "-A {svc_name} -s {}", se.scheduler);
        if let Some(t) = se.persistent {
            let _ = write!(out, " -p {t}");
            match se.netmask {
                Some(Netmask::V4(m)) if !se.key.v6() && m != Ipv4Addr::BROADCAST => {
                    let _ = write!(out, " -M {m}");
                }
                Some(Netmask::V6(p)) if se.key.v6() && p != 128 => {
                    let _ = write!(out, " -M {p}");
                }
                _ => {}
            }
        }
        if let Some(pe) = &se.pe {
            let _ = write!(out, " --pe {pe}");
        }
        if se.ops {
            out.push_str(" -o");
        }
        if se.sched_flags & 0x38 != 0 {
            let _ = write!(
                out,
                " -b {}",
                sched_flag_names(&se.scheduler, se.sched_flags)
            );
        }
        out.push('\n');
        for e in &se.dests {
            let _ = writeln!(
                out,
                "-a {svc_name} -r {} {} -w {}{}",
                addrport(e.addr),
                e.forward.switch(),
                e.weight,
                if e.forward == Forward::Tunnel {
                    e.tunnel.save_options()
                } else {
                    String::new()
                }
            );
        }
    }
    out
}

/// `ipvsadm -Ln [--stats|--rate|--thresholds|--persistent-conn] [--exact] [--nosort]`.
pub fn print_list(services: &[Service], opt: ListOptions) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "IP Virtual Server version 1.2.1 (size={})",
        opt.conn_tab_size
    );
    let col = "Prot LocalAddress:Port";
    let _ = match opt.format {
        ListFormat::Stats => writeln!(
            out,
            "{col:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port",
            "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
        ),
        ListFormat::Rate => writeln!(
            out,
            "{col:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port",
            "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"
        ),
        ListFormat::Thresholds => writeln!(
            out,
            "{col:<33} {:<10} {:<10} {:<10} {:<10}\n  -> RemoteAddress:Port",
            "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
        ),
        ListFormat::PersistentConn => writeln!(
            out,
            "{col:<33} {:<9} {:<11} {:<10} {:<10}\n  -> RemoteAddress:Port",
            "Weight", "PersistConn", "ActiveConn", "InActConn"
        ),
        ListFormat::TunInfo => writeln!(
            out,
            "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward \
             TunnelInfo    Weight ActiveConn InActConn"
        ),
        ListFormat::Plain => writeln!(
            out,
            "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward \
             Weight ActiveConn InActConn"
        ),
    };
    for se in sorted_services(services, opt.nosort) {
        let mut svc_name = match se.key {
            ServiceKey::Fwmark { mark, v6: true } => format!("FWM  {mark} IPv6"),
            ServiceKey::Fwmark { mark, v6: false } => format!("FWM  {mark}"),
            ServiceKey::Addr { proto, addr } => {
                format!("{:<4} {}", proto.list_name(), addrport(addr))
            }
        };
        if matches!(
            se.key,
            ServiceKey::Addr {
                addr: SocketAddr::V4(_),
                ..
            }
        ) {
            svc_name.truncate(33);
        }
        match opt.format {
            ListFormat::Stats | ListFormat::Rate => {
                let _ = write!(out, "{svc_name:<33}");
                let c = if opt.format == ListFormat::Stats {
                    se.stats
                } else {
                    se.rate
                };
                for v in c.0 {
                    largenum(&mut out, v, opt.exact);
                }
            }
            _ => {
                let _ = write!(out, "{svc_name} {}", se.scheduler);
                if se.sched_flags & 0x38 != 0 {
                    let _ = write!(
                        out,
                        " ({})",
                        sched_flag_names(&se.scheduler, se.sched_flags)
                    );
                }
                if let Some(t) = se.persistent {
                    let _ = write!(out, " persistent {t}");
                    match se.netmask {
                        Some(Netmask::V4(m)) if !se.key.v6() && m != Ipv4Addr::BROADCAST => {
                            let _ = write!(out, " mask {m}");
                        }
                        Some(Netmask::V6(p)) if se.key.v6() && p != 128 => {
                            let _ = write!(out, " mask {p}");
                        }
                        _ => {}
                    }
                    if let Some(pe) = &se.pe {
                        let _ = write!(out, " pe {pe}");
                    }
                }
                if se.ops {
                    out.push_str(" ops");
                }
            }
        }
        out.push('\n');
        for e in &se.dests {
            let mut dname = addrport(e.addr);
            if e.addr.is_ipv4() {
                dname.truncate(28);
            }
            let _ = match opt.format {
                ListFormat::Stats => {
                    let _ = write!(out, "  -> {dname:<28}");
                    for v in e.stats.0 {
                        largenum(&mut out, v, opt.exact);
                    }
                    writeln!(out)
                }
                ListFormat::Rate => {
                    let r = e.rate.0;
                    let _ = write!(out, "  -> {dname:<28} {:>8} {:>8} {:>8}", r[0], r[1], r[2]);
                    largenum(&mut out, r[3], opt.exact);
                    largenum(&mut out, r[4], opt.exact);
                    writeln!(out)
                }
                ListFormat::Thresholds => writeln!(
                    out,
                    "  -> {dname:<28} {:<10} {:<10} {:<10} {:<10}",
                    e.u_threshold, e.l_threshold, e.activeconns, e.inactconns
                ),
                ListFormat::PersistentConn => writeln!(
                    out,
                    "  -> {dname:<28} {:<9} {:<11} {:<10} {:<10}",
                    e.weight, e.persistconns, e.activeconns, e.inactconns
                ),
                ListFormat::TunInfo => writeln!(
                    out,
                    "  -> {dname:<28} {:<7} {:<13} {:<6} {:<10} {:<10}",
                    e.forward.name(),
                    // Non-tunnel servers: `fwd_tun_info` returns NULL, printed as "n/a".
                    if e.forward == Forward::Tunnel {
                        e.tunnel.info()
                    } else {
                        "n/a".into()
                    },
                    e.weight,
                    e.activeconns,
                    e.inactconns
                ),
                ListFormat::Plain => writeln!(
                    out,
                    "  -> {dname:<28} {:<7} {:<6} {:<10} {:<10}",
                    e.forward.name(),
                    e.weight,
                    e.activeconns,
                    e.inactconns
                ),
            };
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

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// What a parser returns: everything it could read, plus the lines it could not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Parsed {
    pub services: Vec<Service>,
    pub diagnostics: Vec<Diagnostic>,
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>()
        .map_err(|_| format!("{s:?} is not an address:port"))
}

fn parse_flags(scheduler: &str, list: &str) -> Result<u32, String> {
    let mut v = 0;
    for name in list.split(',') {
        v |= match (name, scheduler) {
            ("flag-1", _) => 0x08,
            ("flag-2", _) => 0x10,
            ("flag-3", _) => 0x20,
            ("sh-fallback", "sh") | ("mh-fallback", "mh") => 0x08,
            ("sh-port", "sh") | ("mh-port", "mh") => 0x10,
            _ => {
                return Err(format!(
                    "unknown scheduler flag {name:?} for scheduler {scheduler:?}"
                ));
            }
        };
    }
    Ok(v)
}

fn find_service<'a>(services: &'a mut [Service], key: &ServiceKey) -> Option<&'a mut Service> {
    services.iter_mut().find(|s| s.key == *key)
}

/// Parse `ipvsadm -Sn` output / `ipvsadm-restore` input (`-A` and `-a` lines; `-x`/`-y` are
/// accepted too). Unknown or malformed lines become diagnostics.
pub fn parse_rules(text: &str) -> Parsed {
    let mut p = Parsed::default();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let t = raw.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if let Err(m) = parse_rule_line(t, &mut p.services) {
            p.diagnostics.push(Diagnostic { line, message: m });
        }
    }
    p
}

fn parse_rule_line(t: &str, services: &mut Vec<Service>) -> Result<(), String> {
    let w: Vec<&str> = t.split_whitespace().collect();
    let mut it = w.iter().copied().peekable();
    let cmd = it.next().ok_or("empty line")?;
    let mut key: Option<ServiceKey> = None;
    let (mut sched, mut persistent, mut netmask, mut pe, mut ops, mut flags) = (
        None::<String>,
        None,
        None::<String>,
        None,
        false,
        None::<String>,
    );
    let (mut real, mut fwd, mut weight, mut ux, mut ly) = (None, None, None, None, None);
    let mut v6 = false;
    let (mut tun_type, mut tun_port, mut tun_csum) =
        (None::<TunType>, None::<u16>, None::<TunCsum>);
    let num = |s: Option<&str>, what: &str| -> Result<u64, String> {
        let s = s.ok_or_else(|| format!("{what} needs a value"))?;
        s.parse::<u64>()
            .map_err(|_| format!("{what} {s:?} is not a number"))
    };
    while let Some(o) = it.next() {
        match o {
            "-t" | "--tcp-service" | "-u" | "--udp-service" | "--sctp-service" => {
                let proto = match o {
                    "-t" | "--tcp-service" => IpvsProto::Tcp,
                    "-u" | "--udp-service" => IpvsProto::Udp,
                    _ => IpvsProto::Sctp,
                };
                let a = parse_addr(it.next().ok_or("service address missing")?)?;
                key = Some(ServiceKey::Addr { proto, addr: a });
            }
            "-f" | "--fwmark-service" => {
                let m = num(it.next(), "-f")?;
                key = Some(ServiceKey::Fwmark {
                    mark: m as u32,
                    v6: false,
                });
            }
            "-6" | "--ipv6" => v6 = true,
            "-s" | "--scheduler" => {
                sched = Some(it.next().ok_or("-s needs a scheduler")?.to_string())
            }
            "-p" | "--persistent" => persistent = Some(num(it.next(), "-p")? as u32),
            "-M" | "--netmask" => netmask = Some(it.next().ok_or("-M needs a mask")?.to_string()),
            "--pe" => pe = Some(it.next().ok_or("--pe needs an engine")?.to_string()),
            "-o" | "--ops" => ops = true,
            "-b" | "--sched-flags" => flags = Some(it.next().ok_or("-b needs flags")?.to_string()),
            "-r" | "--real-server" => {
                real = Some(parse_addr(it.next().ok_or("-r needs an address")?)?)
            }
            "-m" | "--masquerading" => fwd = Some(Forward::Masq),
            "-g" | "--gatewaying" => fwd = Some(Forward::Route),
            "-i" | "--ipip" => fwd = Some(Forward::Tunnel),
            "-w" | "--weight" => {
                let s = it.next().ok_or("-w needs a weight")?;
                weight = Some(
                    s.parse::<i32>()
                        .map_err(|_| format!("weight {s:?} is not a number"))?,
                );
            }
            "--tun-type" => {
                if tun_type.is_some() {
                    return Err("multiple '--tun-type' options specified".into());
                }
                tun_type = Some(match it.next().ok_or("--tun-type needs a type")? {
                    "ipip" => TunType::Ipip,
                    "gue" => TunType::Gue,
                    "gre" => TunType::Gre,
                    t => return Err(format!("illegal tunnel type {t:?} (ipip, gue or gre)")),
                });
            }
            "--tun-port" => {
                if tun_port.is_some() {
                    return Err("multiple '--tun-port' options specified".into());
                }
                let p = num(it.next(), "--tun-port")?;
                if !(1..=65535).contains(&p) {
                    return Err(format!("illegal tunnel port {p} (1-65535)"));
                }
                tun_port = Some(p as u16);
            }
            "--tun-nocsum" | "--tun-csum" | "--tun-remcsum" => {
                // ipvsadm's tunnel option table marks the three as mutually exclusive.
                if tun_csum.is_some() {
                    return Err(format!(
                        "the option '{o}' conflicts with another checksum option"
                    ));
                }
                tun_csum = Some(match o {
                    "--tun-nocsum" => TunCsum::NoCsum,
                    "--tun-csum" => TunCsum::Csum,
                    _ => TunCsum::RemCsum,
                });
            }
            "-x" | "--u-threshold" => ux = Some(num(it.next(), "-x")? as u32),
            "-y" | "--l-threshold" => ly = Some(num(it.next(), "-y")? as u32),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    if let Some(ServiceKey::Fwmark { mark, .. }) = key {
        key = Some(ServiceKey::Fwmark { mark, v6 });
    }
    let key = key.ok_or("no service (-t, -u, --sctp-service or -f)")?;
    match cmd {
        "-A" | "--add-service" => {
            if find_service(services, &key).is_some() {
                return Err("service already exists".into());
            }
            let scheduler = sched.unwrap_or_else(|| "wlc".into());
            let mut s = Service::new(key, &scheduler);
            s.persistent = persistent;
            s.netmask = match netmask {
                None => None,
                Some(m) if key.v6() => Some(Netmask::V6(
                    m.parse().map_err(|_| format!("bad IPv6 netmask {m:?}"))?,
                )),
                Some(m) => Some(Netmask::V4(
                    m.parse().map_err(|_| format!("bad netmask {m:?}"))?,
                )),
            };
            s.pe = pe;
            s.ops = ops;
            if let Some(f) = flags {
                s.sched_flags = parse_flags(&scheduler, &f)?;
            }
            services.push(s);
            Ok(())
        }
        "-a" | "--add-server" => {
            let addr = real.ok_or("-a needs -r")?;
            let svc =
                find_service(services, &key).ok_or("service not defined (no -A before it)")?;
            if svc.dests.iter().any(|d| d.addr == addr) {
                return Err(format!("destination {addr} already exists"));
            }
            // ipvsadm's default forwarding method is -g (direct routing), weight 1.
            let forward = fwd.unwrap_or(Forward::Route);
            let mut d = RealServer::new(addr, forward, weight.unwrap_or(1));
            d.tunnel = tunnel_options(forward, tun_type, tun_port, tun_csum)?;
            d.u_threshold = ux.unwrap_or(0);
            d.l_threshold = ly.unwrap_or(0);
            svc.dests.push(d);
            Ok(())
        }
        other => Err(format!("unsupported command {other:?} (expected -A or -a)")),
    }
}

/// ipvsadm's checks of the tunnel options (`process_options` + `tunnel_opt_check`): they need
/// `-i`; GUE needs `--tun-port`; ipip takes no option, GRE no port and no remote checksum.
fn tunnel_options(
    forward: Forward,
    kind: Option<TunType>,
    port: Option<u16>,
    csum: Option<TunCsum>,
) -> Result<Tunnel, String> {
    if forward != Forward::Tunnel {
        if kind.is_some() || port.is_some() || csum.is_some() {
            return Err("tunnel options conflict with the forwarding method (needs -i)".into());
        }
        return Ok(Tunnel::default());
    }
    let kind = kind.unwrap_or_default();
    let illegal = |opt: &str| {
        Err(format!(
            "illegal '{opt}' option with the '{}' tunnel type",
            kind.name()
        ))
    };
    match kind {
        TunType::Ipip => {
            if port.is_some() {
                return illegal("--tun-port");
            }
            if let Some(c) = csum {
                return illegal(c.option());
            }
        }
        TunType::Gue => {
            if port.is_none() {
                return Err(
                    "you need to supply the '--tun-port' option for the 'gue' tunnel type".into(),
                );
            }
        }
        TunType::Gre => {
            if port.is_some() {
                return illegal("--tun-port");
            }
            if csum == Some(TunCsum::RemCsum) {
                return illegal("--tun-remcsum");
            }
        }
    }
    Ok(Tunnel {
        kind,
        port: port.unwrap_or(0),
        csum: csum.unwrap_or_default(),
    })
}

/// Parse `ipvsadm -Ln` output: the plain format, or `--tun-info`'s (one more column).
pub fn parse_list(text: &str) -> Parsed {
    let mut p = Parsed::default();
    let mut expect_header = true;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        if expect_header {
            expect_header = false;
            if raw.starts_with("IP Virtual Server version ") {
                continue;
            }
            p.diagnostics.push(Diagnostic {
                line,
                message: "expected the \"IP Virtual Server version ...\" header".into(),
            });
        }
        if raw.starts_with("Prot LocalAddress:Port") {
            if let Some(f) = title_format(raw).filter(|f| !matches!(f, ListFormat::Plain)) {
                p.diagnostics.push(Diagnostic {
                    line,
                    message: format!(
                        "this is the {f:?} listing: it has no scheduler, forwarding method or \
                         weight; read the rules (-Sn or -Ln) first and apply it with apply_listing"
                    ),
                });
                return p;
            }
            continue;
        }
        if raw.starts_with("  -> RemoteAddress:Port") {
            continue;
        }
        let r = if let Some(rest) = raw.strip_prefix("  -> ") {
            parse_list_dest(rest, &mut p.services)
        } else {
            parse_list_service(raw, &mut p.services)
        };
        if let Err(m) = r {
            p.diagnostics.push(Diagnostic { line, message: m });
        }
    }
    p
}

/// Which listing a `Prot LocalAddress:Port ...` title line starts (`print_title`); the plain and
/// `--tun-info` listings share it (they differ in the second title line).
fn title_format(title: &str) -> Option<ListFormat> {
    let w: Vec<&str> = title.split_whitespace().collect();
    Some(match w.get(2..)? {
        ["Scheduler", "Flags"] => ListFormat::Plain,
        ["Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"] => ListFormat::Stats,
        ["CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"] => ListFormat::Rate,
        ["Uthreshold", "Lthreshold", "ActiveConn", "InActConn"] => ListFormat::Thresholds,
        ["Weight", "PersistConn", "ActiveConn", "InActConn"] => ListFormat::PersistentConn,
        _ => return None,
    })
}

/// A `print_largenum` figure back as a number: exact digits, or a `K`/`M`/`G`/`T`-scaled value
/// (ipvsadm divides by 1000^n and drops the rest, so those read back rounded down).
fn parse_largenum(s: &str) -> Result<u64, String> {
    let (digits, scale) = match s.as_bytes().last() {
        Some(b'K') => (&s[..s.len() - 1], 1_000),
        Some(b'M') => (&s[..s.len() - 1], 1_000_000),
        Some(b'G') => (&s[..s.len() - 1], 1_000_000_000),
        Some(b'T') => (&s[..s.len() - 1], 1_000_000_000_000),
        _ => (s, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|v| v.checked_mul(scale))
        .ok_or_else(|| format!("{s:?} is not a counter"))
}

/// Apply any `ipvsadm -Ln` listing — plain, `--tun-info`, `--stats`, `--rate`, `--thresholds`,
/// `--persistent-conn` (with or without `--exact`) — to the services read from the rules: each
/// listing carries only its own columns, so the agent reads `-Sn` for the table and the listings
/// for the counters. A service or real server the rules don't have is a diagnostic at its line.
pub fn apply_listing(services: &mut [Service], text: &str) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    let mut format = None;
    let mut current: Option<usize> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty()
            || raw.starts_with("IP Virtual Server version ")
            || raw.starts_with("  -> RemoteAddress:Port")
        {
            continue;
        }
        if raw.starts_with("Prot LocalAddress:Port") {
            format = title_format(raw);
            if format.is_none() {
                diags.push(Diagnostic {
                    line,
                    message: "unknown listing title".into(),
                });
                return diags;
            }
            continue;
        }
        let Some(f) = format else {
            diags.push(Diagnostic {
                line,
                message: "expected a \"Prot LocalAddress:Port ...\" title first".into(),
            });
            return diags;
        };
        let r = if let Some(rest) = raw.strip_prefix("  -> ") {
            match current {
                Some(si) => apply_dest(&mut services[si], f, rest),
                None => Err("a real server before any service".into()),
            }
        } else {
            let w: Vec<&str> = raw.split_whitespace().collect();
            parse_list_key(&w).and_then(|(key, rest)| {
                let si = services
                    .iter()
                    .position(|s| s.key == key)
                    .ok_or_else(|| format!("service {key:?} is not in the rules"))?;
                current = Some(si);
                let c = match f {
                    ListFormat::Stats => &mut services[si].stats,
                    ListFormat::Rate => &mut services[si].rate,
                    _ => return Ok(()),
                };
                let [a, b, c2, d, e] = rest else {
                    return Err(format!("expected 5 counters, found {}", rest.len()));
                };
                *c = Counters([
                    parse_largenum(a)?,
                    parse_largenum(b)?,
                    parse_largenum(c2)?,
                    parse_largenum(d)?,
                    parse_largenum(e)?,
                ]);
                Ok(())
            })
        };
        if let Err(m) = r {
            // A service we could not place: its real servers can't be placed either.
            if !raw.starts_with("  -> ") {
                current = None;
            }
            diags.push(Diagnostic { line, message: m });
        }
    }
    diags
}

fn apply_dest(svc: &mut Service, f: ListFormat, rest: &str) -> Result<(), String> {
    let w: Vec<&str> = rest.split_whitespace().collect();
    let addr = parse_addr(w.first().ok_or("real server address missing")?)?;
    let d = svc
        .dests
        .iter_mut()
        .find(|d| d.addr == addr)
        .ok_or_else(|| format!("real server {addr} is not in the rules"))?;
    let n = |s: &str, what: &str| {
        s.parse::<u32>()
            .map_err(|_| format!("{what} {s:?} is not a number"))
    };
    match (f, &w[1..]) {
        (ListFormat::Stats | ListFormat::Rate, [a, b, c, x, y]) => {
            let v = Counters([
                parse_largenum(a)?,
                parse_largenum(b)?,
                parse_largenum(c)?,
                parse_largenum(x)?,
                parse_largenum(y)?,
            ]);
            if f == ListFormat::Stats {
                d.stats = v;
            } else {
                d.rate = v;
            }
        }
        (ListFormat::Thresholds, [u, l, a, i]) => {
            d.u_threshold = n(u, "Uthreshold")?;
            d.l_threshold = n(l, "Lthreshold")?;
            d.activeconns = n(a, "ActiveConn")?;
            d.inactconns = n(i, "InActConn")?;
        }
        (ListFormat::PersistentConn, [wt, p, a, i]) => {
            d.weight = wt
                .parse()
                .map_err(|_| format!("weight {wt:?} is not a number"))?;
            d.persistconns = n(p, "PersistConn")?;
            d.activeconns = n(a, "ActiveConn")?;
            d.inactconns = n(i, "InActConn")?;
        }
        (ListFormat::Plain | ListFormat::TunInfo, _) => {
            // Same columns parse_list reads: reuse it on a one-server table.
            let mut one = vec![Service::new(svc.key, &svc.scheduler)];
            parse_list_dest(rest, &mut one)?;
            let got = one.remove(0).dests.remove(0);
            d.forward = got.forward;
            d.weight = got.weight;
            d.activeconns = got.activeconns;
            d.inactconns = got.inactconns;
            if w.len() == 6 {
                d.tunnel = got.tunnel;
            }
        }
        (f, cols) => {
            return Err(format!(
                "{} columns after the address do not fit the {f:?} listing",
                cols.len()
            ));
        }
    }
    Ok(())
}

/// The service key at the start of a listing's service line, and the words after it.
fn parse_list_key<'a>(w: &'a [&'a str]) -> Result<(ServiceKey, &'a [&'a str]), String> {
    Ok(match w {
        ["FWM", mark, "IPv6", rest @ ..] => (
            ServiceKey::Fwmark {
                mark: mark.parse().map_err(|_| "bad fwmark")?,
                v6: true,
            },
            rest,
        ),
        ["FWM", mark, rest @ ..] => (
            ServiceKey::Fwmark {
                mark: mark.parse().map_err(|_| "bad fwmark")?,
                v6: false,
            },
            rest,
        ),
        [proto, addr, rest @ ..] => {
            let proto = match *proto {
                "TCP" => IpvsProto::Tcp,
                "UDP" => IpvsProto::Udp,
                "SCTP" => IpvsProto::Sctp,
                p => return Err(format!("unknown protocol {p:?}")),
            };
            (
                ServiceKey::Addr {
                    proto,
                    addr: parse_addr(addr)?,
                },
                rest,
            )
        }
        _ => return Err("not a service line".into()),
    })
}

fn parse_list_service(raw: &str, services: &mut Vec<Service>) -> Result<(), String> {
    let w: Vec<&str> = raw.split_whitespace().collect();
    let (key, rest) = parse_list_key(&w)?;
    let mut it = rest.iter().copied();
    let scheduler = it.next().ok_or("scheduler missing")?;
    let mut s = Service::new(key, scheduler);
    while let Some(tok) = it.next() {
        match tok {
            t if t.starts_with('(') && t.ends_with(')') => {
                s.sched_flags = parse_flags(scheduler, &t[1..t.len() - 1])?;
            }
            "persistent" => {
                let v = it.next().ok_or("persistent needs a timeout")?;
                s.persistent = Some(v.parse().map_err(|_| format!("bad timeout {v:?}"))?);
            }
            "mask" => {
                let v = it.next().ok_or("mask needs a value")?;
                s.netmask = Some(if key.v6() {
                    Netmask::V6(v.parse().map_err(|_| format!("bad mask {v:?}"))?)
                } else {
                    Netmask::V4(v.parse().map_err(|_| format!("bad mask {v:?}"))?)
                });
            }
            "pe" => s.pe = Some(it.next().ok_or("pe needs a name")?.to_string()),
            "ops" => s.ops = true,
            other => return Err(format!("unexpected {other:?} after the scheduler")),
        }
    }
    services.push(s);
    Ok(())
}

fn parse_list_dest(rest: &str, services: &mut [Service]) -> Result<(), String> {
    let w: Vec<&str> = rest.split_whitespace().collect();
    let (addr, fwd, tun, weight, act, inact) = match w.as_slice() {
        [a, f, wt, ac, ia] => (a, f, None, wt, ac, ia),
        [a, f, t, wt, ac, ia] => (a, f, Some(*t), wt, ac, ia),
        _ => {
            return Err(format!(
                "expected 5 columns after \"->\" (6 with --tun-info), found {}",
                w.len()
            ));
        }
    };
    let forward = match *fwd {
        "Masq" => Forward::Masq,
        "Local" => Forward::Local,
        "Tunnel" => Forward::Tunnel,
        "Route" => Forward::Route,
        f => return Err(format!("unknown forwarding method {f:?}")),
    };
    let n = |s: &str, what: &str| {
        s.parse::<u32>()
            .map_err(|_| format!("{what} {s:?} is not a number"))
    };
    let mut d = RealServer::new(
        parse_addr(addr)?,
        forward,
        weight
            .parse()
            .map_err(|_| format!("weight {weight:?} is not a number"))?,
    );
    d.activeconns = n(act, "ActiveConn")?;
    d.inactconns = n(inact, "InActConn")?;
    match tun {
        None | Some("n/a") => {}
        Some(t) if forward == Forward::Tunnel => d.tunnel = Tunnel::parse_info(t)?,
        Some(t) => return Err(format!("tunnel info {t:?} on a {fwd} real server")),
    }
    let svc = services
        .last_mut()
        .ok_or("a real server before any service")?;
    svc.dests.push(d);
    Ok(())
}
