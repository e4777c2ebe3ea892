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
use proxyscope_core::ipvs::ipvsadm::{self, ListOptions};
use proxyscope_core::ipvs::sched::SchedState;
pub use proxyscope_core::ipvs::service::SchedulerKind;
use proxyscope_core::trace::{Hook, Step};
use std::net::SocketAddr;

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

    pub fn other(self) -> Mode {
        match self {
            Mode::Iptables => Mode::Ipvs,
            Mode::Ipvs => Mode::Iptables,
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

impl Model {
    /// The scheduler the scenario's KubeProxyConfiguration names (`ipvs.scheduler`); kube-proxy
    /// uses rr when it is empty (and so do we when it names something unknown: core reports it).
    pub fn configured_scheduler(&self) -> SchedulerKind {
        SchedulerKind::parse(&self.scenario.config.ipvs.scheduler).unwrap_or(SchedulerKind::Rr)
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
        Sim::with_scheduler(m, mode, None)
    }

    /// IPVS mode with `sched` applied the way kube-proxy applies it: every virtual server it
    /// creates gets the one scheduler of `KubeProxyConfiguration.ipvs.scheduler`.
    pub fn with_scheduler(m: &Model, mode: Mode, sched: Option<SchedulerKind>) -> Sim {
        Sim(match (mode, sched) {
            (Mode::Iptables, _) => api::Session::new(&m.scenario),
            (Mode::Ipvs, None) => api::Session::new_ipvs(&m.scenario),
            (Mode::Ipvs, Some(k)) => {
                let mut sc = m.scenario.clone();
                sc.config.ipvs.scheduler = k.name().to_string();
                api::Session::new_ipvs(&sc)
            }
        })
    }

    /// A session over a real node's dump (`iptables-save`, or in IPVS mode `ipvsadm -Sn` +
    /// `ipset save` + `iptables-save` under `# <command>` headers); the scenario supplies the
    /// node's addresses. Diagnostics carry the dump's line numbers.
    pub fn from_dump(m: &Model, mode: Mode, text: &str) -> (Sim, Vec<Diag>) {
        let (s, d) = match mode {
            Mode::Iptables => api::Session::from_dump(&m.scenario, text),
            Mode::Ipvs => api::Session::from_ipvs_dump(&m.scenario, text),
        };
        (Sim(s), d.into_iter().map(diag).collect())
    }

    /// The IPVS table with live counters, as `ipvsadm -Ln` prints it (IPVS mode only).
    pub fn ipvsadm_list(&self) -> Option<String> {
        self.0
            .ipvs_table()
            .map(|t| ipvsadm::print_list(&t, ListOptions::default()))
    }

    /// The scheduler state of the virtual server a packet to `dst` would hit (IPVS mode only).
    pub fn sched_view(&self, proto: Proto, dst: SocketAddr) -> Option<SchedView> {
        let node = self.0.ipvs_node()?;
        let vs = &node.services[node.lookup(proto, dst)?];
        let svc = &vs.svc;
        let name = |id: proxyscope_core::ipvs::service::DestId| svc.dest(id).addr.to_string();
        let mut facts: Vec<(Fact, String)> = Vec::new();
        let mut table: Option<&[Option<proxyscope_core::ipvs::service::DestId>]> = None;
        let mut cache = Vec::new();
        match svc.sched_state() {
            SchedState::Rr { position } => {
                facts.push((
                    Fact::Position,
                    position.map(name).unwrap_or_else(|| "—".into()),
                ));
            }
            SchedState::Wrr {
                position,
                cw,
                mw,
                di,
            } => {
                facts.push((
                    Fact::Position,
                    position.map(name).unwrap_or_else(|| "—".into()),
                ));
                facts.push((Fact::Cw, cw.to_string()));
                facts.push((Fact::Mw, mw.to_string()));
                facts.push((Fact::Di, di.to_string()));
            }
            SchedState::Dh { table: t } | SchedState::Sh { table: t } => table = Some(t),
            SchedState::Mh(m) => {
                facts.push((Fact::Gcd, m.gcd.to_string()));
                facts.push((Fact::Rshift, m.rshift.to_string()));
                table = Some(&m.table);
            }
            SchedState::Lblc(l) => {
                facts.push((Fact::CacheEntries, l.clock.entries.to_string()));
                facts.push((Fact::NextGc, format!("{:.0} s", l.clock.next_tick)));
                for e in l.buckets.values().flatten() {
                    cache.push((e.addr.to_string(), vec![name(e.dest)]));
                }
            }
            SchedState::Lblcr(l) => {
                facts.push((Fact::CacheEntries, l.clock.entries.to_string()));
                facts.push((Fact::NextGc, format!("{:.0} s", l.clock.next_tick)));
                for e in l.buckets.values().flatten() {
                    cache.push((e.addr.to_string(), e.set.iter().map(|d| name(*d)).collect()));
                }
            }
            // The counter-based schedulers keep nothing beside the servers' counters.
            SchedState::Lc
            | SchedState::Wlc
            | SchedState::Sed
            | SchedState::Nq
            | SchedState::Fo
            | SchedState::Ovf
            | SchedState::Twos => {}
        }
        if let Some(t) = table {
            facts.push((Fact::TableSize, t.len().to_string()));
        }
        let servers = svc
            .list()
            .iter()
            .map(|&id| {
                let d = svc.dest(id);
                ServerRow {
                    addr: d.addr.to_string(),
                    weight: d.weight,
                    active: d.activeconns,
                    inactive: d.inactconns,
                    overloaded: d.overloaded,
                    buckets: table.map(|t| t.iter().filter(|b| **b == Some(id)).count()),
                }
            })
            .collect();
        Some(SchedView {
            service: vs.name.clone(),
            scheduler: svc.scheduler(),
            facts,
            servers,
            cache,
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

/// A piece of scheduler state, named after the kernel's field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fact {
    /// rr/wrr `sched_data`: the server returned last (the next pick starts after it).
    Position,
    /// wrr `cw`: current weight threshold.
    Cw,
    /// wrr `mw`: max weight (minus gcd − 1).
    Mw,
    /// wrr `di`: gcd of the weights (the step cw drops by).
    Di,
    /// sh/dh/mh lookup table size.
    TableSize,
    /// mh: gcd of the weights and the shift that fits them in the table.
    Gcd,
    Rshift,
    /// lblc/lblcr: entries the kernel counts, and when the next garbage-collection tick runs.
    CacheEntries,
    NextGc,
}

/// One real server as the scheduler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerRow {
    pub addr: String,
    pub weight: i32,
    pub active: i32,
    pub inactive: i32,
    pub overloaded: bool,
    /// sh/dh/mh: how many table buckets point at it.
    pub buckets: Option<usize>,
}

/// One virtual server's scheduler and its private state, as plain data for the view.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedView {
    /// `TCP 10.104.14.67:80`.
    pub service: String,
    pub scheduler: SchedulerKind,
    pub facts: Vec<(Fact, String)>,
    /// Newest-first list order (the order the schedulers scan).
    pub servers: Vec<ServerRow>,
    /// lblc/lblcr: destination address → server(s).
    pub cache: Vec<(String, Vec<String>)>,
}

/// How one mode handled a packet, reduced to what the side-by-side view compares.
#[derive(Debug, Clone, PartialEq)]
pub struct ModeSummary {
    pub mode: Mode,
    /// iptables rules the kernel evaluated (every rule of every chain walked, both modes).
    pub rules_evaluated: usize,
    /// nat chains entered, in order.
    pub nat_chains: Vec<String>,
    /// `-m statistic --mode random` rules evaluated (iptables mode's load balancing).
    pub random_rules: usize,
    /// IPVS: the virtual server found by the hash lookup.
    pub ipvs_service: Option<String>,
    /// IPVS: scheduler name and the kernel's reason.
    pub scheduler: Option<(String, String)>,
    /// conntrack found the flow: NAT replayed, no rule or scheduler ran.
    pub established: bool,
    /// Hook where the destination was rewritten.
    pub dnat_hook: Option<Hook>,
    pub masquerade: bool,
    /// Where the packet went (`ip:port`, `REJECT`, `DROP`, or "").
    pub output: String,
    /// The exact probability of that outcome for a new connection.
    pub probability: f64,
}

pub fn summarize(mode: Mode, t: &Trace) -> ModeSummary {
    let mut hook = None;
    let mut s = ModeSummary {
        mode,
        rules_evaluated: t.rules_evaluated,
        nat_chains: vec![],
        random_rules: 0,
        ipvs_service: None,
        scheduler: None,
        established: false,
        dnat_hook: None,
        masquerade: t.chosen.masq,
        output: t.chosen.output.clone(),
        probability: t.chosen.probability,
    };
    for st in &t.steps {
        match st {
            Step::Hook { hook: h, .. } => hook = Some(*h),
            Step::Conntrack { established, .. } => s.established |= *established,
            // The chains that led to the rewrite (the Service lookup), not the ones after it.
            Step::Chain { table, chain, .. }
                if table == "nat" && s.dnat_hook.is_none() && !s.nat_chains.contains(chain) =>
            {
                s.nat_chains.push(chain.clone())
            }
            Step::Rule { text, .. } if text.contains("--mode random") => s.random_rules += 1,
            Step::IpvsLookup { service, .. } => s.ipvs_service = service.clone(),
            Step::IpvsSchedule {
                scheduler, reason, ..
            } => s.scheduler = Some((scheduler.clone(), reason.clone())),
            // IPVS rewrites at LOCAL_IN; the steps name that hook as Input.
            Step::Dnat { .. } if s.dnat_hook.is_none() => s.dnat_hook = hook,
            Step::Snat {
                masquerade: true, ..
            } => s.masquerade = true,
            _ => {}
        }
    }
    if let Some(o) = t.outcomes.iter().find(|o| o.output == t.chosen.output) {
        s.probability = o.probability;
    }
    s
}
