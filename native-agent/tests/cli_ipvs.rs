//! The `proxyscope` CLI in IPVS mode: `rules --mode ipvs` (text sections and JSON fields) and
//! `trace --mode ipvs` (generated rules and a node dump), with their exit codes.

use std::process::Command;

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_proxyscope"))
        .current_dir(root())
        .args(args)
        .output()
        .expect("run proxyscope");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn rules_prints_the_four_dumps_in_order() {
    let (code, out, err) = run(&["rules", "--mode", "ipvs", "examples/ipvs-demo.yaml"]);
    assert_eq!(code, 0, "{err}");
    let pos = |h: &str| {
        out.find(&format!("{h}\n"))
            .unwrap_or_else(|| panic!("no {h} in {out}"))
    };
    let (a, b, c, d) = (
        pos("# ipvsadm -Sn"),
        pos("# ipset save"),
        pos("# iptables-save"),
        pos("# ip -brief address show dev kube-ipvs0"),
    );
    assert!(a < b && b < c && c < d);
    // Hand-derived from kube-proxy: one VS for the ClusterIP with rr and three Masq servers.
    assert!(
        out.contains("-A -t 10.104.14.67:80 -s rr\n-a -t 10.104.14.67:80 -r 10.0.0.2:80 -m -w 1\n")
    );
    assert!(out.contains("add KUBE-CLUSTER-IP 10.104.14.67,tcp:80\n"));
    assert!(out.contains("add KUBE-IPVS-IPS 10.104.14.67\n"));
    assert!(out.contains(
        "-A KUBE-SERVICES ! -s 10.0.0.0/16 -m comment --comment \"Kubernetes service cluster ip + port for masquerade purpose\" -m set --match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ\n"
    ));
    assert!(out.ends_with("kube-ipvs0       DOWN           10.104.14.67/32 \n"));
}

#[test]
fn rules_json_has_the_contract_fields() {
    let (code, out, err) = run(&[
        "rules",
        "--mode",
        "ipvs",
        "examples/ipvs-demo.yaml",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let vs = &v["virtual_servers"][0];
    assert_eq!(vs["protocol"], "TCP");
    assert_eq!(vs["address"], "10.104.14.67");
    assert_eq!(vs["port"], 80);
    assert_eq!(vs["scheduler"], "rr");
    assert_eq!(vs["flags"], 0);
    assert_eq!(vs["timeout"], 0);
    let rs = &vs["real_servers"];
    assert_eq!(rs.as_array().unwrap().len(), 3);
    assert_eq!(rs[0]["address"], "10.0.0.2");
    assert_eq!(rs[0]["port"], 80);
    assert_eq!(rs[0]["weight"], 1);
    assert_eq!(rs[0]["forward"], "Masq");
    assert_eq!(v["ipsets"]["KUBE-CLUSTER-IP"]["type"], "hash:ip,port");
    assert_eq!(
        v["ipsets"]["KUBE-CLUSTER-IP"]["entries"],
        serde_json::json!(["10.104.14.67,tcp:80"])
    );
    assert_eq!(v["kube_ipvs0"], serde_json::json!(["10.104.14.67"]));
    assert!(v["iptables"].as_str().unwrap().contains("*nat\n"));
}

#[test]
fn trace_walks_ipvs_with_the_iptables_json_fields() {
    let (code, out, err) = run(&[
        "trace",
        "--mode",
        "ipvs",
        "examples/ipvs-demo.yaml",
        "--src",
        "203.0.113.10",
        "--dst",
        "10.104.14.67:80",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["mode"], "ipvs");
    // rr's first pick on a fresh node is the head of the list (10.0.0.2); probability 1.
    assert_eq!(v["output"], "10.0.0.2:80");
    assert_eq!(v["outcomes"][0]["probability"], 1.0);
    // Off-cluster source: marked by the KUBE-CLUSTER-IP rule, masqueraded.
    assert_eq!(v["masq"], true);
    for f in [
        "rules_evaluated",
        "steps",
        "chosen",
        "verdict",
        "final_packet",
        "warnings",
    ] {
        assert!(v.get(f).is_some(), "missing {f}");
    }
    let kinds: Vec<&str> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    for k in [
        "ipvs_lookup",
        "ipvs_schedule",
        "ipvs_connection",
        "dnat",
        "snat",
    ] {
        assert!(kinds.contains(&k), "no {k} step in {kinds:?}");
    }
}

#[test]
fn trace_reads_a_node_dump_and_rejects_a_broken_one() {
    let dir = std::env::temp_dir().join(format!("proxyscope-cli-ipvs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (_, dump, _) = run(&["rules", "--mode", "ipvs", "examples/ipvs-demo.yaml"]);
    let good = dir.join("node.txt");
    std::fs::write(&good, &dump).unwrap();
    let args = |p: &str| {
        vec![
            "trace".to_string(),
            "--mode".into(),
            "ipvs".into(),
            "examples/ipvs-demo.yaml".into(),
            "--rules".into(),
            p.into(),
            "--src".into(),
            "10.0.0.100".into(),
            "--dst".into(),
            "10.104.14.67:80".into(),
        ]
    };
    let a = args(good.to_str().unwrap());
    let (code, out, err) = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("IPVS rr: 10.0.0.2:80"), "{out}");
    let bad = dir.join("bad.txt");
    std::fs::write(&bad, dump.replace("-r 10.0.0.3:80", "-r 10.0.0.3")).unwrap();
    let a = args(bad.to_str().unwrap());
    let (code, _, err) = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 2, "bad input exits 2");
    assert!(err.contains("bad.txt") && err.contains("line 4"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A network namespace this test created; deleted when dropped (also on panic).
struct Netns(String);

impl Netns {
    fn create(name: &str) -> Option<Netns> {
        let ok = Command::new("ip")
            .args(["netns", "add", name])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then(|| Netns(name.to_string()))
    }
    fn run(&self, program: &str, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        use std::io::Write;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.0, program])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn ip netns exec");
        if let Some(s) = stdin {
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        } else {
            drop(child.stdin.take());
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn section<'a>(text: &'a str, header: &str) -> &'a str {
    let start = text.find(&format!("{header}\n")).expect("section") + header.len() + 1;
    let rest = &text[start..];
    let end = rest
        .match_indices("\n# ")
        .map(|(i, _)| i + 1)
        .find(|&i| !rest[i..].starts_with("# Generated") && !rest[i..].starts_with("# Completed"))
        .unwrap_or(rest.len());
    &rest[..end]
}

/// Kernel round trip: the generated `ipset save` and `iptables-save` load into a fresh network
/// namespace (`ipset restore`, `iptables-restore`), and the kernel's own `iptables-save` prints
/// back exactly our text; its `ipset save` holds the same sets, types and members (it adds
/// `bucketsize` and a random `initval` to hash headers, and lists members in hash order).
/// Skipped (with a note) without root or `ip netns`.
#[test]
fn kernel_round_trip_of_ipsets_and_iptables() {
    let uid = Command::new("id").arg("-u").output().map(|o| o.stdout).ok();
    if uid.as_deref() != Some(b"0\n".as_slice()) {
        eprintln!("skipped: needs root for a network namespace");
        return;
    }
    let Some(ns) = Netns::create(&format!("psipvs-{}", std::process::id())) else {
        eprintln!("skipped: `ip netns add` failed");
        return;
    };
    for scenario in [
        "examples/ipvs-demo.yaml",
        "core/tests/golden/ipvs/mixed.yaml",
    ] {
        let (code, dump, err) = run(&["rules", "--mode", "ipvs", scenario]);
        assert_eq!(code, 0, "{err}");
        let ipset = section(&dump, "# ipset save");
        let ipt = section(&dump, "# iptables-save");
        // A clean slate per scenario: no rule may reference a set while it is destroyed.
        for args in [
            &["-t", "nat", "-F"][..],
            &["-F"],
            &["-t", "nat", "-X"],
            &["-X"],
        ] {
            let _ = ns.run("iptables", args, None);
        }
        let _ = ns.run("ipset", &["destroy"], None);
        let (ok, _, e) = ns.run("ipset", &["restore"], Some(ipset));
        assert!(ok, "{scenario}: ipset restore: {e}");
        let (ok, _, e) = ns.run("iptables-restore", &[], Some(ipt));
        assert!(ok, "{scenario}: iptables-restore: {e}");
        let (ok, back, e) = ns.run("iptables-save", &[], None);
        assert!(ok, "{e}");
        let strip = |t: &str| -> Vec<String> {
            t.lines()
                .filter(|l| !l.starts_with('#'))
                .map(str::to_string)
                .collect()
        };
        assert_eq!(
            strip(&back),
            strip(ipt),
            "{scenario}: iptables-save differs"
        );
        let (ok, back, e) = ns.run("ipset", &["save"], None);
        assert!(ok, "{e}");
        let norm = |t: &str| -> Vec<String> {
            let mut v: Vec<String> = t
                .lines()
                .map(|l| {
                    let w: Vec<&str> = l.split_whitespace().collect();
                    // Drop the kernel-chosen hash parameters from `create` lines.
                    let mut out = Vec::new();
                    let mut i = 0;
                    while i < w.len() {
                        if w[0] == "create" && (w[i] == "bucketsize" || w[i] == "initval") {
                            i += 2;
                            continue;
                        }
                        out.push(w[i]);
                        i += 1;
                    }
                    out.join(" ")
                })
                .collect();
            v.sort();
            v
        };
        assert_eq!(norm(&back), norm(ipset), "{scenario}: ipset save differs");
    }
}

#[test]
fn repeated_packets_share_the_session() {
    // Four new connections from one client: rr hands out .2, .3, .4, .2 (list order), and
    // `ipvsadm -Ln` afterwards shows 2, 1, 1 active connections.
    let (code, out, err) = run(&[
        "trace",
        "--mode",
        "ipvs",
        "examples/ipvs-demo.yaml",
        "--src",
        "10.0.0.100",
        "--dst",
        "10.104.14.67:80",
        "--count",
        "4",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let outs: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["output"].as_str().unwrap())
        .collect();
    assert_eq!(
        outs,
        ["10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80", "10.0.0.2:80"]
    );
    let (code, out, _) = run(&[
        "trace",
        "--mode",
        "ipvs",
        "examples/ipvs-demo.yaml",
        "--src",
        "10.0.0.100",
        "--dst",
        "10.104.14.67:80",
        "--count",
        "4",
    ]);
    assert_eq!(code, 0);
    assert!(
        out.contains("  -> 10.0.0.2:80                  Masq    1      2          0         \n"),
        "{out}"
    );
    let (code, _, err) = run(&[
        "trace",
        "--mode",
        "ipvs",
        "examples/ipvs-demo.yaml",
        "--src",
        "10.0.0.100",
        "--dst",
        "10.104.14.67:80",
        "--count",
        "2",
        "--interval",
        "-1",
    ]);
    assert_eq!(code, 2, "{err}");
}
