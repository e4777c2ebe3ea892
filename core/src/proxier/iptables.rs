//! kube-proxy's iptables mode: the `iptables-restore` payload of one full sync, byte for byte
//! (kube-proxy v1.33 `pkg/proxy/iptables/proxier.go` `syncProxyRules`), plus the jump rules it
//! ensures in the built-in chains, and the resulting node state as `iptables-save` shows it.
//!
//! Order: kube-proxy iterates its service map (a Go map: random order per sync). We emit service
//! ports sorted by namespace, name, then spec port order; within one service port the order is
//! kube-proxy's own. Where kube-proxy builds a set through a map (merged terminating endpoints,
//! nodePortAddresses matches) we keep endpoint-string / interface order.

use super::{Categorized, Endpoint, ServicePort, categorize, service_ports};
use crate::k8s::Scenario;
use crate::k8s::ip::{push_host_port, push_ip};
use crate::rules::iptables::{self as ipt, Chain, Counters, Family, Ruleset};
use data_encoding::BASE32;
use ipnet::IpNet;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::fmt::Write;
use std::net::IpAddr;
use std::ops::Range;

/// More endpoints than this (over all service ports) puts kube-proxy in "large cluster mode":
/// per-endpoint comments are dropped to keep the payload small (`largeClusterEndpointsThreshold`).
pub const LARGE_CLUSTER_ENDPOINTS: usize = 1000;

/// kube-proxy's nfacct counter names (`pkg/proxy/metrics`).
pub const NFACCT_LOCALHOST_NODEPORTS: &str = "localhost_nps_accepted_pkts";
pub const NFACCT_CT_INVALID: &str = "ct_state_invalid_dropped_pkts";

/// First 16 characters of base32(sha256(input)) — kube-proxy's chain-name hash.
pub fn hash16(input: &str) -> String {
    let mut s = String::with_capacity(16);
    push_hash16(&mut s, &[input.as_bytes()]);
    s
}

/// Append the hash of the concatenated `parts` (a 10k-Service cluster names 110k chains: no
/// intermediate strings).
fn push_hash16(out: &mut String, parts: &[&[u8]]) {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    // 16 base32 characters are exactly the first 10 bytes (80 bits); no padding is involved.
    BASE32.encode_append(&h.finalize()[..10], out);
}

/// `KUBE-SVC-`/`KUBE-SVL-`/`KUBE-EXT-`/`KUBE-FW-` + hash of `ns/name[:port]` + protocol.
pub fn service_chain(prefix: &str, sp: &ServicePort) -> String {
    let mut s = String::with_capacity(prefix.len() + 16);
    s.push_str(prefix);
    push_hash16(
        &mut s,
        &[sp.name_string.as_bytes(), sp.protocol.as_str().as_bytes()],
    );
    s
}

/// `KUBE-SEP-` + hash of `ns/name[:port]` + protocol + `ip:port`.
pub fn endpoint_chain(sp: &ServicePort, ep: &Endpoint) -> String {
    let mut key = String::with_capacity(48);
    push_host_port(&mut key, ep.ip, ep.port);
    let mut s = String::with_capacity(25);
    s.push_str("KUBE-SEP-");
    push_hash16(
        &mut s,
        &[
            sp.name_string.as_bytes(),
            sp.protocol.as_str().as_bytes(),
            key.as_bytes(),
        ],
    );
    s
}

/// A jump from a built-in chain that kube-proxy ensures outside the restore payload.
#[derive(Debug, Clone, PartialEq)]
pub struct JumpRule {
    pub table: &'static str,
    pub from: &'static str,
    pub to: &'static str,
    pub comment: Option<&'static str>,
    pub ctstate_new: bool,
}

/// kube-proxy's `iptablesJumpChains` + `iptablesKubeletJumpChains`, in processing order. Each
/// is *prepended* if missing, so on a clean node a built-in chain lists them in reverse.
pub const JUMPS: &[JumpRule] = &[
    JumpRule {
        table: "filter",
        from: "INPUT",
        to: "KUBE-EXTERNAL-SERVICES",
        comment: Some("kubernetes externally-visible service portals"),
        ctstate_new: true,
    },
    JumpRule {
        table: "filter",
        from: "FORWARD",
        to: "KUBE-EXTERNAL-SERVICES",
        comment: Some("kubernetes externally-visible service portals"),
        ctstate_new: true,
    },
    JumpRule {
        table: "filter",
        from: "INPUT",
        to: "KUBE-NODEPORTS",
        comment: Some("kubernetes health check service ports"),
        ctstate_new: false,
    },
    JumpRule {
        table: "filter",
        from: "FORWARD",
        to: "KUBE-SERVICES",
        comment: Some("kubernetes service portals"),
        ctstate_new: true,
    },
    JumpRule {
        table: "filter",
        from: "OUTPUT",
        to: "KUBE-SERVICES",
        comment: Some("kubernetes service portals"),
        ctstate_new: true,
    },
    JumpRule {
        table: "filter",
        from: "FORWARD",
        to: "KUBE-FORWARD",
        comment: Some("kubernetes forwarding rules"),
        ctstate_new: false,
    },
    JumpRule {
        table: "filter",
        from: "INPUT",
        to: "KUBE-PROXY-FIREWALL",
        comment: Some("kubernetes load balancer firewall"),
        ctstate_new: true,
    },
    JumpRule {
        table: "filter",
        from: "OUTPUT",
        to: "KUBE-PROXY-FIREWALL",
        comment: Some("kubernetes load balancer firewall"),
        ctstate_new: true,
    },
    JumpRule {
        table: "filter",
        from: "FORWARD",
        to: "KUBE-PROXY-FIREWALL",
        comment: Some("kubernetes load balancer firewall"),
        ctstate_new: true,
    },
    JumpRule {
        table: "nat",
        from: "OUTPUT",
        to: "KUBE-SERVICES",
        comment: Some("kubernetes service portals"),
        ctstate_new: false,
    },
    JumpRule {
        table: "nat",
        from: "PREROUTING",
        to: "KUBE-SERVICES",
        comment: Some("kubernetes service portals"),
        ctstate_new: false,
    },
    JumpRule {
        table: "nat",
        from: "POSTROUTING",
        to: "KUBE-POSTROUTING",
        comment: Some("kubernetes postrouting rules"),
        ctstate_new: false,
    },
    JumpRule {
        table: "filter",
        from: "INPUT",
        to: "KUBE-FIREWALL",
        comment: None,
        ctstate_new: false,
    },
    JumpRule {
        table: "filter",
        from: "OUTPUT",
        to: "KUBE-FIREWALL",
        comment: None,
        ctstate_new: false,
    },
];

impl JumpRule {
    /// The rule in kube-proxy's argument order (as `iptables -I` is called).
    pub fn args(&self) -> String {
        let mut s = String::new();
        if self.ctstate_new {
            s.push_str("-m conntrack --ctstate NEW ");
        }
        if let Some(c) = self.comment {
            let _ = write!(s, "-m comment --comment \"{c}\" ");
        }
        let _ = write!(s, "-j {}", self.to);
        s
    }
}

/// What one family's proxier programs.
#[derive(Debug, Clone)]
pub struct FamilyRules {
    pub family: Family,
    /// The `iptables-restore --noflush --counters` input, byte for byte.
    pub payload: String,
    /// Service ports programmed (for naming chains in UIs).
    pub service_ports: Vec<(ServicePort, Categorized)>,
    pub large_cluster: bool,
    pub localhost_node_ports: bool,
}

/// Per-family knobs derived from the config and the node.
struct Ctx<'a> {
    s: &'a Scenario,
    mark: String,
    /// `IfLocal()` / `IfNotLocal()` of the local-traffic detector, built once per sync rather
    /// than per Service.
    if_local: Option<String>,
    if_not_local: Option<String>,
    localhost_np: bool,
    node_ip: Option<IpAddr>,
    large: bool,
    nfacct: bool,
    /// `probability(n)` texts, computed once (kube-proxy caches them the same way).
    probs: Vec<String>,
}

/// `1/n` with 10 decimals, as kube-proxy's `computeProbability` (`%0.10f`).
pub fn probability(n: usize) -> String {
    format!("{:.10}", 1.0 / n as f64)
}

/// A piece of rule text, appended in place. With `format!`, the 327k rules of a 10k-Service
/// sync cost a String per rule and the formatter per address: ~400M of 2,064M instructions.
trait Piece {
    fn put(&self, out: &mut String);
}

impl Piece for str {
    fn put(&self, out: &mut String) {
        out.push_str(self);
    }
}

impl Piece for String {
    fn put(&self, out: &mut String) {
        out.push_str(self);
    }
}

impl Piece for Cow<'_, str> {
    fn put(&self, out: &mut String) {
        out.push_str(self);
    }
}

impl Piece for IpAddr {
    fn put(&self, out: &mut String) {
        push_ip(out, *self);
    }
}

/// As ipnet's `Display`: `addr/prefix`.
impl Piece for IpNet {
    fn put(&self, out: &mut String) {
        push_ip(out, self.addr());
        out.push('/');
        out.push_str(itoa::Buffer::new().format(self.prefix_len()));
    }
}

impl Piece for u16 {
    fn put(&self, out: &mut String) {
        out.push_str(itoa::Buffer::new().format(*self));
    }
}

impl Piece for u32 {
    fn put(&self, out: &mut String) {
        out.push_str(itoa::Buffer::new().format(*self));
    }
}

impl<T: Piece + ?Sized> Piece for &T {
    fn put(&self, out: &mut String) {
        (**self).put(out);
    }
}

/// Append pieces to a String.
macro_rules! put {
    ($out:expr; $($p:expr),+ $(,)?) => {{
        let out: &mut String = $out;
        $( Piece::put(&$p, out); )+
    }};
}

/// Append pieces and the newline that ends a rule.
macro_rules! rule {
    ($out:expr; $($p:expr),+ $(,)?) => {{
        let out: &mut String = $out;
        $( Piece::put(&$p, out); )+
        out.push('\n');
    }};
}

/// Which endpoint lists a service port has chains for: decided once, used by both passes of
/// [`generate`].
struct PortPlan {
    /// The port's chain names in [`Arena::names`] (see [`Names`]).
    names: Range<usize>,
    /// Index of the port's first endpoint key in [`Arena::keys`].
    keys: usize,
    has_endpoints: bool,
    has_internal: bool,
    has_external: bool,
    uses_cluster_chain: bool,
    uses_local_chain: bool,
    uses_ext_chain: bool,
    uses_fw_chain: bool,
}

impl PortPlan {
    fn new(sp: &ServicePort, cat: &Categorized, arena: &mut Arena) -> Self {
        let has_endpoints = cat.has_any;
        let local_ok = has_endpoints && !cat.local.is_empty();
        let (names, keys) = arena.add_port(sp, &cat.reachable);
        PortPlan {
            names,
            keys,
            has_endpoints,
            has_internal: if sp.internal_policy_local {
                local_ok
            } else {
                has_endpoints
            },
            has_external: if sp.external_policy_local {
                local_ok
            } else {
                has_endpoints
            },
            uses_cluster_chain: !cat.cluster.is_empty() && sp.uses_cluster_endpoints(),
            uses_local_chain: !cat.local.is_empty() && sp.uses_local_endpoints(),
            // Based on has_endpoints, not has_external: the short-circuit rules for pod and node
            // traffic are needed even when no local endpoint exists.
            uses_ext_chain: has_endpoints && sp.externally_accessible(),
            uses_fw_chain: has_endpoints && !sp.lb_ips.is_empty() && !sp.source_ranges.is_empty(),
        }
    }
    /// Target and comment tail of the rules for traffic the port cannot serve.
    fn unserved(&self) -> (&'static str, &'static str) {
        if !self.has_endpoints {
            ("REJECT", " has no endpoints\"")
        } else {
            ("DROP", " has no local endpoints\"")
        }
    }
}

/// Every chain name and endpoint `ip:port` of one sync, built once in the first pass and
/// appended whole afterwards (each SEP name is written 3-5 times, each endpoint 2-4 times).
#[derive(Default)]
struct Arena {
    /// Per port: KUBE-SVC-, KUBE-SVL-, KUBE-EXT-, KUBE-FW- + the service hash, then KUBE-SEP-
    /// + hash per reachable endpoint.
    names: String,
    /// `ip:port` of every reachable endpoint, `key_ends` marking where each one ends.
    keys: String,
    key_ends: Vec<usize>,
    /// Scratch for one base32 hash.
    hash: String,
}

/// Length of the SVC+SVL+EXT+FW names at the start of a port's names.
const SERVICE_NAMES_LEN: usize = 3 * 25 + 24;

impl Arena {
    fn with_capacity(ports: usize, endpoints: usize) -> Self {
        Arena {
            names: String::with_capacity(ports * SERVICE_NAMES_LEN + endpoints * 25),
            keys: String::with_capacity(endpoints * 24),
            key_ends: Vec::with_capacity(endpoints),
            hash: String::with_capacity(16),
        }
    }

    fn add_port(&mut self, sp: &ServicePort, reachable: &[Endpoint]) -> (Range<usize>, usize) {
        let start = self.names.len();
        let name = sp.name_string.as_bytes();
        let proto = sp.protocol.as_str().as_bytes();
        self.hash.clear();
        push_hash16(&mut self.hash, &[name, proto]);
        for prefix in ["KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-"] {
            self.names.push_str(prefix);
            self.names.push_str(&self.hash);
        }
        let keys = self.key_ends.len();
        for ep in reachable {
            let k = self.keys.len();
            push_host_port(&mut self.keys, ep.ip, ep.port);
            self.key_ends.push(self.keys.len());
            self.names.push_str("KUBE-SEP-");
            push_hash16(&mut self.names, &[name, proto, &self.keys.as_bytes()[k..]]);
        }
        (start..self.names.len(), keys)
    }

    fn names(&self, plan: &PortPlan) -> Names<'_> {
        Names {
            text: &self.names[plan.names.clone()],
        }
    }

    /// `ip:port` of the port's `i`th reachable endpoint.
    fn key(&self, plan: &PortPlan, i: usize) -> &str {
        let i = plan.keys + i;
        let start = if i == 0 { 0 } else { self.key_ends[i - 1] };
        &self.keys[start..self.key_ends[i]]
    }
}

/// One service port's chain names (a slice of [`Arena::names`]).
#[derive(Clone, Copy)]
struct Names<'a> {
    text: &'a str,
}

impl<'a> Names<'a> {
    fn svc(self) -> &'a str {
        &self.text[..25]
    }
    fn svl(self) -> &'a str {
        &self.text[25..50]
    }
    fn ext(self) -> &'a str {
        &self.text[50..75]
    }
    fn fw(self) -> &'a str {
        &self.text[75..SERVICE_NAMES_LEN]
    }
    /// SEP chain of the `i`th reachable endpoint.
    fn sep(self, i: usize) -> &'a str {
        let at = SERVICE_NAMES_LEN + 25 * i;
        &self.text[at..at + 25]
    }
    fn internal_chain(self, sp: &ServicePort) -> &'a str {
        if sp.internal_policy_local {
            self.svl()
        } else {
            self.svc()
        }
    }
    fn external_policy_chain(self, sp: &ServicePort) -> &'a str {
        if sp.external_policy_local {
            self.svl()
        } else {
            self.svc()
        }
    }
}

/// Finds endpoints of a port's `cluster` / `local` list among its reachable ones.
struct Seps<'a> {
    reachable: &'a [Endpoint],
    /// Where the last lookup matched: `cluster` and `local` are subsequences of `reachable`
    /// (all three in endpoint-string order), so the next one is usually the next entry.
    cursor: usize,
}

impl Seps<'_> {
    fn find(&mut self, ep: &Endpoint) -> Option<usize> {
        let n = self.reachable.len();
        let same = |r: &Endpoint| r.ip == ep.ip && r.port == ep.port;
        let found = (self.cursor..n)
            .chain(0..self.cursor.min(n))
            .find(|&i| same(&self.reachable[i]));
        if let Some(i) = found {
            self.cursor = i + 1;
        }
        found
    }
}

/// Which families kube-proxy runs a proxier for: those the node has a (non-loopback) address of;
/// IPv4 alone when the node's addresses are unknown.
pub fn families(s: &Scenario) -> Vec<Family> {
    let addrs = s.local_addresses();
    let v4 = addrs.iter().any(|a| a.is_ipv4() && !a.is_loopback()) || s.node_ip(false).is_some();
    let v6 = addrs.iter().any(|a| a.is_ipv6() && !a.is_loopback()) || s.node_ip(true).is_some();
    match (v4, v6) {
        (_, false) => vec![Family::V4],
        (false, true) => vec![Family::V6],
        (true, true) => vec![Family::V4, Family::V6],
    }
}

/// The nodePortAddresses of this family: `None` = match all local addresses (the addrtype tail
/// rule), `Some(cidrs)` = only addresses inside these CIDRs.
fn node_port_cidrs(s: &Scenario, v6: bool) -> Option<Vec<IpNet>> {
    let cfg = &s.config.node_port_addresses;
    if cfg.is_empty() {
        return None;
    }
    let mut cidrs = Vec::new();
    for c in cfg {
        if c == "primary" {
            if let Some(ip) = s.node_ip(v6) {
                cidrs.push(IpNet::from(ip));
            }
        } else if let Some(n) = crate::k8s::ip::parse_cidr_sloppy(c)
            && matches!(n, IpNet::V6(_)) == v6
        {
            cidrs.push(n);
        }
    }
    // An explicit 0.0.0.0/0 or ::/0 means "all" (kube-proxy's IsZeroCIDR).
    if cidrs.iter().any(|c| c.prefix_len() == 0) {
        return None;
    }
    Some(cidrs)
}

/// Generate one family's payload.
///
/// Two passes over the service ports: the first writes the filter rules and the nat chain
/// declarations, the second writes the nat rules straight into the payload. The nat rules are
/// ~29 MB at 10k Services; building them apart and copying them behind the declarations cost a
/// second 29 MB of fresh pages (page faults) plus the copy.
pub fn generate(s: &Scenario, family: Family) -> FamilyRules {
    let v6 = family == Family::V6;
    let ports = service_ports(s, v6);
    let total_endpoints: usize = ports.iter().map(|p| p.endpoints.len()).sum();
    let np_cidrs = node_port_cidrs(s, v6);
    // Localhost NodePorts: IPv4 only, and forced off when nodePortAddresses excludes loopback.
    let localhost_np = !v6
        && s.config.localhost_node_ports
        && np_cidrs
            .as_ref()
            .is_none_or(|c| c.iter().any(|n| n.contains(&IpAddr::from([127, 0, 0, 1]))));
    let detect = s.config.detect_local(v6, &s.node_pod_cidrs());
    let cx = Ctx {
        s,
        mark: format!("{:#x}", s.config.masquerade_mark()),
        if_local: detect.if_local(),
        if_not_local: detect.if_not_local(),
        localhost_np,
        node_ip: s.node_ip(v6),
        large: total_endpoints > LARGE_CLUSTER_ENDPOINTS,
        probs: (0..=ports
            .iter()
            .map(|p| p.endpoints.len())
            .max()
            .unwrap_or(0)
            .min(4096))
            .map(|n| {
                if n == 0 {
                    String::new()
                } else {
                    probability(n)
                }
            })
            .collect(),
        nfacct: s.network.nfacct,
    };
    let mut filter_chains = String::with_capacity(256);
    let mut filter_rules = String::with_capacity(ports.len() * 64 + 4096);
    // At most 4 service chains per port and one SEP chain per endpoint, 36 bytes a line.
    let mut nat_chains = String::with_capacity(ports.len() * 4 * 36 + total_endpoints * 36 + 256);

    for c in [
        "KUBE-SERVICES",
        "KUBE-EXTERNAL-SERVICES",
        "KUBE-FORWARD",
        "KUBE-NODEPORTS",
        "KUBE-PROXY-FIREWALL",
    ] {
        let _ = writeln!(filter_chains, ":{c} - [0:0]");
    }
    for c in [
        "KUBE-SERVICES",
        "KUBE-NODEPORTS",
        "KUBE-POSTROUTING",
        "KUBE-MARK-MASQ",
    ] {
        let _ = writeln!(nat_chains, ":{c} - [0:0]");
    }
    let m = &cx.mark;
    if localhost_np {
        // route_localnet makes 127/8 NodePorts work and opens a hole (CVE-2020-8558); this rule,
        // a copy of kubelet's, closes it.
        let _ = writeln!(filter_chains, ":KUBE-FIREWALL - [0:0]");
        let _ = writeln!(
            filter_rules,
            "-A KUBE-FIREWALL -m comment --comment \"block incoming localnet connections\" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP"
        );
    }

    let est_nat_rules = ports.len() * 600 + total_endpoints * 400 + 4096;
    let mut programmed = Vec::with_capacity(ports.len());
    let mut plans = Vec::with_capacity(ports.len());
    let mut arena = Arena::with_capacity(ports.len(), total_endpoints);
    for spe in ports {
        let cat = categorize(&spe.endpoints, &spe.port);
        let plan = PortPlan::new(&spe.port, &cat, &mut arena);
        write_port_filter_and_chains(
            &spe.port,
            &cat,
            &plan,
            arena.names(&plan),
            &mut filter_rules,
            &mut nat_chains,
        );
        programmed.push((spe.port, cat));
        plans.push(plan);
    }

    if !s.config.tcp_be_liberal {
        let acct = if cx.nfacct {
            format!(" -m nfacct --nfacct-name {NFACCT_CT_INVALID}")
        } else {
            String::new()
        };
        let _ = writeln!(
            filter_rules,
            "-A KUBE-FORWARD -m conntrack --ctstate INVALID{acct} -j DROP"
        );
    }
    let _ = writeln!(
        filter_rules,
        "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark {m}/{m} -j ACCEPT"
    );
    let _ = writeln!(
        filter_rules,
        "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
    );

    let mut payload = String::with_capacity(
        filter_chains.len() + filter_rules.len() + nat_chains.len() + est_nat_rules + 32,
    );
    payload.push_str("*filter\n");
    payload.push_str(&filter_chains);
    payload.push_str(&filter_rules);
    payload.push_str("COMMIT\n*nat\n");
    payload.push_str(&nat_chains);
    drop((filter_chains, filter_rules, nat_chains));
    let nat_rules = &mut payload;
    super::write_masquerade_rules(nat_rules, m, s.network.random_fully);
    for ((sp, cat), plan) in programmed.iter().zip(&plans) {
        write_port_nat_rules(&cx, sp, cat, plan, &arena, nat_rules);
    }

    // The NodePort tail rule must stay last in KUBE-SERVICES.
    const TAIL: &str =
        "\"kubernetes service nodeports; NOTE: this must be the last rule in this chain\"";
    match &np_cidrs {
        None => {
            let extra = if v6 {
                " ! -d ::1/128"
            } else if !localhost_np {
                " ! -d 127.0.0.0/8"
            } else {
                ""
            };
            let _ = writeln!(
                nat_rules,
                "-A KUBE-SERVICES -m comment --comment {TAIL} -m addrtype --dst-type LOCAL{extra} -j KUBE-NODEPORTS"
            );
        }
        Some(cidrs) => {
            let mut seen = Vec::new();
            for (_, addrs) in &s.network.interfaces {
                for a in addrs {
                    let ip = a.addr();
                    if ip.is_ipv6() != v6
                        || seen.contains(&ip)
                        || !cidrs.iter().any(|c| c.contains(&ip))
                    {
                        continue;
                    }
                    if ip.is_loopback() && (v6 || !localhost_np) {
                        continue;
                    }
                    seen.push(ip);
                    let _ = writeln!(
                        nat_rules,
                        "-A KUBE-SERVICES -m comment --comment {TAIL} -d {ip} -j KUBE-NODEPORTS"
                    );
                }
            }
        }
    }
    payload.push_str("COMMIT\n");
    FamilyRules {
        family,
        payload,
        service_ports: programmed,
        large_cluster: cx.large,
        localhost_node_ports: localhost_np,
    }
}

/// First pass for one service port: its filter rules and its nat chain declarations.
fn write_port_filter_and_chains(
    sp: &ServicePort,
    cat: &Categorized,
    plan: &PortPlan,
    names: Names,
    filter_rules: &mut String,
    nat_chains: &mut String,
) {
    let p = sp.protocol.as_str();
    let spn = &sp.name_string;
    let (target, unserved) = plan.unserved();
    let (cip, port) = (sp.cluster_ip, sp.port);
    if !plan.has_internal {
        rule!(filter_rules; "-A KUBE-SERVICES -m comment --comment \"", spn, unserved, " -m ", p,
            " -p ", p, " -d ", cip, " --dport ", port, " -j ", target);
    }
    if !plan.has_external {
        for eip in &sp.external_ips {
            rule!(filter_rules; "-A KUBE-EXTERNAL-SERVICES -m comment --comment \"", spn, unserved,
                " -m ", p, " -p ", p, " -d ", eip, " --dport ", port, " -j ", target);
        }
    }
    if plan.uses_fw_chain {
        for lb in &sp.lb_ips {
            rule!(filter_rules; "-A KUBE-PROXY-FIREWALL -m comment --comment \"", spn,
                " traffic not accepted by ", names.fw(), "\" -m ", p, " -p ", p, " -d ", lb,
                " --dport ", port, " -j DROP");
        }
    }
    if !plan.has_external {
        for lb in &sp.lb_ips {
            rule!(filter_rules; "-A KUBE-EXTERNAL-SERVICES -m comment --comment \"", spn, unserved,
                " -m ", p, " -p ", p, " -d ", lb, " --dport ", port, " -j ", target);
        }
        if sp.node_port != 0 {
            rule!(filter_rules; "-A KUBE-EXTERNAL-SERVICES -m comment --comment \"", spn, unserved,
                " -m addrtype --dst-type LOCAL -m ", p, " -p ", p, " --dport ", sp.node_port,
                " -j ", target);
        }
    }
    if sp.health_check_node_port != 0 {
        rule!(filter_rules; "-A KUBE-NODEPORTS -m comment --comment \"", spn,
            " health check node port\" -m tcp -p tcp --dport ", sp.health_check_node_port,
            " -j ACCEPT");
    }

    let declare = |out: &mut String, chain: &str| rule!(out; ":", chain, " - [0:0]");
    if plan.uses_ext_chain {
        declare(nat_chains, names.ext());
    }
    if plan.uses_fw_chain {
        declare(nat_chains, names.fw());
    }
    if plan.uses_cluster_chain {
        declare(nat_chains, names.svc());
    }
    if plan.uses_local_chain {
        declare(nat_chains, names.svl());
    }
    for i in 0..cat.reachable.len() {
        declare(nat_chains, names.sep(i));
    }
}

/// Second pass for one service port: its nat rules, in kube-proxy's order.
fn write_port_nat_rules(
    cx: &Ctx,
    sp: &ServicePort,
    cat: &Categorized,
    plan: &PortPlan,
    arena: &Arena,
    nat_rules: &mut String,
) {
    let p = sp.protocol.as_str();
    let spn = &sp.name_string;
    let (cip, port) = (sp.cluster_ip, sp.port);
    let names = arena.names(plan);
    let ext_chain = names.ext();
    if plan.has_internal {
        rule!(nat_rules; "-A KUBE-SERVICES -m comment --comment \"", spn, " cluster IP\" -m ", p,
            " -p ", p, " -d ", cip, " --dport ", port, " -j ", names.internal_chain(sp));
    }
    if plan.has_endpoints {
        for eip in &sp.external_ips {
            rule!(nat_rules; "-A KUBE-SERVICES -m comment --comment \"", spn, " external IP\" -m ",
                p, " -p ", p, " -d ", eip, " --dport ", port, " -j ", ext_chain);
        }
        let lb_chain = if plan.uses_fw_chain {
            names.fw()
        } else {
            ext_chain
        };
        for lb in &sp.lb_ips {
            rule!(nat_rules; "-A KUBE-SERVICES -m comment --comment \"", spn,
                " loadbalancer IP\" -m ", p, " -p ", p, " -d ", lb, " --dport ", port, " -j ",
                lb_chain);
        }
        if sp.node_port != 0 {
            let np = sp.node_port;
            if cx.localhost_np && cx.nfacct {
                rule!(nat_rules; "-A KUBE-NODEPORTS -m comment --comment ", spn, " -m ", p, " -p ",
                    p, " -d 127.0.0.0/8 --dport ", np, " -m nfacct --nfacct-name ",
                    NFACCT_LOCALHOST_NODEPORTS, " -j ", ext_chain);
            }
            rule!(nat_rules; "-A KUBE-NODEPORTS -m comment --comment ", spn, " -m ", p, " -p ", p,
                " --dport ", np, " -j ", ext_chain);
        }
    }

    // Internal masquerade: written to the internal chain's rules before its jump rules.
    if plan.has_internal {
        // Off-cluster traffic to a ClusterIP may bounce off-node: masquerade it.
        let not_local = if cx.s.config.masquerade_all {
            Some("")
        } else {
            cx.if_not_local.as_deref()
        };
        if let Some(nl) = not_local {
            put!(nat_rules; "-A ", names.internal_chain(sp), " -m comment --comment \"", spn,
                " cluster IP\" -m ", p, " -p ", p, " -d ", cip, " --dport ", port);
            if !nl.is_empty() {
                put!(nat_rules; " ", nl);
            }
            nat_rules.push_str(" -j KUBE-MARK-MASQ\n");
        }
    }

    if plan.uses_ext_chain {
        if !sp.external_policy_local {
            rule!(nat_rules; "-A ", ext_chain, " -m comment --comment \"masquerade traffic for ",
                spn, " external destinations\" -j KUBE-MARK-MASQ");
        } else {
            if let Some(l) = &cx.if_local {
                // Pod -> external IP traffic acts as if it went out to the LB and came back:
                // neither traffic policy applies.
                rule!(nat_rules; "-A ", ext_chain, " -m comment --comment \"pod traffic for ", spn,
                    " external destinations\" ", l, " -j ", names.svc());
            }
            rule!(nat_rules; "-A ", ext_chain,
                " -m comment --comment \"masquerade LOCAL traffic for ", spn,
                " external destinations\" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ");
            rule!(nat_rules; "-A ", ext_chain, " -m comment --comment \"route LOCAL traffic for ",
                spn, " external destinations\" -m addrtype --src-type LOCAL -j ", names.svc());
        }
        if plan.has_external {
            rule!(nat_rules; "-A ", ext_chain, " -j ", names.external_policy_chain(sp));
        }
    }

    if plan.uses_fw_chain {
        let fw_chain = names.fw();
        let mut allow_from_node = false;
        for cidr in &sp.source_ranges {
            rule!(nat_rules; "-A ", fw_chain, " -m comment --comment \"", spn,
                " loadbalancer IP\" -s ", cidr, " -j ", ext_chain);
            if cx.node_ip.is_some_and(|ip| cidr.contains(&ip)) {
                allow_from_node = true;
            }
        }
        // A node talking to its own LB VIP can loop back with the VIP as source.
        if allow_from_node {
            for lb in &sp.lb_ips {
                rule!(nat_rules; "-A ", fw_chain, " -m comment --comment \"", spn,
                    " loadbalancer IP\" -s ", lb, " -j ", ext_chain);
            }
        }
        rule!(nat_rules; "-A ", fw_chain, " -m comment --comment \"other traffic to ", spn,
            " will be dropped by KUBE-PROXY-FIREWALL\"");
    }

    if plan.uses_cluster_chain {
        write_service_to_endpoints(
            cx,
            nat_rules,
            sp,
            cat,
            plan,
            arena,
            names.svc(),
            &cat.cluster,
        );
    }
    if plan.uses_local_chain {
        write_service_to_endpoints(cx, nat_rules, sp, cat, plan, arena, names.svl(), &cat.local);
    }

    for i in 0..cat.reachable.len() {
        let sep = names.sep(i);
        let key = arena.key(plan, i);
        let head = |out: &mut String| {
            put!(out; "-A ", sep, " ");
            if !cx.large {
                // `appendServiceCommentLocked`: left out in large-cluster mode.
                put!(out; "-m comment --comment ", spn, " ");
            }
        };
        // Hairpin: a pod reaching itself through the Service must be SNATed, or the reply
        // would bypass conntrack's reverse NAT.
        head(nat_rules);
        rule!(nat_rules; "-s ", host_of(key), " -j KUBE-MARK-MASQ");
        head(nat_rules);
        if sp.affinity_seconds.is_some() {
            put!(nat_rules; "-m recent --name ", sep, " --set ");
        }
        rule!(nat_rules; "-m ", p, " -p ", p, " -j DNAT --to-destination ", key);
    }
}

/// The address part of `ip:port` / `[ip]:port`, as `IpAddr`'s `Display` prints it.
fn host_of(key: &str) -> &str {
    let host = key.rsplit_once(':').map_or(key, |(h, _)| h);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// SVC/SVL chain body: affinity checks, then the cascade of `1/(n-i)` random jumps.
#[allow(clippy::too_many_arguments)]
fn write_service_to_endpoints(
    cx: &Ctx,
    nat_rules: &mut String,
    sp: &ServicePort,
    cat: &Categorized,
    plan: &PortPlan,
    arena: &Arena,
    chain: &str,
    eps: &[Endpoint],
) {
    let spn = &sp.name_string;
    let names = arena.names(plan);
    let mut seps = Seps {
        reachable: &cat.reachable,
        cursor: 0,
    };
    // SEP chain and `ip:port` of each endpoint; hashed here if it is not a reachable one (never
    // the case for categorize's lists).
    let mut lookup = |ep: &Endpoint| -> (Cow<'_, str>, Cow<'_, str>) {
        match seps.find(ep) {
            Some(i) => (names.sep(i).into(), arena.key(plan, i).into()),
            None => (
                endpoint_chain(sp, ep).into(),
                crate::k8s::ip::join_host_port(ep.ip, ep.port).into(),
            ),
        }
    };
    // `-A CHAIN [-m comment --comment "ns/svc:port -> ip:port"] `; the comment is left out in
    // large-cluster mode.
    let head = |out: &mut String, key: &str| {
        put!(out; "-A ", chain, " ");
        if !cx.large {
            put!(out; "-m comment --comment \"", spn, " -> ", key, "\" ");
        }
    };
    if let Some(timeout) = sp.affinity_seconds {
        for ep in eps {
            let (sep, key) = lookup(ep);
            head(nat_rules, &key);
            rule!(nat_rules; "-m recent --name ", sep, " --rcheck --seconds ", timeout,
                " --reap -j ", sep);
        }
    }
    let n = eps.len();
    for (i, ep) in eps.iter().enumerate() {
        let (sep, key) = lookup(ep);
        head(nat_rules, &key);
        if i < n - 1 {
            nat_rules.push_str("-m statistic --mode random --probability ");
            match cx.probs.get(n - i) {
                Some(t) => nat_rules.push_str(t),
                None => nat_rules.push_str(&probability(n - i)),
            }
            nat_rules.push(' ');
        }
        rule!(nat_rules; "-j ", sep);
    }
}

/// The node's ruleset after kube-proxy's sync, as `iptables-save` shows it: the payload loaded
/// into empty tables with built-in chains (policy ACCEPT), plus the ensured jump rules.
pub fn node_ruleset(fr: &FamilyRules) -> Ruleset {
    let parsed = ipt::parse(&fr.payload, fr.family);
    debug_assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    let mut rs = parsed.ruleset;
    for table in ["filter", "nat"] {
        let t = match rs.table_mut(table) {
            Some(t) => t,
            None => {
                rs.tables.push(ipt::Table::new(table));
                rs.tables.last_mut().expect("pushed")
            }
        };
        for (i, b) in ipt::builtin_chains(table).iter().enumerate() {
            if t.chain(b).is_none() {
                t.chains.insert(
                    i,
                    Chain {
                        name: b.to_string(),
                        policy: Some("ACCEPT".into()),
                        counters: Counters::default(),
                        rules: Vec::new(),
                    },
                );
            }
        }
    }
    for j in JUMPS {
        let t = rs.table_mut(j.table).expect("table created above");
        if t.chain(j.to).is_none() {
            // EnsureChain: kube-proxy creates the chain (empty) before jumping to it.
            t.chains.push(Chain {
                name: j.to.to_string(),
                policy: None,
                counters: Counters::default(),
                rules: Vec::new(),
            });
        }
        let text = j.args();
        // The parser only asks whether the jump target is a declared chain: it is (just above).
        let idx: std::collections::HashMap<String, usize> = [(j.to.to_string(), 0)].into();
        let mut diags = Vec::new();
        let rule = ipt::parse::parse_rule_args(&text, fr.family, j.table, &idx, 0, &mut diags)
            .expect("static rule");
        let chain = t.chain_mut(j.from).expect("built-in chain");
        // `iptables -C` first, then `-I CHAIN 1` (prepend) when missing.
        if !chain.rules.contains(&rule) {
            chain.rules.insert(0, rule);
        }
    }
    rs
}

/// `iptables-save` text of the node after the sync (no `#` header lines).
pub fn saved_text(fr: &FamilyRules) -> String {
    ipt::print_saved(&node_ruleset(fr), false)
}

/// Rules for every active family.
pub fn generate_all(s: &Scenario) -> Vec<FamilyRules> {
    families(s).into_iter().map(|f| generate(s, f)).collect()
}
