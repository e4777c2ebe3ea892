//! The agent reads `iptables-save` while the tool writes it: pieces of whole lines are handed to
//! the fingerprint and the counting parse as they arrive. Whatever the cuts, the results must be
//! those of the whole text (the fingerprint decides whether a poll made a revision; the summary
//! is what clients see), and the pieces must be the output, byte for byte.

#[allow(dead_code)]
#[path = "../src/agent/mod.rs"]
mod agent;

use std::sync::Mutex;

use agent::hub::Hub;
use agent::snapshot::{
    Dump, DumpMarks, DumpReader, Marks, collect, collect_with, iptables_fingerprint,
    iptables_summary,
};
use agent::sys::{PIECE, Sys, ToolError, joined, read_pieces};
use proptest::prelude::*;
use proxyscope_core::rules::iptables::Family;

const FIXTURES: &[&str] = &[
    include_str!("../../core/tests/fixtures/kernel/builtin-jumps.legacy.saved"),
    include_str!("../../core/tests/fixtures/kernel/ipv4-overall.legacy.saved"),
    include_str!("../../core/tests/fixtures/kernel/ipv4-overall.nft.saved"),
    include_str!("../../core/tests/fixtures/kernel/ipv4-overall.restore"),
    include_str!("../../core/tests/fixtures/kernel/ipv6-overall.nft.saved"),
    include_str!("../../core/tests/fixtures/kernel/physdev.nft.saved"),
    include_str!("../../core/tests/fixtures/probe/kube-mix.nft.saved"),
];

/// `text` cut after the `\n`s that `picks` choose: pieces of whole lines, as the reader makes.
fn pieces_at(text: &str, picks: &[usize]) -> Vec<String> {
    let ends: Vec<usize> = text.match_indices('\n').map(|(i, _)| i + 1).collect();
    let mut cuts: Vec<usize> = if ends.is_empty() {
        Vec::new()
    } else {
        picks.iter().map(|p| ends[p % ends.len()]).collect()
    };
    cuts.sort_unstable();
    cuts.dedup();
    let mut out = Vec::new();
    let mut at = 0;
    for c in cuts {
        out.push(text[at..c].to_string());
        at = c;
    }
    out.push(text[at..].to_string());
    out
}

/// `pieces` through `r` the way `Sys::run_streamed` calls it (every piece so far, the new one
/// last).
fn stream(mut r: DumpReader, pieces: Vec<String>) -> Dump {
    for n in 1..=pieces.len() {
        r.read(&pieces[..n]);
    }
    r.finish(pieces)
}

/// Streams `pieces` through a [`DumpReader`] and compares with the whole-text functions.
fn same_as_whole(text: &str, pieces: Vec<String>, family: Family) -> Result<(), TestCaseError> {
    let d = stream(DumpReader::new(family), pieces);
    prop_assert_eq!(&d.fingerprint, &iptables_fingerprint(text));
    let whole = serde_json::to_value(iptables_summary(text, family)).unwrap();
    prop_assert_eq!(serde_json::to_value(&d.summary).unwrap(), whole);
    prop_assert_eq!(joined(d.pieces), text);
    Ok(())
}

/// `text` changed by `op` at line `at`: 0 the same, 1 counters ticked (same fingerprint),
/// 2 a line dropped, 3 a line changed, 4 a line added at the end, 5 comments changed (same
/// fingerprint).
fn variant(text: &str, op: u8, at: usize) -> String {
    let mut ls: Vec<String> = text.lines().map(str::to_string).collect();
    let i = at % ls.len().max(1);
    let at = at % 1000;
    match op {
        0 => return text.to_string(),
        1 => {
            for l in &mut ls {
                if l.starts_with(':') && l.ends_with("[0:0]") {
                    *l = l.replace("[0:0]", &format!("[{at}:{}]", at * 60));
                }
            }
        }
        2 if !ls.is_empty() => {
            ls.remove(i);
        }
        3 if !ls.is_empty() => ls[i].push_str(" -j ACCEPT"),
        5 => {
            for l in &mut ls {
                if l.starts_with('#') {
                    l.push_str(&format!(" at {at}"));
                }
            }
        }
        _ => ls.push("-A KUBE-X -j ACCEPT".into()),
    }
    ls.join("\n") + "\n"
}

/// A hub's snapshot without its `instance` (random per hub).
fn content(hub: &Hub) -> serde_json::Value {
    let mut v: serde_json::Value =
        serde_json::from_str(&hub.snapshot().to_text().unwrap()).unwrap();
    v.as_object_mut().unwrap().remove("instance");
    v
}

/// The dumps of successive polls, streamed in pieces cut at `picks`.
struct Polls {
    v4: Mutex<String>,
    picks: Vec<usize>,
}

impl Sys for Polls {
    fn run(&self, program: &str, _args: &[&str]) -> Result<String, ToolError> {
        match program {
            "iptables-save" => Ok(self.v4.lock().unwrap().clone()),
            _ => Err(ToolError::Missing(format!("{program} is not installed"))),
        }
    }
    fn run_streamed(
        &self,
        program: &str,
        args: &[&str],
        each: &mut dyn FnMut(&[String]),
    ) -> Result<Vec<String>, ToolError> {
        let pieces = pieces_at(&self.run(program, args)?, &self.picks);
        for n in 1..=pieces.len() {
            each(&pieces[..n]);
        }
        Ok(pieces)
    }
}

/// A fixture with lines dropped, doubled, cut short, counters or comments changed.
fn damaged() -> impl Strategy<Value = String> {
    (
        0..FIXTURES.len(),
        prop::collection::vec((any::<usize>(), 0..5u8, any::<usize>()), 0..6),
    )
        .prop_map(|(f, muts)| {
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
                    3 => ls.insert(i, format!("# Generated by iptables-save v1.8.{x} (legacy)")),
                    _ => ls.insert(i, format!("[{x}:{x}] -A KUBE-X -j ACCEPT")),
                }
            }
            ls.join("\n")
        })
}

/// Hands out `sizes` bytes per read in turn, as a pipe gives what the writer has written.
struct Trickle<'a> {
    data: &'a [u8],
    sizes: Vec<usize>,
    turn: usize,
}

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let size = self.sizes[self.turn % self.sizes.len()].max(1);
        self.turn += 1;
        let n = buf.len().min(self.data.len()).min(size);
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Reads `data` with [`read_pieces`]: the pieces, and checks of each call's arguments.
fn read(data: &[u8], sizes: Vec<usize>) -> (Result<Vec<String>, usize>, usize) {
    let mut seen = 0;
    let mut each = |p: &[String]| {
        // One new piece per call, every piece whole lines but maybe the output's last.
        assert_eq!(p.len(), seen + 1);
        seen = p.len();
        for q in &p[..p.len() - 1] {
            assert!(q.ends_with('\n'), "a piece cut inside a line");
        }
        assert!(!p[p.len() - 1].is_empty());
    };
    let t = Trickle {
        data,
        sizes,
        turn: 0,
    };
    read_pieces(t, &mut each).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn kernel_dumps_read_in_pieces_like_whole(
        f in 0..FIXTURES.len(),
        picks in prop::collection::vec(any::<usize>(), 0..10),
    ) {
        let text = FIXTURES[f];
        let fam = if text.contains("::") { Family::V6 } else { Family::V4 };
        same_as_whole(text, pieces_at(text, &picks), fam)?;
    }

    #[test]
    fn damaged_dumps_read_in_pieces_like_whole(
        text in damaged(),
        picks in prop::collection::vec(any::<usize>(), 0..10),
    ) {
        same_as_whole(&text, pieces_at(&text, &picks), Family::V4)?;
    }

    /// With the last poll's marks the parse may be held back or skipped, never changed: the
    /// summary is the whole text's, or absent only for the last poll's fingerprint.
    #[test]
    fn held_back_parse_is_the_whole_texts_or_none(
        f in 0..FIXTURES.len(),
        (op, at) in (0..6u8, any::<usize>()),
        picks in prop::collection::vec(any::<usize>(), 0..10),
        every in 1usize..9,
    ) {
        let last = FIXTURES[f];
        let now = variant(last, op, at);
        let fam = if last.contains("::") { Family::V6 } else { Family::V4 };
        let before = stream(DumpReader::after(fam, every, None), pieces_at(last, &[])).marks;
        let d = stream(DumpReader::after(fam, every, Some(before.clone())), pieces_at(&now, &picks));
        let fresh = stream(DumpReader::after(fam, every, None), pieces_at(&now, &[]));
        prop_assert_eq!(&d.fingerprint, &iptables_fingerprint(&now));
        prop_assert_eq!(&d.marks, &fresh.marks);
        if d.fingerprint == before.fingerprint {
            prop_assert!(d.summary.is_none(), "parsed a dump equal to the last");
        } else {
            let whole = serde_json::to_value(iptables_summary(&now, fam)).unwrap();
            prop_assert_eq!(serde_json::to_value(&d.summary).unwrap(), whole);
        }
        prop_assert_eq!(joined(d.pieces), now);
    }

    /// The agent's polls (marks kept from poll to poll) publish exactly what polls that parse
    /// every dump whole publish: the same revisions, the same snapshots.
    #[test]
    fn polls_with_marks_publish_what_whole_text_polls_do(
        f in 0..FIXTURES.len(),
        changes in prop::collection::vec((0..6u8, any::<usize>()), 1..6),
        picks in prop::collection::vec(any::<usize>(), 0..10),
        every in 1usize..9,
    ) {
        let base = FIXTURES[f].to_string();
        let sys = Polls { v4: Mutex::new(base.clone()), picks };
        let plain = Hub::new(serde_json::json!({}), collect(&sys, &Default::default()));
        let mut marks = DumpMarks::every(every);
        let marked = Hub::new(
            serde_json::json!({}),
            collect_with(&sys, &Default::default(), &mut marks),
        );
        let mut text = base;
        for (op, at) in changes {
            text = variant(&text, op, at);
            *sys.v4.lock().unwrap() = text.clone();
            let a = plain.apply(collect(&sys, &plain.fingerprints()));
            let b = marked.apply(collect_with(&sys, &marked.fingerprints(), &mut marks));
            prop_assert_eq!(a, b);
            prop_assert_eq!(content(&plain), content(&marked));
        }
    }

    /// Whatever the reads' sizes, the pieces are the output (multibyte characters included).
    #[test]
    fn pieces_are_the_output(
        lines in prop::collection::vec("[a-z é→\r]{0,40}", 0..40),
        sizes in prop::collection::vec(1usize..5000, 1..5),
        end_newline in any::<bool>(),
    ) {
        let mut text = lines.join("\n");
        if end_newline {
            text.push('\n');
        }
        let (pieces, n) = read(text.as_bytes(), sizes);
        prop_assert_eq!(n, text.len());
        prop_assert_eq!(joined(pieces.unwrap()), text);
    }
}

/// A dump big enough for several pieces, read in odd-sized reads: whole lines per piece, the
/// same bytes, and the streamed fingerprint and summary equal to the whole text's.
#[test]
fn a_big_dump_read_in_pieces() {
    let mut text = String::from("*nat\n:KUBE-SERVICES - [0:0]\n");
    for i in 0..40_000 {
        text.push_str(&format!(
            ":KUBE-SVC-{i:06} - [0:0]\n-A KUBE-SERVICES -d 10.0.{}.{}/32 -p tcp -m comment --comment \"ns/svc-{i} → é\" -j KUBE-SVC-{i:06}\n",
            i / 256 % 256,
            i % 256
        ));
    }
    text.push_str("COMMIT\n");
    assert!(text.len() > 8 * PIECE);
    let (pieces, n) = read(text.as_bytes(), vec![65536, 4093, 1, 100_000]);
    let pieces = pieces.unwrap();
    assert_eq!(n, text.len());
    assert!(pieces.len() > 8);
    let d = stream(DumpReader::new(Family::V4), pieces);
    assert_eq!(d.fingerprint, iptables_fingerprint(&text));
    let s = d.summary.unwrap();
    assert_eq!(s.parsed_rules, 40_000);
    assert_eq!(s.chains, 40_001);
    assert!(s.diagnostics.is_empty());
    assert_eq!(joined(d.pieces), text);
    // The same dump again after it: fingerprinted, not parsed; with its first rule changed,
    // parsed from the first differing mark on, not only once the tool is done.
    let read_after = |text: &str, marks: &Marks| {
        let (pieces, _) = read(text.as_bytes(), vec![65536]);
        let pieces = pieces.unwrap();
        let mut r = DumpReader::after(Family::V4, 8192, Some(marks.clone()));
        let mut held = Vec::new();
        for n in 1..=pieces.len() {
            r.read(&pieces[..n]);
            held.push(r.holding());
        }
        (r.finish(pieces), held)
    };
    let (again, held) = read_after(&text, &d.marks);
    assert!(again.summary.is_none());
    assert!(held.iter().all(|h| *h));
    let changed = text.replacen("-j KUBE-SVC-000000", "-j KUBE-SVC-000001", 1);
    let (other, held) = read_after(&changed, &d.marks);
    assert_eq!(
        serde_json::to_value(other.summary).unwrap(),
        serde_json::to_value(iptables_summary(&changed, Family::V4)).unwrap()
    );
    assert!(
        !held[1],
        "still held after the first mark differed: {held:?}"
    );
}

/// A line longer than a piece grows the piece instead of being cut.
#[test]
fn a_line_longer_than_a_piece_stays_whole() {
    let long = "x".repeat(3 * PIECE + 17);
    let text = format!("a\n{long}\nb\n{long}");
    let (pieces, _) = read(text.as_bytes(), vec![65536]);
    let pieces = pieces.unwrap();
    assert!(pieces.iter().any(|p| p.contains(&long)));
    assert_eq!(joined(pieces), text);
}

/// Output that is not UTF-8 is reported with the offset of its first bad byte (in the whole
/// output, not the piece), and is still read to its end.
#[test]
fn bad_utf8_is_reported_where_it_is() {
    let mut data = "ok line\n".repeat(PIECE / 4).into_bytes();
    let at = data.len() + 3;
    data.extend_from_slice(b"-A \xff\xfe bad\nmore\n");
    data.extend_from_slice(&b"tail\n".repeat(1000));
    let (pieces, n) = read(&data, vec![4096]);
    assert_eq!(pieces, Err(at));
    assert_eq!(n, data.len());
    // A multibyte character cut between two reads is not a bad one.
    let text = "é→\n".repeat(PIECE);
    let (pieces, _) = read(text.as_bytes(), vec![1, 2, 5]);
    assert_eq!(joined(pieces.unwrap()), text);
}
