//! `-m physdev` against the real kernel: real packets through a real Linux bridge, in network
//! namespaces this test creates and deletes (never the host's). Each rule's packet counter
//! says whether the kernel's xt_physdev matched; core's evaluator must say the same for the
//! bridge info the model gives such a packet:
//! * in through a bridge port with `net.bridge.bridge-nf-call-iptables=1`: physindev = the
//!   port, no physoutdev (the packet is routed to the node, not bridged on);
//! * in through a plain interface, or with the sysctl at 0: no bridge info.
//!
//! Topology: namespace N has bridge `br0` (10.99.0.1/24) with port `vh`, whose veth peer sits
//! in namespace P (10.99.0.2), and a plain veth `ve` (10.98.0.1/24) to namespace X
//! (10.98.0.2). P and X send one UDP datagram each to N (bash's `/dev/udp`, no tools needed).

use proxyscope_core::netfilter::eval::{BridgeInfo, physdev_match};
use proxyscope_core::rules::iptables::view::PhysdevRef;
use proxyscope_core::rules::iptables::{Family, Match, parse};
use std::process::Command;
use std::time::{Duration, Instant};

/// The rules, each `-A INPUT -p udp -m physdev <opts>` without a target (so every one counts).
const RULES: &[&str] = &[
    "--physdev-is-in",
    "! --physdev-is-in",
    "--physdev-in vh",
    "! --physdev-in vh",
    "--physdev-in v+",
    "! --physdev-in x+",
    "--physdev-is-out",
    "! --physdev-is-out",
    "--physdev-out vh",
    "! --physdev-out vh",
    "--physdev-is-bridged",
    "! --physdev-is-bridged",
    "! --physdev-is-in ! --physdev-in vh",
    "--physdev-is-in --physdev-in v+ ! --physdev-is-bridged",
];

struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `iptables-restore` of `payload` inside namespace `ns`; the caller judges its exit status.
fn restore_in(ns: &str, payload: &str) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", ns, "iptables-restore"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(payload.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap()
}

fn in_ns(ns: &str, args: &[&str]) -> String {
    let mut v = vec!["ip", "netns", "exec", ns];
    v.extend_from_slice(args);
    run(&v)
}

fn available() -> Result<(), String> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if !root {
        return Err("needs root".into());
    }
    for tool in ["ip", "iptables-restore", "bash"] {
        let found = Command::new("which")
            .arg(tool)
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Err(format!("needs {tool}"));
        }
    }
    if !std::path::Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables").exists() {
        return Err("br_netfilter is not loaded (no /proc/sys/net/bridge)".into());
    }
    Ok(())
}

/// Per rule: did its counter move? Polls until the first (catch-all) rule saw the datagram.
fn matched_after_send(n: &str, sender: &str, dst: &str) -> Vec<bool> {
    in_ns(n, &["iptables", "-Z", "INPUT"]);
    in_ns(
        sender,
        &["bash", "-c", &format!("echo x > /dev/udp/{dst}/9999")],
    );
    let start = Instant::now();
    loop {
        let saved = in_ns(n, &["iptables-save", "-c", "-t", "filter"]);
        let p = parse(&saved, Family::V4);
        assert!(!p.has_errors(), "{:?}\n{saved}", p.diagnostics);
        let rules = &p
            .ruleset
            .table("filter")
            .unwrap()
            .chain("INPUT")
            .unwrap()
            .rules;
        let hit: Vec<bool> = rules
            .iter()
            .map(|r| r.counters.unwrap_or_default().packets > 0)
            .collect();
        if hit[0] {
            return hit[1..].to_vec();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the datagram from {sender} never reached {n}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn physdev_matches_like_the_kernel_on_a_real_bridge() {
    if let Err(why) = available() {
        eprintln!("SKIPPED physdev kernel check: {why}");
        return;
    }
    let tag = std::process::id();
    let (n, p, x) = (
        format!("psk-{tag}-pd-n"),
        format!("psk-{tag}-pd-p"),
        format!("psk-{tag}-pd-x"),
    );
    let mut made = Namespaces(Vec::new());
    for ns in [&n, &p, &x] {
        run(&["ip", "netns", "add", ns]);
        made.0.push(ns.clone());
    }
    let setup: &[&[&str]] = &[
        &["ip", "-n", &n, "link", "add", "br0", "type", "bridge"],
        &["ip", "-n", &n, "link", "set", "br0", "up"],
        &["ip", "-n", &n, "addr", "add", "10.99.0.1/24", "dev", "br0"],
        &[
            "ip", "-n", &n, "link", "add", "vh", "type", "veth", "peer", "name", "vp", "netns", &p,
        ],
        &["ip", "-n", &n, "link", "set", "vh", "master", "br0", "up"],
        &["ip", "-n", &p, "link", "set", "vp", "up"],
        &["ip", "-n", &p, "addr", "add", "10.99.0.2/24", "dev", "vp"],
        &[
            "ip", "-n", &n, "link", "add", "ve", "type", "veth", "peer", "name", "vx", "netns", &x,
        ],
        &["ip", "-n", &n, "link", "set", "ve", "up"],
        &["ip", "-n", &n, "addr", "add", "10.98.0.1/24", "dev", "ve"],
        &["ip", "-n", &x, "link", "set", "vx", "up"],
        &["ip", "-n", &x, "addr", "add", "10.98.0.2/24", "dev", "vx"],
    ];
    for cmd in setup {
        run(cmd);
    }
    // The sysctl is per namespace: setting it here leaves the host's alone.
    in_ns(
        &n,
        &["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"],
    );
    let mut payload = String::from("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p udp\n");
    for r in RULES {
        payload.push_str(&format!("-A INPUT -p udp -m physdev {r}\n"));
    }
    payload.push_str("COMMIT\n");
    let out = restore_in(&n, &payload);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The model's side: the physdev matches as core parsed them.
    let model = parse(&payload, Family::V4);
    assert!(model.diagnostics.is_empty(), "{:?}", model.diagnostics);
    let matches: Vec<_> = model.ruleset.tables[0].chains[0].rules[1..]
        .iter()
        .map(|r| match &r.matches[0] {
            Match::Physdev(pd) => pd.clone(),
            m => panic!("{m:?}"),
        })
        .collect();
    let predict = |b: Option<&BridgeInfo>| -> Vec<bool> {
        matches
            .iter()
            .map(|pd| physdev_match(PhysdevRef::from(pd), b).is_ok())
            .collect()
    };
    let from_port = BridgeInfo {
        physindev: Some("vh".into()),
        physoutdev: None,
    };
    let cases: [(&str, &str, &str, Option<&BridgeInfo>); 3] = [
        (
            "bridge port, br_netfilter on",
            &p,
            "10.99.0.1",
            Some(&from_port),
        ),
        ("plain interface", &x, "10.98.0.1", None),
        ("bridge port, br_netfilter off", &p, "10.99.0.1", None),
    ];
    for (i, (what, sender, dst, bridge)) in cases.into_iter().enumerate() {
        if i == 2 {
            in_ns(
                &n,
                &["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0"],
            );
        }
        let kernel = matched_after_send(&n, sender, dst);
        let ours = predict(bridge);
        for (k, rule) in RULES.iter().enumerate() {
            assert_eq!(
                ours[k], kernel[k],
                "{what}: -m physdev {rule}: kernel matched = {}",
                kernel[k]
            );
        }
        // The cases are not vacuous: each rule set both matches and fails somewhere.
        assert!(kernel.iter().any(|h| *h) && kernel.iter().any(|h| !*h));
    }
}

/// kube-proxy's `-m ipvs` rule (KUBE-IPVS-OUT-FILTER, written as proxier.go writes it) through
/// the real tools. Where the kernel has IPVS, iptables-save must print what our printer prints
/// for it; this test machine's kernel has no CONFIG_IP_VS, and then iptables-restore refuses
/// the rule — asserted, so a kernel that suddenly loads it is noticed.
#[test]
fn ipvs_match_through_the_real_tools() {
    if let Err(why) = available() {
        eprintln!("SKIPPED -m ipvs kernel check: {why}");
        return;
    }
    let payload = "*filter\n:OUTPUT ACCEPT [0:0]\n:KUBE-IPVS-OUT-FILTER - [0:0]\n\
        -A OUTPUT -j KUBE-IPVS-OUT-FILTER\n\
        -A KUBE-IPVS-OUT-FILTER -s 1.2.3.4 -m ipvs --vaddr 1.2.3.4 --vproto tcp --vport 80 -j DROP\n\
        COMMIT\n";
    let ns = format!("psk-{}-ipvs", std::process::id());
    run(&["ip", "netns", "add", &ns]);
    let _guard = Namespaces(vec![ns.clone()]);
    let out = restore_in(&ns, payload);
    let has_ipvs = std::path::Path::new("/proc/net/ip_vs").exists();
    if !has_ipvs {
        assert!(
            !out.status.success(),
            "a kernel without IPVS loaded -m ipvs: compare its iptables-save here"
        );
        eprintln!(
            "NOTE: this kernel has no IPVS; iptables-restore refused -m ipvs: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return;
    }
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let saved = in_ns(&ns, &["iptables-save", "-t", "filter"]);
    let ours =
        proxyscope_core::rules::iptables::print_saved(&parse(payload, Family::V4).ruleset, false);
    let rule = |t: &str| {
        t.lines()
            .find(|l| l.contains("-m ipvs"))
            .map(str::to_string)
    };
    assert_eq!(rule(&saved), rule(&ours));
}
