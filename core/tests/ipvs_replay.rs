//! The replay format: bad input names its place; semantics of the optional fields; the parser
//! and runner never panic on mangled input.

use proptest::prelude::*;
use proxyscope_core::ipvs::replay::{self, Mismatch};

/// A small valid document; `events` is spliced in.
fn doc(scheduler: &str, flags: &str, events: &str) -> String {
    format!(
        r#"{{"format": "ipvs-scheduler-vectors/1", "scenarios": [{{
            "name": "s", "service": {{"vip": "10.96.0.1:80", "protocol": "tcp",
            "scheduler": "{scheduler}", "flags": [{flags}]}},
            "events": [{events}]}}]}}"#
    )
}

const ADD2: &str = r#"{"op": "add_server", "server": "10.0.1.1:80", "weight": 1, "t": 0},
                      {"op": "add_server", "server": "10.0.1.2:80", "weight": 2, "t": 0}"#;

fn err_of(text: &str) -> String {
    match replay::parse(text) {
        Err(e) => e.to_string(),
        Ok(d) => replay::fill(&d)
            .map(|_| String::new())
            .unwrap_or_else(|e| e.to_string()),
    }
}

#[test]
fn parse_errors_name_the_json_path() {
    let e = err_of(&doc(
        "rr",
        "",
        r#"{"op": "add_sever", "server": "10.0.1.1:80", "weight": 1, "t": 0}"#,
    ));
    assert!(
        e.starts_with("scenarios[0].events[0]: unknown variant `add_sever`"),
        "{e}"
    );
    let e = err_of(&doc(
        "rr",
        "",
        r#"{"op": "add_server", "server": "10.0.1.1:80", "wieght": 1, "t": 0}"#,
    ));
    assert!(
        e.contains("scenarios[0].events[0]: field \"wieght\": unknown field")
            || e.contains("unknown field `wieght`"),
        "{e}"
    );
    let e = err_of(&doc(
        "rr",
        "",
        r#"{"server": "10.0.1.1:80", "weight": 1, "t": 0}"#,
    ));
    assert!(
        e.contains("scenarios[0].events[0]") && e.contains("missing field \"op\""),
        "{e}"
    );
    let e = err_of(&doc("rrr", "", ""));
    assert!(
        e.starts_with("scenarios[0].service.scheduler: unknown variant `rrr`"),
        "{e}"
    );
    let e = err_of(&doc(
        "rr",
        "",
        r#"{"op": "conn", "id": "c", "client": "1.2.3.4", "dst": "10.96.0.1:80", "t": 0}"#,
    ));
    assert!(
        e.contains("scenarios[0].events[0]: field \"client\": invalid socket address"),
        "{e}"
    );
    let e = err_of(r#"{"format": "ipvs-scheduler-vectors/2", "scenarios": []}"#);
    assert!(
        e.starts_with("format: expected \"ipvs-scheduler-vectors/1\""),
        "{e}"
    );
}

#[test]
fn semantic_errors_name_scenario_event_and_field() {
    let e = err_of(&doc("rr", r#""sh-portt""#, ""));
    assert!(
        e.contains(
            "scenario #0 \"s\", field \"service.flags\": unknown scheduler flag \"sh-portt\""
        ),
        "{e}"
    );
    let e = err_of(&doc(
        "rr",
        "",
        &format!(r#"{ADD2}, {{"op": "del_server", "server": "10.0.1.1:80", "t": -1}}"#),
    ));
    assert!(e.contains("event #2 (del_server), field \"t\""), "{e}");
    let e = err_of(&doc(
        "rr",
        "",
        &format!(r#"{ADD2}, {{"op": "close", "id": "nope", "t": 1}}"#),
    ));
    assert!(
        e.contains("event #2 (close \"nope\"), field \"id\": no live connection"),
        "{e}"
    );
    let e = err_of(&doc(
        "rr",
        "",
        r#"{"op": "add_server", "server": "10.0.1.1:80", "weight": -3, "t": 0}"#,
    ));
    assert!(
        e.contains("event #0 (add_server), field \"weight\": -3 is not a weight"),
        "{e}"
    );
    let e = err_of(&doc(
        "rr",
        "",
        r#"{"op": "add_server", "server": "10.0.1.1:80", "weight": 1, "u_threshold": 1, "l_threshold": 2, "t": 0}"#,
    ));
    assert!(e.contains("event #0 (add_server), field \"server\": lower threshold 2 is higher than upper threshold 1 (ERANGE)"), "{e}");
    let conn =
        r#"{"op": "conn", "id": "c1", "client": "192.0.2.1:1", "dst": "10.96.0.1:80", "t": 1}"#;
    let e = err_of(&doc("rr", "", &format!("{ADD2}, {conn}, {conn}")));
    assert!(
        e.contains("event #3 (conn \"c1\"), field \"id\": a live connection already has this id"),
        "{e}"
    );
    let flags = r#"{"format": "ipvs-scheduler-vectors/1", "scenarios": [{"name": "s",
        "service": {"vip": "10.96.0.1:80", "scheduler": "sh", "flags": ["sh-port"], "flags_value": 8},
        "events": []}]}"#;
    assert!(err_of(flags).contains("field \"service.flags_value\": 8 (0x8) disagrees with flags"));
}

#[test]
fn twos_random_values_must_match_what_the_scheduler_draws() {
    // Weights 1 + 2: the kernel draws twice below 4.
    let ok = r#"{"op": "conn", "id": "c1", "client": "192.0.2.1:1", "dst": "10.96.0.1:80", "t": 1,
                 "rand": [{"below": 4, "value": 0}, {"below": 4, "value": 3}]}"#;
    let d = replay::parse(&doc("twos", "", &format!("{ADD2}, {ok}"))).unwrap();
    // r1 = 0 -> first server (list 10.0.1.2 w2, 10.0.1.1 w1): 10.0.1.2.
    // r2 = 3 -> 3-2 = 1, 1-1 = 0 -> 10.0.1.1. Both idle: 1*0 > 2*0? no -> choice 1, 10.0.1.2.
    let filled = replay::fill(&d).unwrap();
    let json = replay::to_json(&filled);
    assert!(json.contains("\"expect\": \"10.0.1.2:80\""), "{json}");

    let three = ok.replace(
        r#"{"below": 4, "value": 3}]"#,
        r#"{"below": 4, "value": 3}, {"below": 4, "value": 1}]"#,
    );
    let e = err_of(&doc("twos", "", &format!("{ADD2}, {three}")));
    assert!(e.contains("event #2 (conn \"c1\"), field \"rand\": 3 random values recorded but the scheduler used 2"), "{e}");
    let wrong = ok.replace("\"below\": 4", "\"below\": 5");
    let e = err_of(&doc("twos", "", &format!("{ADD2}, {wrong}")));
    assert!(e.contains("field \"rand\": random value #1 was recorded for bound 5 but the scheduler asked for a value below 4"), "{e}");
    let none =
        r#"{"op": "conn", "id": "c1", "client": "192.0.2.1:1", "dst": "10.96.0.1:80", "t": 1}"#;
    let e = err_of(&doc("twos", "", &format!("{ADD2}, {none}")));
    assert!(e.contains("field \"rand\""), "{e}");
}

#[test]
fn edit_without_thresholds_keeps_them() {
    // u = 1: the first conn overloads the server; editing only the weight keeps u = 1 (the
    // format's "absent = unchanged"), so the flag stays and the second conn finds nothing.
    let events = r#"{"op": "add_server", "server": "10.0.1.1:80", "weight": 1, "u_threshold": 1, "t": 0},
        {"op": "conn", "id": "c1", "client": "192.0.2.1:1", "dst": "10.96.0.1:80", "t": 1},
        {"op": "edit_server", "server": "10.0.1.1:80", "weight": 2, "t": 2},
        {"op": "conn", "id": "c2", "client": "192.0.2.2:1", "dst": "10.96.0.1:80", "t": 3}"#;
    let d = replay::parse(&doc("rr", "", events)).unwrap();
    let json = replay::to_json(&replay::fill(&d).unwrap());
    assert!(json.contains("\"expect\": \"10.0.1.1:80\""), "{json}");
    assert!(json.contains("\"expect\": null"), "{json}");
    assert!(json.contains("\"overloaded\": true"), "{json}");
}

#[test]
fn missing_expectations_are_reported_by_check() {
    let conn =
        r#"{"op": "conn", "id": "c1", "client": "192.0.2.1:1", "dst": "10.96.0.1:80", "t": 1}"#;
    let d = replay::parse(&doc("rr", "", &format!("{ADD2}, {conn}"))).unwrap();
    let rep = replay::check(&d).unwrap();
    assert_eq!(rep.mismatches.len(), 2, "{rep}");
    assert!(matches!(
        rep.mismatches[0],
        Mismatch::Conn { expected: None, .. }
    ));
    assert!(matches!(
        rep.mismatches[1],
        Mismatch::FinalServers { expected: None, .. }
    ));
    // After fill, the same document checks clean.
    assert!(replay::check(&replay::fill(&d).unwrap()).unwrap().ok());
}

fn sample() -> String {
    let add = r#"{"op": "add_server", "server": "10.0.1.1:80", "weight": 1, "u_threshold": 3, "t": 0},
        {"op": "add_server", "server": "10.0.1.2:80", "weight": 2, "t": 0},
        {"op": "conn", "id": "c1", "client": "192.0.2.1:1", "dst": "10.96.0.1:80", "establish": true, "t": 1},
        {"op": "fin", "id": "c1", "t": 2},
        {"op": "del_server", "server": "10.0.1.2:80", "t": 3},
        {"op": "conn", "id": "c2", "client": "192.0.2.2:1", "dst": "10.96.0.1:80", "t": 4},
        {"op": "set_overload", "server": "10.0.1.1:80", "value": true, "t": 5},
        {"op": "close", "id": "c1", "t": 6},
        {"op": "set_scheduler", "scheduler": "sh", "flags": ["sh-fallback"], "t": 7}"#;
    doc("wlc", "", add)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    /// Truncating or overwriting bytes anywhere gives a value or an error, never a panic.
    #[test]
    fn mangled_documents_never_panic(cut in 0usize..2000, pos in 0usize..2000, byte in any::<u8>()) {
        let mut bytes = sample().into_bytes();
        let p = pos % bytes.len();
        bytes[p] = byte;
        bytes.truncate(cut.max(1).min(bytes.len()));
        if let Ok(text) = String::from_utf8(bytes)
            && let Ok(d) = replay::parse(&text)
        {
            let _ = replay::check(&d);
            let _ = replay::fill(&d);
        }
    }

    /// Any op, any field values: parse then run returns Ok or a located error.
    #[test]
    fn arbitrary_events_run_or_fail_cleanly(
        ops in prop::collection::vec((0u8..9, 0u8..4, 0u32..5, any::<bool>()), 0..30),
        sched in prop::sample::select(vec!["rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"]),
    ) {
        let mut evs = Vec::new();
        for (i, (op, srv, w, b)) in ops.iter().enumerate() {
            let server = format!("10.0.1.{}:80", srv + 1);
            let id = format!("c{}", srv);
            let e = match op {
                0 => format!(r#"{{"op": "add_server", "server": "{server}", "weight": {w}, "t": {i}}}"#),
                1 => format!(r#"{{"op": "edit_server", "server": "{server}", "weight": {w}, "u_threshold": {w}, "t": {i}}}"#),
                2 => format!(r#"{{"op": "del_server", "server": "{server}", "t": {i}}}"#),
                3 => format!(r#"{{"op": "set_overload", "server": "{server}", "value": {b}, "t": {i}}}"#),
                4 => format!(r#"{{"op": "conn", "id": "{id}", "client": "192.0.2.{i}:{w}", "dst": "10.96.0.1:80", "establish": {b}, "t": {i}}}"#),
                5 => format!(r#"{{"op": "establish", "id": "{id}", "t": {i}}}"#),
                6 => format!(r#"{{"op": "fin", "id": "{id}", "t": {i}}}"#),
                7 => format!(r#"{{"op": "close", "id": "{id}", "t": {i}}}"#),
                _ => format!(r#"{{"op": "set_scheduler", "scheduler": "{sched}", "flags": ["flag-{}"], "t": {i}}}"#, w % 3 + 1),
            };
            evs.push(e);
        }
        let text = doc(sched, "", &evs.join(","));
        let d = replay::parse(&text).unwrap();
        match replay::fill(&d) {
            Ok(filled) => prop_assert!(replay::check(&filled).unwrap().ok()),
            Err(e) => prop_assert!(e.location.starts_with("scenario #0 \"s\", event #"), "{}", e),
        }
    }
}

#[test]
fn udp_connections_never_become_active() {
    // ip_vs_proto_udp's state transition only refreshes the timeout: "establish" moves nothing,
    // so UDP load shows under InActConn. lc then sees 1 (inactive) on 10.0.1.2 and picks
    // 10.0.1.1 for the second connection; with TCP it would see 256 and pick the same, but the
    // final counters differ: (active 0, inactive 1) each, not active 1.
    let events = format!(
        r#"{ADD2},
        {{"op": "conn", "id": "c1", "client": "192.0.2.1:1", "dst": "10.96.0.1:80", "establish": true, "proto": "udp", "t": 1}},
        {{"op": "establish", "id": "c1", "t": 2}},
        {{"op": "conn", "id": "c2", "client": "192.0.2.2:1", "dst": "10.96.0.1:80", "establish": true, "proto": "udp", "t": 3}}"#
    );
    let d = replay::parse(&doc("lc", "", &events)).unwrap();
    let filled = replay::fill(&d).unwrap();
    let fs = filled.scenarios[0].final_servers.clone().unwrap();
    let counts: Vec<(String, i32, i32)> = fs
        .iter()
        .map(|f| (f.server.to_string(), f.activeconns, f.inactconns))
        .collect();
    assert_eq!(
        counts,
        [
            ("10.0.1.2:80".to_string(), 0, 1),
            ("10.0.1.1:80".to_string(), 0, 1)
        ]
    );
}
