//! Parser for `iptables-save` output and `iptables-restore` input (both backends, with or without
//! counters). Tolerant: it never panics, and every line it cannot use becomes a diagnostic.
//!
//! Option ownership follows iptables' own command parser: an option after `-j TARGET` belongs to
//! the target; otherwise to the most recently loaded match that knows it; `--dport`/`--sport`
//! with `-p tcp|udp|sctp` and no port match loaded implicitly loads the protocol's match (that is
//! why `-p tcp --dport 80` is saved as `-p tcp -m tcp --dport 80`).

use super::view::{
    Args, MatchRef, NatTo, PhysdevRef, RecentRef, RuleView, TargetRef, Word, to_rule,
};
use super::*;
use crate::diag::Diagnostic;
use ipnet::Ipv4Net;
use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A multiply-rotate hasher for the chain index (FxHash's scheme). Chain names come from the
/// dump being parsed, not from an attacker racing the parser, and SipHash over 100k+ chain
/// names per dump was a tenth of the parse.
#[derive(Default, Clone, Copy)]
pub struct NameHasher(u64);

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut h = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            h = (h.rotate_left(5) ^ w).wrapping_mul(K);
        }
        for b in chunks.remainder() {
            h = (h.rotate_left(5) ^ u64::from(*b)).wrapping_mul(K);
        }
        self.0 = h;
    }
    fn write_u8(&mut self, i: u8) {
        self.write(&[i]);
    }
    /// Integer keys (a rule's table/chain/position) in one step each.
    fn write_u32(&mut self, i: u32) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(i)).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type ChainIndex = HashMap<String, usize, BuildHasherDefault<NameHasher>>;

/// The result of parsing a dump: the model plus every problem found.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    pub ruleset: Ruleset,
    pub diagnostics: Vec<Diagnostic>,
}

impl Parsed {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(|d| d.is_error())
    }
}

/// Guess the family of a dump from the first address-looking argument (`ip6tables-save` output
/// has `/128`, `::` ...). Defaults to IPv4.
pub fn detect_family(text: &str) -> Family {
    for line in text.lines().take(5000) {
        let line = line.trim_start();
        if !(line.starts_with("-A") || line.starts_with('[')) {
            continue;
        }
        for w in line.split_whitespace() {
            if let Some(prev) = w.split('/').next() {
                if prev.contains(':') && prev.parse::<Ipv6Addr>().is_ok() {
                    return Family::V6;
                }
                if prev.parse::<Ipv4Addr>().is_ok() {
                    return Family::V4;
                }
            }
        }
    }
    Family::V4
}

/// Parse a whole dump.
pub fn parse(text: &str, family: Family) -> Parsed {
    let mut sink = RulesetSink::default();
    let diagnostics = parse_into(text, family, &mut sink);
    Parsed {
        ruleset: sink.out,
        diagnostics,
    }
}

/// Where the parser puts what it reads: the owned model ([`parse`]) or the compact program a
/// session keeps ([`Program::parse`](crate::netfilter::program::Program::parse)). Both get
/// exactly the same calls, so they cannot disagree about what a dump says.
pub trait Sink {
    /// `*name`: a table starts.
    fn begin_table(&mut self, name: &str);
    /// `COMMIT`, the next `*table` or the end of the text: the open table is complete.
    fn end_table(&mut self);
    /// Declare a chain of the open table; `false` when it already has one of that name.
    fn declare(&mut self, name: &str, policy: Option<&str>, counters: Counters) -> bool;
    /// The table-local index of a declared chain.
    fn chain(&self, name: &str) -> Option<usize>;
    /// A rule for chain `c`: appended, or (`-I`) inserted at 1-based position `insert`.
    fn rule(&mut self, c: usize, insert: Option<usize>, r: DraftRef);
    /// `-X name`.
    fn delete(&mut self, name: &str);
}

/// Parse a dump into `sink`; returns every problem found. The text is one piece of a
/// [`StreamParser`]: whole-text and streamed parsing are the same code, so they cannot disagree.
pub fn parse_into(text: &str, family: Family, sink: &mut impl Sink) -> Vec<Diagnostic> {
    let mut p = StreamParser::new(family);
    p.feed(text, sink);
    p.finish(sink)
}

/// A parse fed its text in pieces as they arrive (a tool's output read from a pipe), with the
/// same sink calls and diagnostics (line numbers included) as [`parse_into`] on the pieces
/// joined. A piece may end anywhere: the start of an unfinished line is kept until the piece
/// with its end arrives. The sink sees each line's words only during that line's calls, so a
/// sink must own what it keeps (the words of different pieces are different strings).
pub struct StreamParser {
    family: Family,
    diags: Vec<Diagnostic>,
    /// The open table's name.
    table: Option<String>,
    table_line: usize,
    /// The rule being read (one for the whole dump).
    draft: Draft,
    /// Lines read so far: the next one's number is this plus one.
    lines: usize,
    /// The start of a line whose `\n` has not arrived yet.
    partial: String,
}

impl StreamParser {
    pub fn new(family: Family) -> StreamParser {
        StreamParser {
            family,
            diags: Vec::new(),
            table: None,
            table_line: 0,
            draft: Draft::default(),
            lines: 0,
            partial: String::new(),
        }
    }

    /// Parse the lines `text` completes; keep its unfinished last line for the next piece.
    pub fn feed<K: Sink>(&mut self, text: &str, sink: &mut K) {
        let mut rest = text;
        if !self.partial.is_empty() {
            let Some(end) = rest.find('\n') else {
                self.partial.push_str(rest);
                return;
            };
            let mut line = std::mem::take(&mut self.partial);
            line.push_str(&rest[..end]);
            rest = &rest[end + 1..];
            // `str::lines` drops the `\r` of a `\r\n` ending; the same here.
            let raw = line.strip_suffix('\r').unwrap_or(&line);
            self.joined_line(sink, raw);
            line.clear();
            self.partial = line;
        }
        // Up to the last `\n` in one `lines()` loop (one token buffer for the piece, since its
        // words borrow the piece); after it, the start of the next piece's first line.
        let (whole, tail) = match rest.rfind('\n') {
            Some(i) => rest.split_at(i + 1),
            None => ("", rest),
        };
        let mut tokens = Vec::with_capacity(32);
        let wb = whole.as_bytes();
        let mut start = 0;
        while start < wb.len() {
            self.lines += 1;
            // A rule line (`-A ...`) of an open table: its words and its end in one scan, as
            // `line` would read it when both its ends are plain ASCII (`trim` leaves it as it
            // is) and it has no quote. Finding the end first, then the words, was 3% more of
            // a 10k-Service parse (callgrind).
            if wb[start] == b'-' && self.table.is_some() {
                if let Some(end) = split_unquoted(&whole[start..], &mut tokens).map(|e| start + e)
                    && end < wb.len()
                    && plain_end(&wb[start..end])
                {
                    self.command(sink, self.lines, &tokens, None);
                    tokens.clear();
                    start = end + 1;
                    continue;
                }
                tokens.clear();
            }
            // memchr's SIMD search instead of `str::lines` (its char searcher was 14% of a
            // 10k-Service parse, callgrind); same lines: `\n` ends one, a `\r` before it is
            // dropped.
            let end = memchr::memchr(b'\n', &wb[start..]).map_or(wb.len(), |e| start + e);
            let raw = &whole[start..end];
            start = end + 1;
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            self.line(sink, &mut tokens, self.lines, raw);
        }
        self.partial.push_str(tail);
    }

    /// The end of the text: its last line if it had no `\n`, then the checks only the end can
    /// make (a table left open). Every problem found.
    pub fn finish<K: Sink>(mut self, sink: &mut K) -> Vec<Diagnostic> {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.joined_line(sink, &line);
        }
        if let Some(name) = self.table.take() {
            self.diags.push(Diagnostic::error(
                Some(self.table_line),
                format!("table {name}"),
                "table is not closed by COMMIT (iptables-restore would reject the whole table)",
            ));
            sink.end_table();
        }
        self.diags
    }

    /// A line that was cut between pieces (or the text's last, without `\n`), joined: rare, so
    /// out of [`StreamParser::feed`]'s loop.
    #[cold]
    #[inline(never)]
    fn joined_line<K: Sink>(&mut self, sink: &mut K, raw: &str) {
        self.lines += 1;
        self.line(sink, &mut Vec::new(), self.lines, raw);
    }
}

/// The owned model's sink.
#[derive(Default)]
struct RulesetSink {
    out: Ruleset,
    table: Option<Table>,
    /// Chain name → position in the open table (dumps of big clusters have 100k+ chains).
    index: ChainIndex,
}

impl Sink for RulesetSink {
    fn begin_table(&mut self, name: &str) {
        self.table = Some(Table::new(name));
        self.index.clear();
    }
    fn end_table(&mut self) {
        if let Some(mut t) = self.table.take() {
            // Growth slack of 100k-rule chains is megabytes that a session keeps.
            for c in &mut t.chains {
                c.rules.shrink_to_fit();
            }
            self.out.tables.push(t);
        }
    }
    fn declare(&mut self, name: &str, policy: Option<&str>, counters: Counters) -> bool {
        let Some(t) = self.table.as_mut() else {
            return false;
        };
        if self.index.contains_key(name) {
            return false;
        }
        self.index.insert(name.to_string(), t.chains.len());
        t.chains.push(Chain {
            name: name.to_string(),
            policy: policy.map(str::to_string),
            counters,
            rules: Vec::new(),
        });
        true
    }
    fn chain(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }
    fn rule(&mut self, c: usize, insert: Option<usize>, r: DraftRef) {
        let Some(t) = self.table.as_mut() else { return };
        let rule = to_rule(r, r.counters());
        let chain = &mut t.chains[c];
        match insert {
            Some(pos) => {
                let at = pos.saturating_sub(1).min(chain.rules.len());
                chain.rules.insert(at, rule);
            }
            None => chain.rules.push(rule),
        }
    }
    fn delete(&mut self, name: &str) {
        if let Some(t) = self.table.as_mut() {
            t.deleted.push(name.to_string());
        }
    }
}

impl StreamParser {
    fn err(&mut self, line: usize, msg: impl Into<String>) {
        self.diags.push(Diagnostic::error(Some(line), "", msg));
    }

    // Inlined into `feed`'s loop, as it was into the whole-text loop before there was streaming:
    // as a call it cost 1.5% more instructions per dump (callgrind, 10k-Service dump).
    #[inline(always)]
    fn line<'t, K: Sink>(
        &mut self,
        sink: &mut K,
        tokens: &mut Vec<&'t str>,
        n: usize,
        raw: &'t str,
    ) {
        let line = trim(raw);
        if line.is_empty() || line.starts_with('#') {
            return;
        }
        if let Some(name) = line.strip_prefix('*') {
            if let Some(t) = self.table.take() {
                self.err(
                    n,
                    format!("table {t} is not closed by COMMIT before *{name}"),
                );
                sink.end_table();
            }
            sink.begin_table(name.trim());
            self.table = Some(name.trim().to_string());
            self.table_line = n;
            return;
        }
        if line == "COMMIT" {
            match self.table.take() {
                Some(_) => sink.end_table(),
                None => self.err(n, "COMMIT outside of a table"),
            }
            return;
        }
        if self.table.is_none() {
            self.err(
                n,
                format!("line outside of a table (expected `*filter`, `*nat`, ...): {line}"),
            );
            return;
        }
        if let Some(decl) = line.strip_prefix(':') {
            match parse_chain_decl(decl) {
                Ok((name, policy, counters)) => {
                    if !sink.declare(name, policy, counters) {
                        self.err(n, format!("chain {name} declared twice"));
                    }
                }
                Err(e) => self.err(n, e),
            }
            return;
        }
        let (counters, rest) = match split_counter_prefix(line) {
            Ok(v) => v,
            Err(e) => return self.err(n, e),
        };
        // Quotes (a comment): the general tokenizer; escapes (never in kube-proxy's rules):
        // the words rebuilt without them.
        let plain = if split_unquoted(rest, tokens).is_some() {
            Ok(true)
        } else {
            tokens.clear();
            tokenize_words(rest, tokens)
        };
        match plain {
            Ok(true) => self.command(sink, n, tokens, counters),
            Ok(false) => match tokenize(rest) {
                Ok(words) => {
                    let words: Vec<&str> = words.iter().map(|w| w.as_ref()).collect();
                    self.command(sink, n, &words, counters);
                }
                Err(e) => self.err(n, e),
            },
            Err(e) => self.err(n, e),
        }
        tokens.clear();
    }

    fn command<K: Sink>(
        &mut self,
        sink: &mut K,
        n: usize,
        tokens: &[&str],
        counters: Option<Counters>,
    ) {
        let Some(&cmd) = tokens.first() else {
            return self.err(n, "empty command");
        };
        match cmd {
            "-A" | "--append" | "-I" | "--insert" => {
                let insert = matches!(cmd, "-I" | "--insert");
                let Some(chain_name) = tokens.get(1) else {
                    return self.err(n, format!("{cmd} without a chain name"));
                };
                let mut args = &tokens[2..];
                let mut pos = None;
                if insert && let Some(Ok(p)) = args.first().map(|a| a.parse::<usize>()) {
                    pos = Some(p);
                    args = &args[1..];
                }
                let table_name = self.table.as_deref().unwrap_or("");
                let chains = &*sink;
                let ok = parse_draft(
                    args,
                    self.family,
                    table_name,
                    &|c| chains.chain(c),
                    n,
                    &mut self.diags,
                    &mut self.draft,
                );
                if !ok {
                    return;
                }
                if self.draft.counters.is_none() {
                    self.draft.counters = counters;
                }
                match sink.chain(chain_name) {
                    Some(ci) => {
                        let r = DraftRef {
                            d: &self.draft,
                            toks: args,
                        };
                        sink.rule(ci, insert.then(|| pos.unwrap_or(1)), r);
                    }
                    None => {
                        let msg = format!(
                            "rule for chain {chain_name}, which is not declared in table {table_name}"
                        );
                        self.err(n, msg)
                    }
                }
            }
            "-X" | "--delete-chain" => match tokens.get(1) {
                Some(c) => sink.delete(c),
                None => self.err(n, "-X without a chain name"),
            },
            "-N" | "--new-chain" => match tokens.get(1) {
                Some(c) => {
                    // A chain that exists already is no error for -N in a restore payload.
                    sink.declare(c, None, Counters::default());
                }
                None => self.err(n, "-N without a chain name"),
            },
            other => self.err(
                n,
                format!("unsupported command `{other}` (expected -A, -I, -N or -X)"),
            ),
        }
    }
}

/// `str::trim` without its Unicode tables when both ends are plain ASCII (every line of a dump).
#[inline]
fn trim(raw: &str) -> &str {
    let plain = |b: Option<&u8>| b.is_some_and(|b| (b'!'..0x80).contains(b));
    if plain(raw.as_bytes().first()) && plain(raw.as_bytes().last()) {
        raw
    } else {
        raw.trim()
    }
}

/// `u8::is_ascii_whitespace` (the tokenizer's separators: space, `\t`, `\n`, `\x0C`, `\r`).
#[inline]
fn is_ws(b: u8) -> bool {
    const SET: u64 = 1 << b' ' | 1 << b'\t' | 1 << b'\n' | 1 << 0x0C | 1 << b'\r';
    b <= b' ' && SET >> b & 1 != 0
}

/// `char::is_whitespace` for an ASCII byte (`str::split_whitespace`'s separators there: the
/// tokenizer's and `\x0B`).
#[inline]
fn is_char_ws(b: u8) -> bool {
    is_ws(b) || b == 0x0B
}

/// `str::split_whitespace` for ASCII text, without decoding chars: a dump declares 100k+
/// chains, and the char iterator was a tenth of a 10k-Service parse (callgrind).
struct AsciiWords<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Iterator for AsciiWords<'a> {
    type Item = &'a str;
    #[inline(always)]
    fn next(&mut self) -> Option<&'a str> {
        let b = self.s.as_bytes();
        while self.i < b.len() && is_char_ws(b[self.i]) {
            self.i += 1;
        }
        if self.i >= b.len() {
            return None;
        }
        let start = self.i;
        self.i = word_end_by(b, start, is_char_ws);
        self.s.get(start..self.i)
    }
}

type ChainDecl<'a> = (&'a str, Option<&'a str>, Counters);

fn parse_chain_decl(decl: &str) -> Result<ChainDecl<'_>, String> {
    if decl.is_ascii() {
        chain_decl_words(AsciiWords { s: decl, i: 0 })
    } else {
        chain_decl_words(decl.split_whitespace())
    }
}

fn chain_decl_words<'a>(mut it: impl Iterator<Item = &'a str>) -> Result<ChainDecl<'a>, String> {
    let name = it.next().ok_or("chain declaration without a name")?;
    let policy = it
        .next()
        .ok_or_else(|| format!("chain {name}: missing policy (`-` for user chains)"))?;
    let counters = match it.next() {
        Some(c) => parse_counters(c).ok_or_else(|| format!("chain {name}: bad counters {c}"))?,
        None => Counters::default(),
    };
    if let Some(extra) = it.next() {
        return Err(format!("chain {name}: unexpected `{extra}`"));
    }
    Ok((name, (policy != "-").then_some(policy), counters))
}

fn parse_counters(s: &str) -> Option<Counters> {
    // What nearly every chain of a dump declares.
    if s == "[0:0]" {
        return Some(Counters::default());
    }
    let inner = s.strip_prefix('[')?.strip_suffix(']')?;
    let colon = inner.bytes().position(|b| b == b':')?;
    let (p, b) = (inner.get(..colon)?, inner.get(colon + 1..)?);
    Some(Counters {
        packets: p.parse().ok()?,
        bytes: b.parse().ok()?,
    })
}

fn split_counter_prefix(line: &str) -> Result<(Option<Counters>, &str), String> {
    if line.starts_with('[') {
        let end = line.find(']').ok_or("unterminated counter prefix")?;
        let c = parse_counters(&line[..=end])
            .ok_or_else(|| format!("bad counters {}", &line[..=end]))?;
        Ok((Some(c), line[end + 1..].trim_start()))
    } else {
        Ok((None, line))
    }
}

/// Split a command line into words the way iptables-restore does: whitespace separated, double
/// quotes group words, a backslash inside quotes escapes the next character.
pub fn tokenize(s: &str) -> Result<Vec<Cow<'_, str>>, String> {
    let mut out = Vec::with_capacity(24);
    tokenize_into(s, &mut out)?;
    Ok(out)
}

/// [`tokenize`] into a caller's buffer (appended).
pub fn tokenize_into<'s>(s: &'s str, out: &mut Vec<Cow<'s, str>>) -> Result<(), String> {
    tokenize_words(s, out).map(|_| ())
}

/// Where the tokenizer puts words: the public `Cow`s, or the parser's plain `&str`s, which
/// cannot keep a word rebuilt without its escapes.
trait Words<'s> {
    fn borrowed(&mut self, w: &'s str);
    /// False when the word cannot be kept.
    fn owned(&mut self, w: String) -> bool;
}

impl<'s> Words<'s> for Vec<Cow<'s, str>> {
    fn borrowed(&mut self, w: &'s str) {
        self.push(Cow::Borrowed(w));
    }
    fn owned(&mut self, w: String) -> bool {
        self.push(Cow::Owned(w));
        true
    }
}

impl<'s> Words<'s> for Vec<&'s str> {
    fn borrowed(&mut self, w: &'s str) {
        self.push(w);
    }
    fn owned(&mut self, _: String) -> bool {
        false
    }
}

/// [`tokenize_into`] into any [`Words`]; `Ok(false)` when `out` could not keep a word.
fn tokenize_words<'s>(s: &'s str, out: &mut impl Words<'s>) -> Result<bool, String> {
    let bytes = s.as_bytes();
    let mut i = 0;
    loop {
        while i < bytes.len() && is_ws(bytes[i]) {
            i += 1;
        }
        if i >= bytes.len() {
            return Ok(true);
        }
        if bytes[i] == b'"' {
            match quoted(s, i + 1, out)? {
                Some(next) => i = next,
                None => return Ok(false),
            }
        } else {
            let start = i;
            i = word_end(bytes, i);
            // Both ends are next to ASCII bytes (or the ends of `s`): char boundaries.
            out.borrowed(&s[start..i]);
        }
    }
}

/// The words of a line without `"` (every rule line of a dump but those with comments), eight
/// bytes per step: one exact mask of the candidates (bytes below 0x23: separators, `!`, `"`),
/// then one word per separator. Scanning word by word instead (find the end, skip the spaces,
/// look for a quote) cost twice as much: a fifth of a 10k-Service parse (callgrind). The words
/// end at the first `\n` (or the end of `s`): where that is, or `None` (with some words
/// pushed) when the line has a `"`: then [`tokenize_words`] reads it. The
/// words are plain `&str`s, so dropping a line's words is free (as `Cow`s their drop was
/// another 2%).
fn split_unquoted<'s>(s: &'s str, out: &mut Vec<&'s str>) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let b = s.as_bytes();
    let mut start = 0;
    let mut word = |k: usize, out: &mut Vec<&'s str>| {
        if k > start {
            // Both ends are next to ASCII bytes (or the ends of `s`): char boundaries.
            out.push(&s[start..k]);
        }
        start = k + 1;
    };
    let mut i = 0;
    while let Some(chunk) = b.get(i..).and_then(|r| r.first_chunk::<8>()) {
        let x = u64::from_le_bytes(*chunk);
        // Per byte, without borrows between bytes: the high bit of `(x | 0x80) - 0x23` is
        // clear exactly where the low seven bits are below 0x23 (`"` is 0x22, `!` 0x21);
        // `!x` keeps ASCII bytes.
        let mut m = !(x | HIGH).wrapping_sub(ONES * 0x23) & !x & HIGH;
        while m != 0 {
            let k = i + (m.trailing_zeros() / 8) as usize;
            m &= m - 1;
            // A separator, a quote (not this function's line), or part of a word (`!`,
            // other control characters).
            match b[k] {
                b'\n' => {
                    word(k, out);
                    return Some(k);
                }
                c if is_ws(c) => word(k, out),
                b'"' => return None,
                _ => {}
            }
        }
        i += 8;
    }
    for (j, &c) in b.get(i..).unwrap_or_default().iter().enumerate() {
        match c {
            b'\n' => {
                word(i + j, out);
                return Some(i + j);
            }
            c if is_ws(c) => word(i + j, out),
            b'"' => return None,
            _ => {}
        }
    }
    word(b.len(), out);
    Some(b.len())
}

/// Whether a line (without its `\n`) ends, before one `\r`, in a byte that `trim` keeps
/// without looking further (see [`trim`]).
fn plain_end(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.last().is_some_and(|b| (b'!'..0x80).contains(b))
}

/// The first ASCII whitespace at or after `i` (or the end), eight bytes per step: the byte loop
/// was a third of a 10k-Service parse (callgrind), words are short but lines are 80 bytes.
#[inline]
fn word_end(b: &[u8], i: usize) -> usize {
    word_end_by(b, i, is_ws)
}

/// [`word_end`] for separators `ws` (each a byte below 0x21).
#[inline(always)]
fn word_end_by(b: &[u8], mut i: usize, ws: impl Fn(u8) -> bool) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = b.get(i..).and_then(|r| r.first_chunk::<8>()) {
        let x = u64::from_le_bytes(*chunk);
        // The high bit of each byte below 0x21; a borrow may also flag bytes above a flagged
        // one, never below, so the lowest flag (the first byte: little-endian) is exact.
        let low = x.wrapping_sub(ONES * 0x21) & !x & HIGH;
        if low == 0 {
            i += 8;
            continue;
        }
        let k = i + (low.trailing_zeros() / 8) as usize;
        if ws(b[k]) {
            return k;
        }
        // A control character inside a word.
        i = k + 1;
    }
    while i < b.len() && !ws(b[i]) {
        i += 1;
    }
    i
}

/// A quoted word whose text starts at `start` (after the `"`); returns where the next word
/// may start (after the closing `"`).
/// `None` when `out` cannot keep the word (it had escapes).
fn quoted<'s>(s: &'s str, start: usize, out: &mut impl Words<'s>) -> Result<Option<usize>, String> {
    let bytes = s.as_bytes();
    let unterminated = || String::from("unterminated quoted string");
    let rest = bytes.get(start..).unwrap_or_default();
    let first = memchr::memchr2(b'"', b'\\', rest).ok_or_else(unterminated)?;
    let mut j = start + first;
    if bytes[j] == b'"' {
        out.borrowed(s.get(start..j).unwrap_or_default());
        return Ok(Some(j + 1));
    }
    // A backslash: the word is rebuilt without the escapes (rare: kube-proxy never writes one).
    let mut owned = s.get(start..j).unwrap_or_default().to_string();
    loop {
        if j >= bytes.len() {
            return Err(unterminated());
        }
        match bytes[j] {
            b'"' => break,
            b'\\' if j + 1 < bytes.len() => {
                // Push the escaped character (may be multi-byte: take the whole char).
                let ch = s
                    .get(j + 1..)
                    .and_then(|t| t.chars().next())
                    .unwrap_or('\\');
                owned.push(ch);
                j += 1 + ch.len_utf8();
            }
            _ => {
                let ch = s.get(j..).and_then(|t| t.chars().next()).unwrap_or(' ');
                owned.push(ch);
                j += ch.len_utf8();
            }
        }
    }
    Ok(out.owned(owned).then_some(j + 1))
}

/// `s.parse::<f64>()` with Clinger's fast path for `digits.digits` (kube-proxy's
/// `--probability 0.10000000009`): a mantissa below 2^53 over an exact power of ten is one
/// correctly rounded division, so the same `f64` as std's, whose general parser was 4% of a
/// 10k-Service parse (callgrind). Anything else goes to std.
fn parse_f64(s: &str) -> Option<f64> {
    const POW10: [f64; 23] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
        1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    ];
    let fast = || -> Option<f64> {
        let b = s.as_bytes();
        // 15 digits at most: the mantissa stays below 10^15 < 2^53, exact as an f64.
        if b.len() > 16 {
            return None;
        }
        let dot = b.iter().position(|&c| c == b'.')?;
        let (int, frac) = (&b[..dot], &b[dot + 1..]);
        if int.is_empty() || frac.is_empty() {
            return None;
        }
        let mut m = 0u64;
        for part in [int, frac] {
            for &c in part {
                if !c.is_ascii_digit() {
                    return None;
                }
                m = m * 10 + u64::from(c - b'0');
            }
        }
        Some(m as f64 / *POW10.get(frac.len())?)
    };
    fast().or_else(|| s.parse().ok())
}

pub(crate) fn parse_net(s: &str, family: Family) -> Option<IpNet> {
    // What a dump says nearly every time: `a.b.c.d/len` in canonical decimal. Any other text
    // takes the general path below, which reads this form to the same network.
    if family == Family::V4
        && let Some((a, i)) = canonical_v4(s.as_bytes())
        && let Some(b'/') = s.as_bytes().get(i)
        && let Some((p, n)) = canonical_decimal(&s.as_bytes()[i + 1..])
        && i + 1 + n == s.len()
        && p <= 32
    {
        return Ipv4Net::new(a, p as u8).ok().map(|n| IpNet::V4(n.trunc()));
    }
    parse_net_general(s, family)
}

pub(crate) fn parse_net_general(s: &str, family: Family) -> Option<IpNet> {
    if let Some((a, p)) = s.split_once('/') {
        let addr: IpAddr = a.parse().ok()?;
        // iptables also accepts a dotted mask (`/255.255.255.0`).
        let prefix: u8 = match p.parse::<u8>() {
            Ok(v) => v,
            Err(_) => {
                let m: Ipv4Addr = p.parse().ok()?;
                let bits = u32::from(m);
                if bits.leading_ones() + bits.trailing_zeros() != 32 {
                    return None;
                }
                bits.leading_ones() as u8
            }
        };
        // The kernel stores address & mask, so `-s 10.1.2.3/8` is saved as `10.0.0.0/8`.
        let net = IpNet::new(addr, prefix).ok()?.trunc();
        fam_ok(addr, family).then_some(net)
    } else {
        let addr: IpAddr = s.parse().ok()?;
        fam_ok(addr, family).then(|| IpNet::from(addr))
    }
}

fn fam_ok(a: IpAddr, f: Family) -> bool {
    matches!(
        (a, f),
        (IpAddr::V4(_), Family::V4) | (IpAddr::V6(_), Family::V6)
    )
}

fn parse_port(s: &str) -> Option<PortSpec> {
    match s.split_once(':') {
        Some((a, b)) => {
            let lo = if a.is_empty() { 0 } else { a.parse().ok()? };
            let hi = if b.is_empty() { 65535 } else { b.parse().ok()? };
            (lo <= hi).then_some(PortSpec { lo, hi })
        }
        None => {
            let p = s.parse().ok()?;
            Some(PortSpec { lo: p, hi: p })
        }
    }
}

fn parse_u32(s: &str) -> Option<u32> {
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u32::from_str_radix(h, 16).ok()
    } else {
        s.parse().ok()
    }
}

/// `value[/mask]`, the mask defaulting to all ones.
fn parse_mark(s: &str) -> Option<(u32, u32)> {
    match s.split_once('/') {
        Some((v, m)) => Some((parse_u32(v)?, parse_u32(m)?)),
        None => Some((parse_u32(s)?, u32::MAX)),
    }
}

fn is_option(tok: &str) -> bool {
    match tok.as_bytes() {
        // `-` then no digit can never be a number: no need to try (every option of a dump).
        [b'-', c, ..] if !c.is_ascii_digit() => true,
        [b'-', _, ..] => tok.parse::<i64>().is_err(),
        _ => false,
    }
}

/// `start..end` of one of a [`Draft`]'s scratch vectors.
type Span = (u32, u32);

fn span<T>(v: &[T], s: Span) -> &[T] {
    &v[s.0 as usize..s.1 as usize]
}

/// A match being read; strings are [`Word`]s of the line, lists spans of the draft's vectors.
#[derive(Debug, Clone, Copy)]
enum DMatch {
    Comment(Word),
    Ports {
        module: Word,
        sport: Option<Neg<PortSpec>>,
        dport: Option<Neg<PortSpec>>,
    },
    Multiport {
        neg: bool,
        kind: MultiportKind,
        ports: Span,
    },
    Statistic(Statistic),
    Recent(DRecent),
    Mark {
        neg: bool,
        value: u32,
        mask: u32,
    },
    AddrType {
        src: Option<Neg<Span>>,
        dst: Option<Neg<Span>>,
        limit_iface_in: bool,
        limit_iface_out: bool,
    },
    Conntrack {
        ctstate: Option<Neg<Span>>,
    },
    Nfacct(Word),
    Set {
        neg: bool,
        name: Word,
        dirs: Span,
    },
    Physdev {
        is_in: Option<bool>,
        physdev_in: Option<Neg<Word>>,
        is_out: Option<bool>,
        physdev_out: Option<Neg<Word>>,
        is_bridged: Option<bool>,
    },
    /// `ipvs`: `--ipvs` as given (`Some(neg)`), apart from the options it is implied by.
    Ipvs {
        m: IpvsMatch,
        ipvs: Option<bool>,
    },
    Unknown {
        module: Word,
        args: Span,
    },
}

#[derive(Debug, Clone, Copy)]
struct DRecent {
    neg: bool,
    action: RecentAction,
    seconds: Option<u32>,
    reap: bool,
    hitcount: Option<u32>,
    rttl: bool,
    name: Word,
    mask: IpAddr,
    rdest: bool,
}

/// The target being read.
#[derive(Debug, Clone, Copy)]
enum DTarget {
    Accept,
    Drop,
    Return,
    /// The chain's name and its table-local index, when it is declared (a goto may name a
    /// chain that is not).
    Jump(Word, Option<u32>),
    Goto(Word, Option<u32>),
    Reject(Word),
    Dnat {
        to: Word,
        random: bool,
        persistent: bool,
    },
    Snat {
        to: Word,
        random: bool,
        random_fully: bool,
        persistent: bool,
    },
    Masquerade {
        to_ports: Option<Word>,
        random: bool,
        random_fully: bool,
    },
    Mark {
        value: u32,
        mask: u32,
    },
    Log {
        prefix: Option<Word>,
        level: Option<Word>,
    },
    Unknown {
        name: Word,
        args: Span,
    },
}

/// The scratch vectors a draft's spans point into.
#[derive(Debug, Default)]
struct Pools {
    /// Text the parser made (the words of a match turned into an unknown one).
    text: String,
    words: Vec<Word>,
    ports: Vec<PortSpec>,
    addr_types: Vec<AddrType>,
    ct_states: Vec<CtState>,
    dirs: Vec<bool>,
}

/// One rule as the parser reads it, before a [`Sink`] keeps it: one draft (and its vectors)
/// serves every rule of a dump, so reading a rule allocates nothing.
#[derive(Debug, Default)]
pub struct Draft {
    src: Option<Neg<IpNet>>,
    dst: Option<Neg<IpNet>>,
    in_iface: Option<Neg<Word>>,
    out_iface: Option<Neg<Word>>,
    proto: Option<Neg<ProtoNum>>,
    matches: Vec<DMatch>,
    target: Option<DTarget>,
    counters: Option<Counters>,
    line: usize,
    p: Pools,
}

impl Draft {
    fn clear(&mut self, line: usize) {
        self.src = None;
        self.dst = None;
        self.in_iface = None;
        self.out_iface = None;
        self.proto = None;
        self.matches.clear();
        self.target = None;
        self.counters = None;
        self.line = line;
        let p = &mut self.p;
        p.text.clear();
        p.words.clear();
        p.ports.clear();
        p.addr_types.clear();
        p.ct_states.clear();
        p.dirs.clear();
    }
}

/// A [`Draft`] with the words of its line: what a [`Sink`] reads (a [`RuleView`]).
#[derive(Clone, Copy)]
pub struct DraftRef<'l> {
    d: &'l Draft,
    toks: &'l [&'l str],
}

impl<'l> DraftRef<'l> {
    fn s(self, w: Word) -> &'l str {
        w.get(self.toks, &self.d.p.text)
    }
    /// `-c p b` or the line's `[p:b]` prefix.
    pub fn counters(self) -> Option<Counters> {
        self.d.counters
    }
    fn match_ref(self, m: &DMatch) -> MatchRef<'l> {
        let p = &self.d.p;
        match *m {
            DMatch::Comment(w) => MatchRef::Comment(self.s(w)),
            DMatch::Ports {
                module,
                sport,
                dport,
            } => MatchRef::Ports {
                module: self.s(module),
                sport,
                dport,
            },
            DMatch::Multiport { neg, kind, ports } => MatchRef::Multiport {
                neg,
                kind,
                ports: span(&p.ports, ports),
            },
            DMatch::Statistic(s) => MatchRef::Statistic(s),
            DMatch::Recent(r) => MatchRef::Recent(RecentRef {
                neg: r.neg,
                action: r.action,
                seconds: r.seconds,
                reap: r.reap,
                hitcount: r.hitcount,
                rttl: r.rttl,
                name: self.s(r.name),
                mask: r.mask,
                rdest: r.rdest,
            }),
            DMatch::Mark { neg, value, mask } => MatchRef::Mark { neg, value, mask },
            DMatch::AddrType {
                src,
                dst,
                limit_iface_in,
                limit_iface_out,
            } => {
                let types = |n: Neg<Span>| Neg::new(n.neg, span(&p.addr_types, n.value));
                MatchRef::AddrType {
                    src: src.map(types),
                    dst: dst.map(types),
                    limit_iface_in,
                    limit_iface_out,
                }
            }
            DMatch::Conntrack { ctstate } => MatchRef::Conntrack {
                ctstate: ctstate.map(|n| Neg::new(n.neg, span(&p.ct_states, n.value))),
            },
            DMatch::Nfacct(w) => MatchRef::Nfacct(self.s(w)),
            DMatch::Set { neg, name, dirs } => MatchRef::Set {
                neg,
                name: self.s(name),
                dirs: span(&p.dirs, dirs),
            },
            DMatch::Physdev {
                is_in,
                physdev_in,
                is_out,
                physdev_out,
                is_bridged,
            } => {
                let port = |n: Option<Neg<Word>>| n.map(|n| Neg::new(n.neg, self.s(n.value)));
                MatchRef::Physdev(PhysdevRef {
                    is_in,
                    physdev_in: port(physdev_in),
                    is_out,
                    physdev_out: port(physdev_out),
                    is_bridged,
                })
            }
            DMatch::Ipvs { mut m, ipvs } => {
                m.ipvs_neg = m.property_only() && ipvs == Some(true);
                MatchRef::Ipvs(m)
            }
            DMatch::Unknown { module, args } => MatchRef::Unknown {
                module: self.s(module),
                args: Args::Words(span(&p.words, args), self.toks, &p.text),
            },
        }
    }
    fn target_ref(self, t: &DTarget) -> TargetRef<'l> {
        let p = &self.d.p;
        match *t {
            DTarget::Accept => TargetRef::Accept,
            DTarget::Drop => TargetRef::Drop,
            DTarget::Return => TargetRef::Return,
            DTarget::Jump(w, to) => TargetRef::Jump {
                chain: self.s(w),
                to,
            },
            DTarget::Goto(w, to) => TargetRef::Goto {
                chain: self.s(w),
                to,
            },
            DTarget::Reject(w) => TargetRef::Reject { with: self.s(w) },
            DTarget::Dnat {
                to,
                random,
                persistent,
            } => TargetRef::Dnat {
                to: NatTo::Text(self.s(to)),
                random,
                persistent,
            },
            DTarget::Snat {
                to,
                random,
                random_fully,
                persistent,
            } => TargetRef::Snat {
                to: NatTo::Text(self.s(to)),
                random,
                random_fully,
                persistent,
            },
            DTarget::Masquerade {
                to_ports,
                random,
                random_fully,
            } => TargetRef::Masquerade {
                to_ports: to_ports.map(|w| self.s(w)),
                random,
                random_fully,
            },
            DTarget::Mark { value, mask } => TargetRef::Mark { value, mask },
            DTarget::Log { prefix, level } => TargetRef::Log {
                prefix: prefix.map(|w| self.s(w)),
                level: level.map(|w| self.s(w)),
            },
            DTarget::Unknown { name, args } => TargetRef::Unknown {
                name: self.s(name),
                args: Args::Words(span(&p.words, args), self.toks, &p.text),
            },
        }
    }
}

impl<'l> RuleView<'l> for DraftRef<'l> {
    fn src(self) -> Option<Neg<IpNet>> {
        self.d.src
    }
    fn dst(self) -> Option<Neg<IpNet>> {
        self.d.dst
    }
    fn in_iface(self) -> Option<Neg<&'l str>> {
        self.d.in_iface.map(|n| Neg::new(n.neg, self.s(n.value)))
    }
    fn out_iface(self) -> Option<Neg<&'l str>> {
        self.d.out_iface.map(|n| Neg::new(n.neg, self.s(n.value)))
    }
    fn proto(self) -> Option<Neg<ProtoNum>> {
        self.d.proto
    }
    fn matches(self) -> impl Iterator<Item = MatchRef<'l>> {
        self.d.matches.iter().map(move |m| self.match_ref(m))
    }
    fn target(self) -> Option<TargetRef<'l>> {
        self.d.target.as_ref().map(|t| self.target_ref(t))
    }
    fn line(self) -> usize {
        self.d.line
    }
}

/// Append words to the argument list `args` of an unknown match or target, moving the list
/// to the end of the words first if another list grew after it.
fn append_words(p: &mut Pools, args: &mut Span, new: impl IntoIterator<Item = Word>) {
    if args.1 as usize != p.words.len() {
        let at = p.words.len();
        p.words.extend_from_within(args.0 as usize..args.1 as usize);
        args.0 = at as u32;
    }
    p.words.extend(new);
    args.1 = p.words.len() as u32;
}

/// The words of an option with its `!` and values (`vals` starts at word `base`).
fn option_words(neg: bool, opt_at: usize, base: usize, n: usize) -> impl Iterator<Item = Word> {
    neg.then_some(Word::Static("!"))
        .into_iter()
        .chain(std::iter::once(Word::Tok(opt_at as u32)))
        .chain((base..base + n).map(|k| Word::Tok(k as u32)))
}

enum Accept {
    /// The option belongs to this match; the number of value words it consumed.
    Yes(usize),
    /// Not an option of this module.
    No,
    /// An option of this module that we don't model (the match becomes Unknown).
    Unmodelled,
}

fn new_match(module: &str, word: Word, family: Family, p: &Pools) -> DMatch {
    let empty = (p.words.len() as u32, p.words.len() as u32);
    match module {
        "comment" => DMatch::Comment(Word::Static("")),
        "tcp" | "udp" | "sctp" => DMatch::Ports {
            module: word,
            sport: None,
            dport: None,
        },
        "multiport" => DMatch::Multiport {
            neg: false,
            kind: MultiportKind::Ports,
            ports: (0, 0),
        },
        "statistic" => DMatch::Statistic(Statistic::Random {
            neg: false,
            fixed: 0,
        }),
        "recent" => DMatch::Recent(DRecent {
            neg: false,
            action: RecentAction::Rcheck,
            seconds: None,
            reap: false,
            hitcount: None,
            rttl: false,
            name: Word::Static("DEFAULT"),
            mask: match family {
                Family::V4 => IpAddr::V4(Ipv4Addr::BROADCAST),
                Family::V6 => IpAddr::V6(Ipv6Addr::from(u128::MAX)),
            },
            rdest: false,
        }),
        "mark" => DMatch::Mark {
            neg: false,
            value: 0,
            mask: u32::MAX,
        },
        "addrtype" => DMatch::AddrType {
            src: None,
            dst: None,
            limit_iface_in: false,
            limit_iface_out: false,
        },
        "conntrack" => DMatch::Conntrack { ctstate: None },
        "nfacct" => DMatch::Nfacct(Word::Static("")),
        "set" => DMatch::Set {
            neg: false,
            name: Word::Static(""),
            dirs: (0, 0),
        },
        "physdev" => DMatch::Physdev {
            is_in: None,
            physdev_in: None,
            is_out: None,
            physdev_out: None,
            is_bridged: None,
        },
        "ipvs" => DMatch::Ipvs {
            m: IpvsMatch::default(),
            ipvs: None,
        },
        _ => DMatch::Unknown {
            module: word,
            args: empty,
        },
    }
}

/// Push the comma-separated names of `s` onto `out`; false when one is not in `all`.
fn list_into<T: Copy>(
    s: &str,
    all: &[T],
    name: impl Fn(T) -> &'static str,
    out: &mut Vec<T>,
) -> bool {
    for part in s.split(',') {
        match all
            .iter()
            .copied()
            .find(|t| name(*t).eq_ignore_ascii_case(part))
        {
            Some(t) => out.push(t),
            None => return false,
        }
    }
    true
}

fn push_span<T>(v: &[T], at: usize) -> Span {
    (at as u32, v.len() as u32)
}

/// Offer option `opt` (with `neg` and the following words `vals`, the first of which is word
/// `base` of the line) to match `m`.
// One argument per piece of the parser's state the option may touch; a struct for them would
// only rename the parser.
#[allow(clippy::too_many_arguments)]
fn match_accept(
    m: &mut DMatch,
    opt: &str,
    neg: bool,
    vals: &[&str],
    base: usize,
    toks: &[&str],
    family: Family,
    p: &mut Pools,
) -> Result<Accept, String> {
    let val = |i: usize| -> Result<&str, String> {
        vals.get(i)
            .copied()
            .ok_or_else(|| format!("{opt} needs a value"))
    };
    let word = |i: usize| Word::Tok((base + i) as u32);
    match m {
        DMatch::Comment(comment) => match opt {
            "--comment" => {
                val(0)?;
                *comment = word(0);
                Ok(Accept::Yes(1))
            }
            _ => Ok(Accept::No),
        },
        DMatch::Ports {
            module,
            sport,
            dport,
        } => {
            let module = module.get(toks, &p.text);
            match opt {
                "--sport" | "--source-port" | "--dport" | "--destination-port" => {
                    let v = val(0)?;
                    let pr = parse_port(v).ok_or_else(|| format!("{opt}: bad port `{v}`"))?;
                    let slot = if matches!(opt, "--sport" | "--source-port") {
                        sport
                    } else {
                        dport
                    };
                    *slot = Some(Neg::new(neg, pr));
                    Ok(Accept::Yes(1))
                }
                "--tcp-flags" if module == "tcp" => Ok(Accept::Unmodelled),
                "--syn" | "--tcp-option" if module == "tcp" => Ok(Accept::Unmodelled),
                "--chunk-types" if module == "sctp" => Ok(Accept::Unmodelled),
                _ => Ok(Accept::No),
            }
        }
        DMatch::Multiport {
            neg: n,
            kind,
            ports,
        } => {
            let k = match opt {
                "--sports" | "--source-ports" => MultiportKind::Sports,
                "--dports" | "--destination-ports" => MultiportKind::Dports,
                "--ports" => MultiportKind::Ports,
                _ => return Ok(Accept::No),
            };
            let v = val(0)?;
            let at = p.ports.len();
            for part in v.split(',') {
                p.ports
                    .push(parse_port(part).ok_or_else(|| format!("{opt}: bad port `{part}`"))?);
            }
            *n = neg;
            *kind = k;
            *ports = push_span(&p.ports, at);
            Ok(Accept::Yes(1))
        }
        DMatch::Statistic(st) => match opt {
            "--mode" => {
                let v = val(0)?;
                let n = match *st {
                    Statistic::Random { neg, .. } | Statistic::Nth { neg, .. } => neg,
                };
                *st = match v {
                    "random" => Statistic::Random { neg: n, fixed: 0 },
                    "nth" => Statistic::Nth {
                        neg: n,
                        every: 0,
                        packet: 0,
                    },
                    _ => return Err(format!("--mode: unknown statistic mode `{v}`")),
                };
                Ok(Accept::Yes(1))
            }
            "--probability" => {
                let v = val(0)?;
                let pr = parse_f64(v).ok_or_else(|| format!("--probability: bad number `{v}`"))?;
                if !(0.0..=1.0).contains(&pr) {
                    return Err(format!("--probability must be between 0 and 1, got {v}"));
                }
                *st = Statistic::Random {
                    neg,
                    fixed: Statistic::fixed_from_probability(pr),
                };
                Ok(Accept::Yes(1))
            }
            "--every" | "--packet" => {
                let v = val(0)?;
                let x: u32 = v.parse().map_err(|_| format!("{opt}: bad number `{v}`"))?;
                if let Statistic::Nth {
                    neg: n,
                    every,
                    packet,
                } = st
                {
                    *n |= neg;
                    if opt == "--every" {
                        if x == 0 {
                            return Err("--every must be at least 1".into());
                        }
                        *every = x - 1; // the kernel stores every-1 (libxt_statistic)
                    } else {
                        *packet = x;
                    }
                    Ok(Accept::Yes(1))
                } else {
                    Err(format!("{opt} needs --mode nth"))
                }
            }
            _ => Ok(Accept::No),
        },
        DMatch::Recent(r) => match opt {
            "--set" | "--rcheck" | "--update" | "--remove" => {
                r.action = match opt {
                    "--set" => RecentAction::Set,
                    "--rcheck" => RecentAction::Rcheck,
                    "--update" => RecentAction::Update,
                    _ => RecentAction::Remove,
                };
                r.neg = neg;
                Ok(Accept::Yes(0))
            }
            "--seconds" | "--hitcount" => {
                let v = val(0)?;
                let x: u32 = v.parse().map_err(|_| format!("{opt}: bad number `{v}`"))?;
                if opt == "--seconds" {
                    r.seconds = Some(x);
                } else {
                    r.hitcount = Some(x);
                }
                Ok(Accept::Yes(1))
            }
            "--reap" => {
                r.reap = true;
                Ok(Accept::Yes(0))
            }
            "--rttl" => {
                r.rttl = true;
                Ok(Accept::Yes(0))
            }
            "--name" => {
                val(0)?;
                r.name = word(0);
                Ok(Accept::Yes(1))
            }
            "--mask" => {
                let v = val(0)?;
                let a: IpAddr = v
                    .parse()
                    .map_err(|_| format!("--mask: bad address `{v}`"))?;
                if !fam_ok(a, family) {
                    return Err(format!("--mask {v} is not of this table's family"));
                }
                r.mask = a;
                Ok(Accept::Yes(1))
            }
            "--rsource" => {
                r.rdest = false;
                Ok(Accept::Yes(0))
            }
            "--rdest" => {
                r.rdest = true;
                Ok(Accept::Yes(0))
            }
            _ => Ok(Accept::No),
        },
        DMatch::Mark {
            neg: n,
            value,
            mask,
        } => match opt {
            "--mark" => {
                let v = val(0)?;
                let (a, b) = parse_mark(v).ok_or_else(|| format!("--mark: bad value `{v}`"))?;
                *n = neg;
                *value = a;
                *mask = b;
                Ok(Accept::Yes(1))
            }
            _ => Ok(Accept::No),
        },
        DMatch::AddrType {
            src,
            dst,
            limit_iface_in,
            limit_iface_out,
        } => match opt {
            "--src-type" | "--dst-type" => {
                let v = val(0)?;
                let at = p.addr_types.len();
                if !list_into(v, &AddrType::ALL, AddrType::as_str, &mut p.addr_types) {
                    return Err(format!("{opt}: bad type list `{v}`"));
                }
                let slot = if opt == "--src-type" { src } else { dst };
                *slot = Some(Neg::new(neg, push_span(&p.addr_types, at)));
                Ok(Accept::Yes(1))
            }
            "--limit-iface-in" => {
                *limit_iface_in = true;
                Ok(Accept::Yes(0))
            }
            "--limit-iface-out" => {
                *limit_iface_out = true;
                Ok(Accept::Yes(0))
            }
            _ => Ok(Accept::No),
        },
        DMatch::Conntrack { ctstate } => match opt {
            "--ctstate" => {
                let v = val(0)?;
                let at = p.ct_states.len();
                if !list_into(v, &CtState::ALL, CtState::as_str, &mut p.ct_states) {
                    return Err(format!("--ctstate: bad state list `{v}`"));
                }
                // The kernel keeps a bit set: iptables-save prints each state once, in order.
                let s = &mut p.ct_states;
                s[at..].sort();
                let mut w = at;
                for r in at..s.len() {
                    if w == at || s[w - 1] != s[r] {
                        s[w] = s[r];
                        w += 1;
                    }
                }
                s.truncate(w);
                *ctstate = Some(Neg::new(neg, push_span(s, at)));
                Ok(Accept::Yes(1))
            }
            o if o.starts_with("--ct") => Ok(Accept::Unmodelled),
            _ => Ok(Accept::No),
        },
        DMatch::Nfacct(name) => match opt {
            "--nfacct-name" => {
                val(0)?;
                *name = word(0);
                Ok(Accept::Yes(1))
            }
            _ => Ok(Accept::No),
        },
        DMatch::Set { neg: n, name, dirs } => match opt {
            "--match-set" => {
                val(0)?;
                let d = val(1)?;
                let at = p.dirs.len();
                for part in d.split(',') {
                    p.dirs.push(match part {
                        "src" => true,
                        "dst" => false,
                        _ => return Err(format!("--match-set: bad direction `{part}`")),
                    });
                }
                *name = word(0);
                *n = neg;
                *dirs = push_span(&p.dirs, at);
                Ok(Accept::Yes(2))
            }
            "--return-nomatch"
            | "--update-counters"
            | "--update-subcounters"
            | "--packets-eq"
            | "--packets-lt"
            | "--packets-gt"
            | "--bytes-eq"
            | "--bytes-lt"
            | "--bytes-gt"
            | "--no-update-counters"
            | "--no-update-subcounters" => Ok(Accept::Unmodelled),
            _ => Ok(Accept::No),
        },
        DMatch::Physdev {
            is_in,
            physdev_in,
            is_out,
            physdev_out,
            is_bridged,
        } => {
            let flag = match opt {
                "--physdev-is-in" => is_in,
                "--physdev-is-out" => is_out,
                "--physdev-is-bridged" => is_bridged,
                "--physdev-in" | "--physdev-out" => {
                    let v = val(0)?;
                    let slot = if opt == "--physdev-in" {
                        physdev_in
                    } else {
                        physdev_out
                    };
                    once(opt, slot.is_some())?;
                    // xtables_parse_interface: shorter than IFNAMSIZ; the kernel refuses '/'
                    // and spaces (and an empty name would not print back).
                    if !valid_iface(v) {
                        return Err(format!("{opt}: `{v}` is not a valid interface name"));
                    }
                    *slot = Some(Neg::new(neg, word(0)));
                    return Ok(Accept::Yes(1));
                }
                _ => return Ok(Accept::No),
            };
            once(opt, flag.is_some())?;
            *flag = Some(neg);
            Ok(Accept::Yes(0))
        }
        DMatch::Ipvs { m, ipvs } => {
            let port = |v: &str| -> Result<u16, String> {
                v.parse().map_err(|_| {
                    format!("{opt}: `{v}` is not a port number (service names are not resolved)")
                })
            };
            match opt {
                "--ipvs" => {
                    once(opt, ipvs.is_some())?;
                    *ipvs = Some(neg);
                    return Ok(Accept::Yes(0));
                }
                "--vdir" => {
                    let v = val(0)?;
                    once(opt, m.vdir.is_some())?;
                    if neg {
                        return Err("--vdir cannot be inverted (use --vdir REPLY)".into());
                    }
                    m.vdir = Some(if v.eq_ignore_ascii_case("ORIGINAL") {
                        VDir::Original
                    } else if v.eq_ignore_ascii_case("REPLY") {
                        VDir::Reply
                    } else {
                        return Err(format!("--vdir: `{v}` is not ORIGINAL or REPLY"));
                    });
                }
                "--vproto" => {
                    let v = val(0)?;
                    once(opt, m.vproto.is_some())?;
                    let p = ProtoNum::from_name(v)
                        .ok_or_else(|| format!("--vproto: unknown protocol `{v}`"))?;
                    m.vproto = Some(Neg::new(neg, p.0));
                }
                "--vaddr" => {
                    let v = val(0)?;
                    once(opt, m.vaddr.is_some())?;
                    m.vaddr = Some(Neg::new(
                        neg,
                        parse_hostmask(v, family).ok_or_else(|| {
                            format!("--vaddr: `{v}` is not an address[/prefix] of this family")
                        })?,
                    ));
                }
                "--vport" | "--vportctl" => {
                    let p = port(val(0)?)?;
                    let slot = if opt == "--vport" {
                        &mut m.vport
                    } else {
                        &mut m.vportctl
                    };
                    once(opt, slot.is_some())?;
                    *slot = Some(Neg::new(neg, p));
                }
                "--vmethod" => {
                    let v = val(0)?;
                    once(opt, m.vmethod.is_some())?;
                    let method = [VMethod::Gate, VMethod::Ipip, VMethod::Masq]
                        .into_iter()
                        .find(|x| x.as_str().eq_ignore_ascii_case(v))
                        .ok_or_else(|| format!("--vmethod: `{v}` is not GATE, IPIP or MASQ"))?;
                    m.vmethod = Some(Neg::new(neg, method));
                }
                _ => return Ok(Accept::No),
            }
            Ok(Accept::Yes(1))
        }
        DMatch::Unknown { .. } => Ok(Accept::No),
    }
}

/// libxtables refuses an option given twice to one match (`xtables_option_parse`: "can only be
/// used once").
fn once(opt: &str, seen: bool) -> Result<(), String> {
    if seen {
        Err(format!("{opt} can only be used once in a match"))
    } else {
        Ok(())
    }
}

/// Linux interface names: 1..=15 bytes (IFNAMSIZ - 1), no whitespace, no '/'
/// (xtables_parse_interface refuses longer ones; the kernel refuses the rest).
fn valid_iface(v: &str) -> bool {
    !v.is_empty() && v.len() <= 15 && !v.bytes().any(|b| b.is_ascii_whitespace() || b == b'/')
}

/// `XTTYPE_HOSTMASK` (`--vaddr`): an address with an optional prefix length (no dotted mask),
/// kept unmasked as libxtables keeps it.
fn parse_hostmask(s: &str, family: Family) -> Option<IpNet> {
    let (a, p) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: IpAddr = a.parse().ok()?;
    if !fam_ok(addr, family) {
        return None;
    }
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match p {
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok()?,
        Some(_) => return None,
        None => max,
    };
    IpNet::new(addr, prefix).ok()
}

fn new_target(name: &str, word: Word, p: &Pools) -> DTarget {
    match name {
        "ACCEPT" => DTarget::Accept,
        "DROP" => DTarget::Drop,
        "RETURN" => DTarget::Return,
        "REJECT" => DTarget::Reject(Word::Static("")),
        "DNAT" => DTarget::Dnat {
            to: Word::Static(""),
            random: false,
            persistent: false,
        },
        "SNAT" => DTarget::Snat {
            to: Word::Static(""),
            random: false,
            random_fully: false,
            persistent: false,
        },
        "MASQUERADE" => DTarget::Masquerade {
            to_ports: None,
            random: false,
            random_fully: false,
        },
        "MARK" => DTarget::Mark {
            value: 0,
            mask: u32::MAX,
        },
        "LOG" => DTarget::Log {
            prefix: None,
            level: None,
        },
        _ => DTarget::Unknown {
            name: word,
            args: (p.words.len() as u32, p.words.len() as u32),
        },
    }
}

fn target_accept(
    t: &mut DTarget,
    opt: &str,
    vals: &[&str],
    base: usize,
) -> Result<Option<usize>, String> {
    let val = |i: usize| -> Result<&str, String> {
        vals.get(i)
            .copied()
            .ok_or_else(|| format!("{opt} needs a value"))
    };
    let word = |i: usize| -> Result<Word, String> {
        val(i)?;
        Ok(Word::Tok((base + i) as u32))
    };
    Ok(match t {
        DTarget::Reject(with) if opt == "--reject-with" => {
            *with = word(0)?;
            Some(1)
        }
        DTarget::Dnat {
            to,
            random,
            persistent,
        } => match opt {
            "--to-destination" | "--to" => {
                *to = word(0)?;
                Some(1)
            }
            "--random" => {
                *random = true;
                Some(0)
            }
            "--persistent" => {
                *persistent = true;
                Some(0)
            }
            _ => None,
        },
        DTarget::Snat {
            to,
            random,
            random_fully,
            persistent,
        } => match opt {
            "--to-source" | "--to" => {
                *to = word(0)?;
                Some(1)
            }
            "--random" => {
                *random = true;
                Some(0)
            }
            "--random-fully" => {
                *random_fully = true;
                Some(0)
            }
            "--persistent" => {
                *persistent = true;
                Some(0)
            }
            _ => None,
        },
        DTarget::Masquerade {
            to_ports,
            random,
            random_fully,
        } => match opt {
            "--to-ports" => {
                *to_ports = Some(word(0)?);
                Some(1)
            }
            "--random" => {
                *random = true;
                Some(0)
            }
            "--random-fully" => {
                *random_fully = true;
                Some(0)
            }
            _ => None,
        },
        DTarget::Mark { value, mask } => {
            let v = match opt {
                "--set-xmark" | "--set-mark" | "--or-mark" | "--and-mark" | "--xor-mark" => val(0)?,
                _ => return Ok(None),
            };
            let bad = || format!("{opt}: bad mark `{v}`");
            // The kernel target only knows "xmark": mark = (mark & ~mask) ^ value; libxt_MARK
            // translates every user form into it, and iptables-save prints the xmark form.
            let (nv, nm) = match opt {
                "--set-xmark" => parse_mark(v).ok_or_else(bad)?,
                "--set-mark" => {
                    let (a, m) = parse_mark(v).ok_or_else(bad)?;
                    (a, a | m)
                }
                "--or-mark" => {
                    let a = parse_u32(v).ok_or_else(bad)?;
                    (a, a)
                }
                "--and-mark" => {
                    let a = parse_u32(v).ok_or_else(bad)?;
                    (0, !a)
                }
                _ => {
                    let a = parse_u32(v).ok_or_else(bad)?;
                    (a, 0)
                }
            };
            *value = nv;
            *mask = nm;
            Some(1)
        }
        DTarget::Log { prefix, level } => match opt {
            "--log-prefix" => {
                *prefix = Some(word(0)?);
                Some(1)
            }
            "--log-level" => {
                *level = Some(word(0)?);
                Some(1)
            }
            _ => None,
        },
        _ => None,
    })
}

/// Parse the arguments of one `-A CHAIN ...` line (the text after the chain name). Returns None
/// (with an error diagnostic) when the rule cannot be used at all.
pub(crate) fn parse_rule_args<S: BuildHasher>(
    text: &str,
    family: Family,
    table_name: &str,
    chains: &HashMap<String, usize, S>,
    line: usize,
    diags: &mut Vec<Diagnostic>,
) -> Option<Rule> {
    let words = match tokenize(text) {
        Ok(w) => w,
        Err(e) => {
            diags.push(Diagnostic::error(Some(line), "", e));
            return None;
        }
    };
    let args: Vec<&str> = words.iter().map(|w| w.as_ref()).collect();
    let mut d = Draft::default();
    let chain = |c: &str| chains.get(c).copied();
    if !parse_draft(&args, family, table_name, &chain, line, diags, &mut d) {
        return None;
    }
    let r = DraftRef { d: &d, toks: &args };
    Some(to_rule(r, r.counters()))
}

/// The options of the rule itself; the rest belong to its matches and target.
#[derive(Debug, Clone, Copy, PartialEq)]
enum RuleOpt {
    Src,
    Dst,
    In,
    Out,
    Proto,
    Match,
    Jump,
    Goto,
    Counters,
    Fragment,
}

/// Which rule option `tok` is: by its letter for the short forms (the ones iptables-save
/// writes), by name for the long ones. A `match` over all twenty names compared them one by
/// one for every word of every rule (3% of a 10k-Service parse, callgrind).
fn rule_opt(tok: &str) -> Option<RuleOpt> {
    use RuleOpt::*;
    Some(match tok.as_bytes() {
        [b'-', c] => match c {
            b's' => Src,
            b'd' => Dst,
            b'i' => In,
            b'o' => Out,
            b'p' => Proto,
            b'm' => Match,
            b'j' => Jump,
            b'g' => Goto,
            b'c' => Counters,
            b'f' => Fragment,
            _ => return None,
        },
        [b'-', b'-', ..] => match tok {
            "--source" | "--src" => Src,
            "--destination" | "--dst" => Dst,
            "--in-interface" => In,
            "--out-interface" => Out,
            "--protocol" => Proto,
            "--match" => Match,
            "--jump" => Jump,
            "--goto" => Goto,
            "--set-counters" => Counters,
            "--fragment" => Fragment,
            _ => return None,
        },
        _ => return None,
    })
}

/// Parse the arguments of one `-A CHAIN ...` line into `d` (words are indices into `args`).
/// Returns false (with an error diagnostic) when the rule cannot be used at all.
fn parse_draft(
    args: &[&str],
    family: Family,
    table_name: &str,
    chain: &dyn Fn(&str) -> Option<usize>,
    line: usize,
    diags: &mut Vec<Diagnostic>,
    d: &mut Draft,
) -> bool {
    d.clear(line);
    let mut neg = false;
    let mut i = 0;
    let fail = |diags: &mut Vec<Diagnostic>, msg: String| {
        diags.push(Diagnostic::error(Some(line), "", msg));
        false
    };
    while i < args.len() {
        let tok = args[i];
        i += 1;
        if tok == "!" {
            neg = true;
            continue;
        }
        let take_neg = std::mem::take(&mut neg);
        let next = |i: usize| args.get(i).copied();
        match rule_opt(tok) {
            Some(o @ (RuleOpt::Src | RuleOpt::Dst)) => {
                let Some(v) = next(i) else {
                    return fail(diags, format!("{tok} needs an address"));
                };
                i += 1;
                let Some(net) = parse_net(v, family) else {
                    return fail(
                        diags,
                        format!("{tok}: `{v}` is not an address or CIDR of this family"),
                    );
                };
                let slot = if o == RuleOpt::Src {
                    &mut d.src
                } else {
                    &mut d.dst
                };
                *slot = Some(Neg::new(take_neg, net));
            }
            Some(o @ (RuleOpt::In | RuleOpt::Out)) => {
                let Some(v) = next(i) else {
                    return fail(diags, format!("{tok} needs an interface"));
                };
                let w = Word::Tok(i as u32);
                i += 1;
                if !valid_iface(v) {
                    return fail(diags, format!("{tok}: `{v}` is not a valid interface name"));
                }
                let slot = if o == RuleOpt::In {
                    &mut d.in_iface
                } else {
                    &mut d.out_iface
                };
                *slot = Some(Neg::new(take_neg, w));
            }
            Some(RuleOpt::Proto) => {
                let Some(v) = next(i) else {
                    return fail(diags, "-p needs a protocol".into());
                };
                i += 1;
                let Some(p) = ProtoNum::from_name(v) else {
                    return fail(diags, format!("-p: unknown protocol `{v}`"));
                };
                d.proto = Some(Neg::new(take_neg, p));
            }
            Some(RuleOpt::Match) => {
                let Some(v) = next(i) else {
                    return fail(diags, "-m needs a module name".into());
                };
                let m = new_match(v, Word::Tok(i as u32), family, &d.p);
                i += 1;
                if let DMatch::Unknown { .. } = m {
                    diags.push(Diagnostic::warning(
                        Some(line),
                        "",
                        format!("unsupported match `-m {v}`: kept verbatim; the tracer cannot evaluate it"),
                    ));
                }
                d.matches.push(m);
            }
            Some(o @ (RuleOpt::Jump | RuleOpt::Goto)) => {
                let Some(v) = next(i) else {
                    return fail(diags, format!("{tok} needs a target"));
                };
                let w = Word::Tok(i as u32);
                i += 1;
                let goto = o == RuleOpt::Goto;
                let to = chain(v).map(|c| c as u32);
                let is_chain = to.is_some();
                let t = if goto {
                    DTarget::Goto(w, to)
                } else if is_chain {
                    DTarget::Jump(w, to)
                } else {
                    let t = new_target(v, w, &d.p);
                    if let DTarget::Unknown { .. } = t {
                        diags.push(Diagnostic::warning(
                            Some(line),
                            "",
                            format!(
                                "unsupported target `-j {v}` (not a chain declared in table {}): kept verbatim; the tracer cannot follow it",
                                table_name
                            ),
                        ));
                    }
                    t
                };
                if goto && !is_chain {
                    diags.push(Diagnostic::error(
                        Some(line),
                        "",
                        format!("-g {v}: chain not declared in table {table_name}"),
                    ));
                }
                d.target = Some(t);
            }
            Some(RuleOpt::Counters) => {
                let (Some(p), Some(b)) = (next(i), next(i + 1)) else {
                    return fail(diags, "-c needs packets and bytes".into());
                };
                i += 2;
                match (p.parse(), b.parse()) {
                    (Ok(packets), Ok(bytes)) => d.counters = Some(Counters { packets, bytes }),
                    _ => return fail(diags, format!("-c: bad counters `{p} {b}`")),
                }
            }
            Some(RuleOpt::Fragment) => {
                return fail(diags, "-f (fragments) is not supported".into());
            }
            None if is_option(tok) => {
                let opt = tok;
                // Values are the following words up to the next option or `!`.
                let mut end = i;
                while end < args.len() && !is_option(args[end]) && args[end] != "!" {
                    end += 1;
                }
                let vals = &args[i..end];
                let at = i;
                let words = move || option_words(take_neg, at - 1, at, end - at);
                // 1. the target, if one was given
                if let Some(t) = d.target.as_mut() {
                    if let DTarget::Unknown { args: uargs, .. } = t {
                        append_words(&mut d.p, uargs, words());
                        i = end;
                        continue;
                    }
                    match target_accept(t, opt, vals, i) {
                        Ok(Some(n)) => {
                            i += n;
                            continue;
                        }
                        Ok(None) => {}
                        Err(e) => return fail(diags, e),
                    }
                }
                // 2. the most recent match that knows the option
                let mut taken = false;
                for k in (0..d.matches.len()).rev() {
                    let mut m = d.matches[k];
                    let res = match_accept(&mut m, opt, take_neg, vals, i, args, family, &mut d.p);
                    d.matches[k] = m;
                    match res {
                        Ok(Accept::Yes(n)) => {
                            i += n;
                            taken = true;
                            break;
                        }
                        Ok(Accept::No) => {}
                        Ok(Accept::Unmodelled) => {
                            let r = DraftRef { d: &*d, toks: args };
                            let module = match_module(&m);
                            diags.push(Diagnostic::warning(
                                Some(line),
                                "",
                                format!("unsupported option `{opt}` of `-m {}`: match kept verbatim; the tracer cannot evaluate it", r.s(module)),
                            ));
                            let mut printed = String::new();
                            super::print::write_match(&mut printed, r.match_ref(&m));
                            let at = d.p.words.len();
                            // The words the match had so far (its printed form without
                            // `-m module`), then this option.
                            for w in tokenize(&printed).unwrap_or_default().iter().skip(2) {
                                let a = d.p.text.len() as u32;
                                d.p.text.push_str(w);
                                d.p.words.push(Word::Own(a, d.p.text.len() as u32));
                            }
                            d.p.words.extend(words());
                            d.matches[k] = DMatch::Unknown {
                                module,
                                args: push_span(&d.p.words, at),
                            };
                            i = end;
                            taken = true;
                            break;
                        }
                        Err(e) => return fail(diags, e),
                    }
                }
                if taken {
                    continue;
                }
                // 3. an unknown module swallows options nobody else knows
                if let Some(DMatch::Unknown { args: uargs, .. }) = d
                    .matches
                    .iter_mut()
                    .rev()
                    .find(|m| matches!(m, DMatch::Unknown { .. }))
                {
                    append_words(&mut d.p, uargs, words());
                    i = end;
                    continue;
                }
                // 4. implicit protocol match (`-p tcp --dport 80`)
                if let Some(p) = d.proto.as_ref().and_then(|p| p.value.name())
                    && matches!(p, "tcp" | "udp" | "sctp")
                    && !d.matches.iter().any(|m| {
                        matches!(m, DMatch::Ports { module, .. } if module.get(args, &d.p.text) == p)
                    })
                {
                    let mut m = new_match(p, Word::Static(p), family, &d.p);
                    match match_accept(&mut m, opt, take_neg, vals, i, args, family, &mut d.p) {
                        Ok(Accept::Yes(n)) => {
                            d.matches.push(m);
                            i += n;
                            continue;
                        }
                        Err(e) => return fail(diags, e),
                        _ => {}
                    }
                }
                return fail(diags, format!("unknown option `{opt}`"));
            }
            None => return fail(diags, format!("unexpected word `{tok}`")),
        }
    }
    if neg {
        return fail(diags, "`!` at the end of the rule".into());
    }
    for m in &d.matches {
        match m {
            // libxt_ipvs ipvs_mt_check.
            DMatch::Ipvs { m, ipvs } if m.property_only() && ipvs.is_none() => {
                return fail(diags, "-m ipvs needs at least one option".into());
            }
            DMatch::Ipvs {
                m,
                ipvs: Some(true),
            } if !m.property_only() => {
                return fail(
                    diags,
                    "! --ipvs cannot be together with other -m ipvs options".into(),
                );
            }
            _ => {}
        }
    }
    let r = DraftRef { d: &*d, toks: args };
    for m in r.matches() {
        if let Err(e) = validate_match(m) {
            return fail(diags, e);
        }
    }
    if let Some(DTarget::Reject(with)) = d.target.as_mut()
        && with.get(args, &d.p.text).is_empty()
    {
        // What REJECT does (and iptables-save prints) when no --reject-with is given.
        *with = Word::Static(match family {
            Family::V4 => "icmp-port-unreachable",
            Family::V6 => "icmp6-port-unreachable",
        });
    }
    // `validate_target` on the draft's own target (a `TargetRef` of every rule was 3% of a
    // 10k-Service parse, callgrind).
    let no_to = |w: &Word| w.get(args, &d.p.text).is_empty();
    let missing = match &d.target {
        Some(DTarget::Dnat { to, .. }) if no_to(to) => Some("-j DNAT needs --to-destination"),
        Some(DTarget::Snat { to, .. }) if no_to(to) => Some("-j SNAT needs --to-source"),
        _ => None,
    };
    if let Some(e) = missing {
        return fail(diags, e.into());
    }
    true
}

/// The module name of a match (what an unknown match made of it is called).
fn match_module(m: &DMatch) -> Word {
    Word::Static(match m {
        DMatch::Ports { module, .. } | DMatch::Unknown { module, .. } => return *module,
        DMatch::Comment(_) => "comment",
        DMatch::Multiport { .. } => "multiport",
        DMatch::Statistic(_) => "statistic",
        DMatch::Recent(_) => "recent",
        DMatch::Mark { .. } => "mark",
        DMatch::AddrType { .. } => "addrtype",
        DMatch::Conntrack { .. } => "conntrack",
        DMatch::Nfacct(_) => "nfacct",
        DMatch::Set { .. } => "set",
        DMatch::Physdev { .. } => "physdev",
        DMatch::Ipvs { .. } => "ipvs",
    })
}

/// Reject what the real iptables would refuse to load.
fn validate_match(m: MatchRef) -> Result<(), String> {
    match m {
        MatchRef::Comment(comment) if comment.len() > 255 => {
            Err("--comment is longer than 255 characters".into())
        }
        MatchRef::Multiport { ports: [], .. } => {
            Err("-m multiport needs --ports/--sports/--dports".into())
        }
        MatchRef::Nfacct("") => Err("-m nfacct needs --nfacct-name".into()),
        MatchRef::Set { name: "", .. } => Err("-m set needs --match-set".into()),
        // libxt_physdev physdev_check.
        MatchRef::Physdev(p) if p.is_empty() => Err("-m physdev needs an option".into()),
        MatchRef::AddrType {
            src: None,
            dst: None,
            ..
        } => Err("-m addrtype needs --src-type or --dst-type".into()),
        _ => Ok(()),
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The tokenizer as it was before its fast paths (a char loop): the semantics to keep.
    fn reference_tokenize(s: &str) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        let mut chars = s.char_indices().peekable();
        while let Some(&(_, c)) = chars.peek() {
            if c.is_ascii_whitespace() {
                chars.next();
                continue;
            }
            let mut w = String::new();
            if c == '"' {
                chars.next();
                loop {
                    match chars.next() {
                        None => return Err("unterminated quoted string".into()),
                        Some((_, '"')) => break,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, e)) => w.push(e),
                            None => return Err("unterminated quoted string".into()),
                        },
                        Some((_, x)) => w.push(x),
                    }
                }
            } else {
                while let Some(&(_, x)) = chars.peek() {
                    if x.is_ascii_whitespace() {
                        break;
                    }
                    w.push(x);
                    chars.next();
                }
            }
            out.push(w);
        }
        Ok(out)
    }

    fn words() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just(" ".to_string()),
            Just("\"".to_string()),
            Just("\\".to_string()),
            Just("\t".to_string()),
            Just("\r".to_string()),
            Just("\n".to_string()),
            Just("\x0b".to_string()),
            Just("\x0c".to_string()),
            Just("\x01".to_string()),
            Just("é".to_string()),
            Just("\u{a0}".to_string()),
            "[a-zA-Z0-9./:-]{1,12}",
            // Words and gaps across the tokenizer's 64-byte windows.
            "[a-z]{50,140}",
            " {1,70}",
            any::<char>().prop_map(String::from),
        ];
        prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
    }

    /// Lines like a dump's, quoted comments included.
    fn dump_lines() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("-A".to_string()),
            Just("KUBE-SVC-22ADXQ67Z2ORM2RO".to_string()),
            Just("-m".to_string()),
            Just("comment".to_string()),
            Just("--comment".to_string()),
            Just("\"ns66/svc6646:http cluster IP\"".to_string()),
            Just("\"a\\\"b\"".to_string()),
            Just("10.96.26.0/32".to_string()),
            Just("!".to_string()),
        ];
        let sep = prop_oneof![Just(" "), Just("  "), Just("\t"), Just("")];
        prop::collection::vec((piece, sep), 0..40)
            .prop_map(|v| v.into_iter().map(|(p, s)| p + s).collect())
    }

    /// Both tokenizers against the reference: the general one on every line, the parser's fast
    /// one on every line without a quote up to its `\n` (and it must decline exactly the lines
    /// with one).
    fn tokenizers_match_the_reference(s: &str) -> Result<(), TestCaseError> {
        let want = reference_tokenize(s);
        let got = tokenize(s).map(|v| v.into_iter().map(|w| w.into_owned()).collect());
        prop_assert_eq!(&got, &want);
        // The fast one reads up to the first `\n`.
        let first = &s[..s.find('\n').unwrap_or(s.len())];
        let mut fast = Vec::new();
        let end = split_unquoted(s, &mut fast);
        prop_assert_eq!(end.is_some(), !first.contains('"'), "{:?}", s);
        if let Some(end) = end {
            prop_assert_eq!(end, first.len());
            let fast: Vec<String> = fast.iter().map(|w| w.to_string()).collect();
            prop_assert_eq!(Ok(fast), reference_tokenize(first));
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

        #[test]
        fn tokenizer_matches_the_reference(s in words()) {
            tokenizers_match_the_reference(&s)?;
        }

        #[test]
        fn tokenizer_matches_the_reference_on_dump_lines(s in dump_lines()) {
            tokenizers_match_the_reference(&s)?;
        }

        #[test]
        fn f64_matches_std(int in "[0-9]{0,9}", frac in "[0-9]{0,16}", dot in any::<bool>()) {
            let s = if dot { format!("{int}.{frac}") } else { format!("{int}{frac}") };
            let got = parse_f64(&s).map(f64::to_bits);
            prop_assert_eq!(got, s.parse::<f64>().ok().map(f64::to_bits), "{:?}", s);
        }

        #[test]
        fn f64_matches_std_on_probabilities(p in 0.0f64..=1.0) {
            let s = format!("{p:.11}");
            prop_assert_eq!(parse_f64(&s).map(f64::to_bits), s.parse::<f64>().ok().map(f64::to_bits));
        }
    }

    #[test]
    fn f64_edge_cases_match_std() {
        for s in [
            "0.5",
            "1.0",
            "0.0",
            ".5",
            "5.",
            "1e-1",
            "+0.5",
            "-0.5",
            "inf",
            "NaN",
            "0.1.2",
            "0.10000000009",
            "0.999999999999999",
            "0.9999999999999999",
            "1234567.12345678",
        ] {
            let got = parse_f64(s).map(f64::to_bits);
            assert_eq!(got, s.parse::<f64>().ok().map(f64::to_bits), "{s:?}");
        }
    }

    #[test]
    fn byte_classes_match_std() {
        for b in 0..=255u8 {
            assert_eq!(is_ws(b), b.is_ascii_whitespace(), "{b}");
            if b.is_ascii() {
                assert_eq!(is_char_ws(b), char::from(b).is_whitespace(), "{b}");
            }
        }
    }

    #[test]
    fn is_option_matches_its_definition() {
        for t in [
            "-",
            "--",
            "-5",
            "-5x",
            "--5",
            "-a",
            "-9223372036854775809",
            "-0",
            "5",
            "!",
            "",
        ] {
            let def = t.len() > 1 && t.starts_with('-') && t.parse::<i64>().is_err();
            assert_eq!(is_option(t), def, "{t:?}");
        }
    }
}
