//! The real-kernel differential suite, end to end through the CLI:
//! `proxyscope verify-kernel --mode iptables --seeds N` over every shipped example plus N
//! random scenarios, N = 200 by default (about two minutes on 2 cores: scenarios run in
//! parallel worlds), and the same through iptables-legacy on 20 other seeds. Change the counts
//! with `PROXYSCOPE_KERNEL_SEEDS=… PROXYSCOPE_KERNEL_LEGACY_SEEDS=… cargo test -p proxyscope
//! --test kernel_verify`. The summary table and totals go to stderr past the test harness's
//! output capture, so a CI log shows them. Needs root and network namespaces; otherwise the
//! tests say they were skipped.

use std::io::Write;
use std::process::{Command, Stdio};

/// Write to the real stderr (libtest captures only the print macros), so the suite's numbers
/// show up in a passing run's log.
fn show(text: &str) {
    let _ = std::io::stderr().write_all(text.as_bytes());
}

/// The summary part of verify-kernel's stdout: from the table header on.
fn summary(stdout: &str) -> &str {
    stdout
        .find("\nscenario ")
        .map_or(stdout, |i| &stdout[i + 1..])
}

fn proxyscope() -> Command {
    Command::new(env!("CARGO_BIN_EXE_proxyscope"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn netns_works() -> bool {
    Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn kernel_agrees_with_core_on_examples_and_random_scenarios() {
    if !is_root() || !netns_works() {
        eprintln!("SKIPPED verify-kernel: needs root and `ip netns`");
        return;
    }
    let seeds = std::env::var("PROXYSCOPE_KERNEL_SEEDS").unwrap_or_else(|_| "200".into());
    let n: u64 = seeds.parse().expect("PROXYSCOPE_KERNEL_SEEDS is a number");
    let out = proxyscope()
        .args(["verify-kernel", "--mode", "iptables", "--seeds", &seeds])
        .stderr(Stdio::piped())
        .output()
        .expect("run proxyscope");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    show(&format!(
        "\n=== verify-kernel --mode iptables --seeds {seeds} (iptables-nft)\n{}\n",
        summary(&stdout)
    ));
    assert!(
        out.status.success(),
        "verify-kernel failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("example demo.yaml"), "{stdout}");
    if n > 0 {
        let last = format!("seed {} ", n - 1);
        assert!(
            stdout.contains("seed 0 ") && stdout.contains(&last),
            "{stdout}"
        );
    }
    assert!(
        stdout.contains(&format!(" ({n} random, ")) && stdout.contains(" 0 disagree"),
        "{stdout}"
    );
    // Every shape the generator promises was seen (the coverage line names what was not);
    // each generated scenario has them all, the examples alone need not.
    if n > 0 {
        assert!(!stdout.contains("NOT COVERED"), "{stdout}");
    }
}

#[test]
fn ipvs_mode_is_refused_as_bad_input() {
    let out = proxyscope()
        .args(["verify-kernel", "--mode", "ipvs"])
        .output()
        .expect("run proxyscope");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--mode ipvs"));
}

#[test]
fn unreadable_scenario_is_bad_input_naming_the_file() {
    if !is_root() || !netns_works() {
        eprintln!("SKIPPED: needs root (the root check comes first)");
        return;
    }
    let out = proxyscope()
        .args([
            "verify-kernel",
            "--mode",
            "iptables",
            "--seeds",
            "0",
            "--no-examples",
            "--scenario",
            "/nonexistent/x.yaml",
        ])
        .output()
        .expect("run proxyscope");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.yaml"));
}

#[test]
fn refuses_clearly_without_root() {
    // Drop to nobody with util-linux's setpriv; skip where that is not possible.
    let probe = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "true"])
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED: cannot drop privileges with setpriv here");
        return;
    }
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_proxyscope"),
        ])
        .args(["verify-kernel", "--mode", "iptables", "--seeds", "1"])
        .output()
        .expect("run proxyscope as nobody");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("needs root") && err.contains("not running as root"),
        "{err}"
    );
}

#[test]
fn kernel_agrees_with_core_through_iptables_legacy() {
    if !is_root() || !netns_works() {
        eprintln!("SKIPPED verify-kernel --backend legacy: needs root and `ip netns`");
        return;
    }
    if Command::new("iptables-legacy-restore")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED verify-kernel --backend legacy: no iptables-legacy here");
        return;
    }
    let seeds = std::env::var("PROXYSCOPE_KERNEL_LEGACY_SEEDS").unwrap_or_else(|_| "20".into());
    let out = proxyscope()
        .args([
            "verify-kernel",
            "--mode",
            "iptables",
            "--backend",
            "legacy",
            "--seeds",
            &seeds,
            "--seed-start",
            "1000",
        ])
        .stderr(Stdio::piped())
        .output()
        .expect("run proxyscope");
    let stdout = String::from_utf8_lossy(&out.stdout);
    show(&format!(
        "\n=== verify-kernel --mode iptables --backend legacy --seeds {seeds} --seed-start 1000\n{}\n",
        summary(&stdout)
    ));
    assert!(
        out.status.success(),
        "verify-kernel --backend legacy failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" 0 disagree"), "{stdout}");
}
