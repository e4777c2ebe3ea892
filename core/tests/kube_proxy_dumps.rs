//! kube-proxy's own iptables-mode dump tests (kubernetes/kubernetes
//! `pkg/proxy/iptables/proxier_test.go`): whole payloads compared after kube-proxy's
//! normaliser, single chains compared raw, and the checks kube-proxy's test helpers run on
//! payloads. Expected text is copied verbatim from upstream; each test names its source.

mod common;

use common::*;
use proxyscope_core::proxier::iptables::generate;
use proxyscope_core::rules::iptables::Family;

fn payload(yaml: &str) -> String {
    generate(&scenario(yaml), Family::V4).payload
}

const FAKE: &str = include_str!("golden/fake-proxier.yaml");

/// Upstream: TestSortIPTablesRules, case "correctly match same service name in different styles
/// of comments" — checks our copy of the normaliser against upstream's own expectation.
#[test]
fn normaliser_sorts_by_comment_service_name() {
    let input = r#"
        *filter
        COMMIT
        *nat
        :KUBE-SERVICES - [0:0]
        -A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 cluster IP" svc2 line 1
        -A KUBE-SERVICES -m comment --comment ns2/svc2 svc2 line 2
        -A KUBE-SERVICES -m comment --comment "ns2/svc2 blah" svc2 line 3
        -A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" svc1 line 1
        -A KUBE-SERVICES -m comment --comment ns1/svc1 svc1 line 2
        -A KUBE-SERVICES -m comment --comment "ns1/svc1 blah" svc1 line 3
        -A KUBE-SERVICES -m comment --comment ns4/svc4 svc4 line 1
        -A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 cluster IP" svc4 line 2
        -A KUBE-SERVICES -m comment --comment "ns4/svc4 blah" svc4 line 3
        -A KUBE-SERVICES -m comment --comment "ns3/svc3:p80 cluster IP" svc3 line 1
        -A KUBE-SERVICES -m comment --comment "ns3/svc3 blah" svc3 line 2
        -A KUBE-SERVICES -m comment --comment ns3/svc3 svc3 line 3
        COMMIT
    "#;
    let output = r#"
        *filter
        COMMIT
        *nat
        :KUBE-SERVICES - [0:0]
        -A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" svc1 line 1
        -A KUBE-SERVICES -m comment --comment ns1/svc1 svc1 line 2
        -A KUBE-SERVICES -m comment --comment "ns1/svc1 blah" svc1 line 3
        -A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 cluster IP" svc2 line 1
        -A KUBE-SERVICES -m comment --comment ns2/svc2 svc2 line 2
        -A KUBE-SERVICES -m comment --comment "ns2/svc2 blah" svc2 line 3
        -A KUBE-SERVICES -m comment --comment "ns3/svc3:p80 cluster IP" svc3 line 1
        -A KUBE-SERVICES -m comment --comment "ns3/svc3 blah" svc3 line 2
        -A KUBE-SERVICES -m comment --comment ns3/svc3 svc3 line 3
        -A KUBE-SERVICES -m comment --comment ns4/svc4 svc4 line 1
        -A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 cluster IP" svc4 line 2
        -A KUBE-SERVICES -m comment --comment "ns4/svc4 blah" svc4 line 3
        COMMIT
    "#;
    assert_eq!(normalise(&dedent(input)), dedent(output));
}

/// Upstream: TestSortIPTablesRules, case "unexpected junk lines are preserved".
#[test]
fn normaliser_keeps_unknown_chains() {
    let input = r#"
        *filter
        COMMIT
        *nat
        :KUBE-SERVICES - [0:0]
        :KUBE-SEP-RS4RBKLTHTF2IUXJ - [0:0]
        :KUBE-AAAAA - [0:0]
        :KUBE-ZZZZZ - [0:0]
        :WHY-IS-THIS-CHAIN-HERE - [0:0]
        -A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 cluster IP" svc2 line 1
        -A KUBE-SEP-RS4RBKLTHTF2IUXJ -m comment --comment ns2/svc2:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.2:80
        -A KUBE-ZZZZZ -m comment --comment "mystery chain number 1"
        -A KUBE-SERVICES -m comment --comment ns2/svc2 svc2 line 2
        -A WHY-IS-THIS-CHAIN-HERE -j ACCEPT
        -A KUBE-SERVICES -m comment --comment "ns2/svc2 blah" svc2 line 3
        -A KUBE-AAAAA -m comment --comment "mystery chain number 2"
        COMMIT
    "#;
    let output = r#"
        *filter
        COMMIT
        *nat
        :KUBE-SERVICES - [0:0]
        :KUBE-AAAAA - [0:0]
        :KUBE-SEP-RS4RBKLTHTF2IUXJ - [0:0]
        :KUBE-ZZZZZ - [0:0]
        :WHY-IS-THIS-CHAIN-HERE - [0:0]
        -A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 cluster IP" svc2 line 1
        -A KUBE-SERVICES -m comment --comment ns2/svc2 svc2 line 2
        -A KUBE-SERVICES -m comment --comment "ns2/svc2 blah" svc2 line 3
        -A KUBE-AAAAA -m comment --comment "mystery chain number 2"
        -A KUBE-SEP-RS4RBKLTHTF2IUXJ -m comment --comment ns2/svc2:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.2:80
        -A KUBE-ZZZZZ -m comment --comment "mystery chain number 1"
        -A WHY-IS-THIS-CHAIN-HERE -j ACCEPT
        COMMIT
    "#;
    assert_eq!(normalise(&dedent(input)), dedent(output));
}

/// Upstream: TestCheckIPTablesRuleJumps — our copy of the consistency check, on upstream's
/// cases (input, expected error prefix).
#[test]
fn rule_jump_check_matches_upstream_cases() {
    let cases: &[(&str, &str)] = &[
        (
            r#"*filter
            COMMIT
            *nat
            :KUBE-MARK-MASQ - [0:0]
            :KUBE-SERVICES - [0:0]
            :KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
            -A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
            -A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 10.20.30.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
            -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 10.20.30.41 --dport 80 ! -s 10.0.0.0/24 -j KUBE-MARK-MASQ
            COMMIT"#,
            "",
        ),
        (
            r#"*filter
            COMMIT
            *nat
            :KUBE-SERVICES - [0:0]
            -A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
            COMMIT"#,
            "some chains in nat are used but were not created: [KUBE-SVC-XPGD46QRK7WJZT7O]",
        ),
        (
            r#"*filter
            COMMIT
            *nat
            :KUBE-SERVICES - [0:0]
            :KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
            -A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
            COMMIT"#,
            "some chains in nat are jumped to but have no rules: [KUBE-SVC-XPGD46QRK7WJZT7O]",
        ),
        (
            r#"*filter
            COMMIT
            *nat
            :KUBE-MARK-MASQ - [0:0]
            :KUBE-SERVICES - [0:0]
            -A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" ...
            -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
            COMMIT"#,
            "some chains in nat are used but were not created: [KUBE-SVC-XPGD46QRK7WJZT7O]",
        ),
        (
            r#"*filter
            COMMIT
            *nat
            :KUBE-MARK-MASQ - [0:0]
            :KUBE-SERVICES - [0:0]
            :KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
            -A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" ...
            COMMIT"#,
            "some chains in nat are created but not used: [KUBE-SVC-XPGD46QRK7WJZT7O]",
        ),
    ];
    for (input, want) in cases {
        let got = check_rule_jumps(&dedent(input));
        match (got, want.is_empty()) {
            (Ok(()), true) => {}
            (Err(e), false) => assert!(e.starts_with(want), "got {e:?}, want {want:?}"),
            (got, _) => panic!("got {got:?}, want {want:?}"),
        }
    }
}

/// kube-proxy runs `checkIPTablesRuleJumps` on every full expected dump; proxyscope's generated
/// payload for every golden scenario must pass it too (no dangling, empty or unused chains).
#[test]
fn every_golden_payload_is_consistent() {
    for (name, yaml) in [
        ("overall", include_str!("golden/overall.yaml")),
        ("fake-proxier", FAKE),
        (
            "cluster-ip-general",
            include_str!("golden/cluster-ip-general.yaml"),
        ),
        (
            "no-endpoints-reject",
            include_str!("golden/no-endpoints-reject.yaml"),
        ),
        ("load-balancer", include_str!("golden/load-balancer.yaml")),
        ("node-ports-v4", include_str!("golden/node-ports-v4.yaml")),
        (
            "health-check-node-port",
            include_str!("golden/health-check-node-port.yaml"),
        ),
        (
            "external-traffic-policy-local",
            include_str!("golden/external-traffic-policy-local.yaml"),
        ),
        (
            "external-traffic-policy-cluster",
            include_str!("golden/external-traffic-policy-cluster.yaml"),
        ),
        (
            "internal-external-masquerade",
            include_str!("golden/internal-external-masquerade.yaml"),
        ),
        ("bad-ips", include_str!("golden/bad-ips.yaml")),
        (
            "load-balancer-ip-mode",
            include_str!("golden/load-balancer-ip-mode.yaml"),
        ),
    ] {
        if let Err(e) = check_rule_jumps(&payload(yaml)) {
            panic!("{name}: {e}");
        }
    }
    let v6 = scenario(include_str!("golden/node-ports-v6.yaml"));
    check_rule_jumps(&generate(&v6, Family::V6).payload).unwrap();
}

/// Upstream: TestBadIPs — legacy leading-zero IPs and CIDRs are written canonically.
#[test]
fn bad_ips() {
    let expected = dedent(
        r#"
        *filter
        :KUBE-NODEPORTS - [0:0]
        :KUBE-SERVICES - [0:0]
        :KUBE-EXTERNAL-SERVICES - [0:0]
        :KUBE-FIREWALL - [0:0]
        :KUBE-FORWARD - [0:0]
        :KUBE-PROXY-FIREWALL - [0:0]
        -A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
        -A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP
        -A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
        -A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
        -A KUBE-PROXY-FIREWALL -m comment --comment "ns1/svc1:p80 traffic not accepted by KUBE-FW-XPGD46QRK7WJZT7O" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j DROP
        COMMIT
        *nat
        :KUBE-NODEPORTS - [0:0]
        :KUBE-SERVICES - [0:0]
        :KUBE-EXT-XPGD46QRK7WJZT7O - [0:0]
        :KUBE-FW-XPGD46QRK7WJZT7O - [0:0]
        :KUBE-MARK-MASQ - [0:0]
        :KUBE-POSTROUTING - [0:0]
        :KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]
        :KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
        -A KUBE-NODEPORTS -m comment --comment ns1/svc1:p80 -m tcp -p tcp -d 127.0.0.0/8 --dport 3001 -m nfacct --nfacct-name localhost_nps_accepted_pkts -j KUBE-EXT-XPGD46QRK7WJZT7O
        -A KUBE-NODEPORTS -m comment --comment ns1/svc1:p80 -m tcp -p tcp --dport 3001 -j KUBE-EXT-XPGD46QRK7WJZT7O
        -A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
        -A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 external IP" -m tcp -p tcp -d 192.168.99.22 --dport 80 -j KUBE-EXT-XPGD46QRK7WJZT7O
        -A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 loadbalancer IP" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j KUBE-FW-XPGD46QRK7WJZT7O
        -A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
        -A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment "masquerade traffic for ns1/svc1:p80 external destinations" -j KUBE-MARK-MASQ
        -A KUBE-EXT-XPGD46QRK7WJZT7O -j KUBE-SVC-XPGD46QRK7WJZT7O
        -A KUBE-FW-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 loadbalancer IP" -s 203.0.113.0/25 -j KUBE-EXT-XPGD46QRK7WJZT7O
        -A KUBE-FW-XPGD46QRK7WJZT7O -m comment --comment "other traffic to ns1/svc1:p80 will be dropped by KUBE-PROXY-FIREWALL"
        -A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
        -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
        -A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
        -A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
        -A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ
        -A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
        -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
        -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j KUBE-SEP-SXIVWICOYRO3J4NJ
        COMMIT
        "#,
    );
    check_rule_jumps(&expected).expect("upstream's expectation is consistent");
    assert_dump(
        &expected,
        &normalise(&payload(include_str!("golden/bad-ips.yaml"))),
    );
}

/// Upstream: TestDropInvalidRule (three cases: nfacct counter present or not, tcpBeLiberal).
#[test]
fn drop_invalid_rule() {
    let forward_rules = "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark 0x4000/0x4000 -j ACCEPT\n-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n";
    let no_nfacct = FAKE.replace("nfacct: true", "nfacct: false");
    let cases = [
        (
            "tcpLiberal is false and nfacctEnsured is false",
            no_nfacct.clone(),
            "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n",
        ),
        (
            "tcpLiberal is false and nfacctEnsured is true",
            FAKE.to_string(),
            "-A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP\n",
        ),
        (
            "tcpLiberal is true and nfacctEnsured is false",
            no_nfacct.replacen(
                "mode: iptables\n",
                "mode: iptables\nconntrack: {tcpBeLiberal: true}\n",
                1,
            ),
            "",
        ),
    ];
    for (name, yaml, drop_rule) in cases {
        assert_eq!(
            chain_rules(&payload(&yaml), "filter", "KUBE-FORWARD"),
            format!("{drop_rule}{forward_rules}"),
            "TestDropInvalidRule / {name}"
        );
    }
}

/// Upstream: TestMasqueradeRule (randomFully false and true).
#[test]
fn masquerade_rule() {
    for random_fully in [false, true] {
        let yaml = FAKE.replace(
            "randomFully: false",
            &format!("randomFully: {random_fully}"),
        );
        let expected = format!(
            "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000\n-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE{}\n",
            if random_fully { " --random-fully" } else { "" }
        );
        assert_eq!(
            chain_rules(&payload(&yaml), "nat", "KUBE-POSTROUTING"),
            expected,
            "TestMasqueradeRule / randomFully {random_fully}"
        );
    }
}

/// Upstream: TestLoadBalancerIngressRouteTypeProxy, the three "LoadBalancerIPMode enabled"
/// cases (an `ipMode: Proxy` ingress gets no KUBE-SERVICES rule). The three "disabled" cases
/// need the feature gate off, which kube-proxy v1.33 no longer allows (GA and locked since
/// v1.32; upstream reaches them by emulating v1.31), so they are not transcribed.
#[test]
fn load_balancer_ingress_ip_mode() {
    let p = payload(include_str!("golden/load-balancer-ip-mode.yaml"));
    let services = chain_rules(&p, "nat", "KUBE-SERVICES");
    for (name, lb_ip, expected_rule) in [
        ("LoadBalancerIPMode enabled, ipMode Proxy", "1.2.3.4", false),
        ("LoadBalancerIPMode enabled, ipMode VIP", "1.2.3.5", true),
        ("LoadBalancerIPMode enabled, ipMode nil", "1.2.3.6", true),
    ] {
        let exists = services
            .lines()
            .any(|r| r.contains(&format!(" -d {lb_ip} ")));
        assert_eq!(exists, expected_rule, "{name}: unexpected rule for {lb_ip}");
    }
}
