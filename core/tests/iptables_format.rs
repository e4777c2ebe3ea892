//! The iptables-save printer and parser against the kernel's own text.
//!
//! `fixtures/probe/kube-mix.restore` is a kube-proxy-style payload; `kube-mix.nft.saved` is what
//! `iptables-save` (1.8.9, nf_tables backend) printed after `iptables-restore --noflush` of it in a
//! fresh network namespace plus one `iptables -t nat -I PREROUTING ... -j KUBE-SERVICES` (the
//! `#` header lines removed). The kernel's text is the reference for both directions.

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
            let kc = kt.chain(&c.name).unwrap_or_else(|| panic!("chain {} missing", c.name));
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
