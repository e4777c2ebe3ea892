//! Shared by the kube-proxy golden tests: kube-proxy's own test normaliser and a packet-flow
//! runner that grades proxyscope's tracer against kube-proxy's `runPacketFlowTests` tables
//! (kubernetes/kubernetes `pkg/proxy/iptables/proxier_test.go`).
#![allow(dead_code)]

use proxyscope_core::api::{Session, TraceRequest};
use proxyscope_core::k8s::{self, Scenario};
use proxyscope_core::trace::{Proto, Step, Trace, Verdict};
use std::collections::BTreeMap;

/// The service-name sort key of a rule: its `--comment` value up to the first space or colon
/// (upstream `orderByCommentServiceName`).
fn service_key(rule: &str) -> (u8, String) {
    if rule.contains("must be the last rule") {
        return (1, String::new());
    }
    let Some(i) = rule.find("--comment ") else {
        return (0, String::new());
    };
    let rest = rule[i + 10..].trim_start_matches('"');
    let end = rest.find([' ', ':', '"']).unwrap_or(rest.len());
    (0, rest[..end].to_string())
}

/// kube-proxy's test normaliser `sortIPTablesRules` (spec §13).
pub fn normalise(payload: &str) -> String {
    type Tbl = (Vec<String>, BTreeMap<String, Vec<String>>, Vec<String>);
    let mut tables: BTreeMap<String, Tbl> = BTreeMap::new();
    let mut cur = String::new();
    for line in payload.lines() {
        let line = line.trim();
        if let Some(t) = line.strip_prefix('*') {
            cur = t.to_string();
            tables.entry(cur.clone()).or_default();
        } else if let Some(c) = line.strip_prefix(':') {
            let name = c.split_whitespace().next().unwrap().to_string();
            tables.get_mut(&cur).unwrap().0.push(name);
        } else if let Some(r) = line.strip_prefix("-A ") {
            let chain = r.split_whitespace().next().unwrap().to_string();
            tables
                .get_mut(&cur)
                .unwrap()
                .1
                .entry(chain)
                .or_default()
                .push(line.to_string());
        } else if let Some(x) = line.strip_prefix("-X ") {
            tables.get_mut(&cur).unwrap().2.push(x.to_string());
        }
    }
    let rank = |c: &str| -> (u8, String) {
        match c {
            "KUBE-NODEPORTS" => (0, String::new()),
            "KUBE-SERVICES" => (1, String::new()),
            c if c.starts_with("KUBE-") => (2, c.to_string()),
            c => (3, c.to_string()),
        }
    };
    let mut out = String::new();
    for (name, (mut chains, mut rules, mut deleted)) in tables {
        out.push_str(&format!("*{name}\n"));
        chains.sort_by_key(|c| rank(c));
        for c in &chains {
            out.push_str(&format!(":{c} - [0:0]\n"));
        }
        for c in &chains {
            if let Some(rs) = rules.get_mut(c) {
                if c == "KUBE-NODEPORTS" || c == "KUBE-SERVICES" {
                    rs.sort_by_key(|r| service_key(r));
                }
                for r in rs.iter() {
                    out.push_str(r);
                    out.push('\n');
                }
            }
        }
        deleted.sort_by_key(|c| rank(c));
        for d in deleted {
            out.push_str(&format!("-X {d}\n"));
        }
        out.push_str("COMMIT\n");
    }
    out
}

/// Upstream's `dedent.Dedent` + `TrimLeft`: every line trimmed, blank lines dropped.
pub fn dedent(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Load a scenario, failing the test with the loader's diagnostics.
pub fn scenario(yaml: &str) -> Scenario {
    k8s::load(yaml)
        .unwrap_or_else(|e| panic!("scenario does not load: {e:?}"))
        .scenario
}

/// The rules of one chain of one table of a payload, raw, in order (upstream
/// `assertIPTablesChainEqual`).
pub fn chain_rules(payload: &str, table: &str, chain: &str) -> String {
    let mut cur = "";
    let mut out = String::new();
    let prefix = format!("-A {chain} ");
    for line in payload.lines() {
        if let Some(t) = line.strip_prefix('*') {
            cur = t;
        } else if cur == table && line.starts_with(&prefix) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Panic with a readable line diff when the normalised payload differs from the expectation.
pub fn assert_dump(expected: &str, got: &str) {
    if got != expected {
        let diff: Vec<String> = got
            .lines()
            .zip(expected.lines())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .take(5)
            .map(|(i, (a, b))| format!("line {}:\n  got:      {a}\n  expected: {b}", i + 1))
            .collect();
        panic!(
            "payload differs from kube-proxy's expectation:\n{}\n\nfull output:\n{got}",
            diff.join("\n")
        );
    }
}

/// Where proxyscope's kernel model and kube-proxy's test tracer (spec §14) part ways for one
/// flow: proxyscope's answer, and why the kernel does that rather than what the upstream table
/// says.
#[derive(Debug, Clone, Copy)]
pub struct Kernel {
    pub output: &'static str,
    pub masq: bool,
    pub why: &'static str,
}

/// One row of an upstream `[]packetFlowTest` table, verbatim, plus an optional documented
/// divergence.
#[derive(Debug, Clone, Copy)]
pub struct Flow {
    pub name: &'static str,
    pub src: &'static str,
    /// Upstream leaves `protocol` empty for TCP.
    pub proto: Proto,
    pub dst: &'static str,
    pub dport: u16,
    pub output: &'static str,
    pub masq: bool,
    pub kernel: Option<Kernel>,
}

/// A TCP flow row (upstream's default protocol).
pub const fn flow(
    name: &'static str,
    src: &'static str,
    dst: &'static str,
    dport: u16,
    output: &'static str,
    masq: bool,
) -> Flow {
    Flow {
        name,
        src,
        proto: Proto::Tcp,
        dst,
        dport,
        output,
        masq,
        kernel: None,
    }
}

impl Flow {
    pub const fn proto(mut self, p: Proto) -> Flow {
        self.proto = p;
        self
    }
    /// The kernel does something else than kube-proxy's simplified test tracer; `why` says what
    /// and why.
    pub const fn kernel(mut self, output: &'static str, masq: bool, why: &'static str) -> Flow {
        self.kernel = Some(Kernel { output, masq, why });
        self
    }
}

// kube-proxy's test constants (proxier_test.go).
pub const TEST_NODE_IP: &str = "192.168.0.2";
pub const TEST_NODE_IP_ALT: &str = "192.168.1.2";
pub const TEST_EXTERNAL_CLIENT: &str = "203.0.113.2";
pub const TEST_EXTERNAL_CLIENT_BLOCKED: &str = "203.0.113.130";
pub const TEST_NODE_IPV6: &str = "2001:db8::1";
pub const TEST_NODE_IPV6_ALT: &str = "2001:db8:1::2";

/// proxyscope's answer in the vocabulary of kube-proxy's tracer: the DNAT destinations / REJECT /
/// DROP of `Trace.output`, or `ACCEPT` when a kube-proxy filter rule accepted a packet that no
/// nat rule touched (the health-check NodePort), and whether any possible outcome is
/// masqueraded (upstream's `masq` is "KUBE-MARK-MASQ reached on any branch").
pub fn observed(t: &Trace) -> (String, bool) {
    let masq = t.outcomes.iter().any(|o| o.masq);
    if t.output.is_empty() && t.verdict == Verdict::Accept {
        let accepted_by_kube = t.steps.iter().any(|s| {
            matches!(s, Step::Rule { table, chain, matched: true, text, .. }
                if &**table == "filter" && chain.starts_with("KUBE-") && text.ends_with("-j ACCEPT"))
        });
        if accepted_by_kube {
            return ("ACCEPT".into(), masq);
        }
    }
    (t.output.clone(), masq)
}

fn request(f: &Flow) -> TraceRequest {
    TraceRequest {
        src: f
            .src
            .parse()
            .unwrap_or_else(|_| panic!("{}: bad src", f.name)),
        dst: f
            .dst
            .parse()
            .unwrap_or_else(|_| panic!("{}: bad dst", f.name)),
        dport: f.dport,
        proto: f.proto,
        sport: None,
        seed: 1,
        now: 0.0,
    }
}

/// Trace one flow on a fresh session (no conntrack or `-m recent` state, as upstream's tracer).
pub fn trace_flow(s: &Scenario, f: &Flow) -> Trace {
    Session::new(s).trace(&request(f))
}

/// The error line for a row whose answer differs from the expectation, if it does.
fn mismatch(test: &str, f: &Flow, t: &Trace) -> Option<String> {
    let (out, masq) = observed(t);
    let (want_out, want_masq) = match f.kernel {
        Some(k) => (k.output, k.masq),
        None => (f.output, f.masq),
    };
    (out != want_out || masq != want_masq).then(|| {
        format!(
            "{test} / {:?}: {} {} -> {}:{}\n  expected output {:?} masq {}{}\n  got      output {:?} masq {}",
            f.name,
            f.proto,
            f.src,
            f.dst,
            f.dport,
            want_out,
            want_masq,
            if f.kernel.is_some() {
                format!(" (kernel; upstream table says {:?} masq {})", f.output, f.masq)
            } else {
                String::new()
            },
            out,
            masq
        )
    })
}

/// Run an upstream flow table against a scenario; report every mismatching row at once.
pub fn run_flows(test: &str, s: &Scenario, flows: &[Flow]) -> usize {
    let errors: Vec<String> = flows
        .iter()
        .filter_map(|f| mismatch(test, f, &trace_flow(s, f)))
        .collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    flows.len()
}

/// kube-proxy's `checkIPTablesRuleJumps` (spec §13 point 3): every `-j` target other than the
/// built-in verdicts is declared and has rules (KUBE-NODEPORTS may be empty), every chain with
/// rules is declared, and every declared chain is jumped to (the fixed kube-proxy chains
/// excepted); `-X` removes a chain from the declared set. Errors name the table and chains.
pub fn check_rule_jumps(payload: &str) -> Result<(), String> {
    use std::collections::BTreeSet;
    const BUILTIN_TARGETS: &[&str] = &[
        "ACCEPT",
        "REJECT",
        "DROP",
        "MARK",
        "RETURN",
        "DNAT",
        "SNAT",
        "MASQUERADE",
    ];
    const EXEMPT: &[&str] = &[
        "KUBE-SERVICES",
        "KUBE-EXTERNAL-SERVICES",
        "KUBE-NODEPORTS",
        "KUBE-POSTROUTING",
        "KUBE-FORWARD",
        "KUBE-MARK-MASQ",
        "KUBE-PROXY-FIREWALL",
        "KUBE-FIREWALL",
    ];
    let mut tables: Vec<(String, Vec<&str>)> = Vec::new();
    for line in payload.lines() {
        if let Some(t) = line.strip_prefix('*') {
            tables.push((t.to_string(), Vec::new()));
        } else if let Some((_, lines)) = tables.last_mut() {
            lines.push(line);
        }
    }
    let word_after = |line: &str, flag: &str| -> Option<String> {
        let i = line.find(flag)?;
        line[i + flag.len()..].split(' ').next().map(str::to_string)
    };
    // Go's `%v` of a string slice: `[a b]`.
    let go_list = |v: &[&String]| -> String {
        let names: Vec<&str> = v.iter().map(|s| s.as_str()).collect();
        format!("[{}]", names.join(" "))
    };
    for (name, lines) in &tables {
        let mut created: BTreeSet<String> = BTreeSet::new();
        let mut filled: BTreeSet<String> = BTreeSet::new();
        let mut jumped: BTreeSet<String> = BTreeSet::new();
        let mut deleted: BTreeSet<String> = BTreeSet::new();
        for l in lines {
            if let Some(c) = l.strip_prefix(':') {
                created.insert(c.split(' ').next().unwrap_or("").to_string());
            }
            if let Some(c) = word_after(l, "-X ") {
                deleted.insert(c);
            }
            if let Some(c) = word_after(l, "-A ") {
                filled.insert(c);
            }
            if let Some(c) = word_after(l, "-j ") {
                jumped.insert(c);
            }
        }
        let created: BTreeSet<String> = created.difference(&deleted).cloned().collect();
        jumped.retain(|c| !BUILTIN_TARGETS.contains(&c.as_str()));
        let missing: BTreeSet<&String> = jumped
            .difference(&created)
            .chain(filled.difference(&created))
            .collect();
        let missing: Vec<&String> = missing.into_iter().collect();
        if !missing.is_empty() {
            return Err(format!(
                "some chains in {name} are used but were not created: {}",
                go_list(&missing)
            ));
        }
        let empty: Vec<&String> = jumped
            .difference(&filled)
            .filter(|c| c.as_str() != "KUBE-NODEPORTS")
            .collect();
        if !empty.is_empty() {
            return Err(format!(
                "some chains in {name} are jumped to but have no rules: {}",
                go_list(&empty)
            ));
        }
        let extra: Vec<&String> = created
            .difference(&jumped)
            .filter(|c| !EXEMPT.contains(&c.as_str()))
            .collect();
        if !extra.is_empty() {
            return Err(format!(
                "some chains in {name} are created but not used: {}",
                go_list(&extra)
            ));
        }
    }
    Ok(())
}

/// Like [`run_flows`], on a node running a given `iptables-save` / `iptables-restore` text
/// instead of the rules proxyscope generates (the scenario supplies the node's addresses).
pub fn run_flows_on_dump(test: &str, s: &Scenario, dump: &str, flows: &[Flow]) -> usize {
    let (_, diags) = Session::from_dump(s, dump);
    assert!(
        diags.is_empty(),
        "{test}: the dump does not parse: {diags:?}"
    );
    let mut errors = Vec::new();
    for f in flows {
        let (mut session, _) = Session::from_dump(s, dump);
        let t = session.trace(&request(f));
        if let Some(e) = mismatch(test, f, &t) {
            errors.push(e);
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    flows.len()
}

/// An EndpointSlice `ns1/svc1-1` for the unnamed TCP port 80 of `svc1`, as upstream builds in
/// its loops. Each endpoint: (ip, nodeName, conditions as YAML flow mapping).
pub fn slice_svc1(eps: &[(&str, &str, &str)]) -> String {
    let mut s = String::from(
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {namespace: ns1, name: svc1-1, labels: {kubernetes.io/service-name: svc1}}\naddressType: IPv4\nports: [{name: \"\", port: 80, protocol: TCP}]\nendpoints:\n",
    );
    for (ip, node, cond) in eps {
        s.push_str(&format!(
            "- {{addresses: [{ip}], nodeName: {node}, conditions: {cond}}}\n"
        ));
    }
    s
}

/// The family of a kernel fixture by its file name (`ipv6-…` dumps are ip6tables-save text).
pub fn family_of(name: &str) -> proxyscope_core::rules::iptables::Family {
    use proxyscope_core::rules::iptables::Family;
    if name.starts_with("ipv6") {
        Family::V6
    } else {
        Family::V4
    }
}
