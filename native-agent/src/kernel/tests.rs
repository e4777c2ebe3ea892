//! Harness self-test against the real kernel, with a hand-written ruleset whose effect is
//! derived by hand below (no proxyscope code produces the expectations).

use super::listen::Listeners;
use super::netfilter::{Backend, Family, parse_counted_rules};
use super::probe::{Observed, probe};
use super::sys::netns_unavailable_reason;
use super::world::{Client, World};
use proxyscope_core::trace::Proto;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

const RULES4: &str = "\
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
-A PREROUTING -j KUBE-SERVICES
-A OUTPUT -j KUBE-SERVICES
-A POSTROUTING -j KUBE-POSTROUTING
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -j MASQUERADE --random-fully
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m tcp --dport 80 ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ
-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.244.0.10:8080
-A KUBE-SERVICES -d 10.96.0.10/32 -p udp -m udp --dport 53 -j DNAT --to-destination 10.244.0.10:5353
-A KUBE-SERVICES -d 127.0.0.0/8 -p tcp -m tcp --dport 30080 -j KUBE-MARK-MASQ
-A KUBE-SERVICES -d 127.0.0.0/8 -p tcp -m tcp --dport 30080 -j DNAT --to-destination 10.244.0.10:8080
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -d 10.96.0.20/32 -p tcp -m tcp --dport 80 -j REJECT
-A FORWARD -d 10.96.0.30/32 -p tcp -m tcp --dport 80 -j DROP
COMMIT
";

const RULES6: &str = "\
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -d fd00:10:96::a/128 -p tcp -m tcp --dport 80 -j MARK --or-mark 0x4000
-A PREROUTING -d fd00:10:96::a/128 -p tcp -m tcp --dport 80 -j DNAT --to-destination [fd00:10:244::a]:8080
-A POSTROUTING -m mark --mark 0x4000/0x4000 -j MASQUERADE
COMMIT
";

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn harness_sees_dnat_masquerade_reject_and_drop() {
    if let Some(why) = netns_unavailable_reason() {
        eprintln!("SKIPPED kernel harness self-test: {why}");
        return;
    }
    let mut world = World::new().expect("build world");
    let pods: Vec<IpAddr> = vec![
        "10.244.0.10".parse().unwrap(),
        "fd00:10:244::a".parse().unwrap(),
    ];
    world.add_pod_ips(&pods).unwrap();
    let _listeners = Listeners::start(
        &world.pods.name,
        &[
            sa("10.244.0.10:8080"),
            sa("10.244.0.10:5353"),
            sa("[fd00:10:244::a]:8080"),
        ],
    )
    .unwrap();
    let nf = world.netfilter();
    nf.restore(Family::V4, RULES4, true).unwrap();
    nf.restore(Family::V6, RULES6, true).unwrap();
    let t = Duration::from_millis(400);
    let go = |client: Client, proto: Proto, dst: &str| {
        nf.flush_conntrack().unwrap();
        let dst = sa(dst);
        probe(
            &world.client_ns(client).name,
            world.source(client, dst.ip()),
            proto,
            dst,
            t,
            None,
        )
        .unwrap()
    };

    // External client, not in the pod CIDR: the `! -s 10.244.0.0/16` rule marks it, DNAT sends
    // it to the pod, POSTROUTING masquerades to the node's address on the pod veth.
    nf.zero_counters(Family::V4).unwrap();
    let o = go(Client::External, Proto::Tcp, "10.96.0.10:80");
    assert!(
        matches!(o, Observed::Delivered { backend, seen_src, .. } if backend == sa("10.244.0.10:8080") && seen_src.ip().to_string() == "10.244.0.1"),
        "{o:?}"
    );
    let ct = nf.conntrack(Family::V4).unwrap();
    let e = ct
        .iter()
        .find(|e| e.orig_sport == o.local_port())
        .expect("conntrack entry");
    assert_eq!(e.dnat_to(), Some(("10.244.0.10".parse().unwrap(), 8080)));
    assert!(e.snat());
    let counted = parse_counted_rules(&nf.save(Family::V4, true).unwrap()).unwrap();
    let hit: Vec<(String, usize)> = counted
        .iter()
        .filter(|r| r.table == "nat" && r.packets > 0)
        .map(|r| (r.chain.clone(), r.index))
        .collect();
    // PREROUTING#1, KUBE-SERVICES#1 (mark) and #2 (DNAT), KUBE-MARK-MASQ#1, POSTROUTING#1,
    // KUBE-POSTROUTING#2 (xor) and #3 (MASQUERADE); the RETURN (#1) does not match a marked packet.
    assert_eq!(
        hit,
        [
            ("PREROUTING", 1),
            ("POSTROUTING", 1),
            ("KUBE-MARK-MASQ", 1),
            ("KUBE-POSTROUTING", 2),
            ("KUBE-POSTROUTING", 3),
            ("KUBE-SERVICES", 1),
            ("KUBE-SERVICES", 2)
        ]
        .map(|(c, i)| (c.to_string(), i))
    );
    // The netlink reads agree with the tools: every rule's packet counter and DROP verdict
    // with `iptables-save -c` (same chains, same order), the entry fetched by its tuple with
    // the dump.
    let by_netlink = nf.counters(Family::V4).unwrap();
    let by_tool = super::netfilter::group_counts(&counted);
    assert_eq!(by_netlink, by_tool);
    assert!(by_netlink[&("filter".to_string(), "FORWARD".to_string())][1].drops);
    let got = nf
        .conntrack_get(Proto::Tcp, e.orig_src, e.orig_sport, sa("10.96.0.10:80"))
        .unwrap();
    assert_eq!(got.as_ref(), Some(e));

    // A pod on this node keeps its source (inside the pod CIDR, no mark).
    let o = go(Client::Pod, Proto::Tcp, "10.96.0.10:80");
    assert!(
        matches!(o, Observed::Delivered { seen_src, .. } if seen_src.ip().to_string() == "10.244.0.250"),
        "{o:?}"
    );
    // The node itself (OUTPUT path, source 192.168.0.2) is masqueraded.
    let o = go(Client::Node, Proto::Tcp, "10.96.0.10:80");
    assert!(
        matches!(o, Observed::Delivered { seen_src, .. } if seen_src.ip().to_string() == "10.244.0.1"),
        "{o:?}"
    );
    // Localhost NodePort from the node: needs route_localnet, masqueraded away from 127.0.0.1.
    let o = go(Client::Node, Proto::Tcp, "127.0.0.1:30080");
    assert!(
        matches!(o, Observed::Delivered { backend, seen_src, .. } if backend == sa("10.244.0.10:8080") && seen_src.ip().to_string() == "10.244.0.1"),
        "{o:?}"
    );
    // UDP: DNAT without the mark, source kept.
    let o = go(Client::External, Proto::Udp, "10.96.0.10:53");
    assert!(
        matches!(o, Observed::Delivered { backend, seen_src, .. } if backend == sa("10.244.0.10:5353") && seen_src.ip().to_string() == "192.168.0.100"),
        "{o:?}"
    );
    // filter FORWARD: REJECT answers with ICMP port-unreachable (ECONNREFUSED); DROP is silence.
    let o = go(Client::External, Proto::Tcp, "10.96.0.20:80");
    assert!(matches!(o, Observed::Refused { .. }), "{o:?}");
    assert!(matches!(
        go(Client::External, Proto::Tcp, "10.96.0.30:80"),
        Observed::Timeout { .. }
    ));
    // IPv6 DNAT + MASQUERADE.
    let o = go(Client::External, Proto::Tcp, "[fd00:10:96::a]:80");
    assert!(
        matches!(o, Observed::Delivered { backend, seen_src, .. } if backend == sa("[fd00:10:244::a]:8080") && seen_src.ip().to_string() == "fd00:10:244::1"),
        "{o:?}"
    );
    let ct6 = nf.conntrack(Family::V6).unwrap();
    assert!(
        ct6.iter()
            .any(|e| e.orig_sport == o.local_port() && e.snat()),
        "{ct6:?}"
    );
}

#[test]
fn world_teardown_removes_namespaces() {
    if let Some(why) = netns_unavailable_reason() {
        eprintln!("SKIPPED kernel harness teardown test: {why}");
        return;
    }
    let names: Vec<String> = {
        let w = World::new().unwrap();
        vec![
            w.node.name.clone(),
            w.pods.name.clone(),
            w.ext.name.clone(),
            w.podc.name.clone(),
            w.wan.name.clone(),
        ]
    };
    let list = super::sys::run(None, "ip", &["netns", "list"], None).unwrap();
    for n in names {
        assert!(
            !list
                .lines()
                .any(|l| l.split_whitespace().next() == Some(n.as_str())),
            "{n} still exists"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The differential suite itself.

use super::diff::{self, Class, KernelView, Node, Options, Prediction};
use std::collections::BTreeSet;

fn rules(v: &[(&str, &str, usize)]) -> BTreeSet<(String, String, usize)> {
    v.iter()
        .map(|(t, c, i)| (t.to_string(), c.to_string(), *i))
        .collect()
}

fn kernel_view(observed: Observed, masq: Option<bool>, r: &[(&str, &str, usize)]) -> KernelView {
    KernelView {
        src: "192.168.0.100".parse().unwrap(),
        observed,
        dnat: None,
        masq,
        rules: rules(r),
        retries: 0,
    }
}

#[test]
fn comparison_flags_each_kind_of_disagreement() {
    let delivered = Observed::Delivered {
        backend: sa("10.244.0.10:8080"),
        seen_src: sa("10.244.0.1:1234"),
        local_port: 40000,
    };
    let walk = [("nat", "PREROUTING", 1), ("nat", "KUBE-SERVICES", 3)];
    let p = Prediction {
        outcomes: vec![
            (Class::Backend("10.244.0.10:8080".into()), 0.5, true),
            (Class::Backend("10.244.1.10:8080".into()), 0.5, true),
        ],
        rules: Some(rules(&walk)),
        final_src: None,
    };
    // Same backend, masquerade and rules: agreement.
    assert!(diff::disagreements(&kernel_view(delivered.clone(), Some(true), &walk), &p).is_empty());
    // Kernel did not SNAT.
    let d = diff::disagreements(&kernel_view(delivered.clone(), Some(false), &walk), &p);
    assert!(d.len() == 1 && d[0].starts_with("masquerade"), "{d:?}");
    // Kernel counted another rule.
    let d = diff::disagreements(
        &kernel_view(delivered, Some(true), &[("nat", "PREROUTING", 1)]),
        &p,
    );
    assert!(d.len() == 1 && d[0].starts_with("matched rules"), "{d:?}");
    // Kernel refused where core delivers.
    let d = diff::disagreements(
        &kernel_view(Observed::Refused { local_port: 1 }, None, &[]),
        &p,
    );
    assert!(d.len() == 1 && d[0].starts_with("verdict"), "{d:?}");
    // An outcome with probability 0 does not count.
    let p0 = Prediction {
        outcomes: vec![(Class::Silent, 0.0, false)],
        rules: Some(BTreeSet::new()),
        final_src: None,
    };
    assert!(
        !diff::disagreements(
            &kernel_view(Observed::Timeout { local_port: 1 }, None, &[]),
            &p0
        )
        .is_empty()
    );
}

#[test]
fn chi_square_critical_values() {
    // Table values at α = 0.001 (NIST/SEMATECH e-Handbook, 1.3.6.7.4).
    assert_eq!(diff::chi2_critical(1), 10.828);
    assert_eq!(diff::chi2_critical(3), 16.266);
    // Beyond the table, Wilson–Hilferty within 1 % of the tabulated (slightly
    // high, so the test errs towards passing) 31.264 (df 11) and
    // 45.315 (df 20).
    assert!((diff::chi2_critical(11) - 31.264).abs() < 0.31);
    assert!((diff::chi2_critical(20) - 45.315).abs() < 0.45);
    // Pearson: 60/40 over 100 draws against 50/50 is (10²+10²)/50 = 4.
    assert!((diff::chi2(&[60, 40], &[0.5, 0.5]) - 4.0).abs() < 1e-12);
}

fn skip() -> bool {
    if let Some(why) = netns_unavailable_reason() {
        eprintln!("SKIPPED kernel differential test: {why}");
        return true;
    }
    false
}

/// The suite must be able to fail: break the kernel's rules behind core's back and check the
/// comparison notices (masquerade mark gone; DNAT gone).
#[test]
fn suite_detects_a_tampered_kernel() {
    if skip() {
        return;
    }
    let demo = proxyscope_core::api::DEMO_SCENARIO;
    let (node, mismatches) = Node::build(demo, Backend::Nft).unwrap();
    assert!(mismatches.is_empty(), "{mismatches:?}");
    let flow = node
        .flows()
        .into_iter()
        .find(|f| f.client == Client::External && f.what.ends_with("cluster IP"))
        .expect("demo has a ClusterIP");
    let mut session = proxyscope_core::api::Session::new(&node.scenario);
    let opts = Options::default();
    let check = |session: &mut proxyscope_core::api::Session| {
        let k = diff::observe(&node.world, &flow, &opts).unwrap();
        let p = diff::predict(session, &flow, &k);
        diff::disagreements(&k, &p)
    };
    assert_eq!(
        check(&mut session),
        Vec::<String>::new(),
        "untampered demo agrees"
    );

    node.world
        .node
        .exec(
            "iptables",
            &["-w", "-t", "nat", "-F", "KUBE-MARK-MASQ"],
            None,
        )
        .unwrap();
    let d = check(&mut session);
    assert!(d.iter().any(|x| x.starts_with("masquerade")), "{d:?}");

    node.world
        .node
        .exec(
            "iptables",
            &["-w", "-t", "nat", "-F", "KUBE-SERVICES"],
            None,
        )
        .unwrap();
    let d = check(&mut session);
    assert!(d.iter().any(|x| x.starts_with("verdict")), "{d:?}");
}

/// The round trip notices a rule the kernel has and core's `saved` text does not.
#[test]
fn round_trip_detects_an_extra_rule() {
    if skip() {
        return;
    }
    let (node, mismatches) =
        Node::build(proxyscope_core::api::DEMO_SCENARIO, Backend::Nft).unwrap();
    assert!(mismatches.is_empty());
    let nf = node.world.netfilter();
    nf.ns
        .exec(
            "iptables",
            &["-w", "-t", "nat", "-A", "KUBE-SERVICES", "-j", "RETURN"],
            None,
        )
        .unwrap();
    let d = diff::round_trip(&nf, &node.families[0])
        .unwrap()
        .expect("a difference");
    assert!(d.contains("+ -A KUBE-SERVICES -j RETURN"), "{d}");
}

/// ipsets load and read back inside the node namespace (IPVS mode keys its rules on them).
#[test]
fn ipsets_restore_and_save() {
    if skip() {
        return;
    }
    let world = World::new().unwrap();
    let nf = world.netfilter();
    nf.restore_ipsets(
        "create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536\n\
         add KUBE-CLUSTER-IP 10.96.0.10,tcp:80\n",
    )
    .unwrap();
    let saved = nf.save_ipsets().unwrap();
    assert!(
        saved.contains("add KUBE-CLUSTER-IP 10.96.0.10,tcp:80"),
        "{saved}"
    );
}
