//! `-m physdev` and `-m ipvs`: their iptables-save text, their diagnostics, the kernel's match
//! semantics and kube-proxy's IPVS-mode rules that use them, traced.
//!
//! Expected sides come from outside proxyscope:
//! * save text: libxt_physdev `physdev_save` (order is-in, in, is-out, out, is-bridged, each
//!   with its own ` !`) as the real iptables 1.8.9 printed it in a network namespace (also the
//!   kernel fixture `physdev.*.saved`), and libxt_ipvs `ipvs_mt_dump` (1.8.9's format strings:
//!   ` %sipvs` only when `bitmask == XT_IPVS_IPVS_PROPERTY`, ` %svproto %u`, ` %svaddr` +
//!   address + `xtables_ipmask_to_numeric`, ` %svport %u`, ` %svdir REPLY|ORIGINAL`,
//!   ` %svmethod`, ` %svportctl %u`). `xtables_ipmask_to_numeric` leaves out a full-length
//!   mask and no one masks the address: checked on this machine with `-m conntrack
//!   --ctorigdst 10.1.2.3/8` (same XTTYPE_HOSTMASK) → saved as `10.1.2.3/8`, `10.0.0.1` → `10.0.0.1`.
//!   (This kernel has no IPVS, so `-m ipvs` rules themselves cannot be loaded here.)
//! * semantics: `physdev_mt` (net/netfilter/xt_physdev.c) and `ipvs_mt` (xt_ipvs.c), derived
//!   by hand in the tables below.

use proxyscope_core::api::{self, Session, TraceRequest};
use proxyscope_core::netfilter::eval::{BridgeInfo, IpvsConn, ipvs_match, physdev_match};
use proxyscope_core::netfilter::program::Program;
use proxyscope_core::rules::iptables::view::PhysdevRef;
use proxyscope_core::rules::iptables::{
    Family, IpvsMatch, Match, VMethod, parse, print::rule_text, print_saved,
};
use proxyscope_core::trace::{Proto, Step, Trace, Verdict};
use std::net::IpAddr;

fn dump(args: &str) -> String {
    format!("*filter\n:X - [0:0]\n-A X {args}\nCOMMIT\n")
}

/// The `-A X ...` line iptables-save would print for `args`, from both forms.
fn saved(args: &str, fam: Family) -> String {
    let p = parse(&dump(args), fam);
    assert!(p.diagnostics.is_empty(), "{args}: {:?}", p.diagnostics);
    let text = print_saved(&p.ruleset, false);
    let line = text.lines().find(|l| l.starts_with("-A X")).unwrap();
    let (prog, diags) = Program::parse(&dump(args), fam);
    assert!(diags.is_empty());
    assert_eq!(
        rule_text("X", prog.rule(0, 0, 0)),
        line,
        "program form of {args}"
    );
    // What it prints reads back to the same model.
    assert_eq!(parse(&text, fam).ruleset, p.ruleset, "{args}");
    line.to_string()
}

#[test]
fn save_text_is_what_libxt_physdev_and_libxt_ipvs_print() {
    let v4 = [
        // kube-proxy's externalIP rule part; real iptables-save printed it unchanged.
        (
            "-m physdev ! --physdev-is-in",
            "-A X -m physdev ! --physdev-is-in",
        ),
        // Printed in physdev_save's order, not the given one (real iptables 1.8.9, both backends).
        (
            "-m physdev --physdev-in veth+ ! --physdev-is-in",
            "-A X -m physdev ! --physdev-is-in --physdev-in veth+",
        ),
        (
            "-m physdev --physdev-is-bridged --physdev-out eth0 --physdev-is-out ! --physdev-in v1",
            "-A X -m physdev ! --physdev-in v1 --physdev-is-out --physdev-out eth0 --physdev-is-bridged",
        ),
        (
            "-m physdev --physdev-in \"+\"",
            "-A X -m physdev --physdev-in +",
        ),
        // kube-proxy's KUBE-IPVS-OUT-FILTER rule: protocol by number, first; /32 left out.
        (
            "-s 1.2.3.4 -m ipvs --vaddr 1.2.3.4 --vproto tcp --vport 80 -j DROP",
            "-A X -s 1.2.3.4/32 -m ipvs --vproto 6 --vaddr 1.2.3.4 --vport 80 -j DROP",
        ),
        // Any option implies --ipvs, which is then not printed (kube-router's rule shape).
        (
            "-m ipvs --ipvs --vdir ORIGINAL --vmethod MASQ -j ACCEPT",
            "-A X -m ipvs --vdir ORIGINAL --vmethod MASQ -j ACCEPT",
        ),
        ("-m ipvs ! --ipvs", "-A X -m ipvs ! --ipvs"),
        ("-m ipvs --ipvs", "-A X -m ipvs --ipvs"),
        // Address kept unmasked; names upper-cased; REPLY is --vdir's inversion, never `!`.
        (
            "-m ipvs --vportctl 21 ! --vmethod gate --vdir reply ! --vport 53 --vaddr 10.1.2.3/8",
            "-A X -m ipvs --vaddr 10.1.2.3/8 ! --vport 53 --vdir REPLY ! --vmethod GATE --vportctl 21",
        ),
        (
            "-m ipvs ! --vproto udp ! --vaddr 10.0.0.0/0",
            "-A X -m ipvs ! --vproto 17 ! --vaddr 10.0.0.0/0",
        ),
    ];
    for (input, want) in v4 {
        assert_eq!(saved(input, Family::V4), want, "{input}");
    }
    // xtables_ip6mask_to_numeric: "" for /128.
    assert_eq!(
        saved("-m ipvs --vaddr fd00::1/128 --vport 443", Family::V6),
        "-A X -m ipvs --vaddr fd00::1 --vport 443"
    );
    assert_eq!(
        saved("-m ipvs --vaddr fd00::1/64", Family::V6),
        "-A X -m ipvs --vaddr fd00::1/64"
    );
}

#[test]
fn valid_rules_parse_without_an_unsupported_warning() {
    for args in [
        "-m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL -j ACCEPT",
        "-m ipvs --vaddr 1.2.3.4 --vproto tcp --vport 80 -j DROP",
    ] {
        let p = parse(&dump(args), Family::V4);
        assert!(p.diagnostics.is_empty(), "{args}: {:?}", p.diagnostics);
        let r = &p.ruleset.tables[0].chains[0].rules[0];
        assert!(
            r.matches
                .iter()
                .all(|m| !matches!(m, Match::Unknown { .. })),
            "{args}: {r:?}"
        );
    }
}

#[test]
fn bad_input_is_an_error_with_its_line_never_a_panic() {
    // Each refused by libxtables / the extension's check function (named), or not a value
    // the kernel structure can hold.
    let bad = [
        "-m ipvs",                                      // ipvs_mt_check: at least one option
        "-m physdev",                                   // physdev_check: no physdev option
        "-m ipvs ! --ipvs --vport 80",                  // ipvs_mt_check: ! --ipvs with others
        "-m ipvs ! --vdir ORIGINAL",                    // --vdir has no XTOPT_INVERT
        "-m ipvs --vdir SIDEWAYS",                      // ipvs_mt_parse: bad value
        "-m ipvs --vmethod FOO",                        // ipvs_mt_parse: bad value
        "-m ipvs --vport http",                         // service names are not resolved here
        "-m ipvs --vport 65536",                        // not a port
        "-m ipvs --vaddr 10.0.0.0/255.0.0.0",           // XTTYPE_HOSTMASK takes a prefix length
        "-m ipvs --vaddr 10.0.0.0/33",                  // prefix too long
        "-m ipvs --vaddr fd00::1",                      // other family
        "-m ipvs --vproto nosuch",                      // unknown protocol
        "-m ipvs --vport 1 --vport 2",                  // xtables_option_parse: only once
        "-m physdev --physdev-is-in ! --physdev-is-in", // only once
        "-m physdev --physdev-in",                      // needs a value
        "-m physdev --physdev-in a/b",                  // '/' in an interface name
        "-m physdev --physdev-out 0123456789abcdef",    // 16 bytes: not below IFNAMSIZ
        "-m physdev --physdev-is-in --vport 80",        // not a physdev option
    ];
    for args in bad {
        let text = format!("*filter\n:X - [0:0]\n-A X -j ACCEPT\n-A X {args}\nCOMMIT\n");
        let p = parse(&text, Family::V4);
        assert!(p.has_errors(), "{args} was accepted");
        assert!(
            p.diagnostics
                .iter()
                .any(|d| d.is_error() && d.line == Some(4)),
            "{args}: {:?}",
            p.diagnostics
        );
        let (prog, diags) = Program::parse(&text, Family::V4);
        assert_eq!(diags, p.diagnostics);
        assert_eq!(prog.to_ruleset(), p.ruleset);
    }
}

fn physdev(opts: &str) -> proxyscope_core::rules::iptables::Physdev {
    let p = parse(&dump(&format!("-m physdev {opts}")), Family::V4);
    assert!(p.diagnostics.is_empty(), "{opts}: {:?}", p.diagnostics);
    match &p.ruleset.tables[0].chains[0].rules[0].matches[0] {
        Match::Physdev(pd) => pd.clone(),
        m => panic!("{m:?}"),
    }
}

fn bridge(i: Option<&str>, o: Option<&str>) -> BridgeInfo {
    BridgeInfo {
        physindev: i.map(str::to_string),
        physoutdev: o.map(str::to_string),
    }
}

/// physdev_mt, derived case by case.
#[test]
fn physdev_matches_as_xt_physdev_does() {
    let routed_from_pod = bridge(Some("veth0"), None);
    let bridged = bridge(Some("veth1"), Some("eth1"));
    let out_only = bridge(None, Some("veth3"));
    let cases: &[(&str, Option<&BridgeInfo>, bool)] = &[
        // No nf_bridge info: MATCH only if every option used is inverted.
        ("--physdev-is-in", None, false),
        ("! --physdev-is-in", None, true),
        ("! --physdev-is-in ! --physdev-in eth0", None, true),
        ("! --physdev-is-in --physdev-out eth1", None, false),
        ("! --physdev-is-bridged ! --physdev-is-out", None, true),
        ("--physdev-is-bridged", None, false),
        // Routed packet from a Pod's bridge port: physindev set, no physoutdev.
        ("--physdev-is-in", Some(&routed_from_pod), true),
        ("! --physdev-is-in", Some(&routed_from_pod), false),
        // BRIDGED is "has an output port" (`!!outdev ^ !invert`).
        ("--physdev-is-bridged", Some(&routed_from_pod), false),
        ("! --physdev-is-bridged", Some(&routed_from_pod), true),
        ("--physdev-in veth+", Some(&routed_from_pod), true),
        ("--physdev-in veth1", Some(&routed_from_pod), false),
        ("! --physdev-in veth1", Some(&routed_from_pod), true),
        ("--physdev-in +", Some(&routed_from_pod), true),
        ("--physdev-is-out", Some(&routed_from_pod), false),
        ("! --physdev-is-out", Some(&routed_from_pod), true),
        // --physdev-out without an output port fails, inverted or not (`if (!outdev) return false`).
        ("--physdev-out eth1", Some(&routed_from_pod), false),
        ("! --physdev-out eth1", Some(&routed_from_pod), false),
        // A bridged packet: both ports.
        (
            "--physdev-is-bridged --physdev-in veth1 --physdev-out eth1",
            Some(&bridged),
            true,
        ),
        ("! --physdev-out eth1", Some(&bridged), false),
        ("! --physdev-out eth+ ", Some(&bridged), false),
        ("! --physdev-out veth+", Some(&bridged), true),
        // No input port: --physdev-in is not tested at all (`if (indev) {...}`).
        ("--physdev-in veth0", Some(&out_only), true),
        ("! --physdev-in veth0", Some(&out_only), true),
        ("--physdev-is-in", Some(&out_only), false),
        (
            "--physdev-out veth3 --physdev-is-bridged",
            Some(&out_only),
            true,
        ),
    ];
    for (opts, b, want) in cases {
        let pd = physdev(opts);
        let got = physdev_match(PhysdevRef::from(&pd), *b).is_ok();
        assert_eq!(got, *want, "-m physdev {opts} with {b:?}");
    }
}

fn ipvs(opts: &str) -> IpvsMatch {
    let p = parse(&dump(&format!("-m ipvs {opts}")), Family::V4);
    assert!(p.diagnostics.is_empty(), "{opts}: {:?}", p.diagnostics);
    match &p.ruleset.tables[0].chains[0].rules[0].matches[0] {
        Match::Ipvs(i) => *i,
        m => panic!("{m:?}"),
    }
}

/// ipvs_mt, derived case by case, for a TCP packet (protocol 6).
#[test]
fn ipvs_matches_as_xt_ipvs_does() {
    let conn = IpvsConn {
        vaddr: "1.2.3.4".parse().unwrap(),
        vport: 80,
        method: VMethod::Masq,
        reply: false,
        control_vport: None,
    };
    let cases: &[(&str, Option<IpvsConn>, bool)] = &[
        // bitmask == XT_IPVS_IPVS_PROPERTY: ipvs_property ^ invert.
        ("--ipvs", None, false),
        ("! --ipvs", None, true),
        ("--ipvs", Some(conn), true),
        ("! --ipvs", Some(conn), false),
        // Other options and no ipvs_property: false, whatever is inverted.
        ("--vport 80", None, false),
        ("! --vport 80", None, false),
        ("! --vaddr 9.9.9.9", None, false),
        // With the connection.
        ("--vproto 6", Some(conn), true),
        ("--vproto udp", Some(conn), false),
        ("! --vproto udp", Some(conn), true),
        ("--vaddr 1.2.3.4", Some(conn), true),
        ("--vaddr 1.2.3.0/24", Some(conn), true),
        // The kernel compares (kaddr ^ uaddr) & mask: the given host bits do not matter.
        ("--vaddr 1.2.3.99/24", Some(conn), true),
        ("--vaddr 1.2.3.5", Some(conn), false),
        ("! --vaddr 1.2.3.5", Some(conn), true),
        ("--vport 80", Some(conn), true),
        ("! --vport 80", Some(conn), false),
        ("--vdir ORIGINAL", Some(conn), true),
        ("--vdir REPLY", Some(conn), false),
        ("--vmethod MASQ", Some(conn), true),
        ("! --vmethod MASQ", Some(conn), false),
        ("--vmethod GATE", Some(conn), false),
        // No controlling connection: `cp->control != NULL && ...` is false.
        ("--vportctl 21", Some(conn), false),
        ("! --vportctl 21", Some(conn), true),
        // kube-proxy's KUBE-IPVS-OUT-FILTER match.
        ("--vaddr 1.2.3.4 --vproto tcp --vport 80", Some(conn), true),
        ("--vaddr 1.2.3.4 --vproto tcp --vport 81", Some(conn), false),
    ];
    for (opts, c, want) in cases {
        let got = ipvs_match(ipvs(opts), 6, *c).is_ok();
        assert_eq!(got, *want, "-m ipvs {opts} with {c:?}");
    }
    let reply = IpvsConn {
        reply: true,
        control_vport: Some(21),
        method: VMethod::Gate,
        ..conn
    };
    assert!(
        ipvs_match(
            ipvs("--vdir REPLY --vportctl 21 --vmethod GATE"),
            6,
            Some(reply)
        )
        .is_ok()
    );
    assert!(ipvs_match(ipvs("--vdir ORIGINAL"), 6, Some(reply)).is_err());
}

// ---------------------------------------------------------------------------------------------
// kube-proxy in IPVS mode, traced.

fn demo_with(extra_spec: &str, features: &str) -> proxyscope_core::k8s::Scenario {
    let text = include_str!("../../examples/ipvs-demo.yaml")
        .replace(
            "  clusterIPs: [10.104.14.67]\n",
            &format!("  clusterIPs: [10.104.14.67]\n{extra_spec}"),
        )
        .replace("  nfacct: true\n", &format!("  nfacct: true\n{features}"));
    api::load_scenario(&text)
        .unwrap_or_else(|e| panic!("{e:?}"))
        .scenario
}

fn req(src: &str, dst: &str, dport: u16) -> TraceRequest {
    TraceRequest {
        src: src.parse::<IpAddr>().unwrap(),
        dst: dst.parse().unwrap(),
        dport,
        proto: Proto::Tcp,
        sport: Some(40000),
        seed: 1,
        now: 0.0,
    }
}

/// The step of the first rule whose text contains `needle`: (matched, failed).
fn rule_step(t: &Trace, needle: &str) -> (bool, Option<String>) {
    t.steps
        .iter()
        .find_map(|s| match s {
            Step::Rule {
                text,
                matched,
                failed,
                ..
            } if text.contains(needle) => Some((*matched, failed.clone())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no rule with {needle}: {:#?}", t.steps))
}

fn no_unsupported(t: &Trace) {
    assert!(
        t.warnings.iter().all(|w| !w.contains("physdev")
            && !w.contains("ipvs is not")
            && !w.contains("not modelled")),
        "{:?}",
        t.warnings
    );
}

/// ipvs-demo plus externalIP 203.0.113.10 (ETP Cluster): nat KUBE-SERVICES has
/// `... KUBE-EXTERNAL-IP dst,dst -j KUBE-MARK-MASQ`, then
/// `... KUBE-EXTERNAL-IP dst,dst -m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL -j ACCEPT`,
/// then `... --dst-type LOCAL -j ACCEPT` (spec §5.2 item 4).
#[test]
fn external_ip_rules_follow_where_the_packet_came_in() {
    let ext = "  externalIPs: [203.0.113.10]\n";
    // Off-node client on eth0 (no bridge): no nf_bridge info, so the all-inverted physdev
    // match holds; the source is not local: this rule ACCEPTs.
    let mut s = Session::new_ipvs(&demo_with(ext, ""));
    let t = s.trace(&req("198.51.100.7", "203.0.113.10", 80));
    no_unsupported(&t);
    assert_eq!(rule_step(&t, "-m physdev ! --physdev-is-in"), (true, None));
    assert!(t.output.starts_with("10.0.0."), "{}", t.output);
    assert!(t.masq, "marked by the KUBE-EXTERNAL-IP MARK-MASQ rule");

    // A Pod on this node's bridge cni0, br_netfilter on (default): the packet carries its
    // bridge port, `! --physdev-is-in` fails, and the `--dst-type LOCAL` rule accepts instead
    // (the externalIP is on kube-ipvs0).
    let t = s.trace(&req("10.0.0.9", "203.0.113.10", 80));
    no_unsupported(&t);
    let (matched, failed) = rule_step(&t, "-m physdev ! --physdev-is-in");
    assert!(!matched);
    assert!(
        failed.as_deref().unwrap().contains("! --physdev-is-in"),
        "{failed:?}"
    );
    assert_eq!(
        rule_step(&t, "dst,dst -m addrtype --dst-type LOCAL -j ACCEPT"),
        (true, None)
    );

    // br_netfilter off: the same Pod's packet has no bridge info, so the physdev rule holds.
    let mut s = Session::new_ipvs(&demo_with(ext, "  brNetfilter: false\n"));
    let t = s.trace(&req("10.0.0.9", "203.0.113.10", 80));
    no_unsupported(&t);
    assert_eq!(rule_step(&t, "-m physdev ! --physdev-is-in"), (true, None));

    // The Pod's interface is no bridge (a routed CNI): no bridge info either.
    let mut s = Session::new_ipvs(&demo_with(ext, "").clone_with_bridges(Vec::new()));
    let t = s.trace(&req("10.0.0.9", "203.0.113.10", 80));
    assert_eq!(rule_step(&t, "-m physdev ! --physdev-is-in"), (true, None));
}

trait WithBridges {
    fn clone_with_bridges(self, b: Vec<(String, Vec<String>)>) -> Self;
}

impl WithBridges for proxyscope_core::k8s::Scenario {
    fn clone_with_bridges(mut self, b: Vec<(String, Vec<String>)>) -> Self {
        self.network.bridges = b;
        self
    }
}

/// kube-proxy keeps the node itself away from a source-range-restricted LB VIP whose ranges
/// exclude the node (`lbNoNodeAccessIPPortProtocolEntries`):
/// `-A KUBE-IPVS-OUT-FILTER -s LB -m ipvs --vaddr LB --vproto tcp --vport 80 -j DROP` in filter
/// OUTPUT. IPVS (LOCAL_OUT, priority -98) takes the node's packet to the VIP first, rewrites it
/// to the Pod and re-sends it through LOCAL_OUT with `ipvs_property` set; filter OUTPUT then
/// sees src = the VIP (the node's source for its own kube-ipvs0 address) and an IPVS
/// connection to LB:80 over TCP, so the rule DROPs it. Without `-m ipvs` modelled the packet
/// reached the Pod.
#[test]
fn node_to_a_source_range_restricted_lb_vip_is_dropped_by_the_ipvs_match() {
    let text = include_str!("../../examples/ipvs-demo.yaml")
        .replace(
            "  type: ClusterIP\n",
            "  type: LoadBalancer\n  loadBalancerSourceRanges: [203.0.113.0/24]\n",
        )
        .replace(
            "  sessionAffinity: None\n",
            "  sessionAffinity: None\nstatus:\n  loadBalancer:\n    ingress: [{ip: 198.51.100.50}]\n",
        );
    let s = api::load_scenario(&text)
        .unwrap_or_else(|e| panic!("{e:?}"))
        .scenario;
    let mut sess = Session::new_ipvs(&s);
    let t = sess.trace(&req("198.51.100.50", "198.51.100.50", 80));
    no_unsupported(&t);
    assert_eq!(
        rule_step(
            &t,
            "-A KUBE-IPVS-OUT-FILTER -s 198.51.100.50/32 -m ipvs --vproto 6 --vaddr 198.51.100.50 --vport 80 -j DROP"
        ),
        (true, None)
    );
    assert_eq!(t.verdict, Verdict::Drop);
    // A client inside the ranges is let through (the match needs the node's own source).
    let t = sess.trace(&req("203.0.113.7", "198.51.100.50", 80));
    no_unsupported(&t);
    assert_ne!(t.verdict, Verdict::Drop, "{:#?}", t.steps);
}

/// NodeNetwork's `bridges` and `features.brNetfilter`: defaults, values, and bad input reported
/// with its field (unknown fields still a warning).
#[test]
fn node_network_bridges_and_br_netfilter() {
    let base = include_str!("../../examples/ipvs-demo.yaml");
    let s = api::load_scenario(base).unwrap().scenario;
    // Defaults: the bridge CNI layout, br_netfilter on.
    assert_eq!(s.network.bridge_port("cni0"), Some("veth0"));
    assert_eq!(s.network.bridge_port("eth0"), None);
    let text = base.replace(
        "features:\n",
        "bridges:\n  br0: [eth1, vethA]\n  cni0: []\nfeatures:\n  brNetfilter: false\n",
    );
    let l = api::load_scenario(&text).unwrap();
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let n = &l.scenario.network;
    assert_eq!(
        n.bridges,
        vec![
            (
                "br0".to_string(),
                vec!["eth1".to_string(), "vethA".to_string()]
            ),
            ("cni0".to_string(), vec![])
        ]
    );
    assert!(!n.br_netfilter);
    assert_eq!(
        n.bridge_port("br0"),
        None,
        "br_netfilter off: no bridge info"
    );
    let text = base.replace(
        "features:\n",
        "bridges:\n  br0: [\"a/b\", 0123456789abcdefg]\n  br1: veth0\nfeatures:\n  brNetfilter: maybe\n  bogus: true\n",
    );
    let l = api::load_scenario(&text);
    let diags = match l {
        Ok(l) => l.warnings,
        Err(e) => e,
    };
    let text_of = |d: &proxyscope_core::diag::Diagnostic| format!("{d:?}");
    for field in [
        "bridges.br0[0]",
        "bridges.br0[1]",
        "bridges.br1",
        "features.brNetfilter",
        "features.bogus",
    ] {
        assert!(
            diags.iter().any(|d| text_of(d).contains(field)),
            "{field}: {diags:?}"
        );
    }
}
