//! The chain graph: every table's chains as nodes, `-j` / `-g` rules as edges (petgraph), drawn
//! as a collapsible tree that stays readable with tens of thousands of chains.
//!
//! kube-proxy's iptables mode fans out from a few built-in chains: `KUBE-SERVICES` jumps to one
//! `KUBE-SVC-…` chain per Service port, each of those to one `KUBE-SEP-…` per endpoint (10,000
//! Services are some 40,000 chains). Drawing all of them helps nobody, so only what matters is
//! drawn: the built-in chains, the chains the current packet walked (expanded), the chain the
//! learner searched for with the jumps that lead to it, and every other fan-out folded into one
//! "+N chains" row. The graph is built once per ruleset; a search or a step only re-lists rows.

use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;

use petgraph::Direction;
use petgraph::graph::{DiGraph, EdgeIndex, NodeIndex};
use proxyscope_core::rules::iptables::{Family, Match, Ruleset, Target, parse};
use proxyscope_core::trace::{Step, Trace};

/// A chain.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainNode {
    pub table: String,
    pub name: String,
    /// Built-in chain (has a policy): a root of the drawing.
    pub builtin: bool,
    /// Number of rules in the chain.
    pub rules: usize,
    /// The chain's first `-m comment` (kube-proxy names the Service port there).
    pub comment: Option<String>,
    /// Dump lines (1-based) of the chain's rules, in rule order.
    pub lines: Vec<u32>,
    /// Jumps from the nearest built-in chain (`u32::MAX`: not reachable from any hook).
    pub depth: u32,
}

/// All the rules of one chain that jump (or go) to the same chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// `-g`: a RETURN in the target goes back past this chain.
    pub goto: bool,
    pub rules: usize,
    /// 1-based index of the first such rule (children are listed in rule order).
    pub first_rule: usize,
}

/// A ruleset as a graph, plus the dump text for search and rule listings.
pub struct ChainGraph {
    pub graph: DiGraph<ChainNode, Link>,
    pub family: Family,
    by_name: HashMap<(String, String), NodeIndex>,
    /// Built-in chains, table by table in dump order.
    roots: Vec<NodeIndex>,
    /// The dump with ASCII letters lower-cased (same byte offsets), for case-insensitive search.
    lower: String,
    text: String,
    /// Byte offset of each line's start.
    line_starts: Vec<u32>,
    /// Children of each chain in rule order.
    children: Vec<Vec<EdgeIndex>>,
}

impl PartialEq for ChainGraph {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl std::fmt::Debug for ChainGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ChainGraph({} chains, {} links)",
            self.graph.node_count(),
            self.graph.edge_count()
        )
    }
}

/// How a search hit ranks, smaller first: (name match, share of rules not naming the query as
/// a word, share of rules not naming it at all, depth).
type RankKey = (u8, u32, u32, u32);

/// A search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub node: NodeIndex,
    /// The first line that matched (the chain name when the name matched).
    pub sample: String,
}

/// One drawn row of the tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    Chain {
        node: NodeIndex,
        depth: usize,
        /// How the parent row reaches this chain (None for a built-in chain).
        link: Option<Link>,
        /// The children are listed below (false: folded, or the chain has none).
        expanded: bool,
        /// Jump targets this chain has.
        fan_out: usize,
        /// Already drawn above (a chain many chains jump to, e.g. `KUBE-MARK-MASQ`): listed
        /// again without its children.
        repeat: bool,
    },
    /// Children of `parent` that are not drawn.
    Folded {
        parent: NodeIndex,
        depth: usize,
        chains: usize,
        rules: usize,
        /// The parent is unfolded and these are past [`UNFOLD_LIMIT`]: search, don't click.
        over_limit: bool,
    },
}

/// What the drawing must show besides the built-in chains.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct View {
    /// Chains the learner folded or unfolded: built-in chains (and every chain of a small
    /// ruleset) start unfolded, the others folded.
    pub toggled: HashSet<NodeIndex>,
    /// Chains the packet walked.
    pub packet: HashSet<NodeIndex>,
    /// The searched chain and the chains leading to it from a hook.
    pub focus_path: Vec<NodeIndex>,
}

/// At most this many children of one chain are drawn when it is unfolded; the rest stay folded.
pub const UNFOLD_LIMIT: usize = 40;
/// Rulesets up to this many chains start fully unfolded (the demo's ~30 chains fit on a screen).
pub const SMALL_GRAPH: usize = 60;

impl ChainGraph {
    /// Parse an `iptables-save` (or `iptables-restore`) text and build the graph. Problems in
    /// the text are the dump editor's business; what parsed is drawn.
    pub fn from_text(text: &str, family: Family) -> ChainGraph {
        let parsed = parse::parse(text, family);
        Self::build(&parsed.ruleset, text.to_string(), family)
    }

    pub fn build(rs: &Ruleset, text: String, family: Family) -> ChainGraph {
        let mut graph: DiGraph<ChainNode, Link> = DiGraph::new();
        let mut by_name = HashMap::new();
        let mut roots = Vec::new();
        for t in &rs.tables {
            for c in &t.chains {
                // What the chain is for, when every comment in it names the same thing
                // (kube-proxy starts a Service chain's comments with `ns/name:port`);
                // `KUBE-SERVICES` mixes many and gets none.
                let mut comments = c.rules.iter().flat_map(|r| {
                    r.matches.iter().filter_map(|m| match m {
                        Match::Comment { comment } => comment.split_whitespace().next(),
                        _ => None,
                    })
                });
                let first = comments.next();
                let comment = first
                    .filter(|f| f.contains('/') && comments.all(|o| o == *f))
                    .map(str::to_string);
                let n = graph.add_node(ChainNode {
                    table: t.name.clone(),
                    name: c.name.clone(),
                    builtin: c.policy.is_some(),
                    rules: c.rules.len(),
                    comment,
                    lines: c.rules.iter().map(|r| r.line as u32).collect(),
                    depth: u32::MAX,
                });
                by_name.insert((t.name.clone(), c.name.clone()), n);
                if c.policy.is_some() {
                    roots.push(n);
                }
            }
        }
        // Built-in chains in the order a packet meets them: by hook, then by table priority
        // (raw -300, mangle -150, nat DNAT -100, filter 0, security 50; nat's POSTROUTING runs
        // at +100, after filter, which has no POSTROUTING chain anyway).
        let hook_rank = |c: &str| {
            ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"]
                .iter()
                .position(|h| *h == c)
                .unwrap_or(5)
        };
        let table_rank = |t: &str| {
            ["raw", "mangle", "nat", "filter", "security"]
                .iter()
                .position(|x| *x == t)
                .unwrap_or(5)
        };
        roots.sort_by_key(|&n| {
            let c: &ChainNode = &graph[n];
            (hook_rank(&c.name), table_rank(&c.table))
        });
        let mut children = vec![Vec::new(); graph.node_count()];
        for t in &rs.tables {
            for c in &t.chains {
                let from = by_name[&(t.name.clone(), c.name.clone())];
                // One edge per target chain; KUBE-SERVICES alone has one rule per Service port.
                let mut seen: HashMap<NodeIndex, EdgeIndex> = HashMap::new();
                for (i, r) in c.rules.iter().enumerate() {
                    let (to, goto) = match &r.target {
                        Some(Target::Jump { chain }) => (chain, false),
                        Some(Target::Goto { chain }) => (chain, true),
                        _ => continue,
                    };
                    let Some(&to) = by_name.get(&(t.name.clone(), to.clone())) else {
                        continue;
                    };
                    match seen.get(&to) {
                        Some(&e) => graph[e].rules += 1,
                        None => {
                            let e = graph.add_edge(
                                from,
                                to,
                                Link {
                                    goto,
                                    rules: 1,
                                    first_rule: i + 1,
                                },
                            );
                            seen.insert(to, e);
                            children[from.index()].push(e);
                        }
                    }
                }
            }
        }
        // Breadth-first from every built-in chain: the depth orders search results (a Service's
        // KUBE-SVC chain before its KUBE-SEP chains, which carry the same comment).
        let mut queue: VecDeque<NodeIndex> = roots.iter().copied().collect();
        for &r in &roots {
            graph[r].depth = 0;
        }
        while let Some(n) = queue.pop_front() {
            let d = graph[n].depth + 1;
            let next: Vec<NodeIndex> = graph.neighbors(n).collect();
            for m in next {
                if graph[m].depth == u32::MAX {
                    graph[m].depth = d;
                    queue.push_back(m);
                }
            }
        }
        let mut line_starts = vec![0u32];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i as u32 + 1),
        );
        ChainGraph {
            graph,
            family,
            by_name,
            roots,
            lower: text.to_ascii_lowercase(),
            text,
            line_starts,
            children,
        }
    }

    pub fn chain_count(&self) -> usize {
        self.graph.node_count()
    }

    pub fn rule_count(&self) -> usize {
        self.graph.node_weights().map(|c| c.rules).sum()
    }

    pub fn node(&self, n: NodeIndex) -> &ChainNode {
        &self.graph[n]
    }

    pub fn find(&self, table: &str, chain: &str) -> Option<NodeIndex> {
        self.by_name
            .get(&(table.to_string(), chain.to_string()))
            .copied()
    }

    fn line_range(&self, line: u32) -> Option<(usize, usize)> {
        let i = (line as usize).checked_sub(1)?;
        let a = *self.line_starts.get(i)? as usize;
        let b = self
            .line_starts
            .get(i + 1)
            .map_or(self.text.len(), |&e| e as usize - 1);
        Some((a, b))
    }

    /// The dump line a rule came from.
    pub fn line(&self, line: u32) -> &str {
        self.line_range(line)
            .map_or("", |(a, b)| self.text[a..b].trim_end_matches('\r'))
    }

    /// Chains whose name, comments, addresses or any other rule text contain `query` (case
    /// insensitive), best first: the name itself, then chains whose every rule mentions the
    /// query as a whole word (a Service's own chains, not `KUBE-SERVICES` where it is one rule
    /// in thousands, and `svc1` not matching `svc10`), then the chain nearest to a hook.
    pub fn search(&self, query: &str, limit: usize) -> Vec<Hit> {
        let q = query.trim().to_ascii_lowercase();
        if q.is_empty() {
            return vec![];
        }
        // (rank key, node, sample); smaller keys first.
        let mut found: Vec<(RankKey, NodeIndex, String)> = Vec::new();
        for n in self.graph.node_indices() {
            let c = &self.graph[n];
            let name = c.name.to_ascii_lowercase();
            if name == q || name.contains(&q) {
                let exact = u8::from(name != q);
                found.push(((exact, 0, 0, c.depth), n, c.name.clone()));
                continue;
            }
            let (mut hits, mut words, mut sample) = (0u32, 0u32, None);
            for &l in &c.lines {
                let Some((a, b)) = self.line_range(l) else {
                    continue;
                };
                let hay = &self.lower[a..b];
                if let Some(pos) = hay.find(&q) {
                    hits += 1;
                    if whole_word(hay, pos, q.len()) {
                        words += 1;
                    }
                    sample.get_or_insert((a, b));
                }
            }
            if let Some((a, b)) = sample {
                let total = c.lines.len().max(1) as u32;
                // Per-mille of the chain's rules that name the query (as a word, then at all).
                let word_share = 1000 - words * 1000 / total;
                let share = 1000 - hits * 1000 / total;
                found.push((
                    (2, word_share, share, c.depth),
                    n,
                    self.text[a..b].to_string(),
                ));
            }
        }
        found.sort_by(|x, y| x.0.cmp(&y.0).then(x.1.cmp(&y.1)));
        found.truncate(limit);
        found
            .into_iter()
            .map(|(_, node, sample)| Hit { node, sample })
            .collect()
    }

    /// The chains from a built-in chain to `to` (both included), by the fewest jumps; among
    /// equally short paths the one from the hook a packet meets first (PREROUTING before OUTPUT:
    /// `KUBE-SERVICES` is called from both).
    pub fn path_to(&self, to: NodeIndex) -> Vec<NodeIndex> {
        let mut prev: HashMap<NodeIndex, NodeIndex> = HashMap::new();
        let mut seen = HashSet::from([to]);
        let mut layer = vec![to];
        let root = loop {
            let best = layer
                .iter()
                .filter(|n| self.graph[**n].builtin)
                .min_by_key(|n| self.roots.iter().position(|r| r == *n));
            if let Some(&r) = best {
                break Some(r);
            }
            let mut next = Vec::new();
            for &n in &layer {
                for p in self.graph.neighbors_directed(n, Direction::Incoming) {
                    if seen.insert(p) {
                        prev.insert(p, n);
                        next.push(p);
                    }
                }
            }
            if next.is_empty() {
                break None;
            }
            layer = next;
        };
        let Some(mut n) = root else {
            return vec![to];
        };
        let mut path = vec![n];
        while let Some(&next) = prev.get(&n) {
            path.push(next);
            n = next;
        }
        path
    }

    /// The chains a trace walked, in order (a chain entered twice counts once).
    pub fn packet_path(&self, trace: &Trace) -> Vec<NodeIndex> {
        let mut out: Vec<NodeIndex> = Vec::new();
        for s in &trace.steps {
            if let Step::Chain { table, chain, .. } = s
                && let Some(n) = self.find(table, chain)
                && !out.contains(&n)
            {
                out.push(n);
            }
        }
        out
    }

    /// Rulesets this small are drawn fully unfolded.
    pub fn is_small(&self) -> bool {
        self.graph.node_count() <= SMALL_GRAPH
    }

    /// The rows to draw: a depth-first walk from the built-in chains that enters a chain's
    /// children only when the chain is unfolded (or small), and always the chains on the
    /// packet's or the search's path.
    pub fn rows(&self, view: &View) -> Vec<Row> {
        let forced: HashSet<NodeIndex> = view
            .packet
            .iter()
            .chain(view.focus_path.iter())
            .copied()
            .collect();
        let mut drawn: HashSet<NodeIndex> = HashSet::new();
        let mut rows = Vec::new();
        for &r in &self.roots {
            self.walk(r, 0, None, view, &forced, &mut drawn, &mut rows);
        }
        rows
    }

    #[allow(clippy::too_many_arguments)]
    fn walk(
        &self,
        n: NodeIndex,
        depth: usize,
        link: Option<Link>,
        view: &View,
        forced: &HashSet<NodeIndex>,
        drawn: &mut HashSet<NodeIndex>,
        rows: &mut Vec<Row>,
    ) {
        let kids = &self.children[n.index()];
        let repeat = !drawn.insert(n);
        let open_by_default = self.is_small() || self.graph[n].builtin;
        let unfolded = open_by_default != view.toggled.contains(&n);
        let shown: Vec<EdgeIndex> = if repeat {
            vec![]
        } else {
            kids.iter()
                .enumerate()
                .filter(|(i, e)| {
                    let to = self.graph.edge_endpoints(**e).map(|(_, b)| b);
                    (unfolded && *i < UNFOLD_LIMIT) || to.is_some_and(|t| forced.contains(&t))
                })
                .map(|(_, e)| *e)
                .collect()
        };
        rows.push(Row::Chain {
            node: n,
            depth,
            link,
            expanded: unfolded && !kids.is_empty() && !repeat,
            fan_out: kids.len(),
            repeat,
        });
        if repeat {
            return;
        }
        for &e in &shown {
            let to = self.graph.edge_endpoints(e).map(|(_, b)| b).expect("edge");
            self.walk(
                to,
                depth + 1,
                Some(self.graph[e]),
                view,
                forced,
                drawn,
                rows,
            );
        }
        let hidden = kids.len() - shown.len();
        if hidden > 0 {
            let rules = kids
                .iter()
                .filter(|e| !shown.contains(e))
                .filter_map(|e| self.graph.edge_endpoints(*e))
                .map(|(_, b)| self.graph[b].rules)
                .sum();
            rows.push(Row::Folded {
                parent: n,
                depth: depth + 1,
                chains: hidden,
                rules,
                over_limit: unfolded,
            });
        }
    }

    /// The chains a chain jumps to, in rule order, with the rule that jumps.
    pub fn targets(&self, n: NodeIndex) -> impl Iterator<Item = (NodeIndex, Link)> + '_ {
        self.children[n.index()].iter().map(move |&e| {
            let (_, b) = self.graph.edge_endpoints(e).expect("edge");
            (b, self.graph[e])
        })
    }
}

fn whole_word(hay: &str, pos: usize, len: usize) -> bool {
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.';
    let before = pos.checked_sub(1).map(|i| hay.as_bytes()[i]);
    let after = hay.as_bytes().get(pos + len).copied();
    !before.is_some_and(is_word) && !after.is_some_and(is_word)
}

/// The graph of a scenario or dump, shared between renders.
pub type Shared = Rc<ChainGraph>;

// ---------------------------------------------------------------------------------------------
// The view.

use crate::i18n::{K, Lang, t};
use wasm_bindgen::JsCast;
use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct Props {
    pub lang: Lang,
    pub graph: Shared,
    /// The packet's trace: its chains are drawn unfolded.
    pub trace: Option<Rc<Trace>>,
    /// The chain running at the current step (table, chain).
    #[prop_or_default]
    pub current: Option<(AttrValue, AttrValue)>,
}

const ROW_H: f64 = 26.0;
const INDENT: f64 = 22.0;
const CHAR_W: f64 = 7.4;

fn row_id(i: usize) -> String {
    format!("cg-row-{i}")
}

fn focus_row(i: usize) {
    if let Some(el) = gloo_utils::document()
        .get_element_by_id(&row_id(i))
        .and_then(|e| e.dyn_into::<web_sys::SvgElement>().ok())
    {
        let _ = el.focus();
    }
}

/// `12345` → `12,345` (both languages group digits this way in technical text).
fn grouped(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn rules_word(lang: Lang, n: usize) -> String {
    match (lang, n) {
        (Lang::Zh, n) => format!("{} 条规则", grouped(n)),
        (Lang::En, 1) => "1 rule".into(),
        (Lang::En, n) => format!("{} rules", grouped(n)),
    }
}

fn chains_word(lang: Lang, n: usize) -> String {
    match (lang, n) {
        (Lang::Zh, n) => format!("{} 条链", grouped(n)),
        (Lang::En, 1) => "1 chain".into(),
        (Lang::En, n) => format!("{} chains", grouped(n)),
    }
}

#[function_component(ChainPanel)]
pub fn chain_panel(p: &Props) -> Html {
    let lang = p.lang;
    let g = &p.graph;
    let query = use_state(String::new);
    let expanded = use_state(HashSet::<NodeIndex>::new);
    let selected = use_state(|| None::<NodeIndex>);
    // A new ruleset starts folded and unselected.
    {
        let (expanded, selected) = (expanded.clone(), selected.clone());
        use_effect_with(Rc::as_ptr(&p.graph) as usize, move |_| {
            expanded.set(HashSet::new());
            selected.set(None);
        });
    }
    let hits = use_memo(((*query).clone(), Rc::as_ptr(g) as usize), {
        let g = g.clone();
        move |(q, _)| g.search(q, 8)
    });
    let packet: Vec<NodeIndex> = p
        .trace
        .as_ref()
        .map(|tr| g.packet_path(tr))
        .unwrap_or_default();
    let focus_path = selected.map(|n| g.path_to(n)).unwrap_or_default();
    let view = View {
        toggled: (*expanded).clone(),
        packet: packet.iter().copied().collect(),
        focus_path: focus_path.clone(),
    };
    let rows = g.rows(&view);
    let current = p
        .current
        .as_ref()
        .and_then(|(tb, ch)| g.find(tb.as_str(), ch.as_str()));

    let select = {
        let (selected, expanded) = (selected.clone(), expanded.clone());
        let g = g.clone();
        Callback::from(move |n: NodeIndex| {
            selected.set(Some(n));
            // Unfold the chosen chain too: its jumps are what a learner looks at next.
            if !g.is_small() && !g.node(n).builtin {
                let mut e = (*expanded).clone();
                e.insert(n);
                expanded.set(e);
            }
        })
    };
    let toggle = {
        let expanded = expanded.clone();
        Callback::from(move |n: NodeIndex| {
            let mut e = (*expanded).clone();
            if !e.remove(&n) {
                e.insert(n);
            }
            expanded.set(e);
        })
    };
    // Focus and scroll the selected chain once it is drawn.
    {
        let idx = selected.and_then(|s| {
            rows.iter()
                .position(|r| matches!(r, Row::Chain { node, repeat: false, .. } if *node == s))
        });
        use_effect_with((*selected, idx), move |(_, idx)| {
            if let Some(i) = idx
                && let Some(el) = gloo_utils::document().get_element_by_id(&row_id(*i))
            {
                el.scroll_into_view_with_bool(false);
            }
        });
    }

    let on_input = {
        let query = query.clone();
        Callback::from(move |e: InputEvent| {
            if let Some(i) = e
                .target()
                .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
            {
                query.set(i.value());
            }
        })
    };
    let on_search_key = {
        let (hits, select) = (hits.clone(), select.clone());
        Callback::from(move |e: KeyboardEvent| {
            if e.key() == "Enter" {
                e.prevent_default();
                if let Some(h) = hits.first() {
                    select.emit(h.node);
                }
            }
        })
    };

    let on_path: HashSet<NodeIndex> = view.packet.clone();
    let on_focus: HashSet<NodeIndex> = focus_path.iter().copied().collect();
    let width = rows
        .iter()
        .map(|r| match r {
            Row::Chain { node, depth, .. } => {
                let c = g.node(*node);
                let label = c.table.len() + c.name.len() + 16;
                let comment = c
                    .comment
                    .as_ref()
                    .map_or(0, |s| s.chars().count().min(48) + 2);
                *depth as f64 * INDENT + (label + comment) as f64 * CHAR_W + 40.0
            }
            Row::Folded { depth, .. } => *depth as f64 * INDENT + 360.0,
        })
        .fold(640.0, f64::max);
    let height = rows.len() as f64 * ROW_H + 8.0;
    // Rows of the last chain drawn at each depth: the parent of a row is the last row above it
    // one level up.
    let mut last_at: Vec<usize> = Vec::new();
    let n_rows = rows.len();
    let drawn = rows.iter().enumerate().map(|(i, r)| {
        let y = 4.0 + i as f64 * ROW_H;
        let depth = match r {
            Row::Chain { depth, .. } | Row::Folded { depth, .. } => *depth,
        };
        let x = 8.0 + depth as f64 * INDENT;
        last_at.truncate(depth);
        let parent = depth.checked_sub(1).and_then(|d| last_at.get(d).copied());
        let connector = parent.map(|pi| {
            let px = 8.0 + (depth - 1) as f64 * INDENT + 8.0;
            let py = 4.0 + pi as f64 * ROW_H + ROW_H - 6.0;
            let hot = match r {
                Row::Chain { node, .. } => {
                    let parent_node = match &rows[pi] {
                        Row::Chain { node, .. } => Some(*node),
                        Row::Folded { .. } => None,
                    };
                    let both = |s: &HashSet<NodeIndex>| {
                        s.contains(node) && parent_node.is_some_and(|pn| s.contains(&pn))
                    };
                    if both(&on_focus) {
                        "cg-edge focus-path"
                    } else if both(&on_path) {
                        "cg-edge on-path"
                    } else {
                        "cg-edge"
                    }
                }
                Row::Folded { .. } => "cg-edge",
            };
            html! { <path class={hot} d={format!("M{px} {py} V{} H{x}", y + ROW_H / 2.0 - 2.0)} /> }
        });
        last_at.push(i);
        let key_nav = {
            let (toggle, select) = (toggle.clone(), select.clone());
            let target = match r {
                Row::Chain { node, .. } => (*node, false),
                Row::Folded { parent, .. } => (*parent, true),
            };
            Callback::from(move |e: KeyboardEvent| match e.key().as_str() {
                "ArrowDown" => {
                    e.prevent_default();
                    if i + 1 < n_rows {
                        focus_row(i + 1);
                    }
                }
                "ArrowUp" => {
                    e.prevent_default();
                    if i > 0 {
                        focus_row(i - 1);
                    }
                }
                "Enter" | " " => {
                    e.prevent_default();
                    if target.1 {
                        toggle.emit(target.0);
                    } else {
                        select.emit(target.0);
                    }
                }
                "ArrowRight" | "ArrowLeft" => {
                    e.prevent_default();
                    toggle.emit(target.0);
                }
                _ => {}
            })
        };
        match r {
            Row::Chain {
                node,
                link,
                expanded,
                fan_out,
                repeat,
                ..
            } => {
                let c = g.node(*node);
                let mut cls = classes!("cg-node");
                // A chain drawn under several callers is on the path only under the caller the
                // packet (or the search) came through.
                let parent_node = parent.and_then(|pi| match &rows[pi] {
                    Row::Chain { node, .. } => Some(*node),
                    Row::Folded { .. } => None,
                });
                let hot = |s: &HashSet<NodeIndex>| {
                    s.contains(node) && parent_node.is_none_or(|pn| s.contains(&pn))
                };
                if hot(&on_path) {
                    cls.push("on-path");
                }
                if hot(&on_focus) {
                    cls.push("focus-path");
                }
                if *selected == Some(*node) {
                    cls.push("selected");
                }
                if current == Some(*node) {
                    cls.push("current");
                }
                if *repeat {
                    cls.push("repeat");
                }
                let how = link.map(|l| {
                    let verb = if l.goto { "-g" } else { "-j" };
                    if l.rules > 1 { format!("{verb} ×{} ", l.rules) } else { format!("{verb} ") }
                });
                let name = format!("{}{} {}", how.clone().unwrap_or_default(), c.table, c.name);
                let count = rules_word(lang, c.rules);
                let box_w = (name.len() + count.chars().count() + 4) as f64 * CHAR_W + 12.0;
                let aria = format!(
                    "{} {}, {count}{}{}{}",
                    c.table,
                    c.name,
                    if *fan_out > 0 { format!(", {} {}", grouped(*fan_out), t(lang, K::ChainJumpsTo)) } else { String::new() },
                    if on_path.contains(node) { format!(", {}", t(lang, K::ChainOnPath)) } else { String::new() },
                    c.comment.as_ref().map(|s| format!(", {s}")).unwrap_or_default(),
                );
                let onclick = {
                    let (select, toggle, n, sel) = (select.clone(), toggle.clone(), *node, *selected == Some(*node));
                    Callback::from(move |_: MouseEvent| if sel { toggle.emit(n) } else { select.emit(n) })
                };
                html! {
                    <>
                        { for connector }
                        <g id={row_id(i)} class={cls} tabindex="0" role="treeitem" aria-level={(depth + 1).to_string()}
                            aria-expanded={(*fan_out > 0).then(|| expanded.to_string())}
                            aria-selected={(*selected == Some(*node)).to_string()}
                            aria-label={aria} data-chain={c.name.clone()} data-table={c.table.clone()}
                            onclick={onclick} onkeydown={key_nav}>
                            <rect x={x.to_string()} y={y.to_string()} width={box_w.to_string()} height={(ROW_H - 6.0).to_string()} rx="4" />
                            <text x={(x + 6.0).to_string()} y={(y + 14.5).to_string()}>
                                <tspan class="cg-how">{ how.unwrap_or_default() }</tspan>
                                <tspan class="cg-table">{ format!("{} ", c.table) }</tspan>
                                <tspan class="cg-name">{ c.name.clone() }</tspan>
                                <tspan class="cg-count">{ format!("  {count}") }</tspan>
                                if *fan_out > 0 && !*expanded && !*repeat { <tspan class="cg-count">{ " ▸" }</tspan> }
                            </text>
                            if let Some(cm) = &c.comment {
                                <text class="cg-comment" x={(x + box_w + 8.0).to_string()} y={(y + 14.5).to_string()}>
                                    { cm.chars().take(48).collect::<String>() }
                                </text>
                            }
                        </g>
                    </>
                }
            }
            Row::Folded { parent, chains, rules, over_limit, .. } => {
                let label = match (lang, over_limit) {
                    (Lang::En, false) => format!("+ {} ({}) — Enter to unfold", chains_word(lang, *chains), rules_word(lang, *rules)),
                    (Lang::En, true) => format!("+ {} more ({}) — search to find one", chains_word(lang, *chains), rules_word(lang, *rules)),
                    (Lang::Zh, false) => format!("+ {}（{}）— 按 Enter 展开", chains_word(lang, *chains), rules_word(lang, *rules)),
                    (Lang::Zh, true) => format!("+ 另外 {}（{}）— 可用搜索查找", chains_word(lang, *chains), rules_word(lang, *rules)),
                };
                let onclick = {
                    let (toggle, n) = (toggle.clone(), *parent);
                    Callback::from(move |_: MouseEvent| toggle.emit(n))
                };
                html! {
                    <>
                        { for connector }
                        <g id={row_id(i)} class="cg-folded" tabindex="0" role="treeitem" aria-level={(depth + 1).to_string()}
                            aria-label={label.clone()} onclick={onclick} onkeydown={key_nav}>
                            <rect x={x.to_string()} y={y.to_string()} width={(label.chars().count() as f64 * CHAR_W + 12.0).to_string()} height={(ROW_H - 6.0).to_string()} rx="4" />
                            <text x={(x + 6.0).to_string()} y={(y + 14.5).to_string()}>{ label }</text>
                        </g>
                    </>
                }
            }
        }
    }).collect::<Html>();

    let path_text = |path: &[NodeIndex]| {
        path.iter()
            .map(|n| format!("{} {}", g.node(*n).table, g.node(*n).name))
            .collect::<Vec<_>>()
            .join(" → ")
    };
    let summary = match lang {
        Lang::En => format!(
            "{}: {}, {}. {}",
            t(lang, K::ChainGraph),
            chains_word(lang, g.chain_count()),
            rules_word(lang, g.rule_count()),
            t(lang, K::ChainGraphHelp)
        ),
        Lang::Zh => format!(
            "{}：{}，{}。{}",
            t(lang, K::ChainGraph),
            chains_word(lang, g.chain_count()),
            rules_word(lang, g.rule_count()),
            t(lang, K::ChainGraphHelp)
        ),
    };
    let colon = if lang == Lang::Zh { "：" } else { ": " };
    let detail = selected.map(|n| {
        let c = g.node(n);
        let shown = c.lines.iter().take(30).map(|&l| g.line(l).to_string()).collect::<Vec<_>>();
        html! {
            <div id="chain-detail">
                <h3>{ format!("{} {} — {}", c.table, c.name, rules_word(lang, c.rules)) }</h3>
                <p id="chain-focus-path">{ format!("{}{colon}{}", t(lang, K::ChainPathTo), path_text(&focus_path)) }</p>
                <pre id="chain-rules">{ shown.join("\n") }{ if c.lines.len() > 30 { format!("\n… (+{})", c.lines.len() - 30) } else { String::new() } }</pre>
            </div>
        }
    });

    html! {
        <section id="chains" class="panel chains-panel" aria-labelledby="chains-title">
            <h2 id="chains-title">{ t(lang, K::ChainGraph) }</h2>
            <p id="chain-summary" class="muted">{ summary }</p>
            <label class="chain-search">{ t(lang, K::ChainSearch) }{ " " }
                <input id="chain-search" type="search" value={(*query).clone()} oninput={on_input} onkeydown={on_search_key}
                    placeholder={t(lang, K::ChainSearchHint)} aria-controls="chain-hits" autocomplete="off" />
            </label>
            if !query.trim().is_empty() {
                <ul id="chain-hits" aria-live="polite">
                    if hits.is_empty() { <li class="muted">{ t(lang, K::ChainNoHits) }</li> }
                    { for hits.iter().map(|h| {
                        let c = g.node(h.node);
                        let n = h.node;
                        let select = select.clone();
                        html! { <li><button type="button" class="linklike cg-hit" data-chain={c.name.clone()}
                            onclick={Callback::from(move |_: MouseEvent| select.emit(n))}>
                            <strong>{ format!("{} {}", c.table, c.name) }</strong>
                            if h.sample != c.name { <span class="muted">{ format!(" — {}", h.sample.chars().take(90).collect::<String>()) }</span> }
                        </button></li> }
                    }) }
                </ul>
            }
            if !packet.is_empty() {
                <p id="chain-packet-path">{ format!("{}{colon}{}", t(lang, K::ChainPacketPath), path_text(&packet)) }</p>
            }
            <div class="chain-graph">
                <svg id="chain-svg" role="tree" aria-labelledby="chains-title" aria-describedby="chain-summary"
                    width={width.to_string()} height={height.to_string()} viewBox={format!("0 0 {width} {height}")}>
                    { drawn }
                </svg>
            </div>
            { for detail }
        </section>
    }
}

/// The iptables text of a pasted node dump: all of it in iptables mode; in IPVS mode its
/// `# iptables-save` and `# ip6tables-save` sections.
pub fn dump_sources(text: &str, ipvs: bool) -> Vec<(Family, String)> {
    use proxyscope_core::api::{
        IPVS_SECTION_IP6TABLES, IPVS_SECTION_IPSET, IPVS_SECTION_IPTABLES, IPVS_SECTION_IPVSADM,
        IPVS_SECTION_KUBE_IPVS0,
    };
    if !ipvs {
        return vec![(parse::detect_family(text), text.to_string())];
    }
    let (mut v4, mut v6) = (String::new(), String::new());
    let mut into: Option<&mut String> = None;
    for l in text.lines() {
        match l.trim_end() {
            IPVS_SECTION_IPTABLES => into = Some(&mut v4),
            IPVS_SECTION_IP6TABLES => into = Some(&mut v6),
            IPVS_SECTION_IPVSADM | IPVS_SECTION_IPSET | IPVS_SECTION_KUBE_IPVS0 => into = None,
            _ => {
                if let Some(s) = into.as_deref_mut() {
                    s.push_str(l);
                    s.push('\n');
                }
            }
        }
    }
    [(Family::V4, v4), (Family::V6, v6)]
        .into_iter()
        .filter(|(_, s)| !s.trim().is_empty())
        .collect()
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    /// A hand-written nat table in kube-proxy's shape. Expected edges, counts and paths below are
    /// read off this text by hand.
    const DUMP: &str = "\
*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-AAAA - [0:0]
:KUBE-SVC-BBBB - [0:0]
:KUBE-SEP-1 - [0:0]
:KUBE-SEP-2 - [0:0]
:KUBE-SEP-3 - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-NODEPORTS - [0:0]
-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m comment --comment \"ns/svc1:http cluster IP\" -m tcp --dport 80 -j KUBE-SVC-AAAA
-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m comment --comment \"ns/svc10:http cluster IP\" -m tcp --dport 80 -j KUBE-SVC-BBBB
-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-SVC-AAAA ! -s 10.128.0.0/9 -d 10.96.0.1/32 -p tcp -m comment --comment \"ns/svc1:http cluster IP\" -m tcp --dport 80 -j KUBE-MARK-MASQ
-A KUBE-SVC-AAAA -s 10.96.0.0/16 -m comment --comment \"ns/svc1:http cluster IP\" -j KUBE-MARK-MASQ
-A KUBE-SVC-AAAA -m comment --comment \"ns/svc1:http -> 10.0.0.1:80\" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-1
-A KUBE-SVC-AAAA -m comment --comment \"ns/svc1:http -> 10.0.0.2:80\" -j KUBE-SEP-2
-A KUBE-SVC-BBBB -m comment --comment \"ns/svc10:http -> 10.0.0.3:80\" -g KUBE-SEP-3
-A KUBE-SEP-1 -s 10.0.0.1/32 -m comment --comment ns/svc1:http -j KUBE-MARK-MASQ
-A KUBE-SEP-1 -p tcp -m comment --comment ns/svc1:http -m tcp -j DNAT --to-destination 10.0.0.1:80
-A KUBE-SEP-2 -s 10.0.0.2/32 -m comment --comment ns/svc1:http -j KUBE-MARK-MASQ
-A KUBE-SEP-2 -p tcp -m comment --comment ns/svc1:http -m tcp -j DNAT --to-destination 10.0.0.2:80
-A KUBE-SEP-3 -s 10.0.0.3/32 -m comment --comment ns/svc10:http -j KUBE-MARK-MASQ
-A KUBE-SEP-3 -p tcp -m comment --comment ns/svc10:http -m tcp -j DNAT --to-destination 10.0.0.3:80
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
COMMIT
";

    fn graph() -> ChainGraph {
        ChainGraph::from_text(DUMP, Family::V4)
    }

    fn name(g: &ChainGraph, n: NodeIndex) -> &str {
        &g.node(n).name
    }

    fn link(g: &ChainGraph, from: &str, to: &str) -> Option<Link> {
        let (a, b) = (g.find("nat", from)?, g.find("nat", to)?);
        g.graph.find_edge(a, b).map(|e| g.graph[e])
    }

    #[test]
    fn chains_are_nodes_and_jumps_are_edges_with_rule_counts() {
        let g = graph();
        assert_eq!(g.chain_count(), 11);
        assert_eq!(g.rule_count(), 17);
        // PREROUTING, OUTPUT → SERVICES; SERVICES → SVC-A, SVC-B, NODEPORTS; SVC-A → MARK-MASQ,
        // SEP-1, SEP-2; SVC-B → SEP-3; SEP-1/2/3 → MARK-MASQ.
        assert_eq!(g.graph.edge_count(), 12);
        // Two rules of KUBE-SVC-AAAA jump to KUBE-MARK-MASQ: one edge counting both.
        let masq = link(&g, "KUBE-SVC-AAAA", "KUBE-MARK-MASQ").unwrap();
        assert_eq!((masq.rules, masq.first_rule, masq.goto), (2, 1, false));
        assert!(link(&g, "KUBE-SVC-BBBB", "KUBE-SEP-3").unwrap().goto);
        assert_eq!(link(&g, "KUBE-SEP-1", "KUBE-SVC-AAAA"), None);
        // Children in rule order: MARK-MASQ (rule 1), SEP-1 (rule 3), SEP-2 (rule 4).
        let kids: Vec<&str> = g
            .targets(g.find("nat", "KUBE-SVC-AAAA").unwrap())
            .map(|(n, _)| name(&g, n))
            .collect();
        assert_eq!(kids, ["KUBE-MARK-MASQ", "KUBE-SEP-1", "KUBE-SEP-2"]);
        // Every comment of KUBE-SVC-AAAA starts with its Service port; KUBE-SERVICES mixes.
        let c = |n: &str| g.node(g.find("nat", n).unwrap()).comment.clone();
        assert_eq!(c("KUBE-SVC-AAAA").as_deref(), Some("ns/svc1:http"));
        assert_eq!(c("KUBE-SERVICES"), None);
        assert_eq!(
            c("PREROUTING"),
            None,
            "one comment without a namespace/name is no title"
        );
    }

    #[test]
    fn search_ranks_a_services_own_chain_first_and_words_over_substrings() {
        let g = graph();
        let hits: Vec<&str> = g
            .search("svc1", 10)
            .iter()
            .map(|h| name(&g, h.node))
            .collect();
        // svc1's chains (every rule names it as a word) first, the hook-nearest first; then
        // KUBE-SERVICES (1 rule of 3 as a word); then svc10's chains (only a substring).
        assert_eq!(
            hits,
            [
                "KUBE-SVC-AAAA",
                "KUBE-SEP-1",
                "KUBE-SEP-2",
                "KUBE-SERVICES",
                "KUBE-SVC-BBBB",
                "KUBE-SEP-3"
            ]
        );
        let by_addr: Vec<&str> = g
            .search("10.0.0.3", 10)
            .iter()
            .map(|h| name(&g, h.node))
            .collect();
        assert_eq!(by_addr, ["KUBE-SVC-BBBB", "KUBE-SEP-3"]);
        let by_name = g.search("kube-sep-3", 10);
        assert_eq!(name(&g, by_name[0].node), "KUBE-SEP-3");
        assert_eq!(by_name[0].sample, "KUBE-SEP-3");
        assert!(g.search("   ", 10).is_empty());
        assert!(g.search("no-such-thing", 10).is_empty());
    }

    #[test]
    fn path_to_a_chain_starts_at_the_hook_a_packet_meets_first() {
        let g = graph();
        let p: Vec<&str> = g
            .path_to(g.find("nat", "KUBE-SEP-3").unwrap())
            .into_iter()
            .map(|n| name(&g, n))
            .collect();
        // KUBE-SERVICES is called from PREROUTING and OUTPUT; PREROUTING comes first.
        assert_eq!(
            p,
            ["PREROUTING", "KUBE-SERVICES", "KUBE-SVC-BBBB", "KUBE-SEP-3"]
        );
    }

    #[test]
    fn a_chain_reached_from_many_is_drawn_once_then_as_a_repeat() {
        let g = graph();
        let rows = g.rows(&View::default());
        let masq: Vec<bool> = rows
            .iter()
            .filter_map(|r| match r {
                Row::Chain { node, repeat, .. } if name(&g, *node) == "KUBE-MARK-MASQ" => {
                    Some(*repeat)
                }
                _ => None,
            })
            .collect();
        // Under KUBE-SVC-AAAA, KUBE-SEP-1, KUBE-SEP-2 and KUBE-SEP-3: drawn once in full.
        assert_eq!(masq, [false, true, true, true]);
        // Small graph: nothing folded.
        assert!(!rows.iter().any(|r| matches!(r, Row::Folded { .. })));
    }

    /// `n` Services in KUBE-SERVICES, each with one endpoint chain.
    fn wide(n: usize) -> ChainGraph {
        let mut t = String::from(
            "*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n-A PREROUTING -j KUBE-SERVICES\n",
        );
        for i in 0..n {
            t.push_str(&format!(":KUBE-SVC-{i} - [0:0]\n:KUBE-SEP-{i} - [0:0]\n"));
        }
        for i in 0..n {
            t.push_str(&format!(
                "-A KUBE-SERVICES -d 10.96.{}.{}/32 -p tcp -m comment --comment \"ns/svc{i}:http cluster IP\" -m tcp --dport 80 -j KUBE-SVC-{i}\n",
                i / 250,
                i % 250 + 1
            ));
            t.push_str(&format!(
                "-A KUBE-SVC-{i} -m comment --comment \"ns/svc{i}:http -> 10.1.0.1:80\" -j KUBE-SEP-{i}\n"
            ));
        }
        t.push_str("COMMIT\n");
        ChainGraph::from_text(&t, Family::V4)
    }

    fn folded(rows: &[Row]) -> Vec<(usize, bool)> {
        rows.iter()
            .filter_map(|r| match r {
                Row::Folded {
                    chains, over_limit, ..
                } => Some((*chains, *over_limit)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn thousands_of_chains_fold_into_counts_except_the_packets_path() {
        let g = wide(1000);
        assert_eq!(g.chain_count(), 2 + 2000);
        let services = g.find("nat", "KUBE-SERVICES").unwrap();
        // Folded: PREROUTING, KUBE-SERVICES and one row for its 1,000 children.
        let rows = g.rows(&View::default());
        assert_eq!(rows.len(), 3);
        assert_eq!(folded(&rows), [(1000, false)]);
        // Unfolded: the first UNFOLD_LIMIT children (each with its one KUBE-SEP folded), the
        // rest counted.
        let mut v = View::default();
        v.toggled.insert(services);
        let mut want = vec![(1, false); UNFOLD_LIMIT];
        want.push((1000 - UNFOLD_LIMIT, true));
        assert_eq!(folded(&g.rows(&v)), want);
        // The packet went through Service 777: its chains are drawn although KUBE-SERVICES is
        // folded, and its KUBE-SVC chain is folded (not unfolded by the learner) but on the path.
        let packet = [
            g.find("nat", "PREROUTING").unwrap(),
            services,
            g.find("nat", "KUBE-SVC-777").unwrap(),
            g.find("nat", "KUBE-SEP-777").unwrap(),
        ];
        let v = View {
            packet: packet.into_iter().collect(),
            ..View::default()
        };
        let rows = g.rows(&v);
        let drawn: Vec<&str> = rows
            .iter()
            .filter_map(|r| match r {
                Row::Chain { node, .. } => Some(name(&g, *node)),
                _ => None,
            })
            .collect();
        assert_eq!(
            drawn,
            [
                "PREROUTING",
                "KUBE-SERVICES",
                "KUBE-SVC-777",
                "KUBE-SEP-777"
            ]
        );
        assert_eq!(folded(&rows), [(999, false)]);
        // Search finds Service 777 by name, not 7770-7779 (there are none here) nor 77.
        let hit = g.search("svc777", 3);
        assert_eq!(name(&g, hit[0].node), "KUBE-SVC-777");
    }

    #[test]
    fn ipvs_dumps_give_their_iptables_sections() {
        let text = "# ipvsadm -Sn\n-A -t 10.96.0.1:443 -s rr\n# iptables-save\n*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n# ipset save\ncreate KUBE-CLUSTER-IP hash:ip,port\n";
        let s = dump_sources(text, true);
        assert_eq!(
            s,
            [(
                Family::V4,
                "*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n".to_string()
            )]
        );
        assert_eq!(dump_sources("*nat\nCOMMIT\n", false).len(), 1);
    }

    #[test]
    fn digits_are_grouped() {
        assert_eq!(grouped(7), "7");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(86523), "86,523");
        assert_eq!(grouped(1234567), "1,234,567");
    }
}
