//! Bounded fuzzing of every text parser, run on each `cargo test` (a fixed number of cases, so
//! CI time stays bounded; raise it with PROPTEST_CASES). Inputs: arbitrary bytes, soups of the
//! tokens the grammar uses, and mutations of the kernel's own iptables-save text. The properties:
//! never panic, and whatever parses cleanly prints back to text that parses to the same model.

use proptest::prelude::*;
use proxyscope_core::rules::iptables::{Family, parse, print_saved};

const KERNEL: &str = include_str!("fixtures/kernel/ipv4-overall.nft.saved");
/// `-m physdev` in every option order iptables-save prints.
const KERNEL_PHYSDEV: &str = include_str!("fixtures/kernel/physdev.nft.saved");

fn round_trips(text: &str, fam: Family) {
    let p = parse(text, fam);
    if p.has_errors() {
        return;
    }
    let printed = print_saved(&p.ruleset, true);
    let again = parse(&printed, fam);
    assert!(
        !again.has_errors(),
        "printed text does not parse: {:?}\n{printed}",
        again.diagnostics
    );
    let strip = |rs: &proxyscope_core::rules::iptables::Ruleset| {
        let mut rs = rs.clone();
        for t in &mut rs.tables {
            // Printing sorts user chains (iptables-save order); compare as sets of chains.
            t.chains.sort_by(|a, b| a.name.cmp(&b.name));
            for c in &mut t.chains {
                for r in &mut c.rules {
                    r.line = 0;
                    r.counters = Some(r.counters.unwrap_or_default());
                }
            }
        }
        rs
    };
    assert_eq!(
        strip(&p.ruleset),
        strip(&again.ruleset),
        "round trip changed the model:\n{text}\n---\n{printed}"
    );
}

const TOKENS: &[&str] = &[
    "-A",
    "-I",
    "-N",
    "-X",
    "-s",
    "-d",
    "-i",
    "-o",
    "-p",
    "-m",
    "-j",
    "-g",
    "-c",
    "!",
    "--dport",
    "--sport",
    "--comment",
    "\"a b\"",
    "\"x\\\"y\"",
    "tcp",
    "udp",
    "sctp",
    "comment",
    "statistic",
    "recent",
    "mark",
    "addrtype",
    "conntrack",
    "multiport",
    "nfacct",
    "set",
    "--mode",
    "random",
    "nth",
    "--probability",
    "0.5",
    "1.5",
    "--every",
    "3",
    "--packet",
    "0",
    "--set",
    "--rcheck",
    "--seconds",
    "10",
    "--reap",
    "--name",
    "--mask",
    "--rsource",
    "--rdest",
    "--mark",
    "0x4000/0x4000",
    "--dst-type",
    "--src-type",
    "LOCAL",
    "--ctstate",
    "NEW,ESTABLISHED",
    "--dports",
    "80,443:445",
    "--nfacct-name",
    "--match-set",
    "KUBE-X",
    "src,dst",
    "DNAT",
    "--to-destination",
    "10.0.0.1:80",
    "[fd00::1]:80",
    "SNAT",
    "--to-source",
    "MASQUERADE",
    "--random-fully",
    "MARK",
    "--or-mark",
    "--xor-mark",
    "--set-xmark",
    "REJECT",
    "--reject-with",
    "ACCEPT",
    "DROP",
    "RETURN",
    "LOG",
    "--log-prefix",
    "10.0.0.0/8",
    "1.2.3.4",
    "fd00::/64",
    "300.1.1.1",
    "eth0",
    "veth+",
    "80",
    "65536",
    "1:2",
    "-m",
    "foo",
    "--bar",
    "physdev",
    "--physdev-is-in",
    "--physdev-is-out",
    "--physdev-is-bridged",
    "--physdev-in",
    "--physdev-out",
    "veth0",
    "\"+\"",
    "0123456789abcdef",
    "ipvs",
    "--ipvs",
    "--vproto",
    "--vaddr",
    "--vport",
    "--vdir",
    "--vmethod",
    "--vportctl",
    "ORIGINAL",
    "reply",
    "MASQ",
    "gate",
    "10.0.0.1/24",
    "10.0.0.0/255.0.0.0",
    "http",
];

fn soup() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::collection::vec(prop::sample::select(TOKENS), 0..14).prop_map(|ws| {
            let mut l = String::from("-A KUBE-X");
            for w in ws {
                l.push(' ');
                l.push_str(w);
            }
            l
        }),
        0..6,
    )
    .prop_map(|lines| {
        format!(
            "*nat\n:KUBE-X - [0:0]\n:KUBE-Y - [0:0]\n{}\nCOMMIT\n",
            lines.join("\n")
        )
    })
}

fn mutated_kernel_text() -> impl Strategy<Value = String> {
    let lines: Vec<&'static str> = KERNEL.lines().chain(KERNEL_PHYSDEV.lines()).collect();
    let n = lines.len();
    (prop::collection::vec((0..n, 0..4u8, any::<u16>()), 1..8)).prop_map(move |muts| {
        let mut ls: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
        for (i, op, x) in muts {
            let i = i % ls.len().max(1);
            if ls.is_empty() {
                break;
            }
            match op {
                0 => {
                    ls.remove(i);
                }
                1 => {
                    let l = ls[i].clone();
                    ls.insert(i, l);
                }
                2 => {
                    // Drop one word.
                    let mut ws: Vec<&str> = ls[i].split(' ').collect();
                    if !ws.is_empty() {
                        ws.remove(x as usize % ws.len());
                    }
                    ls[i] = ws.join(" ");
                }
                _ => {
                    // Cut the line somewhere (can split a quoted string).
                    let cut = x as usize % (ls[i].len() + 1);
                    let cut = (0..=cut)
                        .rev()
                        .find(|c| ls[i].is_char_boundary(*c))
                        .unwrap_or(0);
                    ls[i].truncate(cut);
                }
            }
        }
        ls.join("\n")
    })
}

/// Rules of one `-m physdev` or `-m ipvs` match made of that module's options, values and
/// junk in any order (the general soup rarely puts them after their `-m`).
fn physdev_ipvs_soup() -> impl Strategy<Value = String> {
    const OPTS: &[&str] = &[
        "!",
        "--physdev-is-in",
        "--physdev-is-out",
        "--physdev-is-bridged",
        "--physdev-in",
        "--physdev-out",
        "veth0",
        "eth+",
        "\"+\"",
        "\"a b\"",
        "0123456789abcdef",
        "--ipvs",
        "--vproto",
        "--vaddr",
        "--vport",
        "--vdir",
        "--vmethod",
        "--vportctl",
        "tcp",
        "17",
        "ORIGINAL",
        "reply",
        "MASQ",
        "gate",
        "IPIP",
        "10.0.0.1",
        "10.1.2.3/8",
        "10.0.0.0/33",
        "fd00::1/64",
        "80",
        "70000",
        "-j",
        "ACCEPT",
    ];
    prop::collection::vec(
        (
            any::<bool>(),
            prop::collection::vec(prop::sample::select(OPTS), 0..8),
        ),
        1..5,
    )
    .prop_map(|lines| {
        let body: Vec<String> = lines
            .into_iter()
            .map(|(ipvs, ws)| {
                let module = if ipvs { "ipvs" } else { "physdev" };
                format!("-A KUBE-X -m {module} {}", ws.join(" "))
            })
            .collect();
        format!("*filter\n:KUBE-X - [0:0]\n{}\nCOMMIT\n", body.join("\n"))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn physdev_and_ipvs_options_round_trip(text in physdev_ipvs_soup()) {
        round_trips(&text, Family::V4);
        round_trips(&text, Family::V6);
        // The compact program reads the same and prints the same.
        for fam in [Family::V4, Family::V6] {
            let parsed = parse(&text, fam);
            let (p, diags) = proxyscope_core::netfilter::program::Program::parse(&text, fam);
            prop_assert_eq!(&diags, &parsed.diagnostics);
            prop_assert_eq!(p.to_ruleset(), parsed.ruleset);
        }
    }

    #[test]
    fn iptables_parser_survives_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse(&text, Family::V4);
        let _ = parse(&text, Family::V6);
    }

    #[test]
    fn iptables_parser_token_soup_round_trips(text in soup()) {
        round_trips(&text, Family::V4);
    }

    #[test]
    fn iptables_parser_mutated_kernel_text_round_trips(text in mutated_kernel_text()) {
        round_trips(&text, Family::V4);
    }

    #[test]
    fn scenario_loader_survives_arbitrary_text(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = proxyscope_core::api::load_scenario(&text);
    }

    #[test]
    fn scenario_loader_survives_mutated_examples(cut in 0usize..4000, junk in "[ -~]{0,12}") {
        let demo = proxyscope_core::api::DEMO_SCENARIO;
        let mut cut = cut % (demo.len() + 1);
        while !demo.is_char_boundary(cut) { cut -= 1; }
        let text = format!("{}{}{}", &demo[..cut], junk, &demo[cut..]);
        if let Ok(l) = proxyscope_core::api::load_scenario(&text) {
            // Whatever loads must generate and trace without panicking.
            let mut s = proxyscope_core::api::Session::new(&l.scenario);
            let req = proxyscope_core::api::TraceRequest {
                src: "10.0.0.100".parse().unwrap(), dst: "10.104.14.67".parse().unwrap(), dport: 80,
                proto: proxyscope_core::trace::Proto::Tcp, sport: None, seed: 7, now: 0.0,
            };
            let _ = s.trace(&req);
        }
    }
}

#[test]
fn the_kernel_text_itself_round_trips() {
    round_trips(KERNEL, Family::V4);
}
