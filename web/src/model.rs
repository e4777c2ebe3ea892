//! The web app's only door into core: load a scenario, list clients and targets, trace packets.
//!
//! Everything here runs core for real in the browser (compiled to WASM); the app never shows a
//! canned trace.

use proxyscope_core::trace::{Proto, Trace};
use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::share::SentPacket;

use proxyscope_core::api;
pub use proxyscope_core::api::ClientKind;

/// Every shipped `examples/*.yaml`: (file name, text); core embeds them, the editor offers them.
pub const PRESETS: &[(&str, &str)] = api::EXAMPLES;

/// The built-in demo (Service `my-service`, ClusterIP 10.104.14.67:80, three Pods).
pub const DEMO: &str = api::DEMO_SCENARIO;

/// A scenario problem, located as precisely as core could.
#[derive(Debug, Clone, PartialEq)]
pub struct Diag {
    /// An error (the scenario was not loaded) rather than a warning.
    pub error: bool,
    pub line: Option<usize>,
    pub location: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Client {
    /// Core's English label (the view translates the known ones).
    pub label: String,
    pub kind: ClientKind,
    pub src: IpAddr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub label: String,
    /// `cluster_ip`, `node_port`, `external_ip`, `load_balancer`.
    pub kind: String,
    /// `namespace/name:port`.
    pub service: String,
    pub dst: IpAddr,
    pub dport: u16,
    pub proto: Proto,
}

pub struct Model {
    scenario: proxyscope_core::k8s::Scenario,
    pub warnings: Vec<Diag>,
    pub clients: Vec<Client>,
    pub targets: Vec<Target>,
    /// Every endpoint (`ip:port`) any target can reach, for drawing the Pods before a packet is sent.
    pub pods: Vec<String>,
    /// Endpoint addresses whose `nodeName` is this node.
    pub local_pods: Vec<IpAddr>,
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

fn diag(d: proxyscope_core::diag::Diagnostic) -> Diag {
    Diag {
        error: d.is_error(),
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
            kind: c.kind,
            src: c.src,
        })
        .collect();
    let targets: Vec<Target> = api::service_targets(&loaded.scenario)
        .into_iter()
        .map(|t| Target {
            label: t.label,
            kind: t.kind,
            service: t.service,
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
        local_pods: vec![],
    };
    m.pods = reachable_endpoints(&m);
    let node = m.scenario.node_name.clone();
    m.local_pods = m
        .scenario
        .slices
        .iter()
        .flat_map(|sl| sl.endpoints.iter().flatten())
        .filter(|e| e.node_name.as_deref() == Some(node.as_str()))
        .flat_map(|e| e.addresses.iter())
        .filter_map(|a| proxyscope_core::k8s::ip::parse_ip_sloppy(a))
        .collect();
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

/// Which kube-proxy mode programs the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Iptables,
    Ipvs,
}

impl Mode {
    /// The name kube-proxy's `--proxy-mode` takes, also the share link's `mode` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Iptables => "iptables",
            Mode::Ipvs => "ipvs",
        }
    }

    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "iptables" => Some(Mode::Iptables),
            "ipvs" => Some(Mode::Ipvs),
            _ => None,
        }
    }
}

/// A core session: conntrack, `-m recent` and (IPVS) connection/template state carried from
/// packet to packet.
pub struct Sim(api::Session);

impl Sim {
    pub fn new(m: &Model) -> Sim {
        Sim::with_mode(m, Mode::Iptables)
    }

    pub fn with_mode(m: &Model, mode: Mode) -> Sim {
        Sim(match mode {
            Mode::Iptables => api::Session::new(&m.scenario),
            Mode::Ipvs => api::Session::new_ipvs(&m.scenario),
        })
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
