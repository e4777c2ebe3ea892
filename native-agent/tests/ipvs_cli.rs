//! `proxyscope ipvs replay` as a user runs it: exit codes 0 / 1 / 2 and what it prints.

use std::path::PathBuf;
use std::process::{Command, Output};

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/examples/ipvs-replay")
        .join(name)
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_proxyscope"))
        .args(args)
        .output()
        .expect("run proxyscope")
}

fn tmp(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("proxyscope-ipvs-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn every_shared_example_checks_clean() {
    let dir = example("");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            let out = run(&["ipvs", "replay", p.to_str().unwrap(), "--check"]);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}: {}",
                p.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(String::from_utf8_lossy(&out.stdout).contains("all match"));
            n += 1;
        }
    }
    assert_eq!(n, 14);
}

#[test]
fn replay_without_check_prints_the_filled_document() {
    let p = example("sh.json");
    let text = std::fs::read_to_string(&p).unwrap();
    // Strip the answers; the simulator must put the same ones back.
    let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    for sc in doc["scenarios"].as_array_mut().unwrap() {
        sc.as_object_mut().unwrap().remove("final_servers");
        for ev in sc["events"].as_array_mut().unwrap() {
            ev.as_object_mut().unwrap().remove("expect");
        }
    }
    let stripped = tmp("sh-stripped.json", &serde_json::to_string(&doc).unwrap());
    let out = run(&["ipvs", "replay", stripped.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let want: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(got, want);
}

#[test]
fn a_tampered_file_fails_the_check_with_exit_1_and_a_diff() {
    let text = std::fs::read_to_string(example("rr.json")).unwrap();
    // rr-basic c2 goes to .22 in the kernel (list .23,.22,.21; second pick).
    let tampered = text.replacen(
        "\"id\": \"c2\",\n     \"client\": \"192.168.202.167:4188\",\n     \"dst\": \"10.96.7.7:443\",\n     \"establish\": true,\n     \"t\": 4.5,\n     \"expect\": \"172.20.3.22:8443\"",
        "\"id\": \"c2\",\n     \"client\": \"192.168.202.167:4188\",\n     \"dst\": \"10.96.7.7:443\",\n     \"establish\": true,\n     \"t\": 4.5,\n     \"expect\": \"172.20.3.21:8443\"",
        1,
    );
    assert_ne!(
        tampered, text,
        "the example changed shape; update this test"
    );
    let p = tmp("rr-tampered.json", &tampered);
    let out = run(&["ipvs", "replay", p.to_str().unwrap(), "--check"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("event #4 (conn \"c2\" at t=4.5): expected 172.20.3.21:8443, simulator chose 172.20.3.22:8443"), "{err}");
    assert!(err.contains("1 mismatch(es)"), "{err}");
}

#[test]
fn malformed_input_exits_2_naming_the_place() {
    let text = std::fs::read_to_string(example("lc.json")).unwrap();
    let bad = text.replacen(
        "\"client\": \"192.168.202.167:4188\"",
        "\"client\": \"192.168.202.300:4188\"",
        1,
    );
    let p = tmp("lc-bad-addr.json", &bad);
    let out = run(&["ipvs", "replay", p.to_str().unwrap(), "--check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("scenarios[0].events[4]: field \"client\": invalid socket address"),
        "{err}"
    );

    let p = tmp("not-json.json", "{\"format\": ");
    let out = run(&["ipvs", "replay", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));

    let out = run(&["ipvs", "replay", "/nonexistent/replay.json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/replay.json"));
}

#[test]
fn a_command_the_kernel_refuses_exits_2_naming_the_event() {
    let text = std::fs::read_to_string(example("wlc.json")).unwrap();
    // Deleting a server that is not in the service: ENOENT at event #3.
    let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let evs = doc["scenarios"][0]["events"].as_array_mut().unwrap();
    evs.insert(
        3,
        serde_json::json!({"op": "del_server", "server": "10.1.1.1:80", "t": 3.0}),
    );
    let p = tmp("wlc-enoent.json", &serde_json::to_string(&doc).unwrap());
    let out = run(&["ipvs", "replay", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("scenario #0 \"wlc-basic\", event #3 (del_server), field \"server\""),
        "{err}"
    );
    assert!(err.contains("ENOENT"), "{err}");
}
