//! The IPVS part of a node: its virtual services, the connection table and the persistence
//! templates, and what IPVS does to one packet at LOCAL_IN (or LOCAL_OUT for the node's own
//! packets).
//!
//! What is reproduced (`net/netfilter/ipvs/ip_vs_core.c`, `ip_vs_conn.c`, `ip_vs_proto_*.c`):
//! * `ip_vs_in_hook`: a packet of a known connection (same protocol, client address and port,
//!   virtual address and port) goes to that connection's server and refreshes its timer; only a
//!   new connection reaches `ip_vs_schedule`;
//! * persistence (`ip_vs_sched_persist`): a template keyed by (protocol, client address, virtual
//!   address, virtual port) with client port 0 pins a client to one server for the service's
//!   timeout; the template's timer restarts with every connection it creates and it outlives its
//!   last controlled connection (`ip_vs_conn_expire` re-arms a template while `n_control` > 0);
//!   `expire_quiescent_template=1` (set by kube-proxy) drops a template whose server has weight 0;
//! * no server → `ip_vs_leave` answers ICMP port unreachable and drops the packet;
//! * counters: a new connection is bound `INACTIVE`; TCP/SCTP move to `activeconns` at
//!   ESTABLISHED; UDP stays in `inactconns`; templates count in `persistconns` only;
//! * timeouts (`ipvsadm --set`): TCP ESTABLISHED 900 s, TCP FIN_WAIT 120 s, UDP 300 s, SCTP
//!   ESTABLISHED 900 s.
//!
//! Each traced TCP packet stands for a connection that completes its handshake (the trace has
//! no FIN/RST), so a new TCP connection is counted active with the established timeout.

use super::VirtualService;
use super::ipvsadm::{self, IpvsProto, ServiceKey};
use super::sched::{Decision, RandomError, RandomSource};
use super::service::{ConnKey, Connection, DestId, SchedFlags, SchedulerKind, Sysctl, Time};
use crate::trace::{Proto, Step};
use serde::Serialize;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

/// `ipvsadm --set tcp tcpfin udp`, seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Timeouts {
    pub tcp: f64,
    pub tcpfin: f64,
    pub udp: f64,
}

impl Default for Timeouts {
    fn default() -> Self {
        // ip_vs_proto_tcp.c tcp_timeouts[ESTABLISHED] = 15 min, [FIN_WAIT] = 2 min;
        // ip_vs_proto_udp.c udp_timeouts[NORMAL] = 5 min.
        Timeouts {
            tcp: 900.0,
            tcpfin: 120.0,
            udp: 300.0,
        }
    }
}

impl Timeouts {
    /// kube-proxy's `ipvs.tcpTimeout` / `tcpFinTimeout` / `udpTimeout`: 0 keeps the kernel's.
    pub fn from_config(tcp: u32, tcpfin: u32, udp: u32) -> Timeouts {
        let d = Timeouts::default();
        let pick = |v: u32, def: f64| if v > 0 { f64::from(v) } else { def };
        Timeouts {
            tcp: pick(tcp, d.tcp),
            tcpfin: pick(tcpfin, d.tcpfin),
            udp: pick(udp, d.udp),
        }
    }
    fn established(&self, p: Proto) -> f64 {
        match p {
            Proto::Tcp => self.tcp,
            Proto::Udp => self.udp,
            // ip_vs_proto_sctp.c sctp_timeouts[ESTABLISHED] = 15 min (not settable by ipvsadm).
            Proto::Sctp => 900.0,
        }
    }
}

/// One virtual service with what the kernel keeps beside the scheduler.
#[derive(Debug, Clone)]
pub struct Vs {
    pub svc: VirtualService,
    /// Persistence timeout (`-p`), seconds.
    pub persistent: Option<u32>,
    /// `-Sn` line for display (`-t 10.96.0.10:53`).
    pub name: String,
}

/// A live connection entry (`struct ip_vs_conn`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnEntry {
    pub vs: usize,
    pub conn: Connection,
    pub server: SocketAddr,
    pub expires: Time,
    pub packets: u64,
    /// Persistence template that created it.
    #[serde(skip)]
    pub template: Option<TemplateKey>,
}

/// `ip_vs_conn_fill_param_persist` for an address service: client port 0, the client address
/// under the persistence netmask (/32, /128: kube-proxy sets none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct TemplateKey {
    pub proto: Proto,
    pub client: IpAddr,
    pub vip: SocketAddr,
}

/// A persistence template.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Template {
    pub vs: usize,
    pub dest: DestId,
    pub server: SocketAddr,
    /// When its timer was last (re)started.
    pub last_use: Time,
    pub timeout: f64,
}

/// The IPVS state of a node.
#[derive(Debug, Clone)]
pub struct IpvsNode {
    pub services: Vec<Vs>,
    index: HashMap<(Proto, SocketAddr), usize>,
    pub conns: HashMap<ConnKey, ConnEntry>,
    pub templates: HashMap<TemplateKey, Template>,
    pub timeouts: Timeouts,
    /// No connection or template timer fires before this (a lower bound): lets `expire` skip
    /// its scan, which would otherwise cost O(connections) per packet.
    next_timer: Time,
}

/// A service ipvsadm shows that this model cannot run.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildProblem {
    pub service: String,
    pub message: String,
}

fn proto_of(p: IpvsProto) -> Proto {
    match p {
        IpvsProto::Tcp => Proto::Tcp,
        IpvsProto::Udp => Proto::Udp,
        IpvsProto::Sctp => Proto::Sctp,
    }
}

impl IpvsNode {
    /// Load a table as `ipvsadm -Sn` shows it (generated or read from a node) at time 0. Real
    /// servers are added in reverse print order, so the kernel's newest-first list equals the
    /// printed order (kube-proxy adds them in Go-map order; a live node's list order is not
    /// visible in `-Sn`, which sorts).
    pub fn from_ipvsadm(
        services: &[ipvsadm::Service],
        timeouts: Timeouts,
    ) -> (IpvsNode, Vec<BuildProblem>) {
        let mut node = IpvsNode {
            services: Vec::new(),
            index: HashMap::new(),
            conns: HashMap::new(),
            templates: HashMap::new(),
            timeouts,
            next_timer: f64::INFINITY,
        };
        let mut problems = Vec::new();
        for s in services {
            let ServiceKey::Addr { proto, addr } = s.key else {
                problems.push(BuildProblem {
                    service: format!("{:?}", s.key),
                    message: "firewall-mark services are not modelled (kube-proxy creates none)"
                        .into(),
                });
                continue;
            };
            let name = format!(
                "{} {}",
                match proto {
                    IpvsProto::Tcp => "TCP",
                    IpvsProto::Udp => "UDP",
                    IpvsProto::Sctp => "SCTP",
                },
                addr
            );
            let Some(kind) = SchedulerKind::parse(&s.scheduler) else {
                problems.push(BuildProblem {
                    service: name,
                    message: format!("unknown scheduler {:?}", s.scheduler),
                });
                continue;
            };
            let p = proto_of(proto);
            let mut svc = VirtualService::new(
                addr,
                p,
                kind,
                SchedFlags(s.sched_flags & SchedFlags::MASK),
                Sysctl::default(),
                0.0,
            );
            for d in s.dests.iter().rev() {
                if let Err(e) = svc.add_dest(d.addr, d.weight, d.u_threshold, d.l_threshold, 0.0) {
                    problems.push(BuildProblem {
                        service: name.clone(),
                        message: format!("real server {}: {e}", d.addr),
                    });
                }
            }
            node.index.insert((p, addr), node.services.len());
            node.services.push(Vs {
                svc,
                persistent: s.persistent,
                name,
            });
        }
        (node, problems)
    }

    /// The virtual service a packet is addressed to.
    pub fn lookup(&self, proto: Proto, dst: SocketAddr) -> Option<usize> {
        self.index.get(&(proto, dst)).copied()
    }

    /// Run the timers up to `now`: expired connections are freed (their counters drop), then
    /// templates whose timer fires with no live controlled connection go.
    pub fn expire(&mut self, now: Time) {
        if now < self.next_timer {
            return;
        }
        let dead: Vec<ConnKey> = self
            .conns
            .iter()
            .filter(|(_, c)| c.expires <= now)
            .map(|(k, _)| *k)
            .collect();
        let mut freed: Vec<ConnEntry> = Vec::new();
        for k in dead {
            if let Some(c) = self.conns.remove(&k) {
                self.services[c.vs].svc.free(c.conn);
                freed.push(c);
            }
        }
        let conns = &self.conns;
        self.templates.retain(|tk, t| {
            // The template timer fires every `timeout` after its last restart; it is re-armed
            // as long as a connection it controls is alive at that moment.
            let mut fire = t.last_use + t.timeout;
            let controlled_until = conns
                .values()
                .chain(freed.iter())
                .filter(|c| c.template == Some(*tk))
                .map(|c| c.expires)
                .fold(f64::NEG_INFINITY, f64::max);
            let mut guard = 0;
            while fire < controlled_until && guard < 1_000_000 {
                fire += t.timeout;
                guard += 1;
            }
            fire > now
        });
        self.next_timer = self
            .conns
            .values()
            .map(|c| c.expires)
            .chain(self.templates.values().map(|t| t.last_use + t.timeout))
            .fold(f64::INFINITY, f64::min);
    }

    /// Every server the scheduler could pick for a new connection right now, with the
    /// probability of each: one server with probability 1 for the deterministic schedulers,
    /// the exact distribution of the random draws for twos. `None` stands for "no server".
    pub fn candidates(
        &self,
        vs: usize,
        key: &ConnKey,
        now: Time,
    ) -> Vec<(Option<SocketAddr>, f64)> {
        let mut out: Vec<(Option<SocketAddr>, f64)> = Vec::new();
        let mut stack: Vec<Vec<u32>> = vec![Vec::new()];
        let mut runs = 0;
        while let Some(prefix) = stack.pop() {
            runs += 1;
            if runs > 40_000 {
                break;
            }
            let mut svc = self.services[vs].svc.clone();
            let mut rng = Scripted {
                script: prefix.clone(),
                bounds: Vec::new(),
            };
            let d = svc.schedule(key, now, &mut rng);
            if rng.bounds.len() > prefix.len() {
                let b = rng.bounds[prefix.len()];
                for v in (0..b).rev() {
                    let mut p = prefix.clone();
                    p.push(v);
                    stack.push(p);
                }
                continue;
            }
            let p: f64 = rng.bounds.iter().map(|b| 1.0 / f64::from(*b)).product();
            let server = d.ok().and_then(|d| d.server);
            match out.iter_mut().find(|(s, _)| *s == server) {
                Some(x) => x.1 += p,
                None => out.push((server, p)),
            }
        }
        out
    }
}

/// Answers draws from a script (then 0s), recording every bound asked for.
struct Scripted {
    script: Vec<u32>,
    bounds: Vec<u32>,
}

impl RandomSource for Scripted {
    fn below(&mut self, bound: u32) -> Result<u32, RandomError> {
        let i = self.bounds.len();
        self.bounds.push(bound);
        Ok(self.script.get(i).copied().unwrap_or(0))
    }
}

/// What IPVS did with one packet.
#[derive(Debug, Clone, PartialEq)]
pub struct IpvsResult {
    /// The real server the packet is sent to (`None`: no server, the packet is refused).
    pub server: Option<SocketAddr>,
    pub steps: Vec<Step>,
    /// A connection entry already existed.
    pub existing: bool,
    /// Every server a new connection could have gone to, with probabilities.
    pub candidates: Vec<(Option<SocketAddr>, f64)>,
    pub warnings: Vec<String>,
    /// With no server: the packet is dropped silently (`expire_nodest_conn`) rather than
    /// answered with ICMP port unreachable.
    pub silent_drop: bool,
}

impl IpvsNode {
    /// `ip_vs_in_hook` for one packet of `key` to virtual service `vs` at time `now`, updating
    /// the tables. `rng` answers the twos scheduler's draws.
    pub fn packet(
        &mut self,
        vs: usize,
        key: ConnKey,
        now: Time,
        rng: &mut dyn RandomSource,
    ) -> IpvsResult {
        self.expire(now);
        let mut steps = Vec::new();
        let mut warnings = Vec::new();
        let name = self.services[vs].name.clone();
        let sched = self.services[vs].svc.scheduler();
        let n_dests = self.services[vs].svc.list().len();
        steps.push(Step::IpvsLookup {
            service: Some(name.clone()),
            note: format!(
                "virtual service {name} found ({} scheduler{}, {n_dests} real server{})",
                sched.name(),
                match self.services[vs].persistent {
                    Some(t) => format!(", persistent {t} s"),
                    None => String::new(),
                },
                if n_dests == 1 { "" } else { "s" }
            ),
        });
        let timeout = self.timeouts.established(key.proto);
        if let Some(c) = self.conns.get(&key)
            && !self.services[vs].svc.dest(c.conn.dest).available
        {
            // expire_nodest_conn=1 (kube-proxy sets it): a packet of a connection whose real
            // server was deleted is dropped and the entry expired; the client retries.
            let c = self.conns.remove(&key).expect("just found");
            self.services[vs].svc.free(c.conn);
            steps.push(Step::IpvsConnection {
                server: c.server.to_string(),
                note: format!(
                    "connection entry {} {} -> {} -> {} points at a deleted real server: with expire_nodest_conn=1 IPVS drops the packet and expires the entry (the next packet is scheduled afresh)",
                    key.proto.as_str().to_uppercase(),
                    key.client,
                    key.dst,
                    c.server
                ),
            });
            return IpvsResult {
                server: None,
                steps,
                existing: true,
                candidates: vec![(None, 1.0)],
                warnings,
                silent_drop: true,
            };
        }
        if let Some(c) = self.conns.get_mut(&key) {
            c.expires = now + timeout;
            c.packets += 1;
            let server = c.server;
            steps.push(Step::IpvsConnection {
                server: server.to_string(),
                note: format!(
                    "connection entry {} {} -> {} -> {server} exists: no scheduling; its timer restarts ({timeout} s)",
                    key.proto.as_str().to_uppercase(),
                    key.client,
                    key.dst
                ),
            });
            return IpvsResult {
                server: Some(server),
                steps,
                existing: true,
                candidates: vec![(Some(server), 1.0)],
                warnings,
                silent_drop: false,
            };
        }
        let mut template_key = None;
        let mut pinned: Option<(DestId, SocketAddr)> = None;
        if let Some(t) = self.services[vs].persistent {
            let tk = TemplateKey {
                proto: key.proto,
                client: key.client.ip(),
                vip: key.dst,
            };
            template_key = Some(tk);
            if let Some(tp) = self.templates.get(&tk) {
                let d = self.services[vs].svc.dest(tp.dest);
                // ip_vs_check_template: a server that is gone, or quiescent (weight 0) with
                // expire_quiescent_template=1, invalidates the template.
                if d.available && d.weight > 0 {
                    pinned = Some((tp.dest, tp.server));
                    steps.push(Step::IpvsConnection {
                        server: tp.server.to_string(),
                        note: format!(
                            "persistence template {} {}:0 -> {} -> {} (ClientIP affinity) sends this client to the same server; the template's timer restarts ({t} s)",
                            key.proto.as_str().to_uppercase(),
                            key.client.ip(),
                            key.dst,
                            tp.server
                        ),
                    });
                } else {
                    steps.push(Step::Note {
                        text: format!(
                            "the persistence template points at {}, which is gone or has weight 0: it expires (expire_quiescent_template=1) and the scheduler picks again",
                            tp.server
                        ),
                    });
                    self.templates.remove(&tk);
                }
            }
        }
        let candidates = match pinned {
            Some((_, s)) => vec![(Some(s), 1.0)],
            None => self.candidates(vs, &key, now),
        };
        let (dest, server) = match pinned {
            Some(p) => p,
            None => {
                let decision: Decision = match self.services[vs].svc.schedule(&key, now, rng) {
                    Ok(d) => d,
                    Err(e) => {
                        warnings.push(format!("IPVS scheduler: {e}"));
                        Decision {
                            dest: None,
                            server: None,
                            reason: "the scheduler could not draw a random number",
                            slot: None,
                        }
                    }
                };
                steps.push(decision.trace_step(sched));
                match (decision.dest, decision.server) {
                    (Some(d), Some(s)) => (d, s),
                    _ => {
                        steps.push(Step::Note {
                            text: "no real server: IPVS (ip_vs_leave) answers ICMP port unreachable and drops the packet; a TCP client sees \"connection refused\"".into(),
                        });
                        return IpvsResult {
                            server: None,
                            steps,
                            existing: false,
                            candidates,
                            warnings,
                            silent_drop: false,
                        };
                    }
                }
            }
        };
        if let (Some(tk), Some(t)) = (template_key, self.services[vs].persistent) {
            let fresh = !self.templates.contains_key(&tk);
            self.next_timer = self.next_timer.min(now + f64::from(t));
            self.templates.insert(
                tk,
                Template {
                    vs,
                    dest,
                    server,
                    last_use: now,
                    timeout: f64::from(t),
                },
            );
            if fresh {
                steps.push(Step::IpvsConnection {
                    server: server.to_string(),
                    note: format!(
                        "new persistence template {} {}:0 -> {} -> {server} for {t} s: later connections from this client go to the same server",
                        key.proto.as_str().to_uppercase(),
                        key.client.ip(),
                        key.dst
                    ),
                });
            }
        }
        let svc = &mut self.services[vs].svc;
        let mut conn = svc.bind(dest, key.proto);
        svc.establish(&mut conn);
        let d = svc.dest(dest);
        let counters = format!(
            "{server} now has ActiveConn {} InActConn {}",
            d.activeconns, d.inactconns
        );
        steps.push(Step::IpvsConnection {
            server: server.to_string(),
            note: format!(
                "new connection entry {} {} -> {} -> {server} (Masq), expires in {timeout} s unless more packets come; {counters}{}",
                key.proto.as_str().to_uppercase(),
                key.client,
                key.dst,
                if key.proto == Proto::Udp {
                    " (UDP connections are never counted active)"
                } else {
                    " (counted active: this trace treats the packet as a connection that completes its handshake)"
                }
            ),
        });
        self.next_timer = self.next_timer.min(now + timeout);
        self.conns.insert(
            key,
            ConnEntry {
                vs,
                conn,
                server,
                expires: now + timeout,
                packets: 1,
                template: template_key,
            },
        );
        IpvsResult {
            server: Some(server),
            steps,
            existing: false,
            candidates,
            warnings,
            silent_drop: false,
        }
    }

    /// The table as ipvsadm models it, with live counters (for `ipvsadm -Ln`).
    pub fn to_ipvsadm(&self) -> Vec<ipvsadm::Service> {
        self.services
            .iter()
            .map(|v| {
                let vip = v.svc.vip();
                let proto = match v.svc.proto() {
                    Proto::Tcp => IpvsProto::Tcp,
                    Proto::Udp => IpvsProto::Udp,
                    Proto::Sctp => IpvsProto::Sctp,
                };
                let mut s = ipvsadm::Service::new(
                    ServiceKey::Addr { proto, addr: vip },
                    v.svc.scheduler().name(),
                );
                s.sched_flags = v.svc.flags().0;
                s.persistent = v.persistent;
                s.dests = v
                    .svc
                    .iter()
                    .map(|(id, d)| {
                        let mut r =
                            ipvsadm::RealServer::new(d.addr, ipvsadm::Forward::Masq, d.weight);
                        r.activeconns = d.activeconns.max(0) as u32;
                        r.inactconns = d.inactconns.max(0) as u32;
                        r.persistconns = self
                            .templates
                            .values()
                            .filter(|t| t.dest == id && std::ptr::eq(&self.services[t.vs], v))
                            .count() as u32;
                        r
                    })
                    .collect();
                s
            })
            .collect()
    }
}

/// What one kube-proxy sync changed in the IPVS table.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SyncReport {
    /// One line per change, in the order made (`add`, `update`, `weight 0`, `delete`, ...).
    pub changes: Vec<String>,
}

fn svc_name(p: Proto, a: SocketAddr) -> String {
    format!("{} {a}", p.as_str().to_uppercase())
}

impl IpvsNode {
    /// Apply one kube-proxy sync (upstream `syncService` / `syncEndpoint` / `cleanLegacyService`
    /// and `graceful_termination.go`) at time `now`:
    /// * a missing virtual service is added; one whose scheduler, flags or timeout differ is
    ///   updated in place (its connections survive);
    /// * wanted real servers missing are added with weight 1; a wanted one that is being
    ///   drained (weight 0) is deleted and added again at weight 1;
    /// * a real server no longer wanted is deleted at once for UDP/SCTP or when it has no
    ///   connection; otherwise its weight goes to 0 and it drains (new connections avoid it,
    ///   existing ones continue) until [`IpvsNode::expire`] finds its counters at 0;
    /// * a virtual service no longer wanted is deleted with its servers and connections.
    pub fn sync(&mut self, wanted: &[ipvsadm::Service], now: Time) -> SyncReport {
        self.expire(now);
        let mut rep = SyncReport::default();
        let mut keep = vec![false; self.services.len()];
        for w in wanted {
            let ServiceKey::Addr { proto, addr } = w.key else {
                continue;
            };
            let p = proto_of(proto);
            let Some(kind) = SchedulerKind::parse(&w.scheduler) else {
                continue;
            };
            let flags = SchedFlags(w.sched_flags & SchedFlags::MASK);
            let idx = match self.lookup(p, addr) {
                Some(i) => {
                    let v = &mut self.services[i];
                    if v.svc.scheduler() != kind
                        || v.svc.flags() != flags
                        || v.persistent != w.persistent
                    {
                        v.svc.set_scheduler(kind, flags, now);
                        v.persistent = w.persistent;
                        rep.changes.push(format!("update {} (in place)", v.name));
                    }
                    i
                }
                None => {
                    let svc = VirtualService::new(addr, p, kind, flags, Sysctl::default(), now);
                    self.index.insert((p, addr), self.services.len());
                    self.services.push(Vs {
                        svc,
                        persistent: w.persistent,
                        name: svc_name(p, addr),
                    });
                    keep.push(false);
                    rep.changes.push(format!("add {}", svc_name(p, addr)));
                    self.services.len() - 1
                }
            };
            keep[idx] = true;
            let v = &mut self.services[idx];
            let linked: Vec<(SocketAddr, i32, i64)> = v
                .svc
                .iter()
                .map(|(_, d)| (d.addr, d.weight, d.total_conns()))
                .collect();
            for d in w.dests.iter().rev() {
                match linked.iter().find(|l| l.0 == d.addr) {
                    None => {
                        if v.svc.add_dest(d.addr, 1, 0, 0, now).is_ok() {
                            rep.changes.push(format!("add {} -> {}", v.name, d.addr));
                        }
                    }
                    Some(&(_, 0, _)) => {
                        // Upstream: a wanted server found in the graceful-deletion list is
                        // deleted outright and re-added with weight 1.
                        let _ = v.svc.del_dest(d.addr, now);
                        let _ = v.svc.add_dest(d.addr, 1, 0, 0, now);
                        rep.changes.push(format!(
                            "{} -> {} is wanted again: deleted and re-added with weight 1",
                            v.name, d.addr
                        ));
                    }
                    Some(_) => {}
                }
            }
            for (a, weight, conns) in linked {
                if w.dests.iter().any(|d| d.addr == a) {
                    continue;
                }
                if p != Proto::Tcp || conns == 0 {
                    let _ = v.svc.del_dest(a, now);
                    rep.changes.push(format!("delete {} -> {a}", v.name));
                } else if weight != 0 {
                    let _ = v.svc.edit_dest(a, 0, 0, 0, now);
                    rep.changes.push(format!(
                        "{} -> {a} has {conns} connection(s): weight 0, draining (graceful termination)",
                        v.name
                    ));
                }
            }
        }
        // cleanLegacyService: every VS not produced by this sync goes, servers and all.
        let gone: Vec<usize> = (0..self.services.len()).filter(|i| !keep[*i]).collect();
        if !gone.is_empty() {
            for &i in &gone {
                rep.changes
                    .push(format!("delete {}", self.services[i].name));
            }
            let old = std::mem::take(&mut self.services);
            let mut remap = vec![usize::MAX; old.len()];
            for (i, v) in old.into_iter().enumerate() {
                if keep[i] {
                    remap[i] = self.services.len();
                    self.services.push(v);
                }
            }
            self.index = self
                .services
                .iter()
                .enumerate()
                .map(|(i, v)| ((v.svc.proto(), v.svc.vip()), i))
                .collect();
            self.conns.retain(|_, c| remap[c.vs] != usize::MAX);
            for c in self.conns.values_mut() {
                c.vs = remap[c.vs];
            }
            self.templates.retain(|_, t| remap[t.vs] != usize::MAX);
            for t in self.templates.values_mut() {
                t.vs = remap[t.vs];
            }
        }
        self.drain_graceful(now, &mut rep);
        rep
    }

    /// The graceful-termination loop: drop weight-0 servers whose connections are all gone.
    /// Upstream checks once a minute; this checks at every sync.
    fn drain_graceful(&mut self, now: Time, rep: &mut SyncReport) {
        for v in &mut self.services {
            let done: Vec<SocketAddr> = v
                .svc
                .iter()
                .filter(|(_, d)| d.weight == 0 && d.total_conns() == 0)
                .map(|(_, d)| d.addr)
                .collect();
            for a in done {
                let _ = v.svc.del_dest(a, now);
                rep.changes.push(format!(
                    "delete {} -> {a} (drained: no connection left)",
                    v.name
                ));
            }
        }
    }
}
