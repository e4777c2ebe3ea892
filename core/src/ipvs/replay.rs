//! The `ipvs-scheduler-vectors/1` replay format: a serde model, a runner that fills in what the
//! simulated kernel picks, and a checker that compares with the file's expectations.
//!
//! Only this module knows the wire format; the simulation itself is [`VirtualService`].

use super::sched::{Decision, RecordedRandom};
use super::service::{
    ConnKey, Connection, SchedFlags, SchedulerKind, Sysctl, Time, VirtualService,
};
use crate::trace::Proto;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;

/// The only format this module reads.
pub const FORMAT: &str = "ipvs-scheduler-vectors/1";

/// A whole replay document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayDoc {
    pub format: String,
    /// Informational: the scheduler the file is about (each scenario names its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_reference: Option<String>,
    pub scenarios: Vec<Scenario>,
    /// Unknown top-level keys, kept as they are.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub service: ServiceSpec,
    pub events: Vec<Event>,
    /// The list after the last event, newest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_servers: Option<Vec<FinalServer>>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub vip: SocketAddr,
    #[serde(default = "default_proto")]
    pub protocol: Proto,
    pub scheduler: SchedulerKind,
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags_value: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sysctl: Option<SysctlSpec>,
}

fn default_proto() -> Proto {
    Proto::Tcp
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SysctlSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lblc_expiration: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lblcr_expiration: Option<f64>,
}

/// One recorded `get_random_u32_below(below)` result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandDraw {
    pub below: u32,
    pub value: u32,
}

/// Present-but-null must stay distinct from absent for `expect`.
fn some_option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<SocketAddr>>, D::Error> {
    Option::<SocketAddr>::deserialize(d).map(Some)
}

/// One line of the stream, tagged by `op`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Event {
    AddServer {
        server: SocketAddr,
        weight: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        u_threshold: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        l_threshold: Option<u32>,
        t: f64,
    },
    EditServer {
        server: SocketAddr,
        weight: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        u_threshold: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        l_threshold: Option<u32>,
        t: f64,
    },
    DelServer {
        server: SocketAddr,
        t: f64,
    },
    SetScheduler {
        scheduler: SchedulerKind,
        #[serde(default)]
        flags: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        flags_value: Option<u32>,
        t: f64,
    },
    SetOverload {
        server: SocketAddr,
        value: bool,
        t: f64,
    },
    Conn {
        id: String,
        client: SocketAddr,
        dst: SocketAddr,
        #[serde(default)]
        establish: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        proto: Option<Proto>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rand: Option<Vec<RandDraw>>,
        t: f64,
        /// The server the kernel picks, `null` for none; absent = not known yet.
        #[serde(
            default,
            deserialize_with = "some_option",
            skip_serializing_if = "Option::is_none"
        )]
        expect: Option<Option<SocketAddr>>,
    },
    /// Inactive -> active; nothing for a UDP connection (the kernel's UDP state table never
    /// counts a connection as active).
    Establish {
        id: String,
        t: f64,
    },
    Fin {
        id: String,
        t: f64,
    },
    Close {
        id: String,
        t: f64,
    },
}

/// `Event` as read: externally tagged (`{"conn": {...}}`) so a bad field keeps its path
/// (an internally tagged enum buffers the object and loses it).
#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum EventIn {
    AddServer {
        server: SocketAddr,
        weight: i64,
        #[serde(default)]
        u_threshold: Option<u32>,
        #[serde(default)]
        l_threshold: Option<u32>,
        t: f64,
    },
    EditServer {
        server: SocketAddr,
        weight: i64,
        #[serde(default)]
        u_threshold: Option<u32>,
        #[serde(default)]
        l_threshold: Option<u32>,
        t: f64,
    },
    DelServer {
        server: SocketAddr,
        t: f64,
    },
    SetScheduler {
        scheduler: SchedulerKind,
        #[serde(default)]
        flags: Vec<String>,
        #[serde(default)]
        flags_value: Option<u32>,
        t: f64,
    },
    SetOverload {
        server: SocketAddr,
        value: bool,
        t: f64,
    },
    Conn {
        id: String,
        client: SocketAddr,
        dst: SocketAddr,
        #[serde(default)]
        establish: bool,
        #[serde(default)]
        proto: Option<Proto>,
        #[serde(default)]
        rand: Option<Vec<RandDraw>>,
        t: f64,
        #[serde(default, deserialize_with = "some_option")]
        expect: Option<Option<SocketAddr>>,
    },
    Establish {
        id: String,
        t: f64,
    },
    Fin {
        id: String,
        t: f64,
    },
    Close {
        id: String,
        t: f64,
    },
}

impl From<EventIn> for Event {
    fn from(e: EventIn) -> Event {
        match e {
            EventIn::AddServer {
                server,
                weight,
                u_threshold,
                l_threshold,
                t,
            } => Event::AddServer {
                server,
                weight,
                u_threshold,
                l_threshold,
                t,
            },
            EventIn::EditServer {
                server,
                weight,
                u_threshold,
                l_threshold,
                t,
            } => Event::EditServer {
                server,
                weight,
                u_threshold,
                l_threshold,
                t,
            },
            EventIn::DelServer { server, t } => Event::DelServer { server, t },
            EventIn::SetScheduler {
                scheduler,
                flags,
                flags_value,
                t,
            } => Event::SetScheduler {
                scheduler,
                flags,
                flags_value,
                t,
            },
            EventIn::SetOverload { server, value, t } => Event::SetOverload { server, value, t },
            EventIn::Conn {
                id,
                client,
                dst,
                establish,
                proto,
                rand,
                t,
                expect,
            } => Event::Conn {
                id,
                client,
                dst,
                establish,
                proto,
                rand,
                t,
                expect,
            },
            EventIn::Establish { id, t } => Event::Establish { id, t },
            EventIn::Fin { id, t } => Event::Fin { id, t },
            EventIn::Close { id, t } => Event::Close { id, t },
        }
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Event, D::Error> {
        use serde::de::Error;
        use serde_json::Value;
        let mut map = serde_json::Map::<String, Value>::deserialize(d)?;
        let op = match map.remove("op") {
            Some(Value::String(s)) => s,
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "field \"op\": expected a string, found {other}"
                )));
            }
            None => return Err(D::Error::custom("missing field \"op\"")),
        };
        let mut outer = serde_json::Map::new();
        outer.insert(op, Value::Object(map));
        serde_path_to_error::deserialize::<_, EventIn>(Value::Object(outer))
            .map(Event::from)
            .map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                match path.split_once('.') {
                    Some((_, field)) if !field.is_empty() => {
                        D::Error::custom(format!("field {field:?}: {inner}"))
                    }
                    _ => D::Error::custom(inner),
                }
            })
    }
}

impl Event {
    pub fn t(&self) -> f64 {
        match self {
            Event::AddServer { t, .. }
            | Event::EditServer { t, .. }
            | Event::DelServer { t, .. }
            | Event::SetScheduler { t, .. }
            | Event::SetOverload { t, .. }
            | Event::Conn { t, .. }
            | Event::Establish { t, .. }
            | Event::Fin { t, .. }
            | Event::Close { t, .. } => *t,
        }
    }

    pub fn op(&self) -> &'static str {
        match self {
            Event::AddServer { .. } => "add_server",
            Event::EditServer { .. } => "edit_server",
            Event::DelServer { .. } => "del_server",
            Event::SetScheduler { .. } => "set_scheduler",
            Event::SetOverload { .. } => "set_overload",
            Event::Conn { .. } => "conn",
            Event::Establish { .. } => "establish",
            Event::Fin { .. } => "fin",
            Event::Close { .. } => "close",
        }
    }
}

/// A server of `final_servers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinalServer {
    pub server: SocketAddr,
    pub weight: i32,
    pub activeconns: i32,
    pub inactconns: i32,
    pub overloaded: bool,
}

impl fmt::Display for FinalServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} weight {} active {} inactive {}{}",
            self.server,
            self.weight,
            self.activeconns,
            self.inactconns,
            if self.overloaded { " OVERLOADED" } else { "" }
        )
    }
}

/// Bad input: where (scenario, event, field) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayError {
    /// e.g. `scenario #0 "rr-basic", event #3 (conn), field "weight"` or a JSON path.
    pub location: String,
    pub message: String,
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

impl std::error::Error for ReplayError {}

/// Parse a document, naming the JSON path of the first problem
/// (e.g. `scenarios[0].events[3].client`) and its line/column.
pub fn parse(text: &str) -> Result<ReplayDoc, ReplayError> {
    let de = &mut serde_json::Deserializer::from_str(text);
    let doc: ReplayDoc = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        ReplayError {
            location: if path == "." { "document".into() } else { path },
            message: inner.to_string(),
        }
    })?;
    if doc.format != FORMAT {
        return Err(ReplayError {
            location: "format".into(),
            message: format!("expected {FORMAT:?}, found {:?}", doc.format),
        });
    }
    Ok(doc)
}

/// Serialise like the shared examples: one-space indentation, fields in format order.
pub fn to_json(doc: &ReplayDoc) -> String {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b" ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    doc.serialize(&mut ser)
        .expect("a ReplayDoc always serialises");
    let mut s = String::from_utf8(out).expect("serde_json writes UTF-8");
    s.push('\n');
    s
}

/// What the simulator did for one `conn` event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnResult {
    pub event: usize,
    pub id: String,
    pub t: f64,
    pub decision: Decision,
}

/// The simulated outcome of one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub conns: Vec<ConnResult>,
    pub final_servers: Vec<FinalServer>,
    /// The service after the last event (list, trash, scheduler state).
    pub service: VirtualService,
}

struct Loc<'a> {
    index: usize,
    name: &'a str,
}

impl Loc<'_> {
    fn scenario(&self, field: &str, message: impl Into<String>) -> ReplayError {
        ReplayError {
            location: format!("scenario #{} {:?}, field {field:?}", self.index, self.name),
            message: message.into(),
        }
    }
    fn event(&self, i: usize, ev: &Event, field: &str, message: impl Into<String>) -> ReplayError {
        let what = match ev {
            Event::Conn { id, .. }
            | Event::Establish { id, .. }
            | Event::Fin { id, .. }
            | Event::Close { id, .. } => format!("{} {id:?}", ev.op()),
            _ => ev.op().to_string(),
        };
        ReplayError {
            location: format!(
                "scenario #{} {:?}, event #{i} ({what}), field {field:?}",
                self.index, self.name
            ),
            message: message.into(),
        }
    }
}

fn flags_of(
    names: &[String],
    value: Option<u32>,
    err: impl Fn(&str, String) -> ReplayError,
) -> Result<SchedFlags, ReplayError> {
    let f = SchedFlags::from_names(names).map_err(|m| err("flags", m))?;
    if let Some(v) = value {
        if v & !SchedFlags::MASK != 0 {
            return Err(err(
                "flags_value",
                format!("{v:#x} has bits outside flag-1..3 (0x08|0x10|0x20)"),
            ));
        }
        if !names.is_empty() && v != f.0 {
            return Err(err(
                "flags_value",
                format!(
                    "{v} ({v:#x}) disagrees with flags {names:?} = {} ({:#x})",
                    f.0, f.0
                ),
            ));
        }
        return Ok(SchedFlags(v));
    }
    Ok(f)
}

fn weight_of(w: i64, err: impl Fn(String) -> ReplayError) -> Result<i32, ReplayError> {
    i32::try_from(w).ok().filter(|w| *w >= 0).ok_or_else(|| {
        err(format!(
            "{w} is not a weight (0..=2147483647; ipvsadm takes 0..=65535)"
        ))
    })
}

/// Run one scenario through the simulated kernel.
pub fn run_scenario(index: usize, sc: &Scenario) -> Result<ScenarioResult, ReplayError> {
    let loc = Loc {
        index,
        name: &sc.name,
    };
    let spec = &sc.service;
    let flags = flags_of(&spec.flags, spec.flags_value, |f, m| {
        loc.scenario(&format!("service.{f}"), m)
    })?;
    let mut sysctl = Sysctl::default();
    if let Some(s) = &spec.sysctl {
        for (name, v, slot) in [
            (
                "lblc_expiration",
                s.lblc_expiration,
                &mut sysctl.lblc_expiration,
            ),
            (
                "lblcr_expiration",
                s.lblcr_expiration,
                &mut sysctl.lblcr_expiration,
            ),
        ] {
            if let Some(v) = v {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(loc.scenario(
                        &format!("service.sysctl.{name}"),
                        format!("{v} is not a duration in seconds"),
                    ));
                }
                *slot = v;
            }
        }
    }
    let mut svc = VirtualService::new(spec.vip, spec.protocol, spec.scheduler, flags, sysctl, 0.0);
    let mut live: HashMap<&str, Connection> = HashMap::new();
    let mut conns = Vec::new();
    let mut last_t: Time = 0.0;
    for (i, ev) in sc.events.iter().enumerate() {
        let t = ev.t();
        if !t.is_finite() || t < last_t {
            return Err(loc.event(i, ev, "t", format!("{t} goes back in time (previous event at {last_t}); times must be non-decreasing seconds")));
        }
        last_t = t;
        let svc_err =
            |field: &str, e: super::service::ServiceError| loc.event(i, ev, field, e.to_string());
        match ev {
            Event::AddServer {
                server,
                weight,
                u_threshold,
                l_threshold,
                ..
            } => {
                let w = weight_of(*weight, |m| loc.event(i, ev, "weight", m))?;
                svc.add_dest(
                    *server,
                    w,
                    u_threshold.unwrap_or(0),
                    l_threshold.unwrap_or(0),
                    t,
                )
                .map_err(|e| svc_err("server", e))?;
            }
            Event::EditServer {
                server,
                weight,
                u_threshold,
                l_threshold,
                ..
            } => {
                let w = weight_of(*weight, |m| loc.event(i, ev, "weight", m))?;
                let id = svc.find_linked(*server).ok_or_else(|| {
                    loc.event(
                        i,
                        ev,
                        "server",
                        format!("no server {server} in the service (ENOENT)"),
                    )
                })?;
                let d = svc.dest(id);
                // The replay format keeps absent thresholds unchanged.
                let u = u_threshold.unwrap_or(d.u_threshold);
                let l = l_threshold.unwrap_or(d.l_threshold);
                svc.edit_dest(*server, w, u, l, t)
                    .map_err(|e| svc_err("server", e))?;
            }
            Event::DelServer { server, .. } => {
                svc.del_dest(*server, t).map_err(|e| svc_err("server", e))?;
            }
            Event::SetScheduler {
                scheduler,
                flags,
                flags_value,
                ..
            } => {
                let f = flags_of(flags, *flags_value, |f, m| loc.event(i, ev, f, m))?;
                svc.set_scheduler(*scheduler, f, t);
            }
            Event::SetOverload { server, value, .. } => {
                svc.set_overload(*server, *value)
                    .map_err(|e| svc_err("server", e))?;
            }
            Event::Conn {
                id,
                client,
                dst,
                establish,
                proto,
                rand,
                ..
            } => {
                if live.contains_key(id.as_str()) {
                    return Err(loc.event(i, ev, "id", "a live connection already has this id"));
                }
                if client.is_ipv6() != spec.vip.is_ipv6() || dst.is_ipv6() != spec.vip.is_ipv6() {
                    return Err(loc.event(
                        i,
                        ev,
                        "client",
                        "client and dst must be of the service's address family",
                    ));
                }
                let key = ConnKey {
                    proto: proto.unwrap_or(spec.protocol),
                    client: *client,
                    dst: *dst,
                };
                let draws = rand
                    .as_deref()
                    .unwrap_or(&[])
                    .iter()
                    .map(|r| (r.below, r.value))
                    .collect();
                let mut rng = RecordedRandom::new(draws);
                let decision = svc
                    .schedule(&key, t, &mut rng)
                    .map_err(|e| loc.event(i, ev, "rand", e.to_string()))?;
                if rng.remaining() > 0 {
                    return Err(loc.event(
                        i,
                        ev,
                        "rand",
                        format!(
                            "{} random values recorded but the scheduler used {}",
                            rng.draws.len(),
                            rng.next
                        ),
                    ));
                }
                if let Some(d) = decision.dest {
                    let mut c = svc.bind(d, key.proto);
                    if *establish {
                        svc.establish(&mut c);
                    }
                    live.insert(id.as_str(), c);
                }
                conns.push(ConnResult {
                    event: i,
                    id: id.clone(),
                    t,
                    decision,
                });
            }
            Event::Establish { id, .. } | Event::Fin { id, .. } | Event::Close { id, .. } => {
                let Some(c) = live.get_mut(id.as_str()) else {
                    return Err(loc.event(i, ev, "id", "no live connection with this id"));
                };
                match ev {
                    Event::Establish { .. } => svc.establish(c),
                    Event::Fin { .. } => svc.leave_established(c),
                    _ => {
                        let c = live.remove(id.as_str()).expect("just found");
                        svc.free(c);
                    }
                }
            }
        }
    }
    let final_servers = svc
        .iter()
        .map(|(_, d)| FinalServer {
            server: d.addr,
            weight: d.weight,
            activeconns: d.activeconns,
            inactconns: d.inactconns,
            overloaded: d.overloaded,
        })
        .collect();
    Ok(ScenarioResult {
        conns,
        final_servers,
        service: svc,
    })
}

/// Run every scenario and return the document with each `conn`'s `expect` and each scenario's
/// `final_servers` set to what the simulator computed.
pub fn fill(doc: &ReplayDoc) -> Result<ReplayDoc, ReplayError> {
    let mut out = doc.clone();
    for (si, sc) in out.scenarios.iter_mut().enumerate() {
        let r = run_scenario(si, sc)?;
        for c in &r.conns {
            if let Event::Conn { expect, .. } = &mut sc.events[c.event] {
                *expect = Some(c.decision.server);
            }
        }
        sc.final_servers = Some(r.final_servers);
    }
    Ok(out)
}

/// One difference between a file's expectations and the simulator.
#[derive(Debug, Clone, PartialEq)]
pub enum Mismatch {
    Conn {
        scenario: usize,
        name: String,
        event: usize,
        id: String,
        t: f64,
        /// `None` = the file has no `expect`.
        expected: Option<Option<SocketAddr>>,
        got: Option<SocketAddr>,
        reason: &'static str,
    },
    FinalServers {
        scenario: usize,
        name: String,
        expected: Option<Vec<FinalServer>>,
        got: Vec<FinalServer>,
    },
}

fn show(a: Option<SocketAddr>) -> String {
    a.map_or_else(|| "no destination (null)".into(), |a| a.to_string())
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Conn {
                scenario,
                name,
                event,
                id,
                t,
                expected,
                got,
                reason,
            } => {
                write!(
                    f,
                    "scenario #{scenario} {name:?}, event #{event} (conn {id:?} at t={t}): "
                )?;
                match expected {
                    None => write!(
                        f,
                        "no \"expect\" in the file; simulator chose {}",
                        show(*got)
                    )?,
                    Some(e) => write!(f, "expected {}, simulator chose {}", show(*e), show(*got))?,
                }
                write!(f, "\n    why: {reason}")
            }
            Mismatch::FinalServers {
                scenario,
                name,
                expected,
                got,
            } => {
                writeln!(
                    f,
                    "scenario #{scenario} {name:?}, final_servers differ (list order, newest first):"
                )?;
                let exp = expected.as_deref().unwrap_or(&[]);
                if expected.is_none() {
                    writeln!(f, "    (the file has no final_servers)")?;
                }
                for k in 0..exp.len().max(got.len()) {
                    let e = exp.get(k);
                    let g = got.get(k);
                    let mark = if e == g { ' ' } else { '!' };
                    let es = e.map_or("-".to_string(), |s| s.to_string());
                    let gs = g.map_or("-".to_string(), |s| s.to_string());
                    write!(f, "  {mark} #{k}: expected {es}; simulator {gs}")?;
                    if k + 1 < exp.len().max(got.len()) {
                        writeln!(f)?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// The result of [`check`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CheckReport {
    pub scenarios: usize,
    pub conns: usize,
    pub mismatches: Vec<Mismatch>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.mismatches.is_empty()
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for m in &self.mismatches {
            writeln!(f, "{m}")?;
        }
        write!(
            f,
            "{} scenario(s), {} connection(s): {}",
            self.scenarios,
            self.conns,
            if self.ok() {
                "all match".to_string()
            } else {
                format!("{} mismatch(es)", self.mismatches.len())
            }
        )
    }
}

/// Run every scenario and compare with the expectations in the file.
pub fn check(doc: &ReplayDoc) -> Result<CheckReport, ReplayError> {
    let mut rep = CheckReport {
        scenarios: doc.scenarios.len(),
        ..Default::default()
    };
    for (si, sc) in doc.scenarios.iter().enumerate() {
        let r = run_scenario(si, sc)?;
        for c in &r.conns {
            rep.conns += 1;
            let Event::Conn { expect, .. } = &sc.events[c.event] else {
                unreachable!()
            };
            if *expect != Some(c.decision.server) {
                rep.mismatches.push(Mismatch::Conn {
                    scenario: si,
                    name: sc.name.clone(),
                    event: c.event,
                    id: c.id.clone(),
                    t: c.t,
                    expected: *expect,
                    got: c.decision.server,
                    reason: c.decision.reason,
                });
            }
        }
        if sc.final_servers.as_ref() != Some(&r.final_servers) {
            rep.mismatches.push(Mismatch::FinalServers {
                scenario: si,
                name: sc.name.clone(),
                expected: sc.final_servers.clone(),
                got: r.final_servers,
            });
        }
    }
    Ok(rep)
}
