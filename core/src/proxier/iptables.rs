//! kube-proxy's iptables mode: the `iptables-restore` payload of one full sync, byte for byte
//! (kube-proxy v1.33 `pkg/proxy/iptables/proxier.go` `syncProxyRules`), plus the jump rules it
//! ensures in the built-in chains, and the resulting node state as `iptables-save` shows it.
//!
//! Order: kube-proxy iterates its service map (a Go map: random order per sync). We emit service
//! ports sorted by namespace, name, then spec port order; within one service port the order is
//! kube-proxy's own. Where kube-proxy builds a set through a map (merged terminating endpoints,
//! nodePortAddresses matches) we keep endpoint-string / interface order.

use super::{Categorized, Endpoint, ServicePort, categorize, service_ports};
use crate::k8s::ip::push_ip;
use crate::k8s::{DetectLocal, Scenario};
use crate::rules::iptables::{self as ipt, Chain, Counters, Family, Ruleset};
use data_encoding::BASE32;
use ipnet::IpNet;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt::Write;
use std::net::IpAddr;

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
    write_host_port(&mut key, ep.ip, ep.port);
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
    detect: DetectLocal,
    localhost_np: bool,
    node_ip: Option<IpAddr>,
    large: bool,
    nfacct: bool,
    /// `probability(n)` texts, computed once (kube-proxy caches them the same way).
    probs: Vec<String>,
}

impl Ctx<'_> {
    fn if_local(&self) -> Option<String> {
        self.detect.if_local()
    }
    fn if_not_local(&self) -> Option<String> {
        self.detect.if_not_local()
    }
    /// `-m comment --comment X ` unless in large-cluster mode (`appendServiceCommentLocked`).
    fn service_comment(&self, out: &mut String, comment: &str) {
        if !self.large {
            let _ = write!(out, "-m comment --comment {comment} ");
        }
    }
}

/// `1/n` with 10 decimals, as kube-proxy's `computeProbability` (`%0.10f`).
pub fn probability(n: usize) -> String {
    format!("{:.10}", 1.0 / n as f64)
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
    let cx = Ctx {
        s,
        mark: format!("{:#x}", s.config.masquerade_mark()),
        detect: s.config.detect_local(v6, &s.node_pod_cidrs()),
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
    let est = ports.len() * 600 + total_endpoints * 400 + 4096;
    let mut filter_chains = String::with_capacity(256);
    let mut filter_rules = String::with_capacity(est / 4);
    let mut nat_chains = String::with_capacity(est / 4);
    let mut nat_rules = String::with_capacity(est);

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
    super::write_masquerade_rules(&mut nat_rules, m, s.network.random_fully);
    if localhost_np {
        // route_localnet makes 127/8 NodePorts work and opens a hole (CVE-2020-8558); this rule,
        // a copy of kubelet's, closes it.
        let _ = writeln!(filter_chains, ":KUBE-FIREWALL - [0:0]");
        let _ = writeln!(
            filter_rules,
            "-A KUBE-FIREWALL -m comment --comment \"block incoming localnet connections\" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP"
        );
    }

    let mut programmed = Vec::with_capacity(ports.len());
    for spe in ports {
        let cat = categorize(&spe.endpoints, &spe.port);
        write_service_port(
            &cx,
            &spe.port,
            &cat,
            &mut filter_rules,
            &mut nat_chains,
            &mut nat_rules,
        );
        programmed.push((spe.port, cat));
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
        filter_chains.len() + filter_rules.len() + nat_chains.len() + nat_rules.len() + 32,
    );
    payload.push_str("*filter\n");
    payload.push_str(&filter_chains);
    payload.push_str(&filter_rules);
    payload.push_str("COMMIT\n*nat\n");
    payload.push_str(&nat_chains);
    payload.push_str(&nat_rules);
    payload.push_str("COMMIT\n");
    FamilyRules {
        family,
        payload,
        service_ports: programmed,
        large_cluster: cx.large,
        localhost_node_ports: localhost_np,
    }
}

fn write_service_port(
    cx: &Ctx,
    sp: &ServicePort,
    cat: &Categorized,
    filter_rules: &mut String,
    nat_chains: &mut String,
    nat_rules: &mut String,
) {
    let p = sp.protocol.as_str();
    let spn = &sp.name_string;
    // The four per-service chains share one hash suffix.
    let suffix = &service_chain("", sp);
    let svc_chain = format!("KUBE-SVC-{suffix}");
    let svl_chain = format!("KUBE-SVL-{suffix}");
    let ext_chain = format!("KUBE-EXT-{suffix}");
    let fw_chain = format!("KUBE-FW-{suffix}");
    let mut seps = SepNames {
        sp,
        names: HashMap::with_capacity(cat.reachable.len()),
    };

    let uses_cluster_chain = !cat.cluster.is_empty() && sp.uses_cluster_endpoints();
    let uses_local_chain = !cat.local.is_empty() && sp.uses_local_endpoints();
    let has_endpoints = cat.has_any;
    let (internal_chain, has_internal) = if sp.internal_policy_local {
        (&svl_chain, has_endpoints && !cat.local.is_empty())
    } else {
        (&svc_chain, has_endpoints)
    };
    let (external_policy_chain, has_external) = if sp.external_policy_local {
        (&svl_chain, has_endpoints && !cat.local.is_empty())
    } else {
        (&svc_chain, has_endpoints)
    };
    // Based on has_endpoints, not has_external: the short-circuit rules for pod and node
    // traffic are needed even when no local endpoint exists.
    let uses_ext_chain = has_endpoints && sp.externally_accessible();
    let uses_fw_chain = has_endpoints && !sp.lb_ips.is_empty() && !sp.source_ranges.is_empty();
    let lb_chain = if uses_fw_chain { &fw_chain } else { &ext_chain };

    let (int_target, int_comment, ext_target, ext_comment) = if !has_endpoints {
        let c = format!("\"{spn} has no endpoints\"");
        ("REJECT", c.clone(), "REJECT", c)
    } else {
        let c = format!("\"{spn} has no local endpoints\"");
        ("DROP", c.clone(), "DROP", c)
    };

    let cip = sp.cluster_ip;
    let port = sp.port;
    if has_internal {
        let _ = writeln!(
            nat_rules,
            "-A KUBE-SERVICES -m comment --comment \"{spn} cluster IP\" -m {p} -p {p} -d {cip} --dport {port} -j {internal_chain}"
        );
    } else {
        let _ = writeln!(
            filter_rules,
            "-A KUBE-SERVICES -m comment --comment {int_comment} -m {p} -p {p} -d {cip} --dport {port} -j {int_target}"
        );
    }
    for eip in &sp.external_ips {
        if has_endpoints {
            let _ = writeln!(
                nat_rules,
                "-A KUBE-SERVICES -m comment --comment \"{spn} external IP\" -m {p} -p {p} -d {eip} --dport {port} -j {ext_chain}"
            );
        }
        if !has_external {
            let _ = writeln!(
                filter_rules,
                "-A KUBE-EXTERNAL-SERVICES -m comment --comment {ext_comment} -m {p} -p {p} -d {eip} --dport {port} -j {ext_target}"
            );
        }
    }
    for lb in &sp.lb_ips {
        if has_endpoints {
            let _ = writeln!(
                nat_rules,
                "-A KUBE-SERVICES -m comment --comment \"{spn} loadbalancer IP\" -m {p} -p {p} -d {lb} --dport {port} -j {lb_chain}"
            );
        }
        if uses_fw_chain {
            let _ = writeln!(
                filter_rules,
                "-A KUBE-PROXY-FIREWALL -m comment --comment \"{spn} traffic not accepted by {fw_chain}\" -m {p} -p {p} -d {lb} --dport {port} -j DROP"
            );
        }
    }
    if !has_external {
        for lb in &sp.lb_ips {
            let _ = writeln!(
                filter_rules,
                "-A KUBE-EXTERNAL-SERVICES -m comment --comment {ext_comment} -m {p} -p {p} -d {lb} --dport {port} -j {ext_target}"
            );
        }
    }
    if sp.node_port != 0 {
        let np = sp.node_port;
        if has_endpoints {
            if cx.localhost_np && cx.nfacct {
                let _ = writeln!(
                    nat_rules,
                    "-A KUBE-NODEPORTS -m comment --comment {spn} -m {p} -p {p} -d 127.0.0.0/8 --dport {np} -m nfacct --nfacct-name {NFACCT_LOCALHOST_NODEPORTS} -j {ext_chain}"
                );
            }
            let _ = writeln!(
                nat_rules,
                "-A KUBE-NODEPORTS -m comment --comment {spn} -m {p} -p {p} --dport {np} -j {ext_chain}"
            );
        }
        if !has_external {
            let _ = writeln!(
                filter_rules,
                "-A KUBE-EXTERNAL-SERVICES -m comment --comment {ext_comment} -m addrtype --dst-type LOCAL -m {p} -p {p} --dport {np} -j {ext_target}"
            );
        }
    }
    if sp.health_check_node_port != 0 {
        let _ = writeln!(
            filter_rules,
            "-A KUBE-NODEPORTS -m comment --comment \"{spn} health check node port\" -m tcp -p tcp --dport {} -j ACCEPT",
            sp.health_check_node_port
        );
    }

    // Internal masquerade: written to the internal chain's rules before its jump rules.
    if has_internal {
        let base = format!(
            "-A {internal_chain} -m comment --comment \"{spn} cluster IP\" -m {p} -p {p} -d {cip} --dport {port}"
        );
        if cx.s.config.masquerade_all {
            let _ = writeln!(nat_rules, "{base} -j KUBE-MARK-MASQ");
        } else if let Some(nl) = cx.if_not_local() {
            // Off-cluster traffic to a ClusterIP may bounce off-node: masquerade it.
            let _ = writeln!(nat_rules, "{base} {nl} -j KUBE-MARK-MASQ");
        }
    }

    if uses_ext_chain {
        let _ = writeln!(nat_chains, ":{ext_chain} - [0:0]");
        if !sp.external_policy_local {
            let _ = writeln!(
                nat_rules,
                "-A {ext_chain} -m comment --comment \"masquerade traffic for {spn} external destinations\" -j KUBE-MARK-MASQ"
            );
        } else {
            if let Some(l) = cx.if_local() {
                // Pod -> external IP traffic acts as if it went out to the LB and came back:
                // neither traffic policy applies.
                let _ = writeln!(
                    nat_rules,
                    "-A {ext_chain} -m comment --comment \"pod traffic for {spn} external destinations\" {l} -j {svc_chain}"
                );
            }
            let _ = writeln!(
                nat_rules,
                "-A {ext_chain} -m comment --comment \"masquerade LOCAL traffic for {spn} external destinations\" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ"
            );
            let _ = writeln!(
                nat_rules,
                "-A {ext_chain} -m comment --comment \"route LOCAL traffic for {spn} external destinations\" -m addrtype --src-type LOCAL -j {svc_chain}"
            );
        }
        if has_external {
            let _ = writeln!(nat_rules, "-A {ext_chain} -j {external_policy_chain}");
        }
    }

    if uses_fw_chain {
        let _ = writeln!(nat_chains, ":{fw_chain} - [0:0]");
        let mut allow_from_node = false;
        for cidr in &sp.source_ranges {
            let _ = writeln!(
                nat_rules,
                "-A {fw_chain} -m comment --comment \"{spn} loadbalancer IP\" -s {cidr} -j {ext_chain}"
            );
            if cx.node_ip.is_some_and(|ip| cidr.contains(&ip)) {
                allow_from_node = true;
            }
        }
        // A node talking to its own LB VIP can loop back with the VIP as source.
        if allow_from_node {
            for lb in &sp.lb_ips {
                let _ = writeln!(
                    nat_rules,
                    "-A {fw_chain} -m comment --comment \"{spn} loadbalancer IP\" -s {lb} -j {ext_chain}"
                );
            }
        }
        let _ = writeln!(
            nat_rules,
            "-A {fw_chain} -m comment --comment \"other traffic to {spn} will be dropped by KUBE-PROXY-FIREWALL\""
        );
    }

    if uses_cluster_chain {
        let _ = writeln!(nat_chains, ":{svc_chain} - [0:0]");
        write_service_to_endpoints(cx, nat_rules, sp, &svc_chain, &cat.cluster, &mut seps);
    }
    if uses_local_chain {
        let _ = writeln!(nat_chains, ":{svl_chain} - [0:0]");
        write_service_to_endpoints(cx, nat_rules, sp, &svl_chain, &cat.local, &mut seps);
    }

    for ep in &cat.reachable {
        let sep = seps.get(ep);
        nat_chains.push(':');
        nat_chains.push_str(sep);
        nat_chains.push_str(" - [0:0]\n");
        let head = |out: &mut String| {
            out.push_str("-A ");
            out.push_str(sep);
            out.push(' ');
            cx.service_comment(out, spn);
        };
        // Hairpin: a pod reaching itself through the Service must be SNATed, or the reply
        // would bypass conntrack's reverse NAT.
        head(nat_rules);
        nat_rules.push_str("-s ");
        push_ip(nat_rules, ep.ip);
        nat_rules.push_str(" -j KUBE-MARK-MASQ\n");
        head(nat_rules);
        if sp.affinity_seconds.is_some() {
            let _ = write!(nat_rules, "-m recent --name {sep} --set ");
        }
        for part in ["-m ", p, " -p ", p, " -j DNAT --to-destination "] {
            nat_rules.push_str(part);
        }
        write_host_port(nat_rules, ep.ip, ep.port);
        nat_rules.push('\n');
    }
}

/// SEP chain names of one service port, each hashed once (SVC/SVL/SEP all need them).
struct SepNames<'a> {
    sp: &'a ServicePort,
    names: HashMap<(IpAddr, u16), String>,
}

impl SepNames<'_> {
    fn get(&mut self, ep: &Endpoint) -> &str {
        let sp = self.sp;
        self.names
            .entry((ep.ip, ep.port))
            .or_insert_with(|| endpoint_chain(sp, ep))
    }
}

/// `ip:port` (`[ip]:port` for IPv6), as `Endpoint::key` / Go's `net.JoinHostPort`, written in
/// place.
fn write_host_port(out: &mut String, ip: IpAddr, port: u16) {
    if ip.is_ipv6() {
        out.push('[');
    }
    push_ip(out, ip);
    out.push_str(if ip.is_ipv6() { "]:" } else { ":" });
    out.push_str(itoa::Buffer::new().format(port));
}

/// SVC/SVL chain body: affinity checks, then the cascade of `1/(n-i)` random jumps.
fn write_service_to_endpoints(
    cx: &Ctx,
    nat_rules: &mut String,
    sp: &ServicePort,
    chain: &str,
    eps: &[Endpoint],
    seps: &mut SepNames,
) {
    let spn = &sp.name_string;
    // `-A CHAIN [-m comment --comment "ns/svc:port -> ip:port"] `; the comment is left out in
    // large-cluster mode (and then not even built).
    let head = |out: &mut String, ep: &Endpoint| {
        out.push_str("-A ");
        out.push_str(chain);
        out.push(' ');
        if !cx.large {
            let _ = write!(out, "-m comment --comment \"{spn} -> ");
            write_host_port(out, ep.ip, ep.port);
            out.push_str("\" ");
        }
    };
    if let Some(timeout) = sp.affinity_seconds {
        for ep in eps {
            let sep = seps.get(ep);
            head(nat_rules, ep);
            let _ = writeln!(
                nat_rules,
                "-m recent --name {sep} --rcheck --seconds {timeout} --reap -j {sep}"
            );
        }
    }
    let n = eps.len();
    for (i, ep) in eps.iter().enumerate() {
        let sep = seps.get(ep);
        head(nat_rules, ep);
        if i < n - 1 {
            nat_rules.push_str("-m statistic --mode random --probability ");
            match cx.probs.get(n - i) {
                Some(t) => nat_rules.push_str(t),
                None => nat_rules.push_str(&probability(n - i)),
            }
            nat_rules.push(' ');
        }
        nat_rules.push_str("-j ");
        nat_rules.push_str(sep);
        nat_rules.push('\n');
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
        let toks = ipt::parse::tokenize(&text).expect("static rule text");
        // The parser only asks whether the jump target is a declared chain: it is (just above).
        let idx: std::collections::HashMap<String, usize> = [(j.to.to_string(), 0)].into();
        let mut diags = Vec::new();
        let rule = ipt::parse::parse_rule_args(&toks, fr.family, j.table, &idx, 0, &mut diags)
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
