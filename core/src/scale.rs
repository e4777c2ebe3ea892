//! How each kube-proxy mode's work grows with the cluster, measured on generated clusters
//! ([`crate::generate::large_cluster`]): rules a packet walks, rules on the node, and what a full
//! sync writes.
//!
//! Every number comes from running the real pipeline (scenario → proxier → ruleset → packet
//! walk), not from a formula, so the web app's scale charts show what the rest of proxyscope
//! models. The teaching point, from kube-proxy's design: iptables mode matches a Service by
//! walking `KUBE-SERVICES` rule by rule (work per packet grows with the number of Services),
//! IPVS mode keeps a fixed set of iptables rules over ipsets and finds the Service with one hash
//! lookup (work per packet stays flat); both write more on a sync as the cluster grows.

use crate::api::{self, ClientKind, Session, TraceRequest};
use crate::proxier::{iptables as ipt_mode, ipvs as ipvs_mode};
use serde::Serialize;

/// One mode's cost at one cluster size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ModeCost {
    /// iptables rules on the node (`-A` lines of what kube-proxy restores, every table).
    pub total_rules: usize,
    /// iptables rules evaluated by the first packet of a connection to a ClusterIP (the Service
    /// in the middle of the list), from a Pod on another node.
    pub rules_per_packet: usize,
    /// Lines a full sync writes: the `iptables-restore` payload, plus in IPVS mode one ipset
    /// entry per line and one IPVS virtual or real server each (each a netlink request).
    pub sync_lines: usize,
    /// IPVS mode: virtual servers + real servers (0 in iptables mode).
    pub ipvs_objects: usize,
    /// IPVS mode: entries over all ipsets (0 in iptables mode).
    pub ipset_entries: usize,
}

/// Both modes at one cluster size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ScalePoint {
    pub services: usize,
    pub endpoints_per_service: usize,
    pub iptables: ModeCost,
    pub ipvs: ModeCost,
}

/// Why a point could not be measured (the generated scenario did not load: a bug, reported
/// rather than panicking in the browser).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleError(pub String);

impl std::fmt::Display for ScaleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ScaleError {}

fn rule_lines(payload: &str) -> usize {
    payload.lines().filter(|l| l.starts_with("-A ")).count()
}

fn packet_rules(session: &mut Session, req: &TraceRequest) -> usize {
    session.trace(req).rules_evaluated
}

/// Measure both modes on `large_cluster(services, endpoints_per_service)`.
pub fn measure(services: usize, endpoints_per_service: usize) -> Result<ScalePoint, ScaleError> {
    let text = crate::generate::large_cluster(services, endpoints_per_service);
    let loaded = api::load_scenario(&text).map_err(|d| {
        ScaleError(format!(
            "generated cluster of {services} Services does not load: {}",
            d.first().map(|d| d.to_string()).unwrap_or_default()
        ))
    })?;
    let s = &loaded.scenario;
    let client = api::client_presets(s)
        .into_iter()
        .find(|c| c.kind == ClientKind::Remote && c.label.contains("Pod"))
        .ok_or_else(|| ScaleError("no client on another node".into()))?;
    let targets: Vec<_> = api::service_targets(s)
        .into_iter()
        .filter(|t| t.kind == "cluster_ip")
        .collect();
    let req = targets.get(targets.len() / 2).map(|t| TraceRequest {
        src: client.src,
        dst: t.dst,
        dport: t.dport,
        proto: t.proto,
        sport: Some(40000),
        seed: 1,
        now: 0.0,
    });

    let ipt = ipt_mode::generate_all(s);
    let ipt_payload: usize = ipt.iter().map(|f| f.payload.lines().count()).sum();
    let iptables = ModeCost {
        total_rules: ipt.iter().map(|f| rule_lines(&f.payload)).sum(),
        rules_per_packet: req
            .as_ref()
            .map_or(0, |r| packet_rules(&mut Session::new(s), r)),
        sync_lines: ipt_payload,
        ipvs_objects: 0,
        ipset_entries: 0,
    };

    let ipvs = ipvs_mode::generate_all(s);
    let objects: usize = ipvs
        .iter()
        .flat_map(|f| &f.virtual_servers)
        .map(|v| 1 + v.real_servers.len())
        .sum();
    let entries: usize = ipvs
        .iter()
        .flat_map(|f| &f.ipsets)
        .map(|set| set.members.len())
        .sum();
    let ipvs_payload: usize = ipvs.iter().map(|f| f.payload.lines().count()).sum();
    let ipvs_cost = ModeCost {
        total_rules: ipvs.iter().map(|f| rule_lines(&f.payload)).sum(),
        rules_per_packet: req
            .as_ref()
            .map_or(0, |r| packet_rules(&mut Session::new_ipvs(s), r)),
        sync_lines: ipvs_payload + entries + objects,
        ipvs_objects: objects,
        ipset_entries: entries,
    };
    Ok(ScalePoint {
        services,
        endpoints_per_service,
        iptables,
        ipvs: ipvs_cost,
    })
}

/// Cluster sizes the web app measures live, in order (each step blocks the page briefly).
pub const LIVE_SERVICES: &[usize] = &[10, 30, 100, 300, 1000, 3000];
/// Endpoints per Service the web app offers.
pub const ENDPOINT_CHOICES: &[usize] = &[1, 4, 10];
/// 10,000 Services, measured natively with this same code (a WASM page would stall for seconds);
/// regenerate with `cargo test -p proxyscope-core --lib scale::tests::print_precomputed --
/// --ignored --nocapture`.
pub const PRECOMPUTED: &[ScalePoint] = &[
    ScalePoint {
        services: 10000,
        endpoints_per_service: 1,
        iptables: ModeCost {
            total_rules: 56517,
            rules_per_packet: 5265,
            sync_lines: 78044,
            ipvs_objects: 0,
            ipset_entries: 0,
        },
        ipvs: ModeCost {
            total_rules: 42,
            rules_per_packet: 18,
            sync_lines: 60572,
            ipvs_objects: 27000,
            ipset_entries: 33500,
        },
    },
    ScalePoint {
        services: 10000,
        endpoints_per_service: 4,
        iptables: ModeCost {
            total_rules: 146517,
            rules_per_packet: 5268,
            sync_lines: 198044,
            ipvs_objects: 0,
            ipset_entries: 0,
        },
        ipvs: ModeCost {
            total_rules: 42,
            rules_per_packet: 18,
            sync_lines: 95072,
            ipvs_objects: 61500,
            ipset_entries: 33500,
        },
    },
    ScalePoint {
        services: 10000,
        endpoints_per_service: 10,
        iptables: ModeCost {
            total_rules: 327517,
            rules_per_packet: 5274,
            sync_lines: 439044,
            ipvs_objects: 0,
            ipset_entries: 0,
        },
        ipvs: ModeCost {
            total_rules: 42,
            rules_per_packet: 18,
            sync_lines: 188072,
            ipvs_objects: 134500,
            ipset_entries: 53500,
        },
    },
];

#[cfg(test)]
mod tests {
    //! Expectations from kube-proxy's design, not from earlier runs: iptables mode adds rules
    //! per Service and per endpoint and walks KUBE-SERVICES linearly; IPVS mode's iptables rules
    //! do not depend on the number of Services (they match ipsets), and its per-packet work is
    //! flat. The generator repeats its Service pattern every 20 Services (every 10th NodePort,
    //! every 20th LoadBalancer), so counts are exactly linear over multiples of 20.
    use super::*;

    #[test]
    fn iptables_grows_linearly_ipvs_rules_stay_flat() {
        let a = measure(20, 2).unwrap();
        let b = measure(40, 2).unwrap();
        let c = measure(60, 2).unwrap();
        // Same increment for every 20 more Services: rules per Service are a constant.
        assert_eq!(
            b.iptables.total_rules - a.iptables.total_rules,
            c.iptables.total_rules - b.iptables.total_rules
        );
        assert!(b.iptables.total_rules > a.iptables.total_rules);
        // IPVS mode: the iptables rules match ipsets, whatever the number of Services.
        assert_eq!(a.ipvs.total_rules, c.ipvs.total_rules);
        // 60 Services: 60 ClusterIP virtual servers; 6 have a NodePort (i % 10 == 9), bound on
        // each of the node's 3 addresses (nodePortAddresses unset: every address but
        // kube-ipvs0's and loopback); 3 of those are LoadBalancers with an LB IP. 81 virtual
        // servers with 2 real servers each, except that eTP Local keeps only the local
        // endpoint (1 of 2 is on this node) for the LoadBalancers' 3 NodePort + 1 LB-IP
        // virtual servers: 81 + 81 × 2 − 3 × 4 = 231.
        assert_eq!(c.ipvs.ipvs_objects, 81 + 81 * 2 - 3 * 4);
        // The per-packet walk: iptables passes half of KUBE-SERVICES, IPVS does not.
        assert!(c.iptables.rules_per_packet > a.iptables.rules_per_packet + 15);
        assert_eq!(a.ipvs.rules_per_packet, c.ipvs.rules_per_packet);
    }

    #[test]
    fn more_endpoints_add_rules_in_iptables_and_real_servers_in_ipvs() {
        let a = measure(20, 1).unwrap();
        let b = measure(20, 3).unwrap();
        // kube-proxy writes a KUBE-SEP chain per endpoint: a masquerade rule for hairpin
        // traffic and the DNAT (2 rules), plus its jump in KUBE-SVC-… (1 rule); kube-proxy's
        // KUBE-EXT / local-only chains for the eTP Local LoadBalancers add their own jumps.
        assert!(b.iptables.total_rules >= a.iptables.total_rules + 20 * 2 * 3);
        assert_eq!(a.ipvs.total_rules, b.ipvs.total_rules);
        // 20 + 2 × 3 + 1 = 27 virtual servers; the LoadBalancer's 4 eTP Local ones keep their
        // single local endpoint, the other 23 gain 2 real servers each.
        assert_eq!(b.ipvs.ipvs_objects - a.ipvs.ipvs_objects, (27 - 4) * 2);
    }

    #[test]
    fn precomputed_points_continue_the_measured_lines() {
        // The generator's pattern repeats every 20 Services, so the rule and object counts of
        // 10,000 Services are the 20-Service counts plus 499 times the increment of 20 more.
        // The per-packet walk differs from a straight line (the middle Service's position),
        // so it is only checked for direction.
        for p in PRECOMPUTED {
            let e = p.endpoints_per_service;
            let (a, b) = (measure(20, e).unwrap(), measure(40, e).unwrap());
            let lin = |f: fn(&ScalePoint) -> usize| f(&a) + 499 * (f(&b) - f(&a));
            assert_eq!(
                p.iptables.total_rules,
                lin(|q| q.iptables.total_rules),
                "{e}"
            );
            // Every NodePort is distinct (as the API server allocates them), so each NodePort
            // Service adds the same virtual servers however many Services came before.
            assert_eq!(p.ipvs.ipvs_objects, lin(|q| q.ipvs.ipvs_objects), "{e}");
            assert_eq!(p.ipvs.total_rules, a.ipvs.total_rules);
            assert_eq!(p.ipvs.rules_per_packet, a.ipvs.rules_per_packet);
            assert!(p.iptables.rules_per_packet > 100 * a.iptables.rules_per_packet / 10);
        }
    }

    /// Prints [`PRECOMPUTED`] (slow: 10,000 Services per endpoint choice).
    #[test]
    #[ignore]
    fn print_precomputed() {
        println!("pub const PRECOMPUTED: &[ScalePoint] = &[");
        for &e in ENDPOINT_CHOICES {
            let p = measure(10_000, e).unwrap();
            println!("    {p:?},");
        }
        println!("];");
    }
}
