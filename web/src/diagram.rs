//! The node diagram: client, the netfilter hooks in kernel order, the routing decision and the
//! Pods, with the packet drawn where the current frame puts it.
//!
//! Layout follows the classic netfilter picture (as in kube-proxy's nftables README): arriving
//! packets meet PREROUTING, then routing decides between INPUT (local socket) and FORWARD (another
//! host); locally generated packets go through OUTPUT; everything leaving meets POSTROUTING.

use std::rc::Rc;

use proxyscope_core::trace::{Hook, Trace};
use yew::prelude::*;

use crate::engine::{self, Place, Timeline};
use crate::i18n::{K, Lang, t};

pub const W: f64 = 960.0;
pub const H: f64 = 330.0;
const POD_X: f64 = 870.0;

/// The diagram's styles for an exported SVG file: the page's rules with its colour variables
/// resolved (keep in step with index.html).
pub const EXPORT_CSS: &str = "text{font-family:system-ui,'Noto Sans','Noto Sans CJK SC',sans-serif;font-size:13px;text-anchor:middle;fill:#111827}\
.node-frame{fill:#f8fafc;stroke:#9ca3af;stroke-dasharray:6 4}text.node-label{fill:#4b5563;font-size:13px;text-anchor:start}\
.edge{stroke:#9ca3af;stroke-width:2}.travelled{fill:none;stroke:#60a5fa;stroke-width:5;stroke-linejoin:round;opacity:.8}\
.hook rect,.box rect,.pod rect,.routing polygon{fill:#fff;stroke:#374151;stroke-width:1.5}\
.hook.visited rect,.box.visited rect,.routing.visited polygon{fill:#eff6ff;stroke:#60a5fa}\
.hook.active rect,.box.active rect,.routing.active polygon,.pod.active rect{fill:#dbeafe;stroke:#1d4ed8;stroke-width:3}\
.pod.other rect{stroke-dasharray:4 3}#client text{font-size:12px}text.sub{font-size:11px;fill:#4b5563}.label{font-weight:600}\
.packet circle{fill:#f59e0b;stroke:#78350f;stroke-width:2}.packet.rewritten circle{fill:#10b981;stroke:#064e3b}\
.packet.dropped circle{fill:#ef4444;stroke:#7f1d1d}.packet .x{stroke:#fff;stroke-width:3}";

fn hook_pos(h: Hook) -> (f64, f64) {
    match h {
        Hook::Prerouting => (220.0, 160.0),
        Hook::Input => (500.0, 60.0),
        Hook::Forward => (500.0, 260.0),
        Hook::Output => (690.0, 160.0),
        Hook::Postrouting => (690.0, 260.0),
    }
}
const CLIENT: (f64, f64) = (76.0, 160.0);
const ROUTING: (f64, f64) = (360.0, 160.0);
const LOCAL: (f64, f64) = (690.0, 60.0);

/// y of the i-th of n Pods in the right-hand column (the last slot is "other node").
fn pod_y(i: usize, n: usize) -> f64 {
    let n = n.max(1) as f64;
    40.0 + (i as f64 + 0.5) * (H - 60.0) / n
}

#[derive(Properties, PartialEq)]
pub struct Props {
    pub lang: Lang,
    pub client_label: AttrValue,
    pub pods: Rc<Vec<String>>,
    /// Endpoint addresses on this node (the rest are on other nodes).
    #[prop_or_default]
    pub local_pods: Rc<Vec<std::net::IpAddr>>,
    pub timeline: Rc<Timeline>,
    pub trace: Option<Rc<Trace>>,
    pub cursor: usize,
}

#[function_component(Diagram)]
pub fn diagram(p: &Props) -> Html {
    let lang = p.lang;
    let tl = &p.timeline;
    let frame = tl.frames.get(p.cursor);
    // A packet made on the node itself starts at the local process and first meets OUTPUT.
    let starts_local = tl.hooks.first().is_some_and(|h| h.hook == Hook::Output);
    let n_slots = p.pods.len() + 1;
    let out_pos = |dst: &str| -> (f64, f64) {
        match p.pods.iter().position(|pod| {
            pod.split(':').next() == Some(dst) || pod.starts_with(&format!("[{dst}]"))
        }) {
            Some(i) => (POD_X, pod_y(i, n_slots)),
            None => (POD_X, pod_y(n_slots - 1, n_slots)),
        }
    };
    let pos = |place: Place, f: Option<&engine::Frame>| -> (f64, f64) {
        match place {
            Place::Client if starts_local => LOCAL,
            Place::Client => CLIENT,
            Place::Hook(h) => hook_pos(h),
            Place::Routing => ROUTING,
            // Output-path route lookups belong to the OUTPUT side of the picture, not to the
            // PREROUTING-side decision.
            Place::Reroute => hook_pos(Hook::Output),
            Place::LocalProcess => LOCAL,
            Place::Out => out_pos(&f.map(|f| f.packet.dst.to_string()).unwrap_or_default()),
            Place::Dropped => f.and_then(|f| f.hook).map(hook_pos).unwrap_or(CLIENT),
        }
    };
    let visited: Vec<Place> = if frame.is_some() {
        engine::visited(tl, p.cursor)
    } else {
        vec![]
    };
    let path: String = visited
        .iter()
        .map(|pl| {
            let (x, y) = pos(*pl, frame);
            format!("{x},{y}")
        })
        .collect::<Vec<_>>()
        .join(" ");
    // For a packet made on the node, "the client" is the local process, and its re-route is
    // drawn inside the OUTPUT path, so neither the client box nor the diamond light up.
    let canon = |pl: Place| match pl {
        Place::Client if starts_local => Place::LocalProcess,
        Place::Reroute => Place::Hook(Hook::Output),
        pl => pl,
    };
    let cur_place = frame.map(|f| f.place);
    let is_active = |pl: Place| cur_place.map(canon) == Some(pl);
    let was_visited = |pl: Place| visited.iter().any(|v| canon(*v) == pl);

    let hook_box = |h: Hook| {
        let (x, y) = hook_pos(h);
        let active = is_active(Place::Hook(h))
            || (frame.is_some_and(|f| f.hook == Some(h))
                && matches!(cur_place, Some(Place::Dropped)));
        let class = classes!(
            "hook",
            active.then_some("active"),
            was_visited(Place::Hook(h)).then_some("visited")
        );
        let table = if active {
            frame
                .and_then(|f| f.table.as_deref())
                .unwrap_or_default()
                .to_string()
        } else {
            String::new()
        };
        html! {
            <g class={class} id={format!("hook-{}", h.as_str())} data-hook={h.as_str()}>
                <rect x={(x - 62.0).to_string()} y={(y - 22.0).to_string()} width="124" height="44" rx="6" />
                <text x={x.to_string()} y={(y + 2.0).to_string()} class="label">{ h.as_str() }</text>
                if !table.is_empty() {
                    <text x={x.to_string()} y={(y + 16.0).to_string()} class="sub">{ table }</text>
                }
            </g>
        }
    };
    let box_at = |id: &str, (x, y): (f64, f64), label: String, pl: Place| {
        let class = classes!(
            "box",
            is_active(pl).then_some("active"),
            was_visited(pl).then_some("visited")
        );
        // Client labels ("Pod on another node") are longer than hook names.
        let w = if id == "client" { 146.0 } else { 124.0 };
        html! {
            <g class={class} id={id.to_string()}>
                <rect x={(x - w / 2.0).to_string()} y={(y - 22.0).to_string()} width={w.to_string()} height="44" rx="6" />
                <text x={x.to_string()} y={(y + 5.0).to_string()} class="label">{ label }</text>
            </g>
        }
    };
    let edge = |a: (f64, f64), b: (f64, f64)| {
        html! { <line class="edge" x1={a.0.to_string()} y1={a.1.to_string()} x2={b.0.to_string()} y2={b.1.to_string()} /> }
    };
    let chosen_dst = frame
        .filter(|f| f.place == Place::Out)
        .map(|f| f.packet.dst.to_string());
    let prob = |pod: &str| -> Option<f64> {
        p.trace.as_ref().and_then(|t| {
            t.outcomes
                .iter()
                .find(|o| o.output == pod)
                .map(|o| o.probability)
        })
    };
    let pods = p.pods.iter().enumerate().map(|(i, pod)| {
        let y = pod_y(i, n_slots);
        let chosen = chosen_dst.as_deref().is_some_and(|d| pod.split(':').next() == Some(d));
        let local = p.local_pods.iter().any(|ip| pod.split(':').next() == Some(ip.to_string().as_str()) || pod.starts_with(&format!("[{ip}]")));
        let where_ = if local { t(lang, K::ThisNode) } else { t(lang, K::OtherNode) };
        let pr = match prob(pod) {
            Some(v) => format!("{where_} · p = {v:.3}"),
            None => where_.to_string(),
        };
        html! {
            <g class={classes!("pod", chosen.then_some("active"))} data-endpoint={pod.clone()}>
                <rect x={(POD_X - 72.0).to_string()} y={(y - 20.0).to_string()} width="144" height="40" rx="20" />
                <text x={POD_X.to_string()} y={(y - 2.0).to_string()} class="label">{ format!("Pod {pod}") }</text>
                <text x={POD_X.to_string()} y={(y + 13.0).to_string()} class="sub">{ pr }</text>
            </g>
        }
    });
    let other_y = pod_y(n_slots - 1, n_slots);
    let other_active = chosen_dst
        .as_deref()
        .is_some_and(|d| !p.pods.iter().any(|pod| pod.split(':').next() == Some(d)));
    let (px, py) = frame
        .map(|f| pos(f.place, Some(f)))
        .unwrap_or(if starts_local { LOCAL } else { CLIENT });
    let dropped = cur_place == Some(Place::Dropped);
    // The dot sits on the top edge of boxes so it never hides their label.
    let dot_lift = match cur_place {
        Some(Place::Out) => 20.0,
        Some(Place::Routing) => 30.0,
        _ => 22.0,
    };
    let changed = frame.is_some_and(|f| f.changed.dst || f.changed.src);

    html! {
        <figure class="diagram">
            <svg viewBox={format!("0 0 {W} {H}")} role="img" aria-labelledby="diagram-title" id="diagram">
                <title id="diagram-title">{ t(lang, K::Node) }</title>
                <rect class="node-frame" x="150" y="15" width="620" height="300" rx="10" />
                <text class="node-label" x="160" y="34">{ t(lang, K::Node) }</text>
                { edge(CLIENT, hook_pos(Hook::Prerouting)) }
                { edge(hook_pos(Hook::Prerouting), ROUTING) }
                { edge(ROUTING, hook_pos(Hook::Input)) }
                { edge(ROUTING, hook_pos(Hook::Forward)) }
                { edge(hook_pos(Hook::Input), LOCAL) }
                { edge(LOCAL, hook_pos(Hook::Output)) }
                { edge(hook_pos(Hook::Output), hook_pos(Hook::Postrouting)) }
                { edge(hook_pos(Hook::Forward), hook_pos(Hook::Postrouting)) }
                { for (0..n_slots).map(|i| edge(hook_pos(Hook::Postrouting), (POD_X - 72.0, pod_y(i, n_slots)))) }
                <polyline class="travelled" points={path} />
                { box_at("client", CLIENT, p.client_label.to_string(), Place::Client) }
                <g class={classes!("routing", is_active(Place::Routing).then_some("active"), was_visited(Place::Routing).then_some("visited"))} id="routing">
                    <polygon points={format!("{},{} {},{} {},{} {},{}", ROUTING.0, ROUTING.1 - 30.0, ROUTING.0 + 48.0, ROUTING.1, ROUTING.0, ROUTING.1 + 30.0, ROUTING.0 - 48.0, ROUTING.1)} />
                    <text x={ROUTING.0.to_string()} y={(ROUTING.1 + 4.0).to_string()} class="label">{ t(lang, K::Routing) }</text>
                </g>
                { hook_box(Hook::Prerouting) }
                { hook_box(Hook::Input) }
                { hook_box(Hook::Forward) }
                { hook_box(Hook::Output) }
                { hook_box(Hook::Postrouting) }
                { box_at("local-process", LOCAL, t(lang, K::LocalProcess).to_string(), Place::LocalProcess) }
                { for pods }
                <g class={classes!("pod", "other", other_active.then_some("active"))}>
                    <rect x={(POD_X - 72.0).to_string()} y={(other_y - 20.0).to_string()} width="144" height="40" rx="6" />
                    <text x={POD_X.to_string()} y={(other_y + 5.0).to_string()} class="label">{ t(lang, K::Elsewhere) }</text>
                </g>
                if frame.is_some() {
                    <g class={classes!("packet", dropped.then_some("dropped"), changed.then_some("rewritten"))} id="packet-dot"
                        style={format!("transform: translate({px}px, {}px)", py - dot_lift)}>
                        <circle r="11" />
                        if dropped { <path d="M-7,-7 L7,7 M7,-7 L-7,7" class="x" /> }
                    </g>
                }
            </svg>
        </figure>
    }
}
