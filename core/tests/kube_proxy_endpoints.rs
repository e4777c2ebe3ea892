//! kube-proxy's EndpointSlice cache, checked against upstream TestUpdateEndpointsMap
//! (kubernetes/kubernetes `pkg/proxy/iptables/proxier_test.go`): for every case, the slices the
//! proxier holds at the end (`currentEndpoints`) and the endpoints map it must build from them
//! (`expectedResult`: per service port, `ip:port` strings in kube-proxy's order and `isLocal`).
//! The incremental-update bookkeeping of that test (old maps, conntrack clean-up flags, local
//! endpoint counts for the health-check server) is not modelled by proxyscope: it always
//! rebuilds from the current objects.

mod common;

use common::scenario;
use proxyscope_core::proxier::endpoints_for;
use proxyscope_core::trace::Proto;
use std::collections::BTreeSet;

/// `makeTestEndpointSlice(ns, name, num, …)` with UDP ports; each endpoint is (ip, on this node).
fn slice(ns: &str, name: &str, num: u32, eps: &[(&str, bool)], ports: &[(&str, u16)]) -> String {
    let mut s = format!(
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{namespace: {ns}, name: {name}-{num}, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nendpoints:\n"
    );
    for (ip, local) in eps {
        if *local {
            s.push_str(&format!("- {{addresses: [{ip}], nodeName: test-node}}\n"));
        } else {
            s.push_str(&format!("- {{addresses: [{ip}]}}\n"));
        }
    }
    s.push_str("ports:\n");
    for (p, n) in ports {
        s.push_str(&format!("- {{name: {p}, port: {n}, protocol: UDP}}\n"));
    }
    s
}

// The named slice contents of upstream TestUpdateEndpointsMap.
fn subset1(ns: &str, name: &str, num: u32) -> String {
    slice(ns, name, num, &[("10.1.1.1", false)], &[("p11", 11)])
}
fn subset2(ns: &str, name: &str, num: u32) -> String {
    slice(ns, name, num, &[("10.1.1.2", false)], &[("p12", 12)])
}
fn named_port_local() -> String {
    slice("ns1", "ep1", 1, &[("10.1.1.1", true)], &[("p11", 11)])
}
fn named_port() -> String {
    subset1("ns1", "ep1", 1)
}
fn multiple_subsets() -> String {
    subset1("ns1", "ep1", 1) + &subset2("ns1", "ep1", 2)
}
fn multiple_subsets_multiple_ports_local() -> String {
    slice(
        "ns1",
        "ep1",
        1,
        &[("10.1.1.1", true)],
        &[("p11", 11), ("p12", 12)],
    ) + &slice("ns1", "ep1", 2, &[("10.1.1.3", false)], &[("p13", 13)])
}
fn multiple_subsets_ips_ports() -> String {
    slice(
        "ns1",
        "ep1",
        1,
        &[("10.1.1.1", false), ("10.1.1.2", true)],
        &[("p11", 11), ("p12", 12)],
    ) + &slice(
        "ns1",
        "ep1",
        2,
        &[("10.1.1.3", false), ("10.1.1.4", true)],
        &[("p13", 13), ("p14", 14)],
    ) + &slice(
        "ns2",
        "ep2",
        1,
        &[("10.2.2.1", false), ("10.2.2.2", true)],
        &[("p21", 21), ("p22", 22)],
    )
}
fn named_ports_local_no_local() -> String {
    slice(
        "ns1",
        "ep1",
        1,
        &[("10.1.1.1", false), ("10.1.1.2", true)],
        &[("p11", 11), ("p12", 12)],
    )
}
fn multiple_subsets_with_local() -> String {
    subset1("ns1", "ep1", 1) + &slice("ns1", "ep1", 2, &[("10.1.1.2", true)], &[("p12", 12)])
}
fn named_port_renamed() -> String {
    slice("ns1", "ep1", 1, &[("10.1.1.1", false)], &[("p11-2", 11)])
}
fn named_port_renumbered() -> String {
    slice("ns1", "ep1", 1, &[("10.1.1.1", false)], &[("p11", 22)])
}
fn complex_after() -> String {
    slice(
        "ns1",
        "ep1",
        1,
        &[("10.1.1.1", false), ("10.1.1.11", false)],
        &[("p11", 11)],
    ) + &slice(
        "ns1",
        "ep1",
        2,
        &[("10.1.1.2", false)],
        &[("p12", 12), ("p122", 122)],
    ) + &slice("ns3", "ep3", 1, &[("10.3.3.3", false)], &[("p33", 33)])
        + &slice("ns4", "ep4", 1, &[("10.4.4.4", true)], &[("p44", 44)])
}

/// Expected endpoints of one service port: ((ns, name, port), [(endpoint, isLocal)]).
type Expect = (
    (&'static str, &'static str, &'static str),
    Vec<(&'static str, bool)>,
);

fn check(case: &str, slices: &str, expected: &[Expect]) {
    let s = scenario(&format!(
        "{}{slices}",
        include_str!("golden/fake-proxier.yaml")
    ));
    // Every service port any current slice names (upstream: len(newMap) == len(expected)).
    let mut ports: BTreeSet<(String, String, String)> = BTreeSet::new();
    for sl in &s.slices {
        let ns = sl.metadata.namespace.clone().unwrap_or_default();
        let svc = sl.metadata.labels.as_ref().unwrap()["kubernetes.io/service-name"].clone();
        for p in sl.ports.iter().flatten() {
            ports.insert((ns.clone(), svc.clone(), p.name.clone().unwrap_or_default()));
        }
    }
    for ((ns, name, port), _) in expected {
        ports.insert((ns.to_string(), name.to_string(), port.to_string()));
    }
    for (ns, name, port) in &ports {
        let got: Vec<(String, bool)> = endpoints_for(&s, ns, name, port, Proto::Udp, false)
            .iter()
            .map(|e| (e.key(), e.local))
            .collect();
        let want: Vec<(String, bool)> = expected
            .iter()
            .find(|((n, m, p), _)| n == ns && m == name && p == port)
            .map(|(_, v)| v.iter().map(|(e, l)| (e.to_string(), *l)).collect())
            .unwrap_or_default();
        assert_eq!(
            got, want,
            "TestUpdateEndpointsMap / {case}: {ns}/{name}:{port}"
        );
    }
}

/// Upstream: TestUpdateEndpointsMap, the final state of each of its 15 cases.
#[test]
fn update_endpoints_map() {
    let ep1 = |p: &'static str| ("ns1", "ep1", p);
    check("nothing", "", &[]);
    check(
        "no change, named port, local",
        &named_port_local(),
        &[(ep1("p11"), vec![("10.1.1.1:11", true)])],
    );
    check(
        "no change, multiple subsets",
        &multiple_subsets(),
        &[
            (ep1("p11"), vec![("10.1.1.1:11", false)]),
            (ep1("p12"), vec![("10.1.1.2:12", false)]),
        ],
    );
    check(
        "no change, multiple subsets, multiple ports, local",
        &multiple_subsets_multiple_ports_local(),
        &[
            (ep1("p11"), vec![("10.1.1.1:11", true)]),
            (ep1("p12"), vec![("10.1.1.1:12", true)]),
            (ep1("p13"), vec![("10.1.1.3:13", false)]),
        ],
    );
    check(
        "no change, multiple endpoints, subsets, IPs, and ports",
        &multiple_subsets_ips_ports(),
        &[
            (
                ep1("p11"),
                vec![("10.1.1.1:11", false), ("10.1.1.2:11", true)],
            ),
            (
                ep1("p12"),
                vec![("10.1.1.1:12", false), ("10.1.1.2:12", true)],
            ),
            (
                ep1("p13"),
                vec![("10.1.1.3:13", false), ("10.1.1.4:13", true)],
            ),
            (
                ep1("p14"),
                vec![("10.1.1.3:14", false), ("10.1.1.4:14", true)],
            ),
            (
                ("ns2", "ep2", "p21"),
                vec![("10.2.2.1:21", false), ("10.2.2.2:21", true)],
            ),
            (
                ("ns2", "ep2", "p22"),
                vec![("10.2.2.1:22", false), ("10.2.2.2:22", true)],
            ),
        ],
    );
    check(
        "add an Endpoints",
        &named_port_local(),
        &[(ep1("p11"), vec![("10.1.1.1:11", true)])],
    );
    check("remove an Endpoints", "", &[]);
    check(
        "add an IP and port",
        &named_ports_local_no_local(),
        &[
            (
                ep1("p11"),
                vec![("10.1.1.1:11", false), ("10.1.1.2:11", true)],
            ),
            (
                ep1("p12"),
                vec![("10.1.1.1:12", false), ("10.1.1.2:12", true)],
            ),
        ],
    );
    check(
        "remove an IP and port",
        &named_port(),
        &[(ep1("p11"), vec![("10.1.1.1:11", false)])],
    );
    check(
        "add a subset",
        &multiple_subsets_with_local(),
        &[
            (ep1("p11"), vec![("10.1.1.1:11", false)]),
            (ep1("p12"), vec![("10.1.1.2:12", true)]),
        ],
    );
    check(
        "remove a subset",
        &named_port(),
        &[(ep1("p11"), vec![("10.1.1.1:11", false)])],
    );
    check(
        "rename a port",
        &named_port_renamed(),
        &[(ep1("p11-2"), vec![("10.1.1.1:11", false)])],
    );
    check(
        "renumber a port",
        &named_port_renumbered(),
        &[(ep1("p11"), vec![("10.1.1.1:22", false)])],
    );
    check(
        "complex add and remove",
        &complex_after(),
        &[
            // kube-proxy sorts endpoints as strings: "10.1.1.11:11" < "10.1.1.1:11".
            (
                ep1("p11"),
                vec![("10.1.1.11:11", false), ("10.1.1.1:11", false)],
            ),
            (ep1("p12"), vec![("10.1.1.2:12", false)]),
            (ep1("p122"), vec![("10.1.1.2:122", false)]),
            (("ns3", "ep3", "p33"), vec![("10.3.3.3:33", false)]),
            (("ns4", "ep4", "p44"), vec![("10.4.4.4:44", true)]),
        ],
    );
    check(
        "change from 0 endpoint address to 1 unnamed port",
        &named_port(),
        &[(ep1("p11"), vec![("10.1.1.1:11", false)])],
    );
}
