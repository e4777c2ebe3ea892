//! The `proxyscope` CLI contract: commands, flags, JSON fields and exit codes.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_proxyscope"))
}

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = bin()
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

fn trace_json(args: &[&str]) -> serde_json::Value {
    let mut a = vec!["trace", "--mode", "iptables"];
    a.extend_from_slice(args);
    a.push("--json");
    let (code, out, err) = run(&a);
    assert_eq!(code, 0, "stderr: {err}");
    serde_json::from_str(&out).expect("one JSON object")
}

#[test]
fn rules_prints_a_restore_payload_and_the_saved_form() {
    let (code, out, _) = run(&["rules", "--mode", "iptables", "examples/demo.yaml"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("*filter\n:KUBE-SERVICES - [0:0]\n"),
        "{out}"
    );
    assert!(out.contains("-A KUBE-SERVICES -m comment --comment \"default/my-service:http cluster IP\" -m tcp -p tcp -d 10.104.14.67 --dport 80 -j KUBE-SVC-"));
    // 1/3 then 1/2 then the unconditional last rule (kube-proxy's cascade).
    assert!(out.contains("--probability 0.3333333333"));
    assert!(out.contains("--probability 0.5000000000"));
    let (code, saved, _) = run(&[
        "rules",
        "--mode",
        "iptables",
        "examples/demo.yaml",
        "--format",
        "saved",
    ]);
    assert_eq!(code, 0);
    assert!(saved.contains(":PREROUTING ACCEPT [0:0]"));
    assert!(saved.contains(
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"
    ));
    assert!(
        saved.contains("--probability 0.33333333349"),
        "the kernel's 31-bit fixed point, printed with 11 decimals"
    );
    assert!(saved.contains("-d 10.104.14.67/32 -p tcp"));
}

#[test]
fn dual_stack_prints_two_payloads() {
    let (code, out, _) = run(&["rules", "--mode", "iptables", "examples/dual-stack.yaml"]);
    assert_eq!(code, 0);
    assert!(out.contains("# iptables-restore\n*filter"));
    assert!(out.contains("# ip6tables-restore\n*filter"));
    assert!(out.contains("-d fd00:10:96::a --dport 53"));
    assert!(out.contains("--to-destination [fd00:10:244:1::2]:53"));
}

#[test]
fn trace_from_a_local_pod_reaches_every_pod_without_masquerade() {
    // Hand derivation: 10.0.0.100 is inside clusterCIDR 10.0.0.0/16, so the SVC chain's
    // `! -s 10.0.0.0/16 -j KUBE-MARK-MASQ` does not match; the cascade 1/3, 1/2, 1 gives each of
    // the three endpoints 1/3 (kernel fixed point: 715827883/2^31 and then the rest).
    let v = trace_json(&[
        "examples/demo.yaml",
        "--src",
        "10.0.0.100",
        "--dst",
        "10.104.14.67:80",
    ]);
    assert_eq!(v["output"], "10.0.0.2:80, 10.0.0.3:80, 10.0.0.4:80");
    assert_eq!(v["masq"], false);
    let outcomes = v["outcomes"].as_array().unwrap();
    assert_eq!(outcomes.len(), 3);
    let p0 = outcomes[0]["probability"].as_f64().unwrap();
    assert!((p0 - 715827883.0 / 2147483648.0).abs() < 1e-12, "{p0}");
    let sum: f64 = outcomes
        .iter()
        .map(|o| o["probability"].as_f64().unwrap())
        .sum();
    assert!((sum - 1.0).abs() < 1e-12);
    assert!(v["rules_evaluated"].as_u64().unwrap() > 3);
    assert!(
        v["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["kind"] == "dnat")
    );
}

#[test]
fn trace_from_the_node_takes_the_output_path_and_is_masqueraded() {
    // 192.168.0.2 is the node's own address: OUTPUT path; it is outside 10.0.0.0/16, so the SVC
    // chain marks it and KUBE-POSTROUTING masquerades it.
    let v = trace_json(&[
        "examples/demo.yaml",
        "--src",
        "192.168.0.2",
        "--dst",
        "10.104.14.67:80",
    ]);
    assert_eq!(v["masq"], true);
    let steps = v["steps"].as_array().unwrap();
    assert!(
        steps
            .iter()
            .any(|s| s["kind"] == "hook" && s["hook"] == "OUTPUT")
    );
    assert!(
        !steps
            .iter()
            .any(|s| s["kind"] == "hook" && s["hook"] == "PREROUTING")
    );
}

#[test]
fn no_endpoints_is_rejected_in_filter() {
    let v = trace_json(&[
        "examples/no-endpoints.yaml",
        "--src",
        "10.244.1.9",
        "--dst",
        "10.96.44.4:80",
    ]);
    assert_eq!(v["output"], "REJECT");
    assert_eq!(v["verdict"], "REJECT");
}

#[test]
fn bad_input_exits_2_and_names_the_place() {
    let (code, _, err) = run(&["rules", "--mode", "iptables", "does-not-exist.yaml"]);
    assert_eq!(code, 2);
    assert!(err.contains("does-not-exist.yaml"));

    let dir = std::env::temp_dir().join(format!("proxyscope-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: v1\nkind: Service\nmetadata: {name: x, namespace: ns1}\nspec:\n  clusterIP: 10.0.0.1\n  ports:\n  - port: 99999\n",
    )
    .unwrap();
    let (code, _, err) = run(&["rules", "--mode", "iptables", bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("spec.ports[0].port"), "{err}");
    assert!(err.contains("Service ns1/x"), "{err}");
    assert!(err.contains("line 7"), "{err}");

    std::fs::write(&bad, "apiVersion: v1\nkind: Service\nmetadata: [oops\n").unwrap();
    let (code, _, err) = run(&["rules", "--mode", "iptables", bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("line"), "{err}");

    let (code, _, err) = run(&[
        "trace",
        "examples/demo.yaml",
        "--src",
        "10.0.0.1",
        "--dst",
        "not-an-address",
    ]);
    assert_eq!(code, 2, "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn every_command_has_help_with_an_example() {
    for cmd in [&["rules", "--help"][..], &["trace", "--help"][..]] {
        let (code, out, _) = run(cmd);
        assert_eq!(code, 0);
        assert!(out.contains("Example"), "{out}");
    }
}
