//! `ipset save` / `ipset list`: the expected text is what the real ipset v7.17 printed on this
//! machine's kernel (sets created with kube-proxy's set types and options, then destroyed), not
//! what our printer produces.

use proptest::prelude::*;
use proxyscope_core::ipvs::ipset::{
    Element, IpSet, Member, Opt, parse_list, parse_save, print_list, print_save,
};

/// `ipset save` after:
/// `ipset create PSXT-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536 comment`,
/// `ipset add PSXT-CLUSTER-IP 10.96.0.1,tcp:443 comment "Kubernetes service cluster ip + ..."`,
/// `ipset add PSXT-NODE-PORT-TCP 31000 comment "nodeport"` (bitmap:port range 0-65535 comment),
/// `ipset add PSXT-LB-SRC-CIDR 192.0.2.11,tcp:80,198.51.100.7/32` (printed without /32),
/// `ipset add PSXT-T 10.0.0.2,80` (printed as tcp:80) in a `timeout 300 counters` set, ...
const REAL_SAVE: &str = r#"create PSXT-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536 comment bucketsize 12 initval 0x0a5ddbb1
add PSXT-CLUSTER-IP 10.96.0.1,tcp:443 comment "Kubernetes service cluster ip + port for masquerade purpose"
add PSXT-CLUSTER-IP 10.96.0.10,tcp:53
add PSXT-CLUSTER-IP 10.96.0.10,udp:53
create PSXT-LOOP-BACK hash:ip,port,ip family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0xc4469fec
add PSXT-LOOP-BACK 10.244.1.5,tcp:8080,10.244.1.5
create PSXT-NODE-PORT-TCP bitmap:port range 0-65535 comment
add PSXT-NODE-PORT-TCP 30080
add PSXT-NODE-PORT-TCP 31000 comment "nodeport"
create PSXT-LB-SRC-CIDR hash:ip,port,net family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0xa3a471e3
add PSXT-LB-SRC-CIDR 192.0.2.11,tcp:80,198.51.100.7
add PSXT-LB-SRC-CIDR 192.0.2.10,tcp:80,198.51.100.0/24
add PSXT-LB-SRC-CIDR 192.0.2.12,udp:53,10.0.0.0/8
create PSXT-IPVS-IPS hash:ip family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x5a15ccb3
add PSXT-IPVS-IPS 10.96.0.1
create PSXT-V6 hash:ip,port family inet6 hashsize 1024 maxelem 65536 bucketsize 12 initval 0xcff492a6
add PSXT-V6 fd00::1,tcp:443
create PSXT-EMPTY hash:ip,port family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0xc2db6666
create PSXT-T hash:ip,port family inet hashsize 1024 maxelem 65536 timeout 300 counters bucketsize 12 initval 0xd0d60940
add PSXT-T 10.0.0.2,tcp:80 timeout 296 packets 0 bytes 0
add PSXT-T 10.0.0.1,sctp:99 timeout 96 packets 5 bytes 700
"#;

/// `ipset list` of the same sets, a few seconds earlier (timeouts differ by 3 s).
const REAL_LIST: &str = r#"Name: PSXT-CLUSTER-IP
Type: hash:ip,port
Revision: 7
Header: family inet hashsize 1024 maxelem 65536 comment bucketsize 12 initval 0x0a5ddbb1
Size in memory: 484
References: 0
Number of entries: 3
Members:
10.96.0.1,tcp:443 comment "Kubernetes service cluster ip + port for masquerade purpose"
10.96.0.10,tcp:53
10.96.0.10,udp:53

Name: PSXT-LOOP-BACK
Type: hash:ip,port,ip
Revision: 6
Header: family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0xc4469fec
Size in memory: 264
References: 0
Number of entries: 1
Members:
10.244.1.5,tcp:8080,10.244.1.5

Name: PSXT-NODE-PORT-TCP
Type: bitmap:port
Revision: 3
Header: range 0-65535 comment
Size in memory: 532577
References: 0
Number of entries: 2
Members:
30080
31000 comment "nodeport"

Name: PSXT-LB-SRC-CIDR
Type: hash:ip,port,net
Revision: 8
Header: family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0xa3a471e3
Size in memory: 632
References: 0
Number of entries: 3
Members:
192.0.2.11,tcp:80,198.51.100.7
192.0.2.10,tcp:80,198.51.100.0/24
192.0.2.12,udp:53,10.0.0.0/8

Name: PSXT-IPVS-IPS
Type: hash:ip
Revision: 6
Header: family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x5a15ccb3
Size in memory: 256
References: 0
Number of entries: 1
Members:
10.96.0.1

Name: PSXT-V6
Type: hash:ip,port
Revision: 7
Header: family inet6 hashsize 1024 maxelem 65536 bucketsize 12 initval 0xcff492a6
Size in memory: 304
References: 0
Number of entries: 1
Members:
fd00::1,tcp:443

Name: PSXT-EMPTY
Type: hash:ip,port
Revision: 7
Header: family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0xc2db6666
Size in memory: 216
References: 0
Number of entries: 0
Members:

Name: PSXT-T
Type: hash:ip,port
Revision: 7
Header: family inet hashsize 1024 maxelem 65536 timeout 300 counters bucketsize 12 initval 0xd0d60940
Size in memory: 408
References: 0
Number of entries: 2
Members:
10.0.0.2,tcp:80 timeout 296 packets 0 bytes 0
10.0.0.1,sctp:99 timeout 96 packets 5 bytes 700
"#;

#[test]
fn real_save_output_parses_and_prints_back_byte_for_byte() {
    let p = parse_save(REAL_SAVE);
    assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
    assert_eq!(p.sets.len(), 8);
    assert_eq!(print_save(&p.sets), REAL_SAVE);
    let lb = p
        .sets
        .iter()
        .find(|s| s.name == "PSXT-LB-SRC-CIDR")
        .unwrap();
    assert_eq!(
        lb.members[0].elem,
        Element::IpPortNet {
            ip: "192.0.2.11".parse().unwrap(),
            proto: "tcp".into(),
            port: 80,
            net: "198.51.100.7".parse().unwrap(),
            prefix: 32
        }
    );
}

#[test]
fn real_list_output_parses_and_prints_back_byte_for_byte() {
    let p = parse_list(REAL_LIST);
    assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
    assert_eq!(p.sets.len(), 8);
    assert_eq!(print_list(&p.sets), REAL_LIST);
    let np = p
        .sets
        .iter()
        .find(|s| s.name == "PSXT-NODE-PORT-TCP")
        .unwrap();
    assert_eq!(
        (np.revision, np.size_in_memory, np.references),
        (Some(3), Some(532577), Some(0))
    );
    assert_eq!(
        np.members[1].opts,
        [Opt {
            key: "comment".into(),
            value: Some("nodeport".into())
        }]
    );
}

#[test]
fn a_set_built_in_code_prints_like_the_real_tool() {
    // The PSXT-CLUSTER-IP lines of REAL_SAVE, rebuilt from values.
    let ip = |s: &str| s.parse().unwrap();
    let opt = |k: &str, v: Option<&str>| Opt {
        key: k.into(),
        value: v.map(String::from),
    };
    let set = IpSet {
        name: "PSXT-CLUSTER-IP".into(),
        set_type: "hash:ip,port".into(),
        header: vec![
            opt("family", Some("inet")),
            opt("hashsize", Some("1024")),
            opt("maxelem", Some("65536")),
            opt("comment", None),
            opt("bucketsize", Some("12")),
            opt("initval", Some("0x0a5ddbb1")),
        ],
        revision: None,
        size_in_memory: None,
        references: None,
        members: vec![
            Member {
                elem: Element::IpPort {
                    ip: ip("10.96.0.1"),
                    proto: "tcp".into(),
                    port: 443,
                },
                opts: vec![opt(
                    "comment",
                    Some("Kubernetes service cluster ip + port for masquerade purpose"),
                )],
            },
            Member {
                elem: Element::IpPort {
                    ip: ip("10.96.0.10"),
                    proto: "tcp".into(),
                    port: 53,
                },
                opts: vec![],
            },
            Member {
                elem: Element::IpPort {
                    ip: ip("10.96.0.10"),
                    proto: "udp".into(),
                    port: 53,
                },
                opts: vec![],
            },
        ],
    };
    let want: String = REAL_SAVE
        .lines()
        .take(4)
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(print_save(&[set]), want);
}

#[test]
fn parse_errors_carry_line_numbers() {
    let text = "create A hash:ip,port family inet\nadd A 10.0.0.1,tcp:99999\nadd B 10.0.0.1\nadd A 10.0.0.2,tcp:80 comment \"open\nfrobnicate\n";
    let p = parse_save(text);
    let d: Vec<String> = p.diagnostics.iter().map(|d| d.to_string()).collect();
    assert_eq!(d.len(), 4, "{d:?}");
    assert!(d[0].starts_with("line 2: \"99999\" is not a port"), "{d:?}");
    assert!(
        d[1].starts_with("line 3: add to set \"B\" before its create line"),
        "{d:?}"
    );
    assert!(
        d[2].starts_with("line 4: unterminated quoted string"),
        "{d:?}"
    );
    assert!(d[3].starts_with("line 5: expected"), "{d:?}");
    let p = parse_list("Name: X\nType: hash:ip\nNumber of entries: 2\nMembers:\n10.0.0.1\n");
    assert_eq!(p.diagnostics.len(), 1);
    assert_eq!(p.diagnostics[0].line, 3);
}

fn arb_set() -> impl Strategy<Value = IpSet> {
    let v4 = any::<[u8; 4]>().prop_map(std::net::IpAddr::from);
    let proto = prop::sample::select(vec!["tcp", "udp", "sctp"]);
    let member = (
        v4.clone(),
        proto,
        any::<u16>(),
        v4,
        0u8..=32,
        prop::option::of("[a-z +-]{1,20}"),
    )
        .prop_map(|(ip, proto, port, net, prefix, comment)| Member {
            elem: Element::IpPortNet {
                ip,
                proto: proto.into(),
                port,
                net,
                prefix,
            },
            opts: comment
                .map(|c| {
                    vec![Opt {
                        key: "comment".into(),
                        value: Some(c),
                    }]
                })
                .unwrap_or_default(),
        });
    ("[A-Z][A-Z0-9-]{0,20}", prop::collection::vec(member, 0..6)).prop_map(|(name, members)| {
        IpSet {
            name,
            set_type: "hash:ip,port,net".into(),
            header: vec![
                Opt {
                    key: "family".into(),
                    value: Some("inet".into()),
                },
                Opt {
                    key: "comment".into(),
                    value: None,
                },
            ],
            revision: Some(8),
            size_in_memory: Some(520),
            references: Some(1),
            members,
        }
    })
}

fn unique(mut v: Vec<IpSet>) -> Vec<IpSet> {
    let mut seen = std::collections::HashSet::new();
    v.retain(|s| seen.insert(s.name.clone()));
    v
}

proptest! {
    #[test]
    fn save_round_trip(sets in prop::collection::vec(arb_set(), 0..4)) {
        let sets = unique(sets);
        let p = parse_save(&print_save(&sets));
        prop_assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
        let want: Vec<IpSet> = sets.iter().cloned().map(|mut s| { s.revision = None; s.size_in_memory = None; s.references = None; s }).collect();
        prop_assert_eq!(p.sets, want);
    }

    #[test]
    fn list_round_trip(sets in prop::collection::vec(arb_set(), 0..4)) {
        let sets = unique(sets);
        let p = parse_list(&print_list(&sets));
        prop_assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
        prop_assert_eq!(p.sets, sets);
    }

    #[test]
    fn parsers_never_panic(text in "[-a-zA-Z0-9 .,:/\"\n]{0,200}") {
        let _ = parse_save(&text);
        let _ = parse_list(&text);
    }
}
