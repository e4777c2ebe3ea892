//! The web app's only door into core: load a scenario, list clients and targets, trace packets.
//!
//! Everything here runs core for real in the browser (compiled to WASM); the app never shows a
//! canned trace.

use proxyscope_core::trace::{Proto, Trace};
use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::share::SentPacket;

// Pending the lead's `proxyscope_core::api` facade: the same names, answering "not available".
mod api {
    pub use super::shim::*;
}
#[allow(dead_code)]
mod shim {
    use proxyscope_core::trace::{Proto, Trace};
    use std::net::IpAddr;
    pub const DEMO_SCENARIO: &str = "";
    pub struct Scenario;
    pub struct Loaded {
        pub scenario: Scenario,
        pub warnings: Vec<Diagnostic>,
    }
    pub struct Diagnostic {
        pub line: Option<usize>,
        pub location: String,
        pub message: String,
    }
    pub struct TraceRequest {
        pub src: IpAddr,
        pub dst: IpAddr,
        pub dport: u16,
        pub proto: Proto,
        pub sport: Option<u16>,
        pub seed: u64,
        pub now: f64,
    }
    pub struct Session;
    impl Session {
        pub fn new(_: &Scenario) -> Session {
            Session
        }
        pub fn trace(&mut self, _: &TraceRequest) -> Trace {
            unreachable!("no scenario loads without the core api")
        }
    }
    pub struct ClientPreset {
        pub label: String,
        pub src: IpAddr,
    }
    pub struct Target {
        pub label: String,
        pub dst: IpAddr,
        pub dport: u16,
        pub proto: Proto,
    }
    pub fn load_scenario(_: &str) -> Result<Loaded, Vec<Diagnostic>> {
        Err(vec![Diagnostic {
            line: None,
            location: "core".into(),
            message: "core api not available".into(),
        }])
    }
    pub fn client_presets(_: &Scenario) -> Vec<ClientPreset> {
        vec![]
    }
    pub fn service_targets(_: &Scenario) -> Vec<Target> {
        vec![]
    }
}

include!(concat!(env!("OUT_DIR"), "/presets.rs"));

/// The built-in demo (Service `my-service`, ClusterIP 10.104.14.67:80, three Pods).
pub const DEMO: &str = api::DEMO_SCENARIO;

/// A scenario problem, located as precisely as core could.
#[derive(Debug, Clone, PartialEq)]
pub struct Diag {
    pub line: Option<usize>,
    pub location: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Client {
    pub label: String,
    pub src: IpAddr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub label: String,
    pub dst: IpAddr,
    pub dport: u16,
    pub proto: Proto,
}

pub struct Model {
    scenario: api::Scenario,
    pub warnings: Vec<Diag>,
    pub clients: Vec<Client>,
    pub targets: Vec<Target>,
    /// Every endpoint (`ip:port`) any target can reach, for drawing the Pods before a packet is sent.
    pub pods: Vec<String>,
}

impl PartialEq for Model {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("clients", &self.clients)
            .field("targets", &self.targets)
            .finish()
    }
}

fn diag(d: api::Diagnostic) -> Diag {
    Diag {
        line: d.line,
        location: d.location,
        message: d.message,
    }
}

pub fn load(text: &str) -> Result<Model, Vec<Diag>> {
    let loaded =
        api::load_scenario(text).map_err(|ds| ds.into_iter().map(diag).collect::<Vec<_>>())?;
    let clients: Vec<Client> = api::client_presets(&loaded.scenario)
        .into_iter()
        .map(|c| Client {
            label: c.label,
            src: c.src,
        })
        .collect();
    let targets: Vec<Target> = api::service_targets(&loaded.scenario)
        .into_iter()
        .map(|t| Target {
            label: t.label,
            dst: t.dst,
            dport: t.dport,
            proto: t.proto,
        })
        .collect();
    let mut m = Model {
        scenario: loaded.scenario,
        warnings: loaded.warnings.into_iter().map(diag).collect(),
        clients,
        targets,
        pods: vec![],
    };
    m.pods = reachable_endpoints(&m);
    Ok(m)
}

/// Ask core which endpoints each target can reach from the first client: the trace's outcome tree
/// is exact, so this lists every Pod without the web app reading the scenario itself.
fn reachable_endpoints(m: &Model) -> Vec<String> {
    let mut set = BTreeSet::new();
    let Some(c) = m.clients.first() else {
        return vec![];
    };
    for t in &m.targets {
        let mut s = Sim::new(m);
        let p = SentPacket {
            src: c.src,
            dst: t.dst,
            dport: t.dport,
            proto: t.proto,
            sport: None,
            seed: 0,
            now: 0.0,
        };
        for o in s.trace(&p).outcomes {
            if crate::engine::parse_endpoint(&o.output).is_some() {
                set.insert(o.output);
            }
        }
    }
    set.into_iter().collect()
}

/// A core session: conntrack and `-m recent` state carried from packet to packet.
pub struct Sim(api::Session);

impl Sim {
    pub fn new(m: &Model) -> Sim {
        Sim(api::Session::new(&m.scenario))
    }

    pub fn trace(&mut self, p: &SentPacket) -> Trace {
        self.0.trace(&api::TraceRequest {
            src: p.src,
            dst: p.dst,
            dport: p.dport,
            proto: p.proto,
            sport: p.sport,
            seed: p.seed,
            now: p.now,
        })
    }
}
