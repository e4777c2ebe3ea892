//! The app's single state and its reducer (Yew function_todomvc style).
//!
//! Everything the learner can do is an [`Action`]; [`State::apply`] is deterministic: randomness
//! (the packet's seed) and time (`now`) arrive inside the action, chosen by the root component.
//! That is what makes a share link reproducible: replaying the same actions gives the same view.

use std::cell::RefCell;
use std::rc::Rc;

use proxyscope_core::trace::{Proto, Trace};
use yew::Reducible;

use crate::engine::{self, Timeline};
use crate::i18n::Lang;
use crate::model::{self, Mode, Model, SchedView, SchedulerKind, Sim};
use crate::share::{SentPacket, ShareState};

/// Milliseconds per step for the speed control, slowest first.
pub const SPEEDS_MS: [u32; 5] = [1600, 800, 400, 200, 80];
pub const DEFAULT_SPEED: usize = 1;
/// Packets kept for a share link; older ones are dropped (and with them their conntrack history).
pub const MAX_SENT: usize = 32;
pub const MANY_CHOICES: [usize; 4] = [1, 10, 100, 1000];
/// With keepalive, "send many" sends requests over this many long-lived connections, the way an
/// HTTP client's connection pool does: each connection is scheduled once, its later requests
/// follow it (conntrack / the IPVS connection entry), so the spread is over 4 connections, not
/// over the requests.
pub const KEEPALIVE_POOL: usize = 4;
/// The large-cluster preset (after the shipped examples in the preset list): kube-proxy's
/// iptables mode at 10,000 Services is ~30,000 chains, what the chain graph must stay usable with.
pub const LARGE_SERVICES: usize = 10_000;
pub const LARGE_ENDPOINTS: usize = 2;

/// Largest pasted dump a share link carries: the link is re-encoded on every step, and a real
/// node's multi-megabyte dump would make each step slow and the link unusable.
pub const MAX_SHARED_DUMP: usize = 256 * 1024;

/// Result of "send many": which endpoint each connection went to.
#[derive(Debug, Clone, PartialEq)]
pub struct Many {
    /// Endpoint labels (`ip:port`, or `REJECT`/`DROP`/"" for packets no rule rewrote).
    pub outputs: Vec<String>,
    /// For each connection, the index into `outputs`.
    pub per_packet: Vec<usize>,
    /// Count per output, same order.
    pub counts: Vec<usize>,
    /// Exact probabilities from core (the first connection's outcome tree), for comparison.
    pub expected: Vec<(String, f64)>,
    /// Requests reused a pool of [`KEEPALIVE_POOL`] connections.
    pub keepalive: bool,
    /// IPVS: the scheduler's state and `ipvsadm -Ln` after the last connection.
    pub sched_after: Option<SchedView>,
    pub ipvsadm_after: Option<String>,
}

#[derive(Debug)]
pub enum Action {
    ToggleLang,
    SetLang(Lang),
    SelectClient(usize),
    SelectTarget(usize),
    SelectProto(Proto),
    /// Send the selected packet; the root picks seed and time.
    Send {
        seed: u64,
        now: f64,
    },
    /// Send the next packet of the last connection (same source port): conntrack finds it and
    /// the kernel skips the nat table, replaying the first packet's NAT.
    SetMode(Mode),
    SendAgain {
        seed: u64,
        now: f64,
    },
    StepForward,
    StepBack,
    Seek(usize),
    NextHook,
    PrevHook,
    Reset,
    End,
    TogglePlay,
    Pause,
    /// Timer tick while playing.
    Tick,
    Faster,
    Slower,
    EditScenario(String),
    LoadScenario,
    LoadPreset(usize),
    SendMany {
        n: usize,
        seed: u64,
        now: f64,
    },
    Restore(ShareState),
    ShareFailed(String),
    /// IPVS scheduler for every virtual server (KubeProxyConfiguration `ipvs.scheduler`).
    SetScheduler(SchedulerKind),
    SetKeepalive(bool),
    /// Trace every packet in both modes and show them side by side.
    SetCompare(bool),
    EditDump(String),
    /// Trace through the pasted node dump instead of the rules generated from the scenario.
    LoadDump,
    ClearDump,
    /// Destination typed by hand (`ip:port`), for dumps whose Services the scenario lacks.
    SetCustomDst(String),
    /// Show the scale view measuring clusters with this many endpoints per Service (None: hide).
    SetScale(Option<usize>),
}

#[derive(Clone)]
pub struct State {
    pub lang: Lang,
    pub embed: bool,
    /// kube-proxy's mode; switching starts a fresh session (the two modes share no state).
    pub mode: Mode,
    pub scenario_text: String,
    /// The loaded scenario, or the diagnostics of the last load attempt.
    pub model: Result<Rc<Model>, Rc<Vec<model::Diag>>>,
    /// Diagnostics of an edit that failed to load while the previous scenario stays active.
    pub editor_errors: Rc<Vec<model::Diag>>,
    /// Stateful core session (conntrack, `-m recent`); only the reducer mutates it.
    pub sim: Option<Rc<RefCell<Sim>>>,
    pub client: usize,
    pub target: usize,
    pub proto: Proto,
    pub sent: Vec<SentPacket>,
    pub trace: Option<Rc<Trace>>,
    pub timeline: Rc<Timeline>,
    pub cursor: usize,
    pub playing: bool,
    pub speed: usize,
    pub many: Option<Rc<Many>>,
    pub share_error: Option<String>,
    /// Chosen IPVS scheduler; None = what the scenario's KubeProxyConfiguration says.
    pub scheduler: Option<SchedulerKind>,
    pub keepalive: bool,
    pub compare: bool,
    /// The other mode's session and its trace of the last packet, while comparing.
    pub other: Option<Rc<RefCell<Sim>>>,
    pub other_trace: Option<Rc<Trace>>,
    /// Text in the dump editor, and the dump the session runs on (None = generated rules).
    pub dump_text: String,
    pub dump: Option<String>,
    pub dump_errors: Rc<Vec<model::Diag>>,
    /// Destination typed by hand (raw text, and the parsed address when valid).
    pub custom_dst_text: String,
    pub custom_dst: Option<std::net::SocketAddr>,
    /// The scale view is open, with this many endpoints per Service.
    pub scale: Option<usize>,
}

impl State {
    pub fn new(lang: Lang, embed: bool) -> State {
        let mut s = State {
            lang,
            embed,
            mode: Mode::Iptables,
            scenario_text: model::DEMO.to_string(),
            model: Err(Rc::new(vec![])),
            editor_errors: Rc::new(vec![]),
            sim: None,
            client: 0,
            target: 0,
            proto: Proto::Tcp,
            sent: vec![],
            trace: None,
            timeline: Rc::new(Timeline::default()),
            cursor: 0,
            playing: false,
            speed: DEFAULT_SPEED,
            many: None,
            share_error: None,
            scheduler: None,
            keepalive: false,
            compare: false,
            other: None,
            other_trace: None,
            dump_text: String::new(),
            dump: None,
            dump_errors: Rc::new(vec![]),
            custom_dst_text: String::new(),
            custom_dst: None,
            scale: None,
        };
        s.load(model::DEMO.to_string());
        s
    }

    fn new_sim(&self, m: &Model) -> Option<Rc<RefCell<Sim>>> {
        Some(Rc::new(RefCell::new(self.fresh_sim(m, self.mode))))
    }

    /// A session of `mode` on what the learner chose: the pasted dump, or the scenario's rules
    /// with the chosen scheduler.
    fn fresh_sim(&self, m: &Model, mode: Mode) -> Sim {
        match &self.dump {
            Some(d) if mode == self.mode => Sim::from_dump(m, mode, d).0,
            _ => Sim::with_scheduler(m, mode, self.scheduler),
        }
    }

    /// The scheduler in force in IPVS mode.
    pub fn effective_scheduler(&self) -> SchedulerKind {
        self.scheduler
            .or_else(|| self.model().map(|m| m.configured_scheduler()))
            .unwrap_or(SchedulerKind::Rr)
    }

    /// Rebuild the sessions (mode, scheduler or dump changed): the old state does not carry over.
    fn restart(&mut self) {
        if let Ok(m) = self.model.clone() {
            self.sim = self.new_sim(&m);
            self.other = self.new_other(&m);
        }
        self.clear_trace();
        self.sent.clear();
    }

    /// The other mode's session for the side-by-side view (not over a dump: a dump is one mode's).
    fn new_other(&self, m: &Model) -> Option<Rc<RefCell<Sim>>> {
        (self.compare && self.dump.is_none())
            .then(|| Rc::new(RefCell::new(self.fresh_sim(m, self.mode.other()))))
    }

    /// The last packet as each mode handled it, iptables first.
    pub fn compared(&self) -> Option<(Rc<Trace>, Rc<Trace>)> {
        let (a, b) = (self.trace.clone()?, self.other_trace.clone()?);
        Some(match self.mode {
            Mode::Iptables => (a, b),
            Mode::Ipvs => (b, a),
        })
    }

    /// The scheduler state of the virtual server the selected destination hits.
    pub fn sched_view(&self) -> Option<SchedView> {
        let (proto, dst) = self.selected_dst()?;
        self.sim.as_ref()?.borrow().sched_view(proto, dst)
    }

    pub fn ipvsadm_list(&self) -> Option<String> {
        self.sim.as_ref()?.borrow().ipvsadm_list()
    }

    fn selected_dst(&self) -> Option<(Proto, std::net::SocketAddr)> {
        if let Some(d) = self.custom_dst {
            return Some((self.proto, d));
        }
        let t = self.model()?.targets.get(self.target)?;
        Some((self.proto, std::net::SocketAddr::new(t.dst, t.dport)))
    }

    pub fn model(&self) -> Option<&Model> {
        self.model.as_ref().ok().map(|m| &**m)
    }

    pub fn is_custom_scenario(&self) -> bool {
        self.scenario_text != model::DEMO
    }

    /// What a share link needs to rebuild this view.
    pub fn share_state(&self) -> ShareState {
        ShareState {
            scenario: self
                .is_custom_scenario()
                .then(|| self.scenario_text.clone()),
            sent: self.sent.clone(),
            step: self.cursor,
            lang: Some(self.lang),
            mode: self.mode.as_str().to_string(),
            sched: self.scheduler.map(|k| k.name().to_string()),
            keepalive: self.keepalive,
            compare: self.compare,
            dump: self.dump.clone().filter(|d| d.len() <= MAX_SHARED_DUMP),
            dst: self.custom_dst,
            scale: self.scale,
            ..ShareState::default()
        }
    }

    fn load(&mut self, text: String) -> bool {
        match model::load(&text) {
            Ok(m) => {
                let m = Rc::new(m);
                self.sim = self.new_sim(&m);
                self.other = self.new_other(&m);
                self.client = 0;
                self.target = 0;
                self.proto = m.targets.first().map(|t| t.proto).unwrap_or(Proto::Tcp);
                self.model = Ok(m);
                self.editor_errors = Rc::new(vec![]);
                self.scenario_text = text;
                self.clear_trace();
                self.sent.clear();
                true
            }
            Err(d) => {
                self.editor_errors = Rc::new(d);
                self.scenario_text = text;
                false
            }
        }
    }

    fn clear_trace(&mut self) {
        self.trace = None;
        self.timeline = Rc::new(Timeline::default());
        self.cursor = 0;
        self.playing = false;
        self.many = None;
        self.other_trace = None;
    }

    fn selected_packet(&self, seed: u64, now: f64) -> Option<SentPacket> {
        let m = self.model()?;
        let c = m.clients.get(self.client)?;
        let (_, dst) = self.selected_dst()?;
        Some(SentPacket {
            src: c.src,
            dst: dst.ip(),
            dport: dst.port(),
            proto: self.proto,
            sport: None,
            seed,
            now,
        })
    }

    fn run(&mut self, p: SentPacket) {
        let Some(sim) = &self.sim else { return };
        let trace = sim.borrow_mut().trace(&p);
        if let Some(o) = &self.other {
            self.other_trace = Some(Rc::new(o.borrow_mut().trace(&p)));
        }
        self.timeline = Rc::new(engine::timeline(&trace));
        self.trace = Some(Rc::new(trace));
        self.cursor = 0;
        self.sent.push(p);
        if self.sent.len() > MAX_SENT {
            self.sent.remove(0);
        }
    }

    fn last_frame(&self) -> usize {
        self.timeline.len().saturating_sub(1)
    }

    pub fn apply(&mut self, action: Action) {
        match action {
            Action::ToggleLang => self.lang = self.lang.other(),
            Action::SetLang(l) => self.lang = l,
            Action::SelectClient(i) => self.client = i,
            Action::SelectTarget(i) => {
                self.target = i;
                if let Some(t) = self.model().and_then(|m| m.targets.get(i)) {
                    self.proto = t.proto;
                }
            }
            Action::SelectProto(p) => self.proto = p,
            Action::Send { seed, now } => {
                if let Some(p) = self.selected_packet(seed, now) {
                    self.run(p);
                    self.playing = true;
                }
            }
            Action::SendAgain { seed, now } => {
                if let (Some(last), Some(tr)) = (self.sent.last().cloned(), self.trace.clone()) {
                    self.run(SentPacket {
                        sport: Some(tr.packet.sport),
                        seed,
                        now,
                        ..last
                    });
                    self.playing = true;
                }
            }
            Action::StepForward => {
                self.playing = false;
                self.cursor = (self.cursor + 1).min(self.last_frame());
            }
            Action::StepBack => {
                self.playing = false;
                self.cursor = self.cursor.saturating_sub(1);
            }
            Action::Seek(i) => {
                self.playing = false;
                self.cursor = i.min(self.last_frame());
            }
            Action::NextHook => {
                self.playing = false;
                if let Some(i) = self.timeline.next_hook(self.cursor) {
                    self.cursor = i;
                }
            }
            Action::PrevHook => {
                self.playing = false;
                self.cursor = self.timeline.prev_hook(self.cursor).unwrap_or(0);
            }
            Action::Reset => {
                self.playing = false;
                self.cursor = 0;
            }
            Action::End => {
                self.playing = false;
                self.cursor = self.last_frame();
            }
            Action::TogglePlay => {
                if self.playing {
                    self.playing = false;
                } else if !self.timeline.is_empty() {
                    // Play from the start again when at the end, like a media player.
                    if self.cursor >= self.last_frame() {
                        self.cursor = 0;
                    }
                    self.playing = true;
                }
            }
            Action::Pause => self.playing = false,
            Action::Tick => {
                if self.playing {
                    if self.cursor < self.last_frame() {
                        self.cursor += 1;
                    }
                    if self.cursor >= self.last_frame() {
                        self.playing = false;
                    }
                }
            }
            Action::Faster => self.speed = (self.speed + 1).min(SPEEDS_MS.len() - 1),
            Action::Slower => self.speed = self.speed.saturating_sub(1),
            Action::EditScenario(t) => self.scenario_text = t,
            Action::LoadScenario => {
                let t = self.scenario_text.clone();
                self.load(t);
            }
            Action::SetMode(mode) => {
                if mode != self.mode {
                    self.mode = mode;
                    // A dump holds one mode's rules; the other mode runs the scenario's.
                    self.dump = None;
                    self.dump_errors = Rc::new(vec![]);
                    self.restart();
                }
            }
            Action::SetScheduler(k) => {
                let changed = k != self.effective_scheduler();
                self.scheduler = Some(k);
                // Only IPVS sessions schedule; a dump brings its own scheduler names.
                let ipvs_running = self.mode == Mode::Ipvs || self.compare;
                if changed && ipvs_running && self.dump.is_none() {
                    self.restart();
                }
            }
            Action::SetKeepalive(on) => self.keepalive = on,
            Action::SetCompare(on) => {
                self.compare = on;
                self.other_trace = None;
                self.other = self.model.clone().ok().and_then(|m| self.new_other(&m));
                // Replay what was sent so the other mode has the same conntrack history.
                if let Some(o) = &self.other {
                    for p in &self.sent {
                        self.other_trace = Some(Rc::new(o.borrow_mut().trace(p)));
                    }
                }
            }
            Action::EditDump(t) => self.dump_text = t,
            Action::LoadDump => {
                let text = self.dump_text.clone();
                self.load_dump(text);
            }
            Action::ClearDump => {
                self.dump = None;
                self.dump_errors = Rc::new(vec![]);
                self.restart();
            }
            Action::SetScale(e) => {
                self.scale = e.filter(|n| proxyscope_core::scale::ENDPOINT_CHOICES.contains(n))
            }
            Action::SetCustomDst(t) => {
                self.custom_dst = parse_dst(&t);
                self.custom_dst_text = t;
            }
            Action::LoadPreset(i) => {
                if let Some((_, text)) = model::PRESETS.get(i) {
                    self.load(text.to_string());
                } else if i == model::PRESETS.len() {
                    self.load(model::large_preset(LARGE_SERVICES, LARGE_ENDPOINTS));
                }
            }
            Action::SendMany { n, seed, now } => {
                if let (Some(m), Some(p)) =
                    (self.model.clone().ok(), self.selected_packet(seed, now))
                {
                    let sim = self.fresh_sim(&m, self.mode);
                    self.many = Some(Rc::new(send_many(sim, &p, n, self.keepalive)));
                }
            }
            Action::Restore(sh) => self.restore(sh),
            Action::ShareFailed(e) => self.share_error = Some(e),
        }
    }

    fn restore(&mut self, sh: ShareState) {
        if let Some(l) = sh.lang {
            self.lang = l;
        }
        match Mode::parse(&sh.mode) {
            Some(m) => self.mode = m,
            None => {
                self.share_error = Some(format!(
                    "URL fragment: mode {:?} is not one of iptables, ipvs",
                    sh.mode
                ));
                return;
            }
        }
        self.scheduler = match sh.sched.as_deref().map(SchedulerKind::parse) {
            None => None,
            Some(Some(k)) => Some(k),
            Some(None) => {
                self.share_error = Some(format!(
                    "URL fragment: scheduler {:?} is not one of the 14 IPVS schedulers",
                    sh.sched.unwrap_or_default()
                ));
                return;
            }
        };
        self.keepalive = sh.keepalive;
        self.apply(Action::SetScale(sh.scale));
        self.compare = sh.compare;
        let text = sh.scenario.unwrap_or_else(|| model::DEMO.to_string());
        if !self.load(text) {
            self.share_error = Some("scenario in the link does not load".into());
            return;
        }
        if let Some(d) = sh.dump {
            self.dump_text = d.clone();
            self.load_dump(d);
        }
        if let Some(d) = sh.dst {
            self.custom_dst = Some(d);
            self.custom_dst_text = d.to_string();
        }
        // Replaying every packet in order rebuilds conntrack and `-m recent` state; the view shows
        // the last one's trace.
        for p in sh.sent {
            self.run(p);
        }
        self.cursor = sh.step.min(self.last_frame());
        self.playing = false;
    }
}

/// `ip:port` or `[ip6]:port`; empty or malformed text is no custom destination.
fn parse_dst(t: &str) -> Option<std::net::SocketAddr> {
    t.trim().parse().ok()
}

impl State {
    /// Switch to tracing through a pasted dump; diagnostics (with dump line numbers) are kept
    /// for the editor. Parsing is tolerant, so a dump with errors still loads what it can.
    fn load_dump(&mut self, text: String) {
        let Ok(m) = self.model.clone() else { return };
        if text.trim().is_empty() {
            return;
        }
        let (sim, diags) = Sim::from_dump(&m, self.mode, &text);
        self.dump_errors = Rc::new(diags);
        self.dump_text = text.clone();
        self.dump = Some(text);
        self.sim = Some(Rc::new(RefCell::new(sim)));
        self.other = None;
        self.clear_trace();
        self.sent.clear();
    }
}

/// Trace `n` new connections with a fresh session each time the button is pressed (so the
/// learner's stepping session is left alone), each with its own seed. Conntrack/affinity state
/// carries across the `n` connections, as it would on a real node: with session affinity they all
/// land on one Pod, which is the point to see.
///
/// With `keepalive`, request `i` rides connection `i % KEEPALIVE_POOL` (same source port), so
/// only each connection's first request is scheduled.
pub fn send_many(mut sim: Sim, p: &SentPacket, n: usize, keepalive: bool) -> Many {
    let mut outputs: Vec<String> = Vec::new();
    let mut counts: Vec<usize> = Vec::new();
    let mut per_packet = Vec::with_capacity(n);
    let mut expected = Vec::new();
    for i in 0..n {
        let q = SentPacket {
            seed: p
                .seed
                .wrapping_add(i as u64)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15),
            // A new source port per connection, so each one is a new conntrack entry.
            sport: Some(32768u16.wrapping_add(if keepalive {
                (i % KEEPALIVE_POOL) as u16
            } else {
                (i % 28232) as u16
            })),
            now: p.now + i as f64 * 0.001,
            ..p.clone()
        };
        let t = sim.trace(&q);
        if i == 0 {
            expected = t
                .outcomes
                .iter()
                .map(|o| (o.output.clone(), o.probability))
                .collect();
        }
        let k = match outputs.iter().position(|o| *o == t.chosen.output) {
            Some(k) => k,
            None => {
                outputs.push(t.chosen.output.clone());
                counts.push(0);
                outputs.len() - 1
            }
        };
        counts[k] += 1;
        per_packet.push(k);
    }
    Many {
        outputs,
        per_packet,
        counts,
        expected,
        keepalive,
        sched_after: sim.sched_view(p.proto, std::net::SocketAddr::new(p.dst, p.dport)),
        ipvsadm_after: sim.ipvsadm_list(),
    }
}

impl Reducible for State {
    type Action = Action;

    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        let mut s = (*self).clone();
        s.apply(action);
        Rc::new(s)
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    //! Reducer flows against the real core and the shipped demo. Expectations come from the demo's
    //! YAML (Service `my-service`, ClusterIP 10.104.14.67:80, Pods 10.0.0.2/3/4) and from
    //! kube-proxy's behaviour, not from earlier runs of this code.
    use super::*;
    use crate::model::SchedulerKind;
    use proxyscope_core::trace::{Hook, Step};

    fn demo() -> State {
        let s = State::new(Lang::En, false);
        assert!(s.model.is_ok(), "demo loads: {:?}", s.editor_errors);
        s
    }

    fn select_cluster_ip(s: &mut State) {
        let m = s.model().unwrap();
        let i = m
            .targets
            .iter()
            .position(|t| t.kind == "cluster_ip")
            .unwrap();
        assert_eq!(m.targets[i].dst.to_string(), "10.104.14.67");
        assert_eq!(m.targets[i].dport, 80);
        s.apply(Action::SelectTarget(i));
    }

    #[test]
    fn demo_has_the_pods_and_the_four_kinds_of_client() {
        let s = demo();
        let m = s.model().unwrap();
        let ips: Vec<&str> = m
            .pods
            .iter()
            .map(|p| p.split(':').next().unwrap())
            .collect();
        assert_eq!(ips, ["10.0.0.2", "10.0.0.3", "10.0.0.4"]);
        let labels: Vec<&str> = m.clients.iter().map(|c| c.label.as_str()).collect();
        for want in [
            "Pod on this node",
            "Pod on another node",
            "This node",
            "External client",
        ] {
            assert!(labels.contains(&want), "{want} in {labels:?}");
        }
    }

    #[test]
    fn send_then_step_like_a_debugger() {
        let mut s = demo();
        select_cluster_ip(&mut s);
        s.apply(Action::Send { seed: 7, now: 0.0 });
        assert!(s.playing, "sending starts playback");
        let n = s.timeline.len();
        assert!(n > 5);
        s.apply(Action::StepBack);
        assert_eq!((s.cursor, s.playing), (0, false));
        s.apply(Action::End);
        assert_eq!(s.cursor, n - 1);
        s.apply(Action::StepForward);
        assert_eq!(s.cursor, n - 1, "never past the last frame");
        s.apply(Action::Reset);
        s.apply(Action::NextHook);
        assert_eq!(
            s.timeline.frames[s.cursor].place,
            crate::engine::Place::Hook(Hook::Prerouting)
        );
        // Playing from the end restarts; ticks stop at the end.
        s.apply(Action::End);
        s.apply(Action::TogglePlay);
        assert_eq!((s.cursor, s.playing), (0, true));
        for _ in 0..n + 3 {
            s.apply(Action::Tick);
        }
        assert_eq!((s.cursor, s.playing), (n - 1, false));
        // A ClusterIP packet from a Pod ends DNATed to one of the demo's Pods.
        let last = &s.timeline.frames[n - 1].packet;
        assert!(["10.0.0.2", "10.0.0.3", "10.0.0.4"].contains(&last.dst.to_string().as_str()));
        assert!(
            s.trace
                .as_ref()
                .unwrap()
                .steps
                .iter()
                .any(|st| matches!(st, Step::Dnat { .. }))
        );
    }

    #[test]
    fn a_share_link_rebuilds_the_same_view_including_conntrack() {
        let mut s = demo();
        select_cluster_ip(&mut s);
        s.apply(Action::Send { seed: 1, now: 0.0 });
        // The same flow again (same source port): conntrack must report it as established.
        let mut first = s.sent[0].clone();
        first.sport = Some(s.trace.as_ref().unwrap().packet.sport);
        let sent = vec![
            first.clone(),
            SentPacket {
                seed: 2,
                now: 1.0,
                ..first
            },
        ];
        let mut s3 = demo();
        s3.apply(Action::Restore(ShareState {
            sent,
            step: 3,
            ..ShareState::default()
        }));
        let t3 = s3.trace.as_ref().unwrap();
        assert!(
            matches!(
                t3.steps[0],
                Step::Conntrack {
                    established: true,
                    ..
                }
            ),
            "second packet of a flow is ESTABLISHED"
        );
        assert_eq!(s3.cursor, 3);

        let link = crate::share::encode(&s3.share_state());
        let mut s4 = demo();
        s4.apply(Action::Restore(crate::share::decode(&link).unwrap()));
        assert_eq!(s4.trace, s3.trace);
        assert_eq!(s4.timeline, s3.timeline);
        assert_eq!(s4.cursor, 3);
    }

    #[test]
    fn the_next_packet_of_a_connection_skips_nat() {
        let mut s = demo();
        select_cluster_ip(&mut s);
        s.apply(Action::Send { seed: 3, now: 0.0 });
        let first = s.trace.clone().unwrap();
        s.apply(Action::SendAgain { seed: 4, now: 1.0 });
        let second = s.trace.clone().unwrap();
        // Kernel behaviour: nat chains run only for a connection's first packet; later packets
        // get the same DNAT from conntrack, whatever the random draw would have been.
        assert!(matches!(
            second.steps[0],
            Step::Conntrack {
                established: true,
                ..
            }
        ));
        assert!(
            !second
                .steps
                .iter()
                .any(|st| matches!(st, Step::Hook { table, .. } if &**table == "nat"))
        );
        assert_eq!(
            second.final_packet.map(|p| p.dst),
            first.final_packet.map(|p| p.dst)
        );
        assert_eq!(second.packet.sport, first.packet.sport);
    }

    #[test]
    fn ipvs_mode_round_robins_and_survives_a_share_link() {
        let mut s = demo();
        select_cluster_ip(&mut s);
        s.apply(Action::SetMode(Mode::Ipvs));
        s.apply(Action::Send { seed: 1, now: 0.0 });
        let tr = s.trace.clone().unwrap();
        assert_eq!(tr.mode, "ipvs");
        // IPVS DNATs at LOCAL_IN (the ClusterIP sits on kube-ipvs0, so it routes as local).
        assert!(
            tr.steps
                .iter()
                .any(|st| matches!(st, Step::IpvsSchedule { .. }))
        );
        // kube-proxy's default IPVS scheduler is rr: 30 new connections give exactly 10 each.
        s.apply(Action::SendMany {
            n: 30,
            seed: 1,
            now: 0.0,
        });
        assert_eq!(s.many.as_ref().unwrap().counts, [10, 10, 10]);

        let link = crate::share::encode(&s.share_state());
        let mut s2 = demo();
        s2.apply(Action::Restore(crate::share::decode(&link).unwrap()));
        assert_eq!(s2.mode, Mode::Ipvs);
        assert_eq!(s2.trace, s.trace);
    }

    #[test]
    fn send_many_spreads_uniformly_without_affinity() {
        let mut s = demo();
        select_cluster_ip(&mut s);
        s.apply(Action::SendMany {
            n: 1000,
            seed: 99,
            now: 0.0,
        });
        let m = s.many.as_ref().unwrap();
        assert_eq!(m.counts.iter().sum::<usize>(), 1000);
        assert_eq!(m.outputs.len(), 3);
        // kube-proxy's cascade (1/3, then 1/2, then the rest) is uniform: 333 each, σ ≈ 14.9.
        for c in &m.counts {
            assert!(c.abs_diff(333) < 75, "{:?}", m.counts);
        }
        for (_, p) in &m.expected {
            assert!((p - 1.0 / 3.0).abs() < 1e-9);
        }
    }

    #[test]
    fn send_many_with_client_ip_affinity_sticks_to_one_pod() {
        let mut s = demo();
        let i = model::PRESETS
            .iter()
            .position(|p| p.0 == "session-affinity.yaml")
            .unwrap();
        s.apply(Action::LoadPreset(i));
        assert!(s.editor_errors.is_empty(), "{:?}", s.editor_errors);
        let m = s.model().unwrap();
        let c = m
            .clients
            .iter()
            .position(|c| c.label == "Pod on another node")
            .unwrap();
        let t = m
            .targets
            .iter()
            .position(|t| t.kind == "cluster_ip")
            .unwrap();
        s.apply(Action::SelectClient(c));
        s.apply(Action::SelectTarget(t));
        s.apply(Action::SendMany {
            n: 100,
            seed: 5,
            now: 0.0,
        });
        // sessionAffinity: ClientIP — kube-proxy's `-m recent --rcheck` pins one client to one Pod.
        let many = s.many.as_ref().unwrap();
        assert_eq!(many.outputs.len(), 1, "{:?}", many.outputs);
        assert_eq!(many.counts, [100]);
    }

    #[test]
    fn a_broken_edit_keeps_the_loaded_scenario_and_reports_lines() {
        let mut s = demo();
        s.apply(Action::EditScenario(
            "kind: Service\nmetadata: [oops\n".into(),
        ));
        s.apply(Action::LoadScenario);
        assert!(s.model.is_ok(), "previous scenario stays active");
        assert!(!s.editor_errors.is_empty());
        assert!(
            s.editor_errors.iter().any(|d| d.line.is_some()),
            "{:?}",
            s.editor_errors
        );
    }

    fn in_ipvs(s: &mut State) {
        select_cluster_ip(s);
        s.apply(Action::SetMode(Mode::Ipvs));
    }

    #[test]
    fn side_by_side_contrasts_the_chain_walk_with_the_ipvs_lookup() {
        let mut s = demo();
        select_cluster_ip(&mut s);
        s.apply(Action::SetCompare(true));
        s.apply(Action::Send { seed: 11, now: 0.0 });
        let (a, b) = s.compared().expect("both modes traced the packet");
        assert_eq!((a.mode.as_str(), b.mode.as_str()), ("iptables", "ipvs"));
        let (sa, sb) = (
            model::summarize(Mode::Iptables, &a),
            model::summarize(Mode::Ipvs, &b),
        );
        // kube-proxy iptables mode: KUBE-SERVICES → KUBE-SVC-… with one `-m statistic` rule per
        // endpoint but the last (3 Pods: the draw happens at 1 or 2 of them), DNAT in nat
        // PREROUTING for a packet arriving from a Pod.
        assert!(sa.nat_chains.iter().any(|c| c == "KUBE-SERVICES"), "{sa:?}");
        assert!(sa.nat_chains.iter().any(|c| c.starts_with("KUBE-SVC-")));
        assert!((1..=2).contains(&sa.random_rules), "{sa:?}");
        assert_eq!(sa.scheduler, None);
        assert_eq!(sa.dnat_hook, Some(Hook::Prerouting));
        // IPVS mode: no per-Service chains, the ClusterIP is found by the IPVS table lookup and
        // the default scheduler rr decides at LOCAL_IN (INPUT).
        assert!(!sb.nat_chains.iter().any(|c| c.starts_with("KUBE-SVC-")));
        assert_eq!(sb.random_rules, 0);
        assert_eq!(
            sb.ipvs_service
                .as_deref()
                .map(|v| v.contains("10.104.14.67:80")),
            Some(true)
        );
        assert_eq!(sb.scheduler.as_ref().map(|s| s.0.as_str()), Some("rr"));
        assert_eq!(sb.dnat_hook, Some(Hook::Input));
        let notes = crate::i18n::compare_notes(Lang::En, &sa, &sb);
        assert!(notes.iter().any(|n| n.contains("LOCAL_IN")), "{notes:?}");

        // Same order whatever the main mode, and the link keeps the side-by-side view.
        let link = crate::share::encode(&s.share_state());
        let mut s2 = demo();
        s2.apply(Action::Restore(crate::share::decode(&link).unwrap()));
        assert!(s2.compare);
        assert_eq!(s2.compared(), s.compared());
    }

    #[test]
    fn scheduler_choice_reaches_every_virtual_server_and_the_link() {
        let mut s = demo();
        in_ipvs(&mut s);
        assert_eq!(
            s.effective_scheduler(),
            SchedulerKind::Rr,
            "kube-proxy's default"
        );
        s.apply(Action::SetScheduler(SchedulerKind::Wrr));
        s.apply(Action::Send { seed: 1, now: 0.0 });
        let tr = s.trace.clone().unwrap();
        assert!(
            tr.steps
                .iter()
                .any(|st| matches!(st, Step::IpvsSchedule { scheduler, .. } if scheduler == "wrr"))
        );
        let v = s.sched_view().expect("the ClusterIP is a virtual server");
        assert_eq!(v.scheduler, SchedulerKind::Wrr);
        // ip_vs_wrr.c: equal weights 1 → di = gcd = 1, mw = max weight − (di − 1) = 1.
        let fact = |f: model::Fact| v.facts.iter().find(|x| x.0 == f).map(|x| x.1.clone());
        assert_eq!(fact(model::Fact::Di).as_deref(), Some("1"));
        assert_eq!(fact(model::Fact::Mw).as_deref(), Some("1"));
        let link = crate::share::encode(&s.share_state());
        let mut s2 = demo();
        s2.apply(Action::Restore(crate::share::decode(&link).unwrap()));
        assert_eq!(s2.scheduler, Some(SchedulerKind::Wrr));
        assert_eq!(s2.trace, s.trace);
    }

    #[test]
    fn rr_state_points_at_the_server_it_returned_last() {
        let mut s = demo();
        in_ipvs(&mut s);
        for i in 0..4 {
            s.apply(Action::Send {
                seed: i,
                now: i as f64,
            });
            // ip_vs_rr.c keeps `sched_data` on the list entry it returned, so the next scan
            // starts after it.
            let chosen = s.trace.as_ref().unwrap().chosen.output.clone();
            let v = s.sched_view().unwrap();
            assert_eq!(v.facts[0], (model::Fact::Position, chosen));
            let active: i32 = v.servers.iter().map(|d| d.active + d.inactive).sum();
            assert_eq!(active, i as i32 + 1, "one connection per packet sent");
        }
        assert!(
            s.ipvsadm_list()
                .unwrap()
                .contains("TCP  10.104.14.67:80 rr")
        );
    }

    #[test]
    fn hashing_schedulers_on_one_vip_and_one_client_pick_one_server() {
        // dh hashes the destination address (always the VIP) and sh the source address (one
        // client): with either, every new connection lands on the same server.
        for k in [SchedulerKind::Dh, SchedulerKind::Sh] {
            let mut s = demo();
            in_ipvs(&mut s);
            s.apply(Action::SetScheduler(k));
            s.apply(Action::SendMany {
                n: 30,
                seed: 3,
                now: 0.0,
            });
            let m = s.many.as_ref().unwrap();
            assert_eq!(m.counts, [30], "{k}: {:?}", m.outputs);
            let v = m.sched_after.as_ref().unwrap();
            // 256 buckets (IP_VS_DH_TAB_BITS / IP_VS_SH_TAB_BITS = 8) shared by 3 servers.
            assert_eq!(
                v.servers.iter().filter_map(|d| d.buckets).sum::<usize>(),
                256
            );
        }
    }

    #[test]
    fn keepalive_spreads_connections_not_requests() {
        let mut s = demo();
        in_ipvs(&mut s);
        s.apply(Action::SetKeepalive(true));
        s.apply(Action::SendMany {
            n: 30,
            seed: 1,
            now: 0.0,
        });
        // 30 requests over 4 pooled connections: connections 0..3 carry 8, 8, 7, 7 requests;
        // rr gives connections 0 and 3 the same Pod (A B C A), so A gets 8 + 7.
        assert_eq!(s.many.as_ref().unwrap().counts, [15, 8, 7]);
        s.apply(Action::SetKeepalive(false));
        s.apply(Action::SendMany {
            n: 30,
            seed: 1,
            now: 0.0,
        });
        assert_eq!(s.many.as_ref().unwrap().counts, [10, 10, 10]);
    }

    #[test]
    fn a_pasted_dump_is_traced_and_its_problems_have_lines() {
        let loaded = proxyscope_core::api::load_scenario(model::DEMO).unwrap();
        let saved = proxyscope_core::api::iptables_rules(&loaded.scenario)
            .remove(0)
            .saved;
        let mut s = demo();
        select_cluster_ip(&mut s);
        // A line iptables-restore would refuse, as line 3 of the dump.
        let mut lines: Vec<&str> = saved.lines().collect();
        lines.insert(2, "-A KUBE-SERVICES --bogus-option");
        s.apply(Action::EditDump(lines.join("\n")));
        s.apply(Action::LoadDump);
        assert!(s.dump.is_some());
        assert!(
            s.dump_errors.iter().any(|d| d.line == Some(3)),
            "{:?}",
            s.dump_errors
        );
        s.apply(Action::Send { seed: 5, now: 0.0 });
        let out = s.trace.as_ref().unwrap().chosen.output.clone();
        assert!(
            ["10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80"]
                .iter()
                .any(|p| out.starts_with(&p[..8])),
            "{out}"
        );
        // The link carries the dump.
        let link = crate::share::encode(&s.share_state());
        let mut s2 = demo();
        s2.apply(Action::Restore(crate::share::decode(&link).unwrap()));
        assert_eq!(s2.dump, s.dump);
        assert_eq!(s2.trace, s.trace);
        s.apply(Action::ClearDump);
        assert!(s.dump.is_none());
    }

    #[test]
    fn an_ipvs_dump_with_a_custom_destination() {
        let loaded = proxyscope_core::api::load_scenario(model::DEMO).unwrap();
        let text = proxyscope_core::api::ipvs_rules(&loaded.scenario).text();
        let mut s = demo();
        s.apply(Action::SetMode(Mode::Ipvs));
        s.apply(Action::EditDump(text));
        s.apply(Action::LoadDump);
        s.apply(Action::SetCustomDst("10.104.14.67:80".into()));
        assert!(s.custom_dst.is_some());
        s.apply(Action::Send { seed: 5, now: 0.0 });
        let tr = s.trace.as_ref().unwrap();
        assert!(
            tr.steps
                .iter()
                .any(|st| matches!(st, Step::IpvsSchedule { .. }))
        );
        assert!(s.ipvsadm_list().unwrap().contains("10.104.14.67:80"));
        s.apply(Action::SetCustomDst("not an address".into()));
        assert!(s.custom_dst.is_none());
    }

    #[test]
    fn scale_view_opens_only_with_an_offered_endpoint_count_and_survives_a_link() {
        let mut s = demo();
        s.apply(Action::SetScale(Some(7)));
        assert_eq!(s.scale, None, "7 endpoints per Service is not offered");
        s.apply(Action::SetScale(Some(10)));
        assert_eq!(s.scale, Some(10));
        let link = crate::share::encode(&s.share_state());
        let mut s2 = demo();
        s2.apply(Action::Restore(crate::share::decode(&link).unwrap()));
        assert_eq!(s2.scale, Some(10));
    }

    #[test]
    fn a_link_with_an_unknown_scheduler_is_an_error_not_a_silent_default() {
        let mut s = demo();
        s.apply(Action::Restore(ShareState {
            mode: "ipvs".into(),
            sched: Some("fastest".into()),
            ..ShareState::default()
        }));
        assert!(s.share_error.as_deref().unwrap().contains("fastest"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Whatever is pasted as a dump, in either mode: diagnostics, never a panic, and a packet
        /// can still be sent through what loaded.
        #[test]
        fn any_pasted_dump_traces_without_panicking(
            lines in proptest::collection::vec(
                proptest::prop_oneof![
                    "[ -~]{0,60}",
                    proptest::strategy::Just("*nat".to_string()),
                    proptest::strategy::Just("COMMIT".to_string()),
                    proptest::strategy::Just("# ipvsadm -Sn".to_string()),
                    proptest::strategy::Just("# ipset save".to_string()),
                    proptest::strategy::Just("# iptables-save".to_string()),
                    proptest::strategy::Just(":KUBE-SERVICES - [0:0]".to_string()),
                    "-A (PREROUTING|KUBE-SERVICES|OUTPUT) -d 10\\.104\\.14\\.67/32 -p tcp -m tcp --dport 80 -j (KUBE-SERVICES|DNAT|ACCEPT|KUBE-MARK-MASQ)",
                    "-A -t 10\\.104\\.14\\.67:80 -s (rr|wrr|sh|nope)",
                    "-a -t 10\\.104\\.14\\.67:80 -r 10\\.0\\.0\\.[0-9]:80 -m -w [0-9]",
                    "add KUBE-CLUSTER-IP 10\\.104\\.14\\.67,tcp:80",
                ],
                0..30,
            ),
            ipvs in proptest::bool::ANY,
        ) {
            let mut s = demo();
            select_cluster_ip(&mut s);
            if ipvs {
                s.apply(Action::SetMode(Mode::Ipvs));
            }
            s.apply(Action::EditDump(lines.join("\n")));
            s.apply(Action::LoadDump);
            s.apply(Action::Send { seed: 1, now: 0.0 });
            for d in s.dump_errors.iter() {
                proptest::prop_assert!(!d.message.is_empty());
            }
        }
    }

    #[test]
    fn a_huge_dump_stays_out_of_the_share_link() {
        let mut s = demo();
        s.apply(Action::EditDump(format!(
            "*nat\n{}COMMIT\n",
            "# padding comment line\n".repeat(MAX_SHARED_DUMP / 20)
        )));
        s.apply(Action::LoadDump);
        assert!(s.dump.is_some());
        assert_eq!(s.share_state().dump, None);
    }
}
