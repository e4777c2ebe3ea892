//! Property tests of the kube-proxy pipeline on mangled scenarios: the scenario loader never
//! panics and names the place of every error; whatever it accepts, the generated
//! `iptables-restore` payload passes kube-proxy's own consistency check
//! (`checkIPTablesRuleJumps`, spec §13) and every Service address can be traced.

mod common;

use common::check_rule_jumps;
use proptest::prelude::*;
use proxyscope_core::api::{Session, TraceRequest, service_targets};
use proxyscope_core::diag::Severity;
use proxyscope_core::k8s;
use proxyscope_core::proxier::iptables::generate_all;

/// The golden scenarios, i.e. real inputs, as the seeds of the mutations.
const SEEDS: &[&str] = &[
    include_str!("golden/overall.yaml"),
    include_str!("golden/internal-external-masquerade.yaml"),
    include_str!("golden/load-balancer.yaml"),
    include_str!("golden/node-ports-v6.yaml"),
    include_str!("golden/terminating-endpoints-local.yaml"),
    include_str!("golden/bad-ips.yaml"),
    include_str!("golden/session-affinity.yaml"),
];

/// Characters that change YAML structure or Kubernetes values when dropped in.
const NOISE: &[&str] = &[
    ":", " ", "-", "{", "}", "[", "]", "#", "\n", "0", "9", ".", "/", "\"", "'", "::", "Local",
    "None", "-1", "99999", "",
];

/// One mutation of a seed: delete a line, duplicate a line, or splice noise in at a position.
fn mutate(seed: &str, kind: u8, at: usize, noise: usize) -> String {
    let lines: Vec<&str> = seed.lines().collect();
    let i = at % lines.len().max(1);
    match kind % 3 {
        0 => lines
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, l)| format!("{l}\n"))
            .collect(),
        1 => lines
            .iter()
            .enumerate()
            .flat_map(|(j, l)| {
                let n = if j == i { 2 } else { 1 };
                std::iter::repeat_n(format!("{l}\n"), n)
            })
            .collect(),
        _ => {
            let mut pos = at % (seed.len() + 1);
            while !seed.is_char_boundary(pos) {
                pos -= 1;
            }
            format!(
                "{}{}{}",
                &seed[..pos],
                NOISE[noise % NOISE.len()],
                &seed[pos..]
            )
        }
    }
}

fn check_pipeline(text: &str) -> Result<(), TestCaseError> {
    let loaded = match k8s::load(text) {
        Ok(l) => l,
        Err(diags) => {
            prop_assert!(!diags.is_empty(), "an error without a diagnostic");
            for d in &diags {
                prop_assert!(
                    d.line.is_some() || !d.location.is_empty(),
                    "error without a place: {d:?}"
                );
            }
            prop_assert!(diags.iter().any(|d| d.severity == Severity::Error));
            return Ok(());
        }
    };
    let s = &loaded.scenario;
    for fr in generate_all(s) {
        if let Err(e) = check_rule_jumps(&fr.payload) {
            return Err(TestCaseError::fail(format!(
                "{e}\n--- scenario ---\n{text}\n--- payload ---\n{}",
                fr.payload
            )));
        }
    }
    let mut session = Session::new(s);
    for (i, t) in service_targets(s).iter().take(12).enumerate() {
        for src in ["10.0.0.2", "203.0.113.2", "192.168.0.2", "fd00:10::2"] {
            let src = src.parse().unwrap();
            let tr = session.trace(&TraceRequest {
                src,
                dst: t.dst,
                dport: t.dport,
                proto: t.proto,
                sport: None,
                seed: i as u64,
                now: i as f64,
            });
            let p: f64 = tr.outcomes.iter().map(|o| o.probability).sum();
            prop_assert!(
                (p - 1.0).abs() < 1e-9,
                "outcome probabilities sum to {p} for {src} -> {}:{}",
                t.dst,
                t.dport
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// Any mutation of a real scenario loads or is rejected with placed errors; what loads
    /// produces a consistent payload and traceable Services.
    #[test]
    fn mutated_scenarios_flow_through(
        seed in 0..SEEDS.len(),
        kind in any::<u8>(),
        at in any::<usize>(),
        noise in any::<usize>(),
        kind2 in any::<u8>(),
        at2 in any::<usize>(),
    ) {
        let once = mutate(SEEDS[seed], kind, at, noise);
        check_pipeline(&once)?;
        check_pipeline(&mutate(&once, kind2, at2, noise / 7))?;
    }

    /// Arbitrary text never panics the loader.
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        let _ = k8s::load(&text);
    }
}

/// A bad value in the KubeProxyConfiguration is an error naming its document, field and line
/// (kube-proxy itself refuses to start on these: `validateKubeProxyConfiguration`).
#[test]
fn bad_config_values_name_their_place() {
    let base = include_str!("golden/node-ports-v4.yaml");
    let line_of =
        |text: &str, needle: &str| text.lines().position(|l| l.contains(needle)).map(|i| i + 1);
    for (extra, field) in [
        (
            "nodePortAddresses: [192.168.0.0/24, 300.1.1.1/24]",
            "nodePortAddresses[1]",
        ),
        ("nodePortAddresses: [10.0.0.0/33]", "nodePortAddresses[0]"),
        (
            "iptables: {localhostNodePorts: maybe}",
            "iptables.localhostNodePorts",
        ),
        ("iptables: {masqueradeAll: 1}", "iptables.masqueradeAll"),
        ("conntrack: {tcpBeLiberal: yes}", "conntrack.tcpBeLiberal"),
        ("detectLocalMode: Bogus", "detectLocalMode"),
    ] {
        let text = base.replacen("mode: iptables\n", &format!("mode: iptables\n{extra}\n"), 1);
        let errs = k8s::load(&text).expect_err(extra);
        let e = errs
            .iter()
            .find(|d| d.severity == Severity::Error)
            .unwrap_or_else(|| panic!("{extra}: no error in {errs:?}"));
        assert!(
            e.location.contains("KubeProxyConfiguration") && e.location.contains(field),
            "{extra}: location {:?}",
            e.location
        );
        assert_eq!(e.line, line_of(&text, extra), "{extra}: line");
    }
}

/// A bad value in a Service or EndpointSlice is an error naming the object, the field as
/// written, and its line.
#[test]
fn bad_object_values_name_their_place() {
    let base = include_str!("golden/load-balancer.yaml");
    for (from, to, field) in [
        (
            "clusterIP: 172.30.0.41",
            "clusterIP: 172.30.0.999",
            "(Service ns1/svc1), field spec.clusterIP",
        ),
        (
            "ingress: [{ip: 1.2.3.4}",
            "ingress: [{ip: 1.2.3}",
            "(Service ns1/svc1), field status.loadBalancer.ingress[0].ip",
        ),
        (
            "protocol: TCP, nodePort: 3001",
            "protocol: TCP, nodePort: 99999",
            "(Service ns1/svc1), field spec.ports[0].nodePort",
        ),
        // Found by `mutated_scenarios_flow_through`: kube-proxy writes `ns/name:port` unquoted
        // into comments, so a quote there broke the payload; the API server forbids it.
        (
            "{namespace: ns1, name: svc1}\nspec",
            "{namespace: n\"s1, name: svc1}\nspec",
            "(Service n\"s1/svc1), field metadata.namespace",
        ),
        (
            "ports: [{name: p80, port: 80, protocol: TCP, nodePort: 3001}]",
            "ports: [{name: P_80, port: 80, protocol: TCP, nodePort: 3001}]",
            "(Service ns1/svc1), field spec.ports[0].name",
        ),
        (
            "endpoints: [{addresses: [10.180.0.1]}]",
            "endpoints: [{addresses: [10.180.0.x]}]",
            "(EndpointSlice ns1/svc1-1), field endpoints[0].addresses[0]",
        ),
    ] {
        assert!(base.contains(from), "{from}");
        let text = base.replacen(from, to, 1);
        let errs = k8s::load(&text).expect_err(to);
        let e = errs
            .iter()
            .find(|d| d.severity == Severity::Error)
            .unwrap_or_else(|| panic!("{to}: no error in {errs:?}"));
        assert!(
            e.location.ends_with(field),
            "{to}: location {:?}",
            e.location
        );
        let first = to.lines().next().unwrap();
        let line = text.lines().position(|l| l.contains(first)).map(|i| i + 1);
        assert_eq!(e.line, line, "{to}: line");
    }
}

/// Found by `mutated_scenarios_flow_through` (it hung): a stray `.` after a flow-mapping comma
/// makes a key `. name`, whose warning path has an empty segment; locating it must terminate.
#[test]
fn empty_key_segment_in_a_path_terminates() {
    let text = include_str!("golden/internal-external-masquerade.yaml").replacen(
        "metadata: {namespace: ns2, name: svc2-1,",
        "metadata: {namespace: ns2,. name: svc2-1,",
        1,
    );
    assert_ne!(
        text,
        include_str!("golden/internal-external-masquerade.yaml")
    );
    // Loads or not, with every diagnostic placed — and returns.
    match k8s::load(&text) {
        Ok(l) => assert!(l.warnings.iter().all(|d| d.line.is_some())),
        Err(errs) => assert!(
            errs.iter()
                .all(|d| d.line.is_some() || !d.location.is_empty())
        ),
    }
}
