//! The compact rule program against the owned model it encodes: `to_ruleset(compile(rs)) == rs`
//! for the kernel's own dumps, for every rule the generator writes and for random rulesets;
//! every rule prints byte for byte like its owned form (the text a trace step shows); a rule
//! evaluates against a packet exactly as its owned form; the trace index skips only rules that
//! cannot match.
mod common;

use common::family_of;

use proptest::prelude::*;
use proxyscope_core::netfilter::eval::{BridgeInfo, IpvsConn, PacketCtx, eval_rule};
use proxyscope_core::netfilter::program::{Program, rule_key};
use proxyscope_core::netfilter::{IndexKey, IpSet, IpSetMember, Machine, NodeView, State};
use proxyscope_core::rules::iptables::print::rule_text;
use proxyscope_core::rules::iptables::view::RuleView;
use proxyscope_core::rules::iptables::*;
use proxyscope_core::trace::{Packet, Proto};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn fixtures() -> Vec<(String, String)> {
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut out = Vec::new();
    for dir in ["kernel", "probe"] {
        for e in std::fs::read_dir(base.join(dir)).expect("fixtures dir") {
            let path = e.expect("entry").path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name.ends_with(".saved") || name.ends_with(".restore") {
                out.push((name, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    assert!(out.len() >= 10, "fixtures missing: {out:?}");
    out
}

/// Every rule of the program prints like its owned rule (the trace's rule text).
fn same_texts(rs: &Ruleset, p: &Program) {
    for (t, table) in rs.tables.iter().enumerate() {
        for (c, chain) in table.chains.iter().enumerate() {
            assert_eq!(p.chain_len(t, c), chain.rules.len());
            for (i, r) in chain.rules.iter().enumerate() {
                assert_eq!(
                    rule_text(p.chain_name(t, c), p.rule(t, c, i)),
                    rule_text(&chain.name, r),
                );
            }
        }
    }
}

#[test]
fn kernel_dumps_round_trip_through_the_program() {
    for (name, text) in fixtures() {
        let fam = family_of(&name);
        let parsed = parse(text.as_str(), fam);
        let p = Program::compile(&parsed.ruleset, fam);
        assert_eq!(p.to_ruleset(), parsed.ruleset, "{name}");
        assert_eq!(p.rule_count(), parsed.ruleset.rule_count(), "{name}");
        same_texts(&parsed.ruleset, &p);
        // The kernel's own text, printed back from the decoded program, byte for byte.
        if name.ends_with(".saved") {
            assert_eq!(print_saved(&p.to_ruleset(), false), text, "{name}");
        }
        // Straight from the text: the same parser, the same rules (symbols may be numbered
        // in another order).
        let (pp, diags) = Program::parse(&text, fam);
        assert_eq!(diags, parsed.diagnostics, "{name}");
        assert_eq!(pp.to_ruleset(), parsed.ruleset, "{name}");
        same_texts(&parsed.ruleset, &pp);
    }
}

#[test]
fn generated_cluster_round_trips_and_is_small() {
    let yaml = proxyscope_core::generate::large_cluster(200, 10);
    let s = proxyscope_core::api::load_scenario(&yaml)
        .expect("generated")
        .scenario;
    let fr = proxyscope_core::proxier::iptables::generate(&s, Family::V4);
    let saved = proxyscope_core::proxier::iptables::saved_text(&fr);
    let parsed = parse(&saved, Family::V4);
    assert!(parsed.diagnostics.is_empty());
    let p = Program::compile(&parsed.ruleset, Family::V4);
    assert_eq!(p.to_ruleset(), parsed.ruleset);
    same_texts(&parsed.ruleset, &p);
    let (pp, diags) = Program::parse(&saved, Family::V4);
    assert!(diags.is_empty());
    assert_eq!(pp.to_ruleset(), parsed.ruleset);
    // The budget for 20 MB at 327k rules is ~60 bytes a rule, strings and index included.
    let per_rule = p.heap_bytes() as f64 / p.rule_count() as f64;
    assert!(per_rule < 60.0, "{per_rule:.1} bytes per rule");
}

/// Restore-payload commands that reorder or rename: `-I` (with and without a position), `-N`
/// after rules that jump to it, `-X`, duplicate declarations, counters, unclosed tables.
const RESTORE_LINES: &[&str] = &[
    "*nat",
    "*filter",
    ":A - [0:0]",
    ":B - [1:2]",
    ":INPUT DROP [3:4]",
    "-N C",
    "-N A",
    "-X D",
    "-A A -j B",
    "-A A -g C",
    "-A B -j C",
    "-A C -j RETURN",
    "-I A -j ACCEPT",
    "-I A 2 -s 10.0.0.1 -j DROP",
    "-I B 9 -d 10.0.0.2 -j B",
    "[5:6] -A INPUT -j A",
    "-A INPUT -c 7 8 -p tcp --dport 80 -j DNAT --to-destination 10.0.0.1:80",
    "-A A -m foo --bar 1 -m comment --comment \"x y\" --baz",
    "-A A -j FOO --x 1",
    "-A Z -j ACCEPT",
    "COMMIT",
];

#[test]
fn restore_commands_parse_the_same_into_a_program() {
    let check = |text: &str| {
        let parsed = parse(text, Family::V4);
        let (p, diags) = Program::parse(text, Family::V4);
        assert_eq!(diags, parsed.diagnostics, "{text}");
        assert_eq!(p.to_ruleset(), parsed.ruleset, "{text}");
        same_texts(&parsed.ruleset, &p);
    };
    check(&RESTORE_LINES.join("\n"));
    // Every prefix, and each line dropped once.
    for n in 0..RESTORE_LINES.len() {
        check(&RESTORE_LINES[..n].join("\n"));
        let mut v = RESTORE_LINES.to_vec();
        v.remove(n);
        check(&v.join("\n"));
    }
}

#[test]
fn nat_text_that_is_not_canonical_is_kept_verbatim() {
    // `to` forms a dump can hold: each must print back exactly as loaded.
    for to in [
        "10.0.0.1:80",
        "10.0.0.1",
        "[fd00::1]:80",
        "fd00::1",
        "10.0.0.1-10.0.0.9:80-90",
        "10.0.0.1:80-90",
        "[fd00::0001]:80",
        "010.0.0.1:80",
        "10.0.0.1:080",
    ] {
        let text = format!(
            "*nat\n:X - [0:0]\n-A X -p tcp -j DNAT --to-destination {to}\n-A X -j SNAT --to-source {to}\nCOMMIT\n"
        );
        let parsed = parse(&text, Family::V4);
        let p = Program::compile(&parsed.ruleset, Family::V4);
        assert_eq!(p.to_ruleset(), parsed.ruleset, "{to}");
        assert_eq!(
            print_saved(&p.to_ruleset(), false),
            print_saved(&parsed.ruleset, false)
        );
    }
}

// ---- random rulesets ----

fn net() -> impl Strategy<Value = ipnet::IpNet> {
    prop_oneof![
        (any::<u32>(), 0u8..=32).prop_map(|(a, p)| ipnet::IpNet::new(
            IpAddr::V4(Ipv4Addr::from(a)),
            p
        )
        .unwrap()),
        (any::<u128>(), 0u8..=128).prop_map(|(a, p)| ipnet::IpNet::new(
            IpAddr::V6(Ipv6Addr::from(a)),
            p
        )
        .unwrap()),
        // Hosts of a small range, so rules and packets meet.
        (0u32..4).prop_map(|a| ipnet::IpNet::from(IpAddr::V4(Ipv4Addr::new(10, 0, 0, a as u8)))),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_-]{0,10}",
        "\\PC{0,12}",
        Just("KUBE-A".to_string())
    ]
}

fn neg<T: std::fmt::Debug + Clone>(s: impl Strategy<Value = T>) -> impl Strategy<Value = Neg<T>> {
    (any::<bool>(), s).prop_map(|(n, v)| Neg::new(n, v))
}

fn port() -> impl Strategy<Value = PortSpec> {
    prop_oneof![
        (0u16..4).prop_map(|p| PortSpec {
            lo: 80 + p,
            hi: 80 + p
        }),
        (any::<u16>(), any::<u16>()).prop_map(|(a, b)| PortSpec {
            lo: a.min(b),
            hi: a.max(b)
        }),
    ]
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
    ]
}

fn a_match() -> impl Strategy<Value = Match> {
    let kinds = prop_oneof![
        Just(MultiportKind::Sports),
        Just(MultiportKind::Dports),
        Just(MultiportKind::Ports)
    ];
    let action = prop_oneof![
        Just(RecentAction::Set),
        Just(RecentAction::Rcheck),
        Just(RecentAction::Update),
        Just(RecentAction::Remove)
    ];
    let addr_types = prop::collection::vec(prop::sample::select(AddrType::ALL.to_vec()), 0..4);
    let states = prop::collection::vec(prop::sample::select(CtState::ALL.to_vec()), 0..4);
    prop_oneof![
        text().prop_map(|comment| Match::Comment { comment }),
        (
            prop_oneof![
                Just("tcp".to_string()),
                Just("udp".to_string()),
                Just("sctp".to_string()),
                text()
            ],
            prop::option::of(neg(port())),
            prop::option::of(neg(port()))
        )
            .prop_map(|(module, sport, dport)| Match::Ports {
                module,
                sport,
                dport
            }),
        (any::<bool>(), kinds, prop::collection::vec(port(), 0..4))
            .prop_map(|(neg, kind, ports)| Match::Multiport { neg, kind, ports }),
        (any::<bool>(), any::<u32>())
            .prop_map(|(neg, fixed)| Match::Statistic(Statistic::Random { neg, fixed })),
        (any::<bool>(), 0u32..4, 0u32..4).prop_map(|(neg, every, packet)| Match::Statistic(
            Statistic::Nth { neg, every, packet }
        )),
        (
            (
                any::<bool>(),
                action,
                prop::option::of(0u32..100),
                any::<bool>()
            ),
            (
                prop::option::of(0u32..4),
                any::<bool>(),
                text(),
                ip(),
                any::<bool>()
            )
        )
            .prop_map(
                |((neg, action, seconds, reap), (hitcount, rttl, name, mask, rdest))| {
                    Match::Recent(Recent {
                        neg,
                        action,
                        seconds,
                        reap,
                        hitcount,
                        rttl,
                        name,
                        mask,
                        rdest,
                    })
                }
            ),
        (any::<bool>(), 0u32..4, any::<u32>()).prop_map(|(neg, value, mask)| Match::Mark {
            neg,
            value,
            mask
        }),
        (
            prop::option::of(neg(addr_types.clone())),
            prop::option::of(neg(addr_types)),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(
                |(src, dst, limit_iface_in, limit_iface_out)| Match::AddrType {
                    src,
                    dst,
                    limit_iface_in,
                    limit_iface_out
                }
            ),
        prop::option::of(neg(states)).prop_map(|ctstate| Match::Conntrack { ctstate }),
        text().prop_map(|name| Match::Nfacct { name }),
        (
            any::<bool>(),
            prop_oneof![Just("S".to_string()), text()],
            prop::collection::vec(any::<bool>(), 0..3)
        )
            .prop_map(|(neg, name, dirs)| Match::Set { neg, name, dirs }),
        physdev().prop_map(Match::Physdev),
        ipvs_match().prop_map(Match::Ipvs),
        (text(), prop::collection::vec(text(), 0..3))
            .prop_map(|(module, args)| Match::Unknown { module, args }),
    ]
}

fn physdev() -> impl Strategy<Value = Physdev> {
    let port = || {
        prop_oneof![
            Just("veth0".to_string()),
            Just("veth+".to_string()),
            Just("eth1".to_string()),
            text()
        ]
    };
    let flag = || prop::option::of(any::<bool>());
    (
        flag(),
        prop::option::of(neg(port())),
        flag(),
        prop::option::of(neg(port())),
        flag(),
    )
        .prop_map(
            |(is_in, physdev_in, is_out, physdev_out, is_bridged)| Physdev {
                is_in,
                physdev_in,
                is_out,
                physdev_out,
                is_bridged,
            },
        )
}

fn ipvs_match() -> impl Strategy<Value = IpvsMatch> {
    // Unmasked address/prefix pairs, as libxt_ipvs keeps them; hosts near the packets' ones.
    let vaddr = prop_oneof![
        (0u8..4, prop_oneof![Just(32u8), 28u8..=32]).prop_map(|(a, p)| {
            ipnet::IpNet::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, a)), p).unwrap()
        }),
        (ip(), any::<u8>()).prop_map(|(a, p)| {
            let max = if a.is_ipv4() { 32 } else { 128 };
            ipnet::IpNet::new(a, p % (max + 1)).unwrap()
        }),
    ];
    let vport = || prop_oneof![80u16..84, any::<u16>()];
    let method = prop_oneof![
        Just(VMethod::Gate),
        Just(VMethod::Ipip),
        Just(VMethod::Masq)
    ];
    (
        any::<bool>(),
        prop::option::of(neg(prop_oneof![Just(6u8), Just(17u8), any::<u8>()])),
        prop::option::of(neg(vaddr)),
        prop::option::of(neg(vport())),
        prop::option::of(prop_oneof![Just(VDir::Original), Just(VDir::Reply)]),
        prop::option::of(neg(method)),
        prop::option::of(neg(vport())),
    )
        .prop_map(|(n, vproto, vaddr, vport, vdir, vmethod, vportctl)| {
            let mut m = IpvsMatch {
                ipvs_neg: false,
                vproto,
                vaddr,
                vport,
                vdir,
                vmethod,
                vportctl,
            };
            // A `!` on `--ipvs` exists only alone (libxt_ipvs refuses it with other options).
            m.ipvs_neg = n && m.property_only();
            m
        })
}

fn nat_to() -> impl Strategy<Value = String> {
    prop_oneof![
        (ip(), prop::option::of(any::<u16>())).prop_map(|(a, p)| match (a, p) {
            (a, None) => a.to_string(),
            (IpAddr::V4(a), Some(p)) => format!("{a}:{p}"),
            (IpAddr::V6(a), Some(p)) => format!("[{a}]:{p}"),
        }),
        text(),
        Just("10.0.0.1-10.0.0.3:80-82".to_string()),
    ]
}

fn target() -> impl Strategy<Value = Target> {
    let chain = prop_oneof![Just("A".to_string()), Just("B".to_string()), text()];
    prop_oneof![
        Just(Target::Accept),
        Just(Target::Drop),
        Just(Target::Return),
        chain.clone().prop_map(|chain| Target::Jump { chain }),
        chain.prop_map(|chain| Target::Goto { chain }),
        text().prop_map(|with| Target::Reject { with }),
        (nat_to(), any::<bool>(), any::<bool>()).prop_map(|(to, random, persistent)| {
            Target::Dnat {
                to,
                random,
                persistent,
            }
        }),
        (nat_to(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
            |(to, random, random_fully, persistent)| Target::Snat {
                to,
                random,
                random_fully,
                persistent
            }
        ),
        (prop::option::of(text()), any::<bool>(), any::<bool>()).prop_map(
            |(to_ports, random, random_fully)| Target::Masquerade {
                to_ports,
                random,
                random_fully
            }
        ),
        (any::<u32>(), any::<u32>()).prop_map(|(value, mask)| Target::Mark { value, mask }),
        (prop::option::of(text()), prop::option::of(text()))
            .prop_map(|(prefix, level)| Target::Log { prefix, level }),
        (text(), prop::collection::vec(text(), 0..3))
            .prop_map(|(name, args)| Target::Unknown { name, args }),
    ]
}

fn counters() -> impl Strategy<Value = Counters> {
    (any::<u64>(), any::<u64>()).prop_map(|(packets, bytes)| Counters { packets, bytes })
}

fn iface() -> impl Strategy<Value = String> {
    prop_oneof![Just("eth0".to_string()), Just("eth+".to_string()), text()]
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        (
            prop::option::of(neg(net())),
            prop::option::of(neg(net())),
            prop::option::of(neg(iface())),
            prop::option::of(neg(iface())),
            prop::option::of(neg(prop_oneof![
                Just(ProtoNum(6)),
                Just(ProtoNum(17)),
                Just(ProtoNum(0)),
                any::<u8>().prop_map(ProtoNum)
            ])),
        ),
        prop::collection::vec(a_match(), 0..4),
        prop::option::of(target()),
        prop::option::of(counters()),
        0usize..100_000,
    )
        .prop_map(
            |((src, dst, in_iface, out_iface, proto), matches, target, counters, line)| Rule {
                src,
                dst,
                in_iface,
                out_iface,
                proto,
                matches,
                target,
                counters,
                line,
            },
        )
}

fn ruleset() -> impl Strategy<Value = Ruleset> {
    let chain = (
        prop_oneof![Just("A".to_string()), Just("B".to_string()), text()],
        prop::option::of(prop_oneof![Just("DROP".to_string()), text()]),
        prop_oneof![Just(Counters::default()), counters()],
        prop::collection::vec(rule(), 0..6),
    )
        .prop_map(|(name, policy, counters, rules)| Chain {
            name,
            policy,
            counters,
            rules,
        });
    let table = (
        text(),
        prop::collection::vec(chain, 0..4),
        prop::collection::vec(text(), 0..2),
    )
        .prop_map(|(name, chains, deleted)| Table {
            name,
            chains,
            deleted,
        });
    prop::collection::vec(table, 0..3).prop_map(|tables| Ruleset { tables })
}

fn packet() -> impl Strategy<Value = Packet> {
    (
        prop_oneof![
            (0u8..4).prop_map(|a| IpAddr::V4(Ipv4Addr::new(10, 0, 0, a))),
            ip()
        ],
        prop_oneof![
            (0u8..4).prop_map(|a| IpAddr::V4(Ipv4Addr::new(10, 0, 0, a))),
            ip()
        ],
        prop_oneof![80u16..84, any::<u16>()],
        prop_oneof![80u16..84, any::<u16>()],
        prop_oneof![Just(Proto::Tcp), Just(Proto::Udp), Just(Proto::Sctp)],
        0u32..4,
    )
        .prop_map(|(src, dst, sport, dport, proto, mark)| Packet {
            src,
            sport,
            dst,
            dport,
            proto,
            mark,
        })
}

fn machine() -> Machine {
    let mut node = NodeView {
        local: vec!["10.0.0.1/32".parse().unwrap()],
        ..Default::default()
    };
    node.ipsets.insert(
        "S".into(),
        IpSet {
            set_type: "hash:ip,port".into(),
            members: vec![IpSetMember {
                ip: Some("10.0.0.2/32".parse().unwrap()),
                proto: Some(Proto::Tcp),
                port: Some(80),
                ip2: None,
            }],
        },
    );
    Machine::new(Ruleset::default(), Family::V4, node)
}

/// Evaluate a rule with recorded failure texts, notes, coin draws and state effects.
fn run<'a>(
    m: &Machine,
    r: impl RuleView<'a>,
    pkt: Packet,
    state: &mut State,
    coins: &[bool],
) -> (String, Vec<String>, Vec<(u32, bool)>) {
    // Bridge info and IPVS connection vary with the ports, so every kind meets every rule.
    let bridges = [
        BridgeInfo {
            physindev: Some("veth0".into()),
            physoutdev: None,
        },
        BridgeInfo {
            physindev: Some("veth1".into()),
            physoutdev: Some("eth1".into()),
        },
        BridgeInfo {
            physindev: None,
            physoutdev: Some("veth3".into()),
        },
    ];
    let conns = [
        IpvsConn {
            vaddr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            vport: 80,
            method: VMethod::Masq,
            reply: false,
            control_vport: None,
        },
        IpvsConn {
            vaddr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            vport: 81,
            method: VMethod::Gate,
            reply: true,
            control_vport: Some(82),
        },
    ];
    let cx = PacketCtx {
        pkt,
        in_iface: Some("eth0"),
        out_iface: Some("eth1"),
        ct_new: pkt.sport.is_multiple_of(2),
        ct_dnat: pkt.sport.is_multiple_of(3),
        ct_snat: false,
        now: 50.0,
        reads: Default::default(),
        bridge: bridges.get(pkt.sport as usize % 4),
        ipvs: conns.get(pkt.dport as usize % 3).copied(),
    };
    let mut drawn = Vec::new();
    let mut coin = |fixed: u32, neg: bool| {
        drawn.push((fixed, neg));
        coins.get(drawn.len() - 1).copied().unwrap_or(true)
    };
    let mut notes = Vec::new();
    let res = eval_rule(
        m,
        r,
        &cx,
        state,
        true,
        (0, 0, 0),
        &mut coin,
        &mut notes,
        true,
    );
    // The packet facts read must agree too: an exploring walk reuses table runs by them.
    (format!("{res:?} reads {:#x}", cx.reads.get()), notes, drawn)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn shuffled_restore_commands_parse_the_same_into_a_program(
        picks in prop::collection::vec(0..RESTORE_LINES.len(), 0..30)
    ) {
        let text: Vec<&str> = picks.iter().map(|i| RESTORE_LINES[*i]).collect();
        let text = text.join("\n");
        let parsed = parse(&text, Family::V4);
        let (p, diags) = Program::parse(&text, Family::V4);
        prop_assert_eq!(diags, parsed.diagnostics);
        prop_assert_eq!(p.to_ruleset(), parsed.ruleset);
    }

    #[test]
    fn random_rulesets_round_trip(rs in ruleset()) {
        let p = Program::compile(&rs, Family::V4);
        prop_assert_eq!(&p.to_ruleset(), &rs);
        same_texts(&rs, &p);
    }

    #[test]
    fn a_compiled_rule_evaluates_like_the_rule(
        r in rule(),
        pkts in prop::collection::vec(packet(), 1..4),
        coins in prop::collection::vec(any::<bool>(), 0..4),
    ) {
        let m = machine();
        let mut t = Table::new("filter");
        t.chains.push(Chain { name: "X".into(), policy: None, counters: Counters::default(), rules: vec![r.clone()] });
        let rs = Ruleset { tables: vec![t] };
        let p = Program::compile(&rs, Family::V4);
        let (mut s1, mut s2) = (State::default(), State::default());
        for pkt in pkts {
            let a = run(&m, &r, pkt, &mut s1, &coins);
            let b = run(&m, p.rule(0, 0, 0), pkt, &mut s2, &coins);
            prop_assert_eq!(a, b);
            prop_assert_eq!(&s1.recent, &s2.recent);
            prop_assert_eq!(&s1.nth, &s2.nth);
        }
    }

    /// The index skips only rules that pin another value of its field (which cannot match),
    /// and never a rule that pins the packet's value or none.
    #[test]
    fn the_index_skips_only_rules_that_cannot_match(
        keys in prop::collection::vec(prop::option::of(0u8..6), 48..120),
        by_port in any::<bool>(),
        dst in 0u8..7,
        from in 0usize..130,
    ) {
        let rules: Vec<Rule> = keys.iter().map(|k| {
            let mut r = Rule::empty();
            if let Some(k) = k {
                if by_port {
                    r.matches.push(Match::Ports { module: "tcp".into(), sport: None, dport: Some(Neg::new(false, PortSpec { lo: 80 + *k as u16, hi: 80 + *k as u16 })) });
                } else {
                    r.dst = Some(Neg::new(false, IpAddr::V4(Ipv4Addr::new(10, 0, 0, *k)).into()));
                }
            }
            r
        }).collect();
        let mut t = Table::new("nat");
        t.chains.push(Chain { name: "X".into(), policy: None, counters: Counters::default(), rules });
        let p = Program::compile(&Ruleset { tables: vec![t] }, Family::V4);
        let pin = keys.iter().filter(|k| k.is_some()).count();
        let key = p.index_key(0, 0);
        prop_assert_eq!(key.is_some(), pin * 2 >= keys.len());
        let (ip, port) = (IpAddr::V4(Ipv4Addr::new(10, 0, 0, dst)), 80 + dst as u16);
        let from = from.min(keys.len());
        let next = p.next_candidate(0, 0, from, ip, port);
        let Some(key) = key else {
            prop_assert_eq!(next, from);
            return Ok(());
        };
        prop_assert_eq!(key, if by_port { IndexKey::Dport } else { IndexKey::Dst });
        let want = if by_port { port as u64 } else { u32::from(Ipv4Addr::new(10, 0, 0, dst)) as u64 };
        let can_match = |i: usize| rule_key(key, p.rule(0, 0, i)).is_none_or(|k| k == want);
        prop_assert!((from..next).all(|i| !can_match(i)));
        prop_assert!(next == keys.len() || can_match(next));
    }
}

/// Live heap bytes of this test binary (the program's retained size, not an estimate).
struct Counting;
static LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
// SAFETY: forwards every call to the system allocator unchanged; only counts sizes.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: the caller's layout, forwarded.
        unsafe { std::alloc::System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        LIVE.fetch_sub(l.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: `p` came from `alloc` with this layout.
        unsafe { std::alloc::System.dealloc(p, l) }
    }
}
#[global_allocator]
static ALLOC: Counting = Counting;

/// `cargo test --release -p proxyscope-core --test program -- --ignored --nocapture`: the
/// program of `proxyscope bench`'s cluster (10,000 Services x 10 endpoints): retained heap and
/// the best of five parses (the criterion numbers are in `benches/iptables.rs`).
#[test]
#[ignore]
fn scale_numbers() {
    let n: usize = std::env::var("SERVICES").map_or(10_000, |v| v.parse().unwrap());
    let yaml = proxyscope_core::generate::large_cluster(n, 10);
    let s = proxyscope_core::api::load_scenario(&yaml)
        .expect("generated")
        .scenario;
    let fr = proxyscope_core::proxier::iptables::generate(&s, Family::V4);
    let saved = proxyscope_core::proxier::iptables::saved_text(&fr);
    let live = || LIVE.load(std::sync::atomic::Ordering::Relaxed);
    let before = live();
    let (p, _) = Program::parse(&saved, Family::V4);
    let held = live() - before;
    println!(
        "{} rules, {:.1} MB dump: program {:.1} MB ({:.1} B/rule; heap_bytes {:.1} MB)",
        p.rule_count(),
        saved.len() as f64 / 1e6,
        held as f64 / 1e6,
        held as f64 / p.rule_count() as f64,
        p.heap_bytes() as f64 / 1e6
    );
    drop(p);
    // PROFILE=n: only parse into programs, n times (for `perf record` / `perf stat`).
    if let Ok(n) = std::env::var("PROFILE") {
        for _ in 0..n.parse().unwrap() {
            drop(std::hint::black_box(Program::parse(&saved, Family::V4)));
        }
        return;
    }
    let best = |f: &dyn Fn()| {
        (0..5)
            .map(|_| {
                let t = std::time::Instant::now();
                f();
                t.elapsed()
            })
            .min()
            .unwrap()
    };
    let tp = best(&|| drop(std::hint::black_box(Program::parse(&saved, Family::V4))));
    let tr = best(&|| drop(std::hint::black_box(parse(&saved, Family::V4))));
    println!("parse_program {tp:?}, parse {tr:?}");
}
