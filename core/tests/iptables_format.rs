//! The iptables-save printer and parser against the kernel's own text.
//!
//! `fixtures/probe/kube-mix.restore` is a kube-proxy-style payload; `kube-mix.nft.saved` is what
//! `iptables-save` (1.8.9, nf_tables backend) printed after `iptables-restore --noflush` of it in a
//! fresh network namespace plus one `iptables -t nat -I PREROUTING ... -j KUBE-SERVICES` (the
//! `#` header lines removed). The kernel's text is the reference for both directions.
mod common;

use common::family_of;

use proxyscope_core::rules::iptables::{Family, parse, print_saved};

const RESTORE: &str = include_str!("fixtures/probe/kube-mix.restore");
const SAVED: &str = include_str!("fixtures/probe/kube-mix.nft.saved");

#[test]
fn kernel_saved_text_round_trips_byte_for_byte() {
    let p = parse(SAVED, Family::V4);
    assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
    assert_eq!(print_saved(&p.ruleset, false), SAVED);
}

#[test]
fn restore_payload_parses_to_the_same_model_as_the_kernel_text() {
    let ours = parse(RESTORE, Family::V4);
    assert!(ours.diagnostics.is_empty(), "{:?}", ours.diagnostics);
    let kernel = parse(SAVED, Family::V4).ruleset;
    // The kernel text also has the built-in chains and the one PREROUTING jump we inserted; compare
    // every user chain rule by rule.
    for t in &ours.ruleset.tables {
        let kt = kernel.table(&t.name).expect("table present in kernel text");
        for c in &t.chains {
            let kc = kt
                .chain(&c.name)
                .unwrap_or_else(|| panic!("chain {} missing", c.name));
            assert_eq!(c.rules.len(), kc.rules.len(), "chain {}", c.name);
            for (a, b) in c.rules.iter().zip(&kc.rules) {
                let (mut a, mut b) = (a.clone(), b.clone());
                a.line = 0;
                b.line = 0;
                assert_eq!(a, b, "chain {}", c.name);
            }
        }
    }
}

/// Every dump under `fixtures/kernel/` (made by `scripts/kernel-fixtures.sh`: the real
/// iptables-save of a hand-written payload, nft and legacy backends).
fn kernel_fixtures() -> Vec<(String, String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kernel");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).expect("fixtures dir") {
        let path = e.expect("entry").path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if let Some(stem) = name.strip_suffix(".restore") {
            let restore = std::fs::read_to_string(&path).unwrap();
            for backend in ["nft", "legacy"] {
                let saved = dir.join(format!("{stem}.{backend}.saved"));
                if let Ok(s) = std::fs::read_to_string(&saved) {
                    out.push((format!("{stem}.{backend}"), restore.clone(), s));
                }
            }
        }
    }
    assert!(!out.is_empty(), "no kernel fixtures found");
    out
}

#[test]
fn every_kernel_fixture_round_trips_byte_for_byte() {
    for (name, _, saved) in kernel_fixtures() {
        let p = parse(&saved, family_of(&name));
        assert!(p.diagnostics.is_empty(), "{name}: {:?}", p.diagnostics);
        assert_eq!(print_saved(&p.ruleset, false), saved, "{name}");
    }
}

#[test]
fn every_kernel_fixture_payload_means_what_the_kernel_saved() {
    for (name, restore, saved) in kernel_fixtures() {
        let ours = parse(&restore, family_of(&name));
        assert!(
            ours.diagnostics.is_empty(),
            "{name}: {:?}",
            ours.diagnostics
        );
        let kernel = parse(&saved, family_of(&name)).ruleset;
        for t in &ours.ruleset.tables {
            let kt = kernel
                .table(&t.name)
                .unwrap_or_else(|| panic!("{name}: table {}", t.name));
            for c in &t.chains {
                let kc = kt
                    .chain(&c.name)
                    .unwrap_or_else(|| panic!("{name}: chain {} missing", c.name));
                let strip = |r: &proxyscope_core::rules::iptables::Rule| {
                    let mut r = r.clone();
                    r.line = 0;
                    r.counters = None;
                    r
                };
                let a: Vec<_> = c.rules.iter().map(strip).collect();
                let b: Vec<_> = kc.rules.iter().map(strip).collect();
                assert_eq!(a, b, "{name}: chain {}", c.name);
            }
        }
    }
}
