//! The differential suite: the rules core generates, loaded into a real kernel, against the
//! packet walks core predicts.
//!
//! Per scenario: load it with core, generate kube-proxy's payload per family, install it on the
//! node namespace the way kube-proxy does (ensure the jump rules with `iptables -I`, then
//! `iptables-restore --noflush --counters`), check the kernel prints back exactly core's
//! `iptables-save` text, then send one real flow per (client, Service address) and compare what
//! the kernel did with core's trace.

use super::listen::Listeners;
use super::netfilter::{self, Backend, CountedRule, CtEntry, Family, Netfilter, RuleCounters};
use super::probe::{Observed, probe};
use super::sys::SysError;
use super::world::{AFFINITY_CLIENT_IP4, AFFINITY_CLIENT_IP6, Client, World};
use ipnet::IpNet;
use proxyscope_core::api::{Session, TraceRequest};
use proxyscope_core::k8s::Scenario;
use proxyscope_core::k8s::ip::join_host_port;
use proxyscope_core::netfilter::State;
use proxyscope_core::proxier::iptables::{FamilyRules, generate_all, saved_text};
use proxyscope_core::rules::iptables::Family as CoreFamily;
use proxyscope_core::trace::{Proto, Step, Trace, Verdict as TraceVerdict};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Knobs of one run.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long a probe waits for an answer before calling it dropped. Everything is on local
    /// veths (sub-millisecond RTT); 300 ms is far above that and below TCP's 1 s SYN retransmit,
    /// so a dropped connect sends exactly one SYN (the rule counters then read 1, not 2).
    pub timeout: Duration,
    /// Run the chi-square test of the random split on Services with several endpoints.
    pub split_test: bool,
    /// Run the `-m recent` stickiness/expiry test on Services with ClientIP affinity.
    pub affinity_test: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            timeout: Duration::from_millis(300),
            split_test: true,
            affinity_test: true,
        }
    }
}

/// kube-proxy's jump rules from the built-in chains, in the order `syncProxyRules` ensures them
/// on a full sync (pkg/proxy/iptables/proxier.go: `iptablesJumpChains` then
/// `iptablesKubeletJumpChains`), each with `EnsureChain` + `EnsureRule(Prepend, …)`. Written
/// here from kube-proxy's source, independently of core's copy, so the round trip checks both.
const JUMPS: [(&str, &str, &str, &str); 14] = [
    // (table, built-in chain, kube-proxy chain, rule arguments before -j)
    (
        "filter",
        "INPUT",
        "KUBE-EXTERNAL-SERVICES",
        "-m conntrack --ctstate NEW -m comment --comment kubernetes externally-visible service portals",
    ),
    (
        "filter",
        "FORWARD",
        "KUBE-EXTERNAL-SERVICES",
        "-m conntrack --ctstate NEW -m comment --comment kubernetes externally-visible service portals",
    ),
    (
        "filter",
        "INPUT",
        "KUBE-NODEPORTS",
        "-m comment --comment kubernetes health check service ports",
    ),
    (
        "filter",
        "FORWARD",
        "KUBE-SERVICES",
        "-m conntrack --ctstate NEW -m comment --comment kubernetes service portals",
    ),
    (
        "filter",
        "OUTPUT",
        "KUBE-SERVICES",
        "-m conntrack --ctstate NEW -m comment --comment kubernetes service portals",
    ),
    (
        "filter",
        "FORWARD",
        "KUBE-FORWARD",
        "-m comment --comment kubernetes forwarding rules",
    ),
    (
        "filter",
        "INPUT",
        "KUBE-PROXY-FIREWALL",
        "-m conntrack --ctstate NEW -m comment --comment kubernetes load balancer firewall",
    ),
    (
        "filter",
        "OUTPUT",
        "KUBE-PROXY-FIREWALL",
        "-m conntrack --ctstate NEW -m comment --comment kubernetes load balancer firewall",
    ),
    (
        "filter",
        "FORWARD",
        "KUBE-PROXY-FIREWALL",
        "-m conntrack --ctstate NEW -m comment --comment kubernetes load balancer firewall",
    ),
    (
        "nat",
        "OUTPUT",
        "KUBE-SERVICES",
        "-m comment --comment kubernetes service portals",
    ),
    (
        "nat",
        "PREROUTING",
        "KUBE-SERVICES",
        "-m comment --comment kubernetes service portals",
    ),
    (
        "nat",
        "POSTROUTING",
        "KUBE-POSTROUTING",
        "-m comment --comment kubernetes postrouting rules",
    ),
    ("filter", "INPUT", "KUBE-FIREWALL", ""),
    ("filter", "OUTPUT", "KUBE-FIREWALL", ""),
];

/// Split a jump's argument text into argv words; the comment (everything after `--comment`)
/// is one word.
fn jump_args(args: &str, to: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut rest = args;
    while !rest.is_empty() {
        if let Some(c) = rest.strip_prefix("--comment ") {
            out.push("--comment".into());
            out.push(c.to_owned());
            break;
        }
        let (w, r) = rest.split_once(' ').unwrap_or((rest, ""));
        out.push(w.to_owned());
        rest = r;
    }
    out.push("-j".into());
    out.push(to.into());
    out
}

/// kube-proxy's `EnsureChain` + `EnsureRule(Prepend, …)` of every jump in [`JUMPS`], as one
/// `iptables-restore --noflush` input: each chain declared, each jump inserted at position 1
/// in the same order, which leaves the tables exactly as the separate `iptables -N` / `-C` /
/// `-I` calls do on a fresh node (one process instead of forty).
pub fn jumps_restore_input() -> String {
    let mut out = String::new();
    for table in ["filter", "nat"] {
        let _ = writeln!(out, "*{table}");
        let mut declared: Vec<&str> = Vec::new();
        for (_, _, to, _) in JUMPS.iter().filter(|j| j.0 == table) {
            if !declared.contains(to) {
                declared.push(to);
                let _ = writeln!(out, ":{to} - [0:0]");
            }
        }
        for (_, from, to, args) in JUMPS.iter().filter(|j| j.0 == table) {
            let words: Vec<String> = jump_args(args, to)
                .into_iter()
                .map(|w| {
                    if w.contains(' ') {
                        format!("\"{w}\"")
                    } else {
                        w
                    }
                })
                .collect();
            let _ = writeln!(out, "-I {from} 1 {}", words.join(" "));
        }
        out.push_str("COMMIT\n");
    }
    out
}

/// Install one family's rules the way kube-proxy's first (full) sync does: the jump rules
/// from the built-in chains, then `iptables-restore --noflush --counters` of the payload.
pub fn install(nf: &Netfilter, family: Family, payload: &str) -> Result<(), SysError> {
    nf.restore(family, &jumps_restore_input(), false)?;
    nf.restore(family, payload, false)
}

fn family_of(fr: &FamilyRules) -> Family {
    match fr.family {
        CoreFamily::V4 => Family::V4,
        CoreFamily::V6 => Family::V6,
    }
}

/// A minimal line diff (longest common subsequence) for reports: `-` lines only in `a`
/// (expected), `+` lines only in `b` (kernel), with 2 lines of context.
pub fn line_diff(a: &str, b: &str) -> String {
    let a: Vec<&str> = a.lines().collect();
    let b: Vec<&str> = b.lines().collect();
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            ops.push(('+', b[j]));
            j += 1;
        } else {
            ops.push(('-', a[i]));
            i += 1;
        }
    }
    let near = |k: usize| {
        ops[k.saturating_sub(2)..(k + 3).min(ops.len())]
            .iter()
            .any(|(c, _)| *c != ' ')
    };
    let mut out = String::new();
    let mut skipped = false;
    for (k, (c, l)) in ops.iter().enumerate() {
        if near(k) {
            let _ = writeln!(out, "{c} {l}");
            skipped = false;
        } else if !skipped {
            out.push_str("  …\n");
            skipped = true;
        }
    }
    out
}

/// Round trip: what the kernel prints after the install must be core's `saved_text`, byte for
/// byte, ignoring counters and `#` lines. Returns a diff on mismatch.
pub fn round_trip(nf: &Netfilter, fr: &FamilyRules) -> Result<Option<String>, SysError> {
    let kernel = netfilter::strip_counters(&nf.save(family_of(fr), false)?);
    let ours = netfilter::strip_counters(&netfilter::strip_comment_lines(&saved_text(fr)));
    // iptables-legacy prints tables in the kernel's registration order (nat first here),
    // iptables-nft filter first: compare table by table.
    let (kernel, ours) = (tables_sorted(&kernel), tables_sorted(&ours));
    Ok((kernel != ours).then(|| line_diff(&ours, &kernel)))
}

/// The `*table … COMMIT` blocks of a save, sorted by table name.
pub fn tables_sorted(text: &str) -> String {
    let mut blocks: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.starts_with('*') || blocks.is_empty() {
            blocks.push(String::new());
        }
        let b = blocks.last_mut().expect("pushed above");
        b.push_str(line);
        b.push('\n');
    }
    blocks.sort();
    blocks.concat()
}

/// One flow to send: from a client to a Service address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Flow {
    pub client: Client,
    pub proto: Proto,
    pub dst: SocketAddr,
    /// What the address is, e.g. `ns1/svc1:p80 cluster IP`.
    pub what: String,
    /// The Service has ClientIP affinity: its `-m recent` lists must be empty before the flow.
    pub affinity: bool,
}

impl std::fmt::Display for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} → {}/{} ({})",
            self.client.name(),
            self.dst,
            self.proto,
            self.what
        )
    }
}

/// Every (client, Service address) flow of one family's service ports. NodePorts are sent to
/// `node_ip` (the node's address of that family) and, from the node itself, to 127.0.0.1.
pub fn flows_for(fr: &FamilyRules, node_ip: IpAddr) -> Vec<Flow> {
    let v4 = fr.family == CoreFamily::V4;
    let mut flows = BTreeSet::new();
    for (sp, cat) in &fr.service_ports {
        if sp.protocol == Proto::Sctp {
            continue;
        }
        let name = &sp.name_string;
        // A backend on this node reaching its own Service through the ClusterIP: hairpin when
        // the DNAT picks the Pod itself. Only local endpoints: in this world every Pod sits
        // behind the node's pod veth, which is true only for this node's Pods.
        if let Some(ep) = cat.reachable.iter().chain(&cat.cluster).find(|e| e.local) {
            flows.insert(Flow {
                client: Client::Hairpin(ep.ip),
                proto: sp.protocol,
                dst: SocketAddr::new(sp.cluster_ip, sp.port),
                what: format!("{name} cluster IP"),
                affinity: sp.affinity_seconds.is_some(),
            });
        }
        let mut targets: Vec<(SocketAddr, String, &[Client])> = vec![(
            SocketAddr::new(sp.cluster_ip, sp.port),
            format!("{name} cluster IP"),
            &Client::ALL,
        )];
        for ip in &sp.external_ips {
            targets.push((
                SocketAddr::new(*ip, sp.port),
                format!("{name} external IP"),
                &Client::ALL,
            ));
        }
        for ip in &sp.lb_ips {
            targets.push((
                SocketAddr::new(*ip, sp.port),
                format!("{name} loadbalancer IP"),
                &Client::ALL,
            ));
        }
        if sp.node_port != 0 {
            targets.push((
                SocketAddr::new(node_ip, sp.node_port),
                format!("{name} nodePort"),
                &Client::ALL,
            ));
            if v4 {
                // Localhost NodePorts are reachable only from the node itself.
                let lo = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), sp.node_port);
                targets.push((lo, format!("{name} nodePort on localhost"), &[Client::Node]));
            }
        }
        for (dst, what, clients) in targets {
            for &client in clients {
                flows.insert(Flow {
                    client,
                    proto: sp.protocol,
                    dst,
                    what: what.clone(),
                    affinity: sp.affinity_seconds.is_some(),
                });
            }
        }
    }
    flows.into_iter().collect()
}

/// What the kernel did with one flow.
#[derive(Debug, Clone)]
pub struct KernelView {
    pub src: IpAddr,
    pub observed: Observed,
    /// From conntrack: the DNAT destination, if any.
    pub dnat: Option<SocketAddr>,
    /// From conntrack: whether the source was rewritten (reply tuple's dst ≠ original src).
    /// None when the connection left no conntrack entry (dropped or rejected first packet).
    pub masq: Option<bool>,
    /// Rules whose packet counter moved, as (table, chain, 1-based index), in the chains that
    /// only the flow's first packet walks (see [`counted`]).
    pub rules: BTreeSet<(String, String, usize)>,
    /// Observations thrown away because another connection appeared during them (see
    /// [`observe`]).
    pub retries: usize,
}

/// Chains whose counters say which rules the flow's first packet matched: every nat chain
/// (nat only sees a connection's first packet) and the filter chains kube-proxy enters only
/// for `--ctstate NEW` packets or that only match Service traffic. Built-in filter chains and
/// KUBE-FORWARD / KUBE-FIREWALL also see replies and later packets, so their counters are noise.
pub fn counted(table: &str, chain: &str) -> bool {
    table == "nat"
        || (table == "filter"
            && matches!(
                chain,
                "KUBE-SERVICES"
                    | "KUBE-EXTERNAL-SERVICES"
                    | "KUBE-PROXY-FIREWALL"
                    | "KUBE-NODEPORTS"
            ))
}

/// Whether a dropping rule that moved between `before` and now explains a probe's silence:
/// only rules of the chains [`counted`] trusts (plus KUBE-FIREWALL's localnet DROP), since the
/// built-in chains' INVALID drops can count stray packets of earlier connections.
fn dropped_since(nf: &Netfilter, family: Family, before: &RuleCounters) -> bool {
    nf.counters(family).is_ok_and(|now| {
        netfilter::moved(before, &now)
            .iter()
            .any(|((t, c, _), drops)| *drops && (counted(t, c) || c == "KUBE-FIREWALL"))
    })
}

/// Send one flow on a clean slate (no conntrack entries, no `-m recent` entries) and read back
/// what the kernel did. Rule hits are the counters that grew between the reads before and
/// after the probe: the same as zeroing them first, without a write per flow.
///
/// Hairpin flows share the pods namespace with every other backend, so when the DNAT picks
/// another Pod and does not masquerade, that Pod's reply goes straight back inside the
/// namespace and never meets the node's conntrack (on a real node each Pod has its own
/// namespace and the reply would come back through the node). The node's conntrack entry
/// still records both of the kernel's decisions (DNAT target, no SNAT); the view then reports
/// the backend conntrack names, as a real node's client would have seen it answer.
///
/// The slate is checked, not assumed: a late packet of an earlier connection (an ACK that the
/// scheduler delayed past the flush) is picked up by conntrack as a new connection
/// (nf_conntrack_tcp_loose), walks the nat table and moves counters or sets `-m recent`
/// entries — and the RST that follows it can delete that entry again at once (conntrack kills
/// an entry whose first answer is a RST). Every new connection enters the nat table through
/// rule 1 of nat PREROUTING or OUTPUT (kube-proxy's unconditional jump to KUBE-SERVICES), and
/// the probe is exactly one new connection, so those two counters must move by exactly one;
/// and no other connection may be tracked at the end. Otherwise the observation may be mixed
/// with another and is repeated (at most [`OBSERVE_ATTEMPTS`] times).
pub fn observe(world: &World, flow: &Flow, opts: &Options) -> Result<KernelView, SysError> {
    let nf = world.netfilter();
    let mut retries = 0;
    loop {
        let (mut k, nat_entries) = observe_once(world, flow, opts)?;
        // The flow's own entry, when it left one (a first packet dropped before conntrack
        // confirms it leaves none).
        let own = u64::from(k.masq.is_some());
        let clean = nat_entries == 1 && nf.conntrack_count()? <= own;
        if clean || retries + 1 >= OBSERVE_ATTEMPTS {
            k.retries = retries;
            return Ok(k);
        }
        retries += 1;
    }
}

/// Attempts at one flow before its (possibly mixed) observation is taken as it is; a mixed
/// one shows up as a disagreement, never as a silent pass.
pub const OBSERVE_ATTEMPTS: usize = 4;

/// How many packets entered the nat table (rule 1 of nat PREROUTING and OUTPUT: kube-proxy's
/// jumps to KUBE-SERVICES, which match everything) between two counter reads.
fn nat_entries(before: &RuleCounters, after: &RuleCounters) -> u64 {
    ["PREROUTING", "OUTPUT"]
        .iter()
        .map(|chain| {
            let key = ("nat".to_string(), chain.to_string());
            let first =
                |c: &RuleCounters| c.get(&key).and_then(|v| v.first()).map_or(0, |r| r.packets);
            first(after).saturating_sub(first(before))
        })
        .sum()
}

fn observe_once(world: &World, flow: &Flow, opts: &Options) -> Result<(KernelView, u64), SysError> {
    let nf = world.netfilter();
    let family = Family::of(flow.dst.ip());
    nf.flush_conntrack()?;
    let src = world.source(flow.client, flow.dst.ip());
    let before = nf.counters(family)?;
    // `--rcheck --rsource` looks up only this source, in the Service's own KUBE-SEP lists, and
    // only earlier flows to this Service can have filled them. After the counter read: a late
    // packet that sets an entry before it is wiped here, and one after it shows in the
    // counters (see `observe`).
    if flow.affinity {
        nf.forget_source(src)?;
    }
    let entry_of = |sport: u16| nf.conntrack_get(flow.proto, src, sport, flow.dst);
    let hairpin_elsewhere = |e: &CtEntry| match flow.client {
        Client::Hairpin(own) => e.dnat_to().is_some_and(|(ip, _)| ip != own) && !e.snat(),
        _ => false,
    };
    let settled = |sport: u16| {
        dropped_since(&nf, family, &before)
            || (matches!(flow.client, Client::Hairpin(_))
                && entry_of(sport).is_ok_and(|e| e.is_some_and(|e| hairpin_elsewhere(&e))))
    };
    let mut observed = probe(
        &world.client_ns(flow.client).name,
        src,
        flow.proto,
        flow.dst,
        opts.timeout,
        Some(&settled),
    )?;
    let after = nf.counters(family)?;
    let entry = entry_of(observed.local_port())?;
    if let Some(e) = &entry
        && hairpin_elsewhere(e)
        && !matches!(observed, Observed::Delivered { .. })
        && let Some((ip, port)) = e.dnat_to()
    {
        let local_port = observed.local_port();
        observed = Observed::Delivered {
            backend: SocketAddr::new(ip, port),
            seen_src: SocketAddr::new(src, local_port),
            local_port,
        };
    }
    let view = KernelView {
        src,
        dnat: entry
            .as_ref()
            .and_then(|e| e.dnat_to())
            .map(|(ip, port)| SocketAddr::new(ip, port)),
        masq: entry.as_ref().map(|e| e.snat()),
        observed,
        rules: netfilter::moved_rules(&before, &after)
            .into_iter()
            .filter(|(t, c, _)| counted(t, c))
            .collect(),
        retries: 0,
    };
    Ok((view, nat_entries(&before, &after)))
}

/// Addresses the pods namespace must hold and the listeners to run: every endpoint of every
/// service port (all families), whatever its conditions (the kernel decides who gets traffic).
pub fn backends(frs: &[FamilyRules]) -> Vec<SocketAddr> {
    let mut out = BTreeSet::new();
    for fr in frs {
        for (_, cat) in &fr.service_ports {
            for e in cat.cluster.iter().chain(&cat.local).chain(&cat.reachable) {
                out.insert(SocketAddr::new(e.ip, e.port));
            }
        }
    }
    out.into_iter().collect()
}

/// An address for the Pod client inside `cidr` that no endpoint uses: host 250 of an IPv4
/// podCIDR (0xfa for IPv6), stepping down past taken ones.
fn pod_client_ip(cidr: &IpNet, taken: &[IpAddr]) -> Option<IpAddr> {
    let base: u128 = match cidr.network() {
        IpAddr::V4(a) => u32::from(a).into(),
        IpAddr::V6(a) => a.into(),
    };
    let size: u128 = match cidr {
        IpNet::V4(n) => 1u128 << (32 - n.prefix_len()),
        IpNet::V6(n) => 1u128
            .checked_shl(128 - u32::from(n.prefix_len()))
            .unwrap_or(u128::MAX),
    };
    let start = 250u128.min(size.saturating_sub(2));
    (1..=start).rev().map(|off| base + off).find_map(|a| {
        let ip = match cidr {
            IpNet::V4(_) => IpAddr::from(std::net::Ipv4Addr::from(a as u32)),
            IpNet::V6(_) => IpAddr::from(std::net::Ipv6Addr::from(a)),
        };
        (!taken.contains(&ip)).then_some(ip)
    })
}

/// A loaded node: world, listeners and rules of one scenario.
pub struct Node {
    pub world: World,
    pub scenario: Scenario,
    pub families: Vec<FamilyRules>,
    /// The node's interface networks that hold backends (a CNI bridge's `10.244.1.1/24`).
    pub pod_nets: Vec<IpNet>,
    /// Seconds spent building: (namespaces and links, addresses and listeners, rule install,
    /// round-trip read).
    pub build_secs: [f64; 4],
    _listeners: Listeners,
}

impl Node {
    /// Build the world for a scenario and install core's rules. Round-trip mismatches are
    /// returned (one entry per family), not treated as errors.
    pub fn build(
        scenario_text: &str,
        backend: Backend,
    ) -> Result<(Node, Vec<(Family, String)>), String> {
        let loaded = proxyscope_core::k8s::load(scenario_text).map_err(|d| {
            d.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        })?;
        let scenario = loaded.scenario;
        let families = generate_all(&scenario);
        let clock = std::time::Instant::now();
        let mut lap = {
            let mut last = 0.0;
            move || {
                let now = clock.elapsed().as_secs_f64();
                let d = now - last;
                last = now;
                d
            }
        };
        let mut build_secs = [0.0; 4];
        let mut world = World::new().map_err(|e| e.to_string())?;
        build_secs[0] = lap();
        world.backend = backend;
        let addrs = backends(&families);
        let ips: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
        world.add_pod_ips(&ips).map_err(|e| e.to_string())?;
        // Interface networks of the scenario's node that contain backends are its Pod network
        // (cni0 …): they go on the pod-facing veth; every other address on eth0.
        let pod_nets: Vec<IpNet> = scenario
            .network
            .interfaces
            .iter()
            .flat_map(|(_, nets)| nets.iter().copied())
            .filter(|n| n.prefix_len() < n.max_prefix_len() && !n.addr().is_loopback())
            .filter(|n| ips.iter().any(|ip| n.contains(ip)))
            .collect();
        world
            .add_pod_gateways(&pod_nets)
            .map_err(|e| e.to_string())?;
        let node_ips: Vec<IpAddr> = scenario
            .local_addresses()
            .into_iter()
            .filter(|ip| !pod_nets.iter().any(|n| n.addr() == *ip))
            .chain(
                [scenario.node_ip(false), scenario.node_ip(true)]
                    .into_iter()
                    .flatten(),
            )
            .filter(|ip| !ip.is_loopback())
            .collect();
        let pod_client: Vec<IpAddr> = scenario
            .node_pod_cidrs()
            .iter()
            .filter_map(|c| pod_client_ip(c, &ips))
            .collect();
        world
            .adopt(&node_ips, &pod_client)
            .map_err(|e| e.to_string())?;
        // The node's own addresses again, so `World::source` for the node is its InternalIP.
        let primary: Vec<IpAddr> = [scenario.node_ip(false), scenario.node_ip(true)]
            .into_iter()
            .flatten()
            .collect();
        world.adopt(&primary, &[]).map_err(|e| e.to_string())?;
        let listeners = Listeners::start(&world.pods.name, &addrs).map_err(|e| e.to_string())?;
        build_secs[1] = lap();
        let mut mismatches = Vec::new();
        {
            let nf = world.netfilter();
            nf.add_nfacct().map_err(|e| e.to_string())?;
            for fr in &families {
                let family = family_of(fr);
                install(&nf, family, &fr.payload).map_err(|e| {
                    format!("iptables-restore rejected core's {family:?} payload: {e}")
                })?;
                build_secs[2] += lap();
                if let Some(d) = round_trip(&nf, fr).map_err(|e| e.to_string())? {
                    mismatches.push((family, d));
                }
                build_secs[3] += lap();
            }
        }
        Ok((
            Node {
                world,
                scenario,
                families,
                pod_nets,
                build_secs,
                _listeners: listeners,
            },
            mismatches,
        ))
    }

    /// The address NodePort flows of a family go to.
    pub fn node_ip(&self, v6: bool) -> IpAddr {
        self.scenario.node_ip(v6).unwrap_or_else(|| {
            if v6 {
                super::world::NODE_IP6.parse()
            } else {
                super::world::NODE_IP4.parse()
            }
            .expect("constant")
        })
    }

    /// Every flow of every family.
    pub fn flows(&self) -> Vec<Flow> {
        self.families
            .iter()
            .flat_map(|fr| flows_for(fr, self.node_ip(fr.family == CoreFamily::V6)))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Comparing with core's trace.

/// The kernel-visible class of a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    /// Answered by this backend (`ip:port` / `[ip]:port`).
    Backend(String),
    /// Actively refused (REJECT, or a local port nobody listens on).
    Refused,
    /// Silence (DROP).
    Silent,
    /// Left the node by its default route without DNAT: the upstream router answers ICMP
    /// host unreachable.
    LeftNode,
}

impl std::fmt::Display for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Class::Backend(b) => f.write_str(b),
            Class::Refused => f.write_str("refused"),
            Class::Silent => f.write_str("no answer"),
            Class::LeftNode => f.write_str("left the node (upstream unreachable)"),
        }
    }
}

fn kernel_class(o: &Observed) -> Class {
    match o {
        Observed::Delivered { backend, .. } => {
            Class::Backend(join_host_port(backend.ip(), backend.port()))
        }
        Observed::Refused { .. } => Class::Refused,
        Observed::Timeout { .. } => Class::Silent,
        Observed::Unreachable { .. } => Class::LeftNode,
    }
}

/// What a trace outcome means on the wire in the harness world: a DNAT target answers; REJECT
/// is refused; DROP is silence; an untouched packet accepted locally meets a closed port
/// (refused), and one forwarded out of the node meets the upstream router's "unreachable".
fn outcome_class(output: &str, verdict: TraceVerdict) -> Class {
    match output {
        "REJECT" => Class::Refused,
        "DROP" => Class::Silent,
        "" => match verdict {
            TraceVerdict::Accept | TraceVerdict::Reject => Class::Refused,
            TraceVerdict::Forwarded => Class::LeftNode,
            TraceVerdict::Drop => Class::Silent,
        },
        b => Class::Backend(b.to_string()),
    }
}

/// Core's prediction for one flow.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// (class, probability, masq) of every outcome.
    pub outcomes: Vec<(Class, f64, bool)>,
    /// Counted rules the walk that ends like the kernel's matched (None: no such walk found).
    pub rules: Option<BTreeSet<(String, String, usize)>>,
    /// Source address of the packet as that walk delivers it (after MASQUERADE).
    pub final_src: Option<IpAddr>,
}

fn trace_req(flow: &Flow, src: IpAddr, sport: u16, seed: u64, now: f64) -> TraceRequest {
    TraceRequest {
        src,
        dst: flow.dst.ip(),
        dport: flow.dst.port(),
        proto: flow.proto,
        sport: Some(sport),
        seed,
        now,
    }
}

fn matched_rules(t: &Trace) -> BTreeSet<(String, String, usize)> {
    t.steps
        .iter()
        .filter_map(|s| match s {
            Step::Rule {
                table,
                chain,
                index,
                matched: true,
                ..
            } if counted(table, chain) => Some((table.to_string(), chain.to_string(), *index)),
            _ => None,
        })
        .collect()
}

/// How many backends core gives `flow` a chance to reach, from `src` on a fresh state.
pub fn predicted_backends(session: &mut Session, flow: &Flow, src: IpAddr) -> usize {
    session.state = State::default();
    let t = session.trace(&trace_req(flow, src, 40000, 0, 0.0));
    session.state = State::default();
    t.outcomes
        .iter()
        .filter(|o| {
            o.probability > 0.0 && matches!(outcome_class(&o.output, t.verdict), Class::Backend(_))
        })
        .count()
}

/// Seeds tried to find core's sampled walk that picks the kernel's backend.
const SEED_TRIES: u64 = 200;

/// Ask core about `flow` from a fresh state, and find (by trying seeds) a sampled walk that
/// ends the way the kernel's did, to compare the rules it matched.
pub fn predict(session: &mut Session, flow: &Flow, k: &KernelView) -> Prediction {
    let kclass = kernel_class(&k.observed);
    let sport = k.observed.local_port();
    session.state = State::default();
    let t0 = session.trace(&trace_req(flow, k.src, sport, 0, 0.0));
    let outcomes = t0
        .outcomes
        .iter()
        .map(|o| (outcome_class(&o.output, t0.verdict), o.probability, o.masq))
        .collect();
    let mut rules = None;
    let mut final_src = None;
    for seed in 0..SEED_TRIES {
        session.state = State::default();
        let t = if seed == 0 {
            t0.clone()
        } else {
            session.trace(&trace_req(flow, k.src, sport, seed, 0.0))
        };
        if outcome_class(&t.chosen.output, t.verdict) == kclass {
            rules = Some(matched_rules(&t));
            final_src = t.final_packet.map(|p| p.src);
            break;
        }
    }
    session.state = State::default();
    Prediction {
        outcomes,
        rules,
        final_src,
    }
}

/// Differences that are reported but do not fail the suite (yet): the address MASQUERADE
/// picked. The kernel takes the primary address of the interface the packet leaves by
/// (`nf_nat_masquerade_ipv4` → `inet_select_addr(out, nexthop, RT_SCOPE_UNIVERSE)`; IPv6:
/// `ipv6_dev_get_saddr` on the out device), so a Pod on this node sees the node's address on
/// the Pod network, not its InternalIP.
///
/// Only checked for backends on a network the scenario puts on one of the node's interfaces
/// (`pod_nets`): how other nodes' Pods are reached (tunnel, uplink) is not in the scenario.
pub fn notes(k: &KernelView, p: &Prediction, pod_nets: &[IpNet]) -> Vec<String> {
    let on_pod_net = |ip: IpAddr| pod_nets.iter().any(|n| n.contains(&ip));
    match (&k.observed, k.masq, p.final_src) {
        (
            Observed::Delivered {
                seen_src, backend, ..
            },
            Some(true),
            Some(core_src),
        ) if seen_src.ip() != core_src && on_pod_net(backend.ip()) => {
            vec![format!(
                "masquerade source: kernel {}, core {core_src}",
                seen_src.ip()
            )]
        }
        _ => Vec::new(),
    }
}

/// Compare; an empty list means agreement.
pub fn disagreements(k: &KernelView, p: &Prediction) -> Vec<String> {
    let mut out = Vec::new();
    let kclass = kernel_class(&k.observed);
    let matching: Vec<&(Class, f64, bool)> = p
        .outcomes
        .iter()
        .filter(|(c, pr, _)| *c == kclass && *pr > 0.0)
        .collect();
    if matching.is_empty() {
        out.push(format!(
            "verdict: kernel {kclass}, core predicts none of that"
        ));
        return out;
    }
    if let (Class::Backend(_), Some(kmasq)) = (&kclass, k.masq)
        && !matching.iter().any(|(_, _, m)| *m == kmasq)
    {
        out.push(format!(
            "masquerade: kernel {} (conntrack reply tuple), core {}",
            if kmasq { "SNAT" } else { "no SNAT" },
            if matching[0].2 { "masq" } else { "no masq" }
        ));
    }
    match &p.rules {
        None => out.push(format!(
            "rules: no sampled walk of core ends at {kclass} within {SEED_TRIES} seeds"
        )),
        Some(r) if *r != k.rules => {
            let only_k: Vec<String> = k
                .rules
                .difference(r)
                .map(|(t, c, i)| format!("{t}/{c}#{i}"))
                .collect();
            let only_c: Vec<String> = r
                .difference(&k.rules)
                .map(|(t, c, i)| format!("{t}/{c}#{i}"))
                .collect();
            out.push(format!(
                "matched rules: only the kernel counted [{}]; only core's walk matched [{}]",
                only_k.join(", "),
                only_c.join(", ")
            ));
        }
        Some(_) => {}
    }
    out
}

/// Rule text by (table, chain, index) from the kernel's dump, for readable reports.
pub fn rule_texts(nf: &Netfilter, family: Family) -> Vec<CountedRule> {
    nf.save(family, true)
        .ok()
        .and_then(|t| netfilter::parse_counted_rules(&t).ok())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// The random split and affinity.

/// Upper critical values of the chi-square distribution at α = 0.001 for 1…10 degrees of
/// freedom (standard tables; e.g. NIST/SEMATECH e-Handbook 1.3.6.7.4). Beyond 10 we use the
/// Wilson–Hilferty approximation.
const CHI2_CRIT_0_001: [f64; 10] = [
    10.828, 13.816, 16.266, 18.467, 20.515, 22.458, 24.322, 26.124, 27.877, 29.588,
];

/// Significance of the split test: a correct implementation fails it 1 time in 1000.
pub const SPLIT_ALPHA: f64 = 0.001;

pub fn chi2_critical(df: usize) -> f64 {
    if (1..=10).contains(&df) {
        return CHI2_CRIT_0_001[df - 1];
    }
    // Wilson–Hilferty: χ²_p ≈ k (1 − 2/(9k) + z √(2/(9k)))³, z = 3.0902 for p = 0.999.
    let k = df as f64;
    let z = 3.090_232;
    k * (1.0 - 2.0 / (9.0 * k) + z * (2.0 / (9.0 * k)).sqrt()).powi(3)
}

/// Pearson's statistic for observed counts against expected probabilities.
pub fn chi2(observed: &[u64], expected_p: &[f64]) -> f64 {
    let n: u64 = observed.iter().sum();
    observed
        .iter()
        .zip(expected_p)
        .map(|(&o, &p)| {
            let e = n as f64 * p;
            (o as f64 - e).powi(2) / e
        })
        .sum()
}

/// Result of a split test.
#[derive(Debug, Clone)]
pub struct SplitResult {
    pub backends: Vec<(String, f64, u64)>,
    pub statistic: f64,
    pub critical: f64,
    pub unexpected: u64,
}

impl SplitResult {
    pub fn passed(&self) -> bool {
        self.unexpected == 0 && self.statistic <= self.critical
    }
}

/// Smallest expected count per backend in a split test: Pearson's statistic follows the
/// chi-square distribution well once every expected count is ≥ 5; 25 gives the test power to
/// see a backend that gets half or twice its predicted share.
pub const SPLIT_MIN_EXPECTED: f64 = 25.0;

/// Connections a split test sends: enough that the least likely backend expects
/// `scale` × [`SPLIT_MIN_EXPECTED`] hits, within `[50, max]`.
pub fn split_sample_size(probabilities: &[f64], max: usize, scale: usize) -> usize {
    let p_min = probabilities
        .iter()
        .copied()
        .filter(|p| *p > 0.0)
        .fold(1.0f64, f64::min);
    let total: f64 = probabilities.iter().sum();
    let share = if total > 0.0 { p_min / total } else { 1.0 };
    ((scale.max(1) as f64 * SPLIT_MIN_EXPECTED / share).ceil() as usize).clamp(50, max.max(50))
}

/// Send connections (each a new flow on an empty conntrack table, so each walks the nat
/// table) and compare the backends' counts with core's exact outcome probabilities. The
/// sample is sized by [`split_sample_size`] (`scale` times the minimum), at most `max_n`.
pub fn split_test(
    world: &World,
    flow: &Flow,
    p: &Prediction,
    max_n: usize,
    scale: usize,
    opts: &Options,
) -> Result<SplitResult, SysError> {
    let nf = world.netfilter();
    let src = world.source(flow.client, flow.dst.ip());
    if flow.affinity {
        nf.forget_source(src)?;
    }
    let mut names: Vec<(String, f64, u64)> = p
        .outcomes
        .iter()
        .filter_map(|(c, pr, _)| match c {
            Class::Backend(b) if *pr > 0.0 => Some((b.clone(), *pr, 0)),
            _ => None,
        })
        .collect();
    let n = split_sample_size(&names.iter().map(|x| x.1).collect::<Vec<_>>(), max_n, scale);
    let mut unexpected = 0;
    for _ in 0..n {
        nf.flush_conntrack()?;
        let o = probe(
            &world.client_ns(flow.client).name,
            src,
            flow.proto,
            flow.dst,
            opts.timeout,
            None,
        )?;
        match kernel_class(&o) {
            Class::Backend(b) => match names.iter_mut().find(|(x, _, _)| *x == b) {
                Some(e) => e.2 += 1,
                None => unexpected += 1,
            },
            _ => unexpected += 1,
        }
    }
    let obs: Vec<u64> = names.iter().map(|x| x.2).collect();
    let exp: Vec<f64> = names.iter().map(|x| x.1).collect();
    let total: f64 = exp.iter().sum();
    let exp: Vec<f64> = exp.iter().map(|e| e / total).collect();
    Ok(SplitResult {
        statistic: chi2(&obs, &exp),
        critical: chi2_critical(names.len().saturating_sub(1).max(1)),
        backends: names,
        unexpected,
    })
}

/// Longest `timeoutSeconds` whose expiry the affinity test waits for; longer ones get the
/// stickiness half only.
pub const AFFINITY_EXPIRY_MAX_S: u32 = 5;

/// A `-m recent` affinity test against the kernel, in two halves so the wait for expiry
/// overlaps other work: [`AffinityTest::begin`] sends the first connection (which records
/// the client) and four more that must stick to the same backend through an `--rcheck` rule;
/// [`AffinityTest::finish`] waits out the timeout and checks the `--rcheck` rules no longer
/// match. Core's own session (carrying its `recent` state) must agree at each step.
///
/// The test's client is the external client's second address ([`AFFINITY_CLIENT_IP4`] /
/// [`AFFINITY_CLIENT_IP6`]), which no other flow uses, so flows in between (which forget only
/// their own source's entries) leave its entry alone.
pub struct AffinityTest {
    pub flow: Flow,
    pub timeout_s: u32,
    src: IpAddr,
    start: std::time::Instant,
    /// Seconds after `start` when the last connection that refreshed the entry had returned.
    last_sent: f64,
    first_class: Class,
    session: Session,
    /// The rule texts of the family, to tell which moved counters are `--rcheck` rules.
    texts: Vec<CountedRule>,
    pub problems: Vec<String>,
}

impl AffinityTest {
    /// Send one connection and report whether an `--rcheck` rule counted it.
    fn send(&self, world: &World, opts: &Options) -> Result<(Observed, bool), SysError> {
        let nf = world.netfilter();
        let family = Family::of(self.flow.dst.ip());
        nf.flush_conntrack()?;
        let before = nf.counters(family)?;
        let o = probe(
            &world.client_ns(self.flow.client).name,
            self.src,
            self.flow.proto,
            self.flow.dst,
            opts.timeout,
            None,
        )?;
        let after = nf.counters(family)?;
        let rcheck = netfilter::moved_rules(&before, &after)
            .iter()
            .any(|(t, c, i)| {
                self.texts.iter().any(|r| {
                    r.table == *t && r.chain == *c && r.index == *i && r.text.contains("--rcheck")
                })
            });
        Ok((o, rcheck))
    }

    pub fn begin(
        world: &World,
        scenario: &Scenario,
        flow: &Flow,
        timeout_s: u32,
        opts: &Options,
    ) -> Result<AffinityTest, SysError> {
        let nf = world.netfilter();
        let family = Family::of(flow.dst.ip());
        let src: IpAddr = if family == Family::V4 {
            AFFINITY_CLIENT_IP4
        } else {
            AFFINITY_CLIENT_IP6
        }
        .parse()
        .expect("constant address");
        nf.forget_source(src)?;
        let mut t = AffinityTest {
            flow: flow.clone(),
            timeout_s,
            src,
            start: std::time::Instant::now(),
            last_sent: 0.0,
            first_class: Class::Silent,
            session: Session::new(scenario),
            texts: rule_texts(&nf, family),
            problems: Vec::new(),
        };
        t.start = std::time::Instant::now();
        let (first, _) = t.send(world, opts)?;
        t.last_sent = t.start.elapsed().as_secs_f64();
        t.first_class = kernel_class(&first);
        // Core: find a seed whose first walk picks the kernel's backend, keep that state.
        let mut found = false;
        for seed in 0..SEED_TRIES {
            t.session.state = State::default();
            let tr = t
                .session
                .trace(&trace_req(flow, src, first.local_port(), seed, 0.0));
            if outcome_class(&tr.chosen.output, tr.verdict) == t.first_class {
                found = true;
                break;
            }
        }
        if !found {
            t.problems.push(format!(
                "affinity: core never picks the kernel's first backend {}",
                t.first_class
            ));
            return Ok(t);
        }
        for i in 0..4 {
            let (o, k_rcheck) = t.send(world, opts)?;
            let now = t.start.elapsed().as_secs_f64();
            t.last_sent = now;
            let c = kernel_class(&o);
            if c != t.first_class {
                t.problems.push(format!(
                    "affinity: kernel connection {} went to {c}, not the sticky {}",
                    i + 2,
                    t.first_class
                ));
            }
            if !k_rcheck {
                t.problems.push(format!(
                    "affinity: kernel connection {} did not match an --rcheck rule",
                    i + 2
                ));
            }
            let tr = t
                .session
                .trace(&trace_req(flow, src, o.local_port(), 1000 + i, now));
            let tc = outcome_class(&tr.chosen.output, tr.verdict);
            if tc != t.first_class {
                t.problems.push(format!(
                    "affinity: core sends connection {} at t={now:.2}s to {tc}, kernel to {c}",
                    i + 2
                ));
            }
        }
        Ok(t)
    }

    /// Whether [`AffinityTest::finish`] waits for the entry to expire.
    pub fn checks_expiry(&self) -> bool {
        self.timeout_s <= AFFINITY_EXPIRY_MAX_S
    }

    /// Connections the whole test sends: the first, four sticky ones, one after expiry.
    pub fn connections(&self) -> usize {
        5 + usize::from(self.checks_expiry())
    }

    /// Let the entry expire (`--seconds T --reap`), then the `--rcheck` rules must not match.
    /// Returns the problems found over both halves (empty = agreement).
    pub fn finish(mut self, world: &World, opts: &Options) -> Result<Vec<String>, SysError> {
        if !self.problems.is_empty() || !self.checks_expiry() {
            return Ok(self.problems);
        }
        // Every sticky connection refreshed the entry (`--set` in its KUBE-SEP chain): wait
        // from the last one, with a second of margin over the jiffies the kernel counts in.
        let wait = Duration::from_secs_f64(self.last_sent + f64::from(self.timeout_s) + 1.0);
        std::thread::sleep(wait.saturating_sub(self.start.elapsed()));
        let (o, k_rcheck) = self.send(world, opts)?;
        let now = self.start.elapsed().as_secs_f64();
        let tr = self
            .session
            .trace(&trace_req(&self.flow, self.src, o.local_port(), 7, now));
        let c_rcheck = tr.steps.iter().any(
            |s| matches!(s, Step::Rule { matched: true, text, .. } if text.contains("--rcheck")),
        );
        if k_rcheck || c_rcheck {
            self.problems.push(format!(
                "affinity expiry after {}s (t={now:.2}s): kernel --rcheck matched: {k_rcheck}, core --rcheck matched: {c_rcheck}",
                self.timeout_s
            ));
        }
        Ok(self.problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jump_arguments_keep_the_comment_as_one_word() {
        let a = jump_args(
            "-m conntrack --ctstate NEW -m comment --comment kubernetes service portals",
            "KUBE-SERVICES",
        );
        assert_eq!(
            a,
            [
                "-m",
                "conntrack",
                "--ctstate",
                "NEW",
                "-m",
                "comment",
                "--comment",
                "kubernetes service portals",
                "-j",
                "KUBE-SERVICES"
            ]
        );
        assert_eq!(jump_args("", "KUBE-FIREWALL"), ["-j", "KUBE-FIREWALL"]);
    }

    #[test]
    fn line_diff_marks_both_sides() {
        let d = line_diff("a\nb\nc\n", "a\nB\nc\n");
        assert!(d.contains("- b\n") && d.contains("+ B\n"), "{d}");
    }
}

#[cfg(test)]
mod pure_tests {
    use super::*;

    #[test]
    fn pod_client_takes_host_250_of_the_pod_cidr() {
        let c: IpNet = "10.244.1.0/24".parse().unwrap();
        assert_eq!(
            pod_client_ip(&c, &[]),
            Some("10.244.1.250".parse().unwrap())
        );
        let taken = ["10.244.1.250".parse().unwrap()];
        assert_eq!(
            pod_client_ip(&c, &taken),
            Some("10.244.1.249".parse().unwrap())
        );
        let c6: IpNet = "fd00:10:244:1::/64".parse().unwrap();
        assert_eq!(
            pod_client_ip(&c6, &[]),
            Some("fd00:10:244:1::fa".parse().unwrap())
        );
        let small: IpNet = "10.0.0.0/30".parse().unwrap();
        assert_eq!(
            pod_client_ip(&small, &[]),
            Some("10.0.0.2".parse().unwrap())
        );
    }

    /// Hand-derived: the least likely backend must expect 25 hits. 1/3 each → 75; a 1/4 share
    /// → 100; a 1/10 share → 250, capped at the bound; two even backends → 50 (the floor).
    #[test]
    fn split_samples_follow_the_smallest_share() {
        assert_eq!(split_sample_size(&[1.0 / 3.0; 3], 400, 1), 75);
        assert_eq!(split_sample_size(&[0.25, 0.75], 400, 1), 100);
        assert_eq!(split_sample_size(&[0.1, 0.9], 200, 1), 200);
        assert_eq!(split_sample_size(&[0.5, 0.5], 400, 1), 50);
        assert_eq!(split_sample_size(&[0.5, 0.5], 400, 2), 100);
        // Probabilities that do not sum to 1 (only backend outcomes) are shares of their sum.
        assert_eq!(split_sample_size(&[0.25, 0.25], 400, 1), 50);
    }

    /// Rule 1 of nat PREROUTING / OUTPUT counts every packet entering the nat table.
    #[test]
    fn nat_entries_add_both_entry_chains() {
        use super::netfilter::RuleCount;
        let c = |pre: u64, out: u64| {
            let mut m = RuleCounters::new();
            let r = |p| RuleCount {
                packets: p,
                drops: false,
            };
            m.insert(("nat".into(), "PREROUTING".into()), vec![r(pre), r(7)]);
            m.insert(("nat".into(), "OUTPUT".into()), vec![r(out)]);
            m
        };
        assert_eq!(nat_entries(&c(3, 4), &c(4, 4)), 1);
        assert_eq!(nat_entries(&c(3, 4), &c(4, 5)), 2);
        assert_eq!(nat_entries(&c(3, 4), &c(3, 4)), 0);
        assert_eq!(nat_entries(&RuleCounters::new(), &c(0, 1)), 1);
    }

    #[test]
    fn outcomes_map_to_what_the_wire_shows() {
        assert_eq!(
            outcome_class("REJECT", TraceVerdict::Reject),
            Class::Refused
        );
        assert_eq!(outcome_class("DROP", TraceVerdict::Drop), Class::Silent);
        assert_eq!(outcome_class("", TraceVerdict::Accept), Class::Refused);
        assert_eq!(outcome_class("", TraceVerdict::Forwarded), Class::LeftNode);
        assert_eq!(
            outcome_class("[fd00::1]:80", TraceVerdict::Forwarded),
            Class::Backend("[fd00::1]:80".into())
        );
    }
}
