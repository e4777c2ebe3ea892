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
use crate::model::{self, Mode, Model, Sim};
use crate::share::{SentPacket, ShareState};

/// Milliseconds per step for the speed control, slowest first.
pub const SPEEDS_MS: [u32; 5] = [1600, 800, 400, 200, 80];
pub const DEFAULT_SPEED: usize = 1;
/// Packets kept for a share link; older ones are dropped (and with them their conntrack history).
pub const MAX_SENT: usize = 32;
pub const MANY_CHOICES: [usize; 4] = [1, 10, 100, 1000];

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
        };
        s.load(model::DEMO.to_string());
        s
    }

    fn new_sim(&self, m: &Model) -> Option<Rc<RefCell<Sim>>> {
        Some(Rc::new(RefCell::new(Sim::with_mode(m, self.mode))))
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
            ..ShareState::default()
        }
    }

    fn load(&mut self, text: String) -> bool {
        match model::load(&text) {
            Ok(m) => {
                let m = Rc::new(m);
                self.sim = self.new_sim(&m);
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
    }

    fn selected_packet(&self, seed: u64, now: f64) -> Option<SentPacket> {
        let m = self.model()?;
        let c = m.clients.get(self.client)?;
        let t = m.targets.get(self.target)?;
        Some(SentPacket {
            src: c.src,
            dst: t.dst,
            dport: t.dport,
            proto: self.proto,
            sport: None,
            seed,
            now,
        })
    }

    fn run(&mut self, p: SentPacket) {
        let Some(sim) = &self.sim else { return };
        let trace = sim.borrow_mut().trace(&p);
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
                    if let Ok(m) = self.model.clone() {
                        self.sim = self.new_sim(&m);
                    }
                    self.clear_trace();
                    self.sent.clear();
                }
            }
            Action::LoadPreset(i) => {
                if let Some((_, text)) = model::PRESETS.get(i) {
                    self.load(text.to_string());
                }
            }
            Action::SendMany { n, seed, now } => {
                if let (Some(m), Some(p)) =
                    (self.model.clone().ok(), self.selected_packet(seed, now))
                {
                    self.many = Some(Rc::new(send_many(&m, self.mode, &p, n)));
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
        let text = sh.scenario.unwrap_or_else(|| model::DEMO.to_string());
        if !self.load(text) {
            self.share_error = Some("scenario in the link does not load".into());
            return;
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

/// Trace `n` new connections with a fresh session each time the button is pressed (so the
/// learner's stepping session is left alone), each with its own seed. Conntrack/affinity state
/// carries across the `n` connections, as it would on a real node: with session affinity they all
/// land on one Pod, which is the point to see.
pub fn send_many(m: &Model, mode: Mode, p: &SentPacket, n: usize) -> Many {
    let mut sim = Sim::with_mode(m, mode);
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
            sport: Some(32768u16.wrapping_add((i % 28232) as u16)),
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
                .any(|st| matches!(st, Step::Hook { table, .. } if table == "nat"))
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
}
