//! Streamed parsing (`StreamParser`, fed a tool's output as it arrives) must be indistinguishable
//! from parsing the whole text (`parse_into`): the same sink calls in the same order and the same
//! diagnostics with the same line numbers, wherever the pieces are cut. Checked on arbitrary
//! text, on the kernel's own dumps (every fixture) and on damaged dumps, cut at line ends and at
//! arbitrary characters (mid-line, between `\r` and `\n`, next to multibyte characters).

use std::collections::HashMap;

use proptest::prelude::*;
use proxyscope_core::diag::Diagnostic;
use proxyscope_core::rules::iptables::parse::{DraftRef, Sink, StreamParser, parse_into};
use proxyscope_core::rules::iptables::view::{RuleView, to_rule};
use proxyscope_core::rules::iptables::{Counters, Family, Rule};

const FIXTURES: &[&str] = &[
    include_str!("fixtures/kernel/builtin-jumps.legacy.saved"),
    include_str!("fixtures/kernel/builtin-jumps.nft.saved"),
    include_str!("fixtures/kernel/builtin-jumps.restore"),
    include_str!("fixtures/kernel/ipv4-overall.legacy.saved"),
    include_str!("fixtures/kernel/ipv4-overall.nft.saved"),
    include_str!("fixtures/kernel/ipv4-overall.restore"),
    include_str!("fixtures/kernel/ipv6-overall.legacy.saved"),
    include_str!("fixtures/kernel/ipv6-overall.nft.saved"),
    include_str!("fixtures/kernel/ipv6-overall.restore"),
    include_str!("fixtures/kernel/physdev.legacy.saved"),
    include_str!("fixtures/kernel/physdev.nft.saved"),
    include_str!("fixtures/kernel/physdev.restore"),
    include_str!("fixtures/probe/kube-mix.nft.saved"),
    include_str!("fixtures/probe/kube-mix.restore"),
];

/// One sink call, with everything the parser passed, owned.
#[derive(Debug, Clone, PartialEq)]
enum Call {
    Begin(String),
    End,
    Declare(String, Option<String>, Counters, bool),
    Rule(usize, Option<usize>, usize, Rule),
    Delete(String),
}

/// Records every call; answers `declare`/`chain` from the open table's names, as the real
/// sinks do (a duplicate is refused, which the parser reports).
#[derive(Default)]
struct Recorder {
    calls: Vec<Call>,
    chains: HashMap<String, usize>,
}

impl Sink for Recorder {
    fn begin_table(&mut self, name: &str) {
        self.chains.clear();
        self.calls.push(Call::Begin(name.to_string()));
    }
    fn end_table(&mut self) {
        self.calls.push(Call::End);
    }
    fn declare(&mut self, name: &str, policy: Option<&str>, counters: Counters) -> bool {
        let new = !self.chains.contains_key(name);
        if new {
            let at = self.chains.len();
            self.chains.insert(name.to_string(), at);
        }
        self.calls.push(Call::Declare(
            name.to_string(),
            policy.map(str::to_string),
            counters,
            new,
        ));
        new
    }
    fn chain(&self, name: &str) -> Option<usize> {
        self.chains.get(name).copied()
    }
    fn rule(&mut self, c: usize, insert: Option<usize>, r: DraftRef) {
        self.calls
            .push(Call::Rule(c, insert, r.line(), to_rule(r, r.counters())));
    }
    fn delete(&mut self, name: &str) {
        self.calls.push(Call::Delete(name.to_string()));
    }
}

type Outcome = (Vec<Diagnostic>, Vec<Call>);

fn whole(text: &str, fam: Family) -> Outcome {
    let mut r = Recorder::default();
    let d = parse_into(text, fam, &mut r);
    (d, r.calls)
}

/// `text` fed in pieces ending at `cuts` (byte offsets, moved back to a char boundary).
fn streamed(text: &str, fam: Family, cuts: &[usize]) -> Outcome {
    let mut cuts: Vec<usize> = cuts
        .iter()
        .map(|c| {
            let mut c = c % (text.len() + 1);
            while !text.is_char_boundary(c) {
                c -= 1;
            }
            c
        })
        .collect();
    cuts.sort_unstable();
    let mut r = Recorder::default();
    let mut p = StreamParser::new(fam);
    let mut at = 0;
    for c in cuts {
        p.feed(&text[at..c], &mut r);
        at = c;
    }
    p.feed(&text[at..], &mut r);
    let d = p.finish(&mut r);
    (d, r.calls)
}

/// Byte offsets just after each `\n` picked by `picks` (line-boundary cuts).
fn line_cuts(text: &str, picks: &[usize]) -> Vec<usize> {
    let ends: Vec<usize> = text.match_indices('\n').map(|(i, _)| i + 1).collect();
    if ends.is_empty() {
        return Vec::new();
    }
    picks.iter().map(|p| ends[p % ends.len()]).collect()
}

fn same(text: &str, fam: Family, cuts: &[usize]) -> Result<(), TestCaseError> {
    let w = whole(text, fam);
    let s = streamed(text, fam, cuts);
    prop_assert_eq!(&s.0, &w.0, "diagnostics differ; cuts {:?}", cuts);
    prop_assert_eq!(&s.1, &w.1, "sink calls differ; cuts {:?}", cuts);
    Ok(())
}

/// A kernel dump with a few lines dropped, doubled, cut short or given `\r\n` endings.
fn damaged() -> impl Strategy<Value = String> {
    (
        0..FIXTURES.len(),
        prop::collection::vec((any::<usize>(), 0..4u8, any::<usize>()), 0..6),
        any::<bool>(),
    )
        .prop_map(|(f, muts, trailing_newline)| {
            let mut ls: Vec<String> = FIXTURES[f].lines().map(str::to_string).collect();
            for (i, op, x) in muts {
                if ls.is_empty() {
                    break;
                }
                let i = i % ls.len();
                match op {
                    0 => {
                        ls.remove(i);
                    }
                    1 => {
                        let l = ls[i].clone();
                        ls.insert(i, l);
                    }
                    2 => {
                        let mut cut = x % (ls[i].len() + 1);
                        while !ls[i].is_char_boundary(cut) {
                            cut -= 1;
                        }
                        ls[i].truncate(cut);
                    }
                    _ => ls[i].push('\r'),
                }
            }
            let mut t = ls.join("\n");
            if trailing_newline {
                t.push('\n');
            }
            t
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_streams_like_whole_text(
        text in "(\\*nat|\\*filter|COMMIT|:KUBE-X - \\[0:0\\]|-A KUBE-X|-N Y|-X Y|-j ACCEPT|-p tcp|--dport 80|\"a b\"|\\[1:2\\]|#|é|→|\u{a0}|\u{b}| |\r|\n|[ -~]){0,60}",
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        same(&text, Family::V4, &cuts)?;
        same(&text, Family::V6, &cuts)?;
    }

    #[test]
    fn kernel_dumps_stream_like_whole_text(
        f in 0..FIXTURES.len(),
        picks in prop::collection::vec(any::<usize>(), 0..12),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let text = FIXTURES[f];
        let fam = if text.contains("::") { Family::V6 } else { Family::V4 };
        same(text, fam, &line_cuts(text, &picks))?;
        same(text, fam, &cuts)?;
    }

    #[test]
    fn damaged_dumps_stream_like_whole_text(
        text in damaged(),
        picks in prop::collection::vec(any::<usize>(), 0..12),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        same(&text, Family::V4, &line_cuts(&text, &picks))?;
        same(&text, Family::V4, &cuts)?;
    }
}

/// Every fixture one line per piece, and one byte (char) per piece: the extremes of cutting.
#[test]
fn every_fixture_line_by_line_and_char_by_char() {
    for text in FIXTURES {
        let w = whole(text, Family::V4);
        assert!(!w.1.is_empty());
        let by_line: Vec<usize> = text.match_indices('\n').map(|(i, _)| i + 1).collect();
        assert_eq!(streamed(text, Family::V4, &by_line), w);
        let by_char: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
        assert_eq!(streamed(text, Family::V4, &by_char), w);
    }
}

/// Line numbers count every line, comments and blank ones included, across pieces.
#[test]
fn line_numbers_count_across_pieces() {
    let text = "# c\n\n*nat\r\n:A - [0:0]\n-A A -j NOPE --x\n-A B -j ACCEPT\n*filter\n-A A";
    let w = whole(text, Family::V4);
    let lines: Vec<Option<usize>> = w.0.iter().map(|d| d.line).collect();
    assert_eq!(lines, [Some(5), Some(6), Some(7), Some(8), Some(7)]);
    for cut in 0..=text.len() {
        assert_eq!(streamed(text, Family::V4, &[cut]), w, "cut at {cut}");
    }
}

/// Rule lines whose ends `trim` changes (Unicode and control whitespace, `\r`, trailing
/// spaces), quotes, and a line before any table: read in one piece (where the parser takes
/// its one-scan path for `-` lines) exactly as char by char (where every line is joined and
/// read by the general path).
#[test]
fn rule_line_ends_read_like_the_general_path() {
    let text = "-A X -j ACCEPT\n*filter\n:X - [0:0]\n-A X -j ACCEPT\u{b}\n-A X -j ACCEPT\u{a0}\n\
                -A X -j ACCEPT \r\n-A X -j ACCEPT\r\n-A X -m comment --comment \"a b\" -j ACCEPT\n\
                -A X\u{b}-j ACCEPT\n-A X -j ACCEPT\r\r\n-A X -j ACCEPT\u{c}\n-A X\nCOMMIT\n";
    let w = whole(text, Family::V4);
    // By hand: `trim` drops every odd end, so the only problems are the line before `*filter`
    // and line 9, where `\x0B` (not a word separator) glues `X` and `-j` into one chain name,
    // leaving `ACCEPT` as a stray word.
    let lines: Vec<Option<usize>> = w.0.iter().map(|d| d.line).collect();
    assert_eq!(lines, [Some(1), Some(9)], "{:?}", w.0);
    assert!(
        w.0[1].message.contains("unexpected word `ACCEPT`"),
        "{:?}",
        w.0
    );
    let by_char: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    assert_eq!(streamed(text, Family::V4, &by_char), w);
}
