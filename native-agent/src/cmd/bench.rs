//! `proxyscope bench`: the performance targets of issue 3, each measured next to its reference
//! on this machine, printed as a table.

use crate::error::CliError;
use clap::Args;
use proxyscope_core::api::{self, Session, TraceRequest};
use proxyscope_core::netfilter::program::Program;
use proxyscope_core::proxier::iptables as ipt_mode;
use proxyscope_core::rules::iptables::{Family, parse};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Measure generation, parsing, tracing and memory on a generated cluster.
#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  proxyscope bench --services 10000 --endpoints 10\n  sudo proxyscope bench --kernel   # also time iptables-restore in a scratch network namespace"
)]
pub struct BenchArgs {
    #[arg(long, default_value_t = 10_000)]
    pub services: usize,
    #[arg(long, default_value_t = 10)]
    pub endpoints: usize,
    /// Repetitions of each timed step (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Also load the rules into the kernel (iptables-restore, in a network namespace this
    /// command creates and deletes; needs root). With the nf_tables backend the load grows
    /// faster than linearly: ~5 s at 1,000 Services, more than 20 minutes at 10,000 here.
    #[arg(long)]
    pub kernel: bool,
    /// With --kernel: stop a kernel reference after this many seconds and report it as longer
    /// (the 10,000-Service load would otherwise hold the table for 20+ minutes).
    #[arg(long, default_value_t = 120)]
    pub kernel_timeout: u64,
}

fn median<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        let v = f();
        times.push(t.elapsed());
        last = Some(v);
    }
    times.sort();
    (times[times.len() / 2], last.expect("ran at least once"))
}

/// The reference for parsing: counting the dump's lines as fast as a plain loop can (byte-wide
/// counters over 255-byte blocks vectorize to 32 bytes per instruction, near memchr's count).
/// A slow reference would flatter the parser's ratio.
fn count_lines(text: &[u8]) -> usize {
    text.chunks(255)
        .map(|c| c.iter().map(|b| u8::from(*b == b'\n')).sum::<u8>() as usize)
        .sum()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Run `cmd` with `input` on stdin inside a scratch network namespace; its wall time.
fn time_in_netns(tool: &str, args: &[&str], input: &str, limit: u64) -> Result<Duration, String> {
    let ns = format!("psbench-{}", std::process::id());
    let ok = Command::new("ip")
        .args(["netns", "add", &ns])
        .status()
        .map_err(|e| e.to_string())?;
    if !ok.success() {
        return Err("ip netns add failed (root needed)".into());
    }
    let result = (|| {
        // kube-proxy creates its nfacct counters before loading rules that use them.
        for c in [
            ipt_mode::NFACCT_LOCALHOST_NODEPORTS,
            ipt_mode::NFACCT_CT_INVALID,
        ] {
            let _ = Command::new("ip")
                .args(["netns", "exec", &ns, "nfacct", "add", c])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let t = Instant::now();
        let secs = limit.to_string();
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns, "timeout", &secs, tool])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{tool}: {e}"))?;
        use std::io::Write;
        // A tool stopped by the time limit closes its stdin: that is reported below, not here.
        let _ = child
            .stdin
            .take()
            .expect("piped")
            .write_all(input.as_bytes());
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        let d = t.elapsed();
        // timeout(1) exits 124 when it stopped the command.
        if out.status.code() == Some(124) {
            return Err(format!("more than {limit} s (stopped)"));
        }
        if !out.status.success() {
            return Err(format!(
                "{tool} failed: {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .next()
                    .unwrap_or("")
            ));
        }
        Ok(d)
    })();
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    result
}

pub fn run(a: BenchArgs) -> Result<(), CliError> {
    eprintln!(
        "generating a cluster of {} Services x {} endpoints ...",
        a.services, a.endpoints
    );
    let yaml = proxyscope_core::generate::large_cluster(a.services, a.endpoints);
    let scenario = api::load_scenario(&yaml)
        .map_err(|d| {
            CliError::Internal(format!("generated scenario does not load: {:?}", d.first()))
        })?
        .scenario;

    let mut rows: Vec<[String; 4]> = Vec::new();

    // 1. Generation.
    let (gen_t, fr) = median(a.runs, || ipt_mode::generate(&scenario, Family::V4));
    let payload_rules = fr.payload.lines().filter(|l| l.starts_with("-A")).count();
    let kernel_load = if a.kernel {
        match time_in_netns(
            "iptables-restore",
            &["--noflush", "--counters"],
            &fr.payload,
            a.kernel_timeout,
        ) {
            Ok(d) => format!("iptables-restore: {}", ms(d)),
            Err(e) => format!("iptables-restore: {e}"),
        }
    } else {
        "iptables-restore: run with --kernel".into()
    };
    rows.push([
        format!("generate rules ({} rules)", payload_rules),
        ms(gen_t),
        kernel_load,
        "< 100 ms".into(),
    ]);

    // 2. Parsing a node dump.
    let saved = ipt_mode::saved_text(&fr);
    let n_rules = saved.lines().filter(|l| l.starts_with("-A")).count();
    // The parse a session (and `trace --rules`) uses: straight into the compact program.
    let (parse_t, (program, diags)) = median(a.runs, || Program::parse(&saved, Family::V4));
    if let Some(d) = diags.first() {
        return Err(CliError::Internal(format!(
            "the generated dump does not parse cleanly: {d}"
        )));
    }
    drop(program);
    // The owned, editable model (rules as structs) from the same text, for comparison.
    let (model_t, parsed) = median(a.runs, || parse(&saved, Family::V4));
    drop(parsed);
    let (count_t, lines) = median(a.runs, || count_lines(saved.as_bytes()));
    let test_ref = if a.kernel {
        match time_in_netns("iptables-restore", &["--test"], &saved, a.kernel_timeout) {
            Ok(d) => format!(
                "iptables-restore --test: {} ({:.0}x ours)",
                ms(d),
                d.as_secs_f64() / parse_t.as_secs_f64()
            ),
            Err(e) => format!("iptables-restore --test: {e}"),
        }
    } else {
        "iptables-restore --test: run with --kernel".into()
    };
    rows.push([
        format!(
            "parse iptables-save dump ({n_rules} rules, {:.1} MB)",
            saved.len() as f64 / 1e6
        ),
        ms(parse_t),
        format!(
            "line count ({lines} lines): {} ({:.1}x); owned rule model: {}; {test_ref}",
            ms(count_t),
            parse_t.as_secs_f64() / count_t.as_secs_f64(),
            ms(model_t)
        ),
        "< 150 ms, >= 20x iptables-restore --test, <= 10x line count".into(),
    ]);

    // The dump, its parse and the payload are done with: tracing should not run in a heap
    // still holding three copies of the ruleset.
    let dump_len = saved.len();
    drop((saved, fr));

    // 3. Tracing to the last Service.
    let mut session = Session::new(&scenario);
    let targets = api::service_targets(&scenario);
    let first = targets.iter().find(|t| t.kind == "cluster_ip").cloned();
    let last = targets.iter().rfind(|t| t.kind == "cluster_ip").cloned();
    let (Some(first), Some(last)) = (first, last) else {
        return Err(CliError::Internal(
            "no ClusterIP in the generated cluster".into(),
        ));
    };
    let src = api::client_presets(&scenario)
        .first()
        .map(|c| c.src)
        .unwrap_or_else(|| "10.244.1.100".parse().expect("literal"));
    // Per packet: the mean of a block of 2,000 traces; `runs` blocks, their median reported
    // and their best shown beside it (on a shared VM one block can be twice another).
    let runs = a.runs;
    let per_packet = |session: &mut Session, t: &api::ServiceTarget| {
        let req = TraceRequest {
            src,
            dst: t.dst,
            dport: t.dport,
            proto: t.proto,
            sport: Some(40000),
            seed: 1,
            now: 0.0,
        };
        let n = 2000u32;
        let mut blocks = Vec::new();
        let mut evaluated = 0;
        for _ in 0..runs.max(1) {
            let start = Instant::now();
            for _ in 0..n {
                // A fresh state each time: every packet is a connection's first (the nat
                // table runs).
                session.state = Default::default();
                evaluated = session.trace(&req).rules_evaluated;
            }
            blocks.push(start.elapsed() / n);
        }
        blocks.sort();
        (blocks[blocks.len() / 2], blocks[0], evaluated)
    };
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let (t_first, best_first, ev_first) = per_packet(&mut session, &first);
    let (t_last, best_last, ev_last) = per_packet(&mut session, &last);
    rows.push([
        format!("trace to the last Service ({ev_last} rules evaluated)"),
        format!("{:.1} us", us(t_last)),
        format!(
            "best block {:.1} us; first Service ({ev_first} rules): {:.1} us (best {:.1} us)",
            us(best_last),
            us(t_first),
            us(best_first)
        ),
        "< 15 us".into(),
    ]);

    // 4. Memory of the ruleset and its trace index.
    drop(session);
    let before = crate::alloc::live_bytes();
    let session = Session::new(&scenario);
    let held = crate::alloc::live_bytes().saturating_sub(before);
    rows.push([
        "memory: ruleset + trace index".into(),
        format!("{:.1} MB", held as f64 / 1e6),
        format!("dump text: {:.1} MB", dump_len as f64 / 1e6),
        "< 20 MB".into(),
    ]);
    drop(session);

    let w0 = rows.iter().map(|r| r[0].len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r[1].len()).max().unwrap_or(0);
    println!(
        "| {:w0$} | {:w1$} | reference (same run) | target |",
        "measurement", "proxyscope"
    );
    println!("|{}|{}|---|---|", "-".repeat(w0 + 2), "-".repeat(w1 + 2));
    for r in rows {
        println!("| {:w0$} | {:w1$} | {} | {} |", r[0], r[1], r[2], r[3]);
    }
    Ok(())
}
