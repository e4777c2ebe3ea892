//! The committed kernel fixtures (`core/tests/fixtures/kernel/`) are still what this kernel and
//! iptables print: each `<name>.restore` is loaded into a fresh network namespace with the
//! real `iptables-restore` and `iptables-save`'s output must equal `<name>.nft.saved` (and
//! `.legacy.saved` per table when iptables-legacy works). `scripts/kernel-fixtures.sh`
//! regenerates them; this test catches a fixture edited by hand or a tool upgrade.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("psk-{}-fxt-{tag}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("ip")
            .success();
        assert!(ok, "ip netns add {name}");
        Netns(name)
    }

    fn run(&self, prog: &str, args: &[&str], stdin: Option<&str>) -> String {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, prog]).args(args);
        c.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn");
        if let Some(text) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "{prog} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/fixtures/kernel")
}

fn available() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let nfacct = Command::new("nfacct").arg("--version").output().is_ok();
    root.unwrap_or(false) && nfacct
}

/// `*table` sections of a save, so table order (which differs between backends) is ignored.
fn tables(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if line.starts_with('*') {
            out.push(String::new());
        }
        if let Some(t) = out.last_mut() {
            t.push_str(line);
            t.push('\n');
        }
    }
    out.sort();
    out
}

#[test]
fn fixtures_match_what_this_kernel_prints() {
    if !available() {
        eprintln!("SKIPPED kernel fixtures: needs root and nfacct");
        return;
    }
    let mut checked = 0;
    let mut entries: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures dir")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "restore"))
        .collect();
    entries.sort();
    for input in entries {
        let name = input.file_stem().unwrap().to_string_lossy().into_owned();
        let fam = if name.starts_with("ipv6-") {
            "ip6tables"
        } else {
            "iptables"
        };
        let payload = std::fs::read_to_string(&input).unwrap();
        for backend in ["nft", "legacy"] {
            let expected_path = fixtures_dir().join(format!("{name}.{backend}.saved"));
            let Ok(expected) = std::fs::read_to_string(&expected_path) else {
                continue;
            };
            let ns = Netns::new(&format!("{checked}"));
            for acct in [
                "localhost_nps_accepted_pkts",
                "ct_state_invalid_dropped_pkts",
            ] {
                ns.run("nfacct", &["add", acct], None);
            }
            ns.run(
                &format!("{fam}-{backend}-restore"),
                &["--noflush", "--counters"],
                Some(&payload),
            );
            let saved = ns.run(&format!("{fam}-{backend}-save"), &[], None);
            assert_eq!(
                tables(&saved),
                tables(&expected),
                "{name} ({backend}) differs from {}",
                expected_path.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 3, "no fixtures checked");
}
