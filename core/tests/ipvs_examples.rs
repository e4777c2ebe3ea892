//! Every shared example (`shared/examples/ipvs-replay/*.json`, each carrying the kernel's answers)
//! replays with no mismatch, and tampering with an expectation is caught.

use proxyscope_core::ipvs::replay::{self, Event};
use std::path::PathBuf;

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/examples/ipvs-replay")
}

fn examples() -> Vec<(String, String)> {
    let dir = examples_dir();
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn all_shared_examples_match_the_kernel() {
    let ex = examples();
    assert_eq!(ex.len(), 14, "one example per scheduler");
    let mut failures = Vec::new();
    for (name, text) in &ex {
        let doc = replay::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let rep = replay::check(&doc).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(rep.conns > 0, "{name}: no connections checked");
        if !rep.ok() {
            failures.push(format!("{name}:\n{rep}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn fill_reproduces_the_examples_byte_for_byte() {
    for (name, text) in examples() {
        let doc = replay::parse(&text).unwrap();
        let filled = replay::fill(&doc).unwrap();
        assert_eq!(replay::to_json(&filled), text, "{name}");
    }
}

#[test]
fn a_tampered_expectation_is_reported() {
    let (_, text) = examples()
        .into_iter()
        .find(|(n, _)| n == "wrr.json")
        .unwrap();
    let mut doc = replay::parse(&text).unwrap();
    // c3 goes to 172.20.3.21 in the kernel; claim 172.20.3.23.
    for ev in &mut doc.scenarios[0].events {
        if let Event::Conn { id, expect, .. } = ev
            && id == "c3"
        {
            *expect = Some(Some("172.20.3.23:8443".parse().unwrap()));
        }
    }
    let rep = replay::check(&doc).unwrap();
    assert_eq!(rep.mismatches.len(), 1, "{rep}");
    let text = rep.to_string();
    assert!(text.contains("conn \"c3\""), "{text}");
    assert!(
        text.contains("expected 172.20.3.23:8443, simulator chose 172.20.3.21:8443"),
        "{text}"
    );
}
