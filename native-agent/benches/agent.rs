//! What one poll costs the agent on a big node, on a kube-proxy-generated `iptables-save` dump
//! (core's `large_cluster`: N Services x 10 endpoints; 10,000 Services ≈ 300k rules):
//! - `collect_first`: fingerprint the dump, count it with core's parser, pack its JSON;
//! - `poll_unchanged`: the steady state, a poll that finds nothing new (fingerprint only, no parse);
//! - `apply_changed`: publishing a rule change (new snapshot + diff message, composed from the
//!   packed parts; the collect that precedes it is setup, measured by `collect_first`).
//!
//! Run: `cargo bench -p proxyscope --bench agent` (PROXYSCOPE_BENCH_SERVICES=1000,10000 to choose;
//! PROXYSCOPE_BENCH_KERNEL=0 skips the namespace, whose nf_tables restore takes more than 20
//! minutes at 10k; PROXYSCOPE_BENCH_KERNEL=legacy loads it with iptables-legacy-restore instead,
//! about a minute).
//!
//! Besides criterion's timings it prints, per size: the bytes the hub holds between polls (the
//! agent's steady memory beyond the runtime, counted by a wrapping global allocator) and the peak
//! during a changed poll; and, as root with `ip netns`, the same dump loaded into a scratch
//! network namespace so a changed poll is compared with the kernel's own `iptables-save` of it
//! (the target: our parsing adds < 5% to what iptables-save takes), with the poll's
//! steps timed apart (parsing: fingerprint + core's parser; packing the JSON for keeping).
//! Since the agent parses while the tool writes (`snapshot::read_dump`), what it adds is measured
//! directly too, in the same namespace: `iptables-save` alone (output read and discarded) against
//! the agent's read of it through `HostSys` (pieces fingerprinted and counted as they arrive),
//! alternated, median of 7 (of 1 for nf_tables), with the CPU time of both sides.
//!
//! And the real process (issue 6's other target: agent memory < 50 MB): the release
//! `proxyscope agent` binary, with `PATH` set to a directory holding only a fake `iptables-save`
//! that prints the generated dump (the agent finds its tools on `PATH`; every other tool is then
//! "absent", as on a node without them), one websocket client reading everything. Its
//! `/proc/PID/status` gives VmRSS after unchanged polls, VmRSS after changed ones, and VmHWM (the
//! peak resident size over the run). No kernel state is involved, so this runs unprivileged.

#[allow(dead_code)]
#[path = "../src/agent/mod.rs"]
mod agent;

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use agent::hub::Hub;
use agent::snapshot::{
    DumpMarks, Fingerprints, collect, collect_with, iptables_fingerprint, iptables_summary,
    with_text,
};
use agent::sys::{Sys, ToolError};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use proxyscope_core::api;
use proxyscope_core::proxier::iptables as ipt_mode;
use proxyscope_core::rules::iptables::Family;

/// Live heap bytes and their high-water mark.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            if new >= l.size() {
                let now = LIVE.fetch_add(new - l.size(), Ordering::Relaxed) + new - l.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(l.size() - new, Ordering::Relaxed);
            }
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn mb(b: usize) -> String {
    format!("{:.1} MB", b as f64 / 1e6)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// CPU time (user + system) of this process (`RUSAGE_SELF`, every thread) or of its waited-for
/// children (`RUSAGE_CHILDREN`) so far.
fn cpu(who: libc::c_int) -> Duration {
    // SAFETY: getrusage fills the struct it is given; zeroed is a valid rusage.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(who, &mut u) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// The kernel's own `iptables-save` of the dump: wall time (median of the runs) and CPU time per
/// run (its process, user + system, which includes the kernel copying the rules out).
struct KernelSave {
    backend: &'static str,
    runs: usize,
    wall: Duration,
    cpu: Duration,
    /// The agent's streamed read of the same dump against the tool alone, or why not measured.
    streamed: Result<Streamed, String>,
}

/// `iptables-save` alone (its output read to the end and discarded) against the agent's read of
/// it (`snapshot::read_dump` through `HostSys`: pieces fingerprinted and counted as they arrive),
/// alternated, medians of `runs`.
struct Streamed {
    runs: usize,
    alone: Duration,
    agent: Duration,
    /// CPU per run of the tool and `ip netns exec` (children), and of this process's threads.
    alone_cpu: (Duration, Duration),
    agent_cpu: (Duration, Duration),
    /// Joining the pieces into the one string that packing takes (only on a changed poll).
    join: Duration,
    /// The agent's read of the same dump as the last poll's, with its marks (an unchanged poll:
    /// fingerprinted, not parsed): wall, and CPU of the children and of this process.
    unchanged: Duration,
    unchanged_cpu: (Duration, Duration),
    /// From the tool's last byte to the end of the agent's fingerprint and parse (the same read,
    /// `read_pieces` and a `DumpReader`, on a pipe whose end is timed): what streaming leaves.
    tail: Duration,
}

/// A reader that notes when it first reads the end of its input.
struct TimedEnd<R> {
    r: R,
    end: std::sync::Arc<std::sync::Mutex<Option<Instant>>>,
}

impl<R: std::io::Read> std::io::Read for TimedEnd<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.r.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.end.lock().unwrap().get_or_insert_with(Instant::now);
        }
        Ok(n)
    }
}

/// `iptables-save` over `rules` loaded into a scratch namespace (deleted on every path), or why
/// it could not be measured. `PROXYSCOPE_BENCH_KERNEL=legacy` loads with iptables-legacy-restore
/// (x_tables: 10,000 Services load in about a minute here) instead of the nf_tables default,
/// whose restore of 10,000 Services takes more than 20 minutes.
fn kernel_save_time(rules: &str) -> Result<KernelSave, String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        return Err("needs root".into());
    }
    let mode = std::env::var("PROXYSCOPE_BENCH_KERNEL").unwrap_or_default();
    if mode == "0" {
        return Err("skipped, PROXYSCOPE_BENCH_KERNEL=0".into());
    }
    // nf_tables' iptables-save of 10k Services takes minutes: one run. Legacy's takes seconds.
    let (backend, restore, save, runs) = if mode == "legacy" {
        (
            "legacy",
            "iptables-legacy-restore",
            "iptables-legacy-save",
            3,
        )
    } else {
        ("nf_tables", "iptables-nft-restore", "iptables-nft-save", 1)
    };
    struct Ns(String);
    impl Drop for Ns {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let ns = Ns(format!("psbench-{}", std::process::id()));
    let ok = |c: &mut Command| c.status().is_ok_and(|s| s.success());
    if !ok(Command::new("ip").args(["netns", "add", &ns.0])) {
        return Err("ip netns add failed".into());
    }
    for c in [
        "ct_state_invalid_dropped_pkts",
        "localhost_nps_accepted_pkts",
    ] {
        ok(Command::new("ip").args(["netns", "exec", &ns.0, "nfacct", "add", c]));
    }
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.0, restore])
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(rules.as_bytes())
        .map_err(|e| e.to_string())?;
    if !child.wait().is_ok_and(|s| s.success()) {
        return Err(format!("{restore} failed"));
    }
    let mut walls = Vec::new();
    let cpu_before = cpu(libc::RUSAGE_CHILDREN);
    for _ in 0..runs {
        let t = Instant::now();
        let out = Command::new("ip")
            .args(["netns", "exec", &ns.0, save])
            .stdout(Stdio::piped())
            .output()
            .map_err(|e| e.to_string())?;
        walls.push(t.elapsed());
        if !out.status.success() || out.stdout.len() < rules.len() / 2 {
            return Err(format!("{save} printed {} bytes", out.stdout.len()));
        }
    }
    let cpu_per_run = (cpu(libc::RUSAGE_CHILDREN) - cpu_before) / runs as u32;
    let streamed = streamed_read(&ns.0, save, rules.len(), if runs > 1 { 7 } else { 1 });
    Ok(KernelSave {
        backend,
        runs,
        wall: median(walls),
        cpu: cpu_per_run,
        streamed,
    })
}

/// A directory on `PATH` for the bench's duration, where `iptables-save` is the backend's own
/// save (`xtables-*-multi` runs the applet its `argv[0]` names): `HostSys` runs the
/// `iptables-save` found on `PATH`, as the agent does on a node.
struct SavePath {
    /// Holds the link; removed (after `PATH` is restored) when this is dropped.
    _dir: Scratch,
    old: Option<std::ffi::OsString>,
}

impl SavePath {
    fn new(save: &str) -> Result<SavePath, String> {
        let target = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {save}")])
            .output()
            .map_err(|e| e.to_string())?;
        let target = String::from_utf8_lossy(&target.stdout).trim().to_string();
        if target.is_empty() {
            return Err(format!("{save} not found"));
        }
        let dir =
            Scratch(std::env::temp_dir().join(format!("psbench-path-{}", std::process::id())));
        std::fs::create_dir_all(&dir.0).map_err(|e| e.to_string())?;
        std::os::unix::fs::symlink(&target, dir.0.join("iptables-save"))
            .map_err(|e| e.to_string())?;
        let old = std::env::var_os("PATH");
        let mut paths = vec![dir.0.clone()];
        paths.extend(std::env::split_paths(old.as_deref().unwrap_or_default()));
        let path = std::env::join_paths(paths).map_err(|e| e.to_string())?;
        // SAFETY: the bench's other threads (pollers, readers) are all joined by now; nothing
        // reads the environment concurrently.
        unsafe { std::env::set_var("PATH", path) };
        Ok(SavePath { _dir: dir, old })
    }
}

impl Drop for SavePath {
    fn drop(&mut self) {
        // SAFETY: as in `new`, single-threaded here.
        unsafe {
            match &self.old {
                Some(p) => std::env::set_var("PATH", p),
                None => std::env::remove_var("PATH"),
            }
        }
    }
}

fn streamed_read(ns: &str, save: &str, len: usize, runs: usize) -> Result<Streamed, String> {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let _path = SavePath::new(save)?;
    // The tool alone and the tool under an agent-like reader: the same process both times.
    let spawn_save = || {
        Command::new("ip")
            .args(["netns", "exec", ns, "iptables-save"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())
    };
    let sys = agent::sys::HostSys {
        netns: Some(ns.to_string()),
    };
    let (mut alone, mut agent) = (Vec::new(), Vec::new());
    let (mut alone_cpu, mut agent_cpu) = (
        (Duration::ZERO, Duration::ZERO),
        (Duration::ZERO, Duration::ZERO),
    );
    let mut joins = Vec::new();
    let (mut unchanged, mut unchanged_cpu) = (Vec::new(), (Duration::ZERO, Duration::ZERO));
    let mut tails = Vec::new();
    let both = || (cpu(libc::RUSAGE_CHILDREN), cpu(libc::RUSAGE_SELF));
    let mut sink = vec![0u8; 64 << 10];
    for _ in 0..runs {
        let (c0, s0) = both();
        let t = Instant::now();
        let mut child = spawn_save()?;
        let mut out = child.stdout.take().ok_or("no stdout")?;
        let mut n = 0;
        loop {
            match out.read(&mut sink) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) => return Err(e.to_string()),
            }
        }
        let ok = child.wait().is_ok_and(|s| s.success());
        alone.push(t.elapsed());
        let (c1, s1) = both();
        alone_cpu = (alone_cpu.0 + (c1 - c0), alone_cpu.1 + (s1 - s0));
        if !ok || n < len / 2 {
            return Err(format!("iptables-save ({save}) printed {n} bytes"));
        }

        let t = Instant::now();
        let d = agent::snapshot::read_dump(&sys, "iptables-save", Family::V4)
            .map_err(|e| e.to_string())?;
        agent.push(t.elapsed());
        let (c2, s2) = both();
        agent_cpu = (agent_cpu.0 + (c2 - c1), agent_cpu.1 + (s2 - s1));
        if d.summary.is_none_or(|s| s.parsed_rules == 0) {
            return Err("the agent's read counted no rules".into());
        }
        let t = Instant::now();
        black_box(agent::sys::joined(d.pieces));
        joins.push(t.elapsed());

        let (c3, s3) = both();
        let t = Instant::now();
        let last = agent::snapshot::DumpReader::after(
            Family::V4,
            agent::snapshot::MARK_LINES,
            Some(d.marks),
        );
        let again = agent::snapshot::read_dump_after(&sys, "iptables-save", last)
            .map_err(|e| e.to_string())?;
        unchanged.push(t.elapsed());
        let (c4, s4) = both();
        unchanged_cpu = (unchanged_cpu.0 + (c4 - c3), unchanged_cpu.1 + (s4 - s3));
        if again.summary.is_some() {
            return Err("the same dump was parsed again".into());
        }

        let mut child = spawn_save()?;
        let end = std::sync::Arc::new(std::sync::Mutex::new(None));
        let timed = TimedEnd {
            r: child.stdout.take().ok_or("no stdout")?,
            end: end.clone(),
        };
        let mut r = agent::snapshot::DumpReader::new(Family::V4);
        let (pieces, _) =
            agent::sys::read_pieces(timed, &mut |p| r.read(p)).map_err(|e| e.to_string())?;
        let d = r.finish(pieces.map_err(|at| format!("not UTF-8 at {at}"))?);
        let done = Instant::now();
        let _ = child.wait();
        black_box(d);
        let last_byte = end.lock().unwrap().ok_or("no end of output")?;
        tails.push(done - last_byte);
    }
    let per = |c: (Duration, Duration)| (c.0 / runs as u32, c.1 / runs as u32);
    Ok(Streamed {
        runs,
        alone: median(alone),
        agent: median(agent),
        alone_cpu: per(alone_cpu),
        agent_cpu: per(agent_cpu),
        join: median(joins),
        unchanged: median(unchanged),
        unchanged_cpu: per(unchanged_cpu),
        tail: median(tails),
    })
}

/// `VmRSS` and `VmHWM` of a process, in bytes.
fn vm(pid: u32) -> (usize, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Lowest and highest VmRSS sampled every 20 ms over two poll intervals: the lowest is the
/// resident size between polls (a single sample lands inside a poll, holding a fresh tool output,
/// about half the time on a 10k-Service dump).
fn rss_between_polls(pid: u32, interval: Duration) -> (usize, usize) {
    let (mut lo, mut hi) = (usize::MAX, 0);
    let start = Instant::now();
    while start.elapsed() < interval * 2 {
        let (rss, _) = vm(pid);
        (lo, hi) = (lo.min(rss), hi.max(rss));
        std::thread::sleep(Duration::from_millis(20));
    }
    (lo, hi)
}

/// The agent this bench started, stopped on every path.
struct AgentProcess(std::process::Child);

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A scratch directory, removed on every path.
struct Scratch(std::path::PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Resident memory of the real `proxyscope agent` serving `text`, then `changed` and `text` in
/// turn (each a rule change, so a new snapshot and a diff to the client).
fn process_memory(
    text: &str,
    changed: &str,
    client: bool,
    env: &[(&str, &str)],
) -> Result<String, String> {
    use std::io::{BufRead, BufReader};
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Command, Stdio};
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;

    let cat = ["/bin/cat", "/usr/bin/cat"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .ok_or("no cat")?;
    let dir = Scratch(std::env::temp_dir().join(format!("psbench-agent-{}", std::process::id())));
    let bin = dir.0.join("bin");
    std::fs::create_dir_all(&bin).map_err(|e| e.to_string())?;
    let (dump, tmp) = (dir.0.join("dump.txt"), dir.0.join("dump.tmp"));
    let set_dump = |t: &str| -> Result<(), String> {
        // Renamed into place: the tool never prints half a file.
        std::fs::write(&tmp, t).map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, &dump).map_err(|e| e.to_string())
    };
    set_dump(text)?;
    let tool = bin.join("iptables-save");
    std::fs::write(
        &tool,
        format!("#!/bin/sh\nexec {cat} '{}'\n", dump.display()),
    )
    .map_err(|e| e.to_string())?;
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;

    let interval = Duration::from_secs(1);
    let child = Command::new(env!("CARGO_BIN_EXE_proxyscope"))
        .args(["agent", "--listen", "127.0.0.1:0", "--interval", "1s"])
        .env_clear()
        .env("PATH", &bin)
        .env("NODE_NAME", "bench")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut agent = AgentProcess(child);
    let pid = agent.0.id();
    let mut line = String::new();
    BufReader::new(agent.0.stdout.take().ok_or("no stdout")?)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .ok_or_else(|| format!("agent said {line:?}"))?
        .to_string();

    // One client, reading every message as a browser would (a 10k-Service snapshot is one
    // ~35 MB frame, past tungstenite's default limits); `seen` counts them.
    let seen = Arc::new(AtomicU64::new(0));
    let stopped = Arc::new(std::sync::Mutex::new(None::<String>));
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None);
    if client {
        let (mut ws, _) = tokio_tungstenite::tungstenite::client::connect_with_config(
            url.as_str(),
            Some(config),
            0,
        )
        .map_err(|e| format!("{url}: {e}"))?;
        let (counter, why) = (seen.clone(), stopped.clone());
        std::thread::spawn(move || {
            let e = loop {
                match ws.read() {
                    Ok(_) => counter.fetch_add(1, Ordering::Relaxed),
                    Err(e) => break e,
                };
            };
            *why.lock().unwrap() = Some(e.to_string());
        });
    }
    let wait_for = |n: u64| {
        if !client {
            // Nobody to tell us a diff went out: three polls are enough for one to see the file.
            std::thread::sleep(interval * 3);
            return Ok(());
        }
        let start = Instant::now();
        while seen.load(Ordering::Relaxed) < n {
            if let Some(e) = stopped.lock().unwrap().as_ref() {
                return Err(format!("client stopped before message {n}: {e}"));
            }
            if start.elapsed() > Duration::from_secs(120) {
                return Err(format!("no message {n} from the agent in 120 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    };
    wait_for(1)?;
    std::thread::sleep(interval * 4);
    let (steady, busy) = rss_between_polls(pid, interval);
    let mut messages = 1;
    for t in [changed, text, changed] {
        set_dump(t)?;
        messages += 1;
        wait_for(messages)?;
    }
    std::thread::sleep(interval * 4);
    let (after, busy_after) = rss_between_polls(pid, interval);
    let (_, peak) = vm(pid);
    Ok(format!(
        "VmRSS between polls {} after 4 unchanged polls, {} 4 polls after 3 changes (during a poll up to {}); VmHWM {}",
        mb(steady),
        mb(after),
        mb(busy.max(busy_after)),
        mb(peak)
    ))
}

struct OnlyIptables(String);

impl Sys for OnlyIptables {
    fn run(&self, program: &str, _args: &[&str]) -> Result<String, ToolError> {
        match program {
            "iptables-save" => Ok(self.0.clone()),
            _ => Err(ToolError::Missing(format!("{program} is not installed"))),
        }
    }
}

fn dump(services: usize) -> String {
    let yaml = proxyscope_core::generate::large_cluster(services, 10);
    let scenario = api::load_scenario(&yaml)
        .unwrap_or_else(|d| panic!("generated scenario does not load: {:?}", d.first()))
        .scenario;
    ipt_mode::saved_text(&ipt_mode::generate(&scenario, Family::V4))
}

fn bench(c: &mut Criterion) {
    let sizes: Vec<usize> = std::env::var("PROXYSCOPE_BENCH_SERVICES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1000, 10_000]);
    for services in sizes {
        let text = dump(services);
        let rules = text.lines().filter(|l| l.starts_with("-A")).count();
        println!(
            "{services} Services: {rules} rules, {:.1} MB of iptables-save",
            text.len() as f64 / 1e6
        );
        let sys = OnlyIptables(text.clone());
        let none = Fingerprints::new();

        // Memory: what the hub keeps between polls, and the peak of a poll that finds a change.
        let before = LIVE.load(Ordering::Relaxed);
        let hub = Hub::new(serde_json::json!({}), collect(&sys, &none));
        let held = LIVE.load(Ordering::Relaxed) - before;
        let changed = OnlyIptables(text.replacen("-A ", "-A KUBE-FORWARD -j ACCEPT\n-A ", 1));
        let base = LIVE.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        assert!(hub.apply(collect(&changed, &hub.fingerprints())).is_some());
        let peak = PEAK.load(Ordering::Relaxed) - base;
        println!(
            "{services} Services: hub holds {} between polls (dump text {}); a changed poll peaks {} above that",
            mb(held),
            mb(text.len()),
            mb(peak)
        );
        // A changed poll against the kernel's own dump time (the tool's text is already in
        // memory here, as it is once iptables-save has written it): wall time and CPU time
        // (every thread of this process), per poll.
        let mut polls = Vec::new();
        let mut flip = false;
        let cpu_before = cpu(libc::RUSAGE_SELF);
        for _ in 0..5 {
            flip = !flip;
            let t = Instant::now();
            let c = collect(if flip { &sys } else { &changed }, &hub.fingerprints());
            assert!(hub.apply(c).is_some());
            polls.push(t.elapsed());
        }
        let poll_cpu = (cpu(libc::RUSAGE_SELF) - cpu_before) / 5;
        let poll = median(polls);
        // The poll's work on the text, step by step (median of 5, single-threaded): parsing is
        // the fingerprint and core's parser; packing is escaping and deflating it for keeping.
        let step = |f: &mut dyn FnMut()| {
            median(
                (0..5)
                    .map(|_| {
                        let t = Instant::now();
                        f();
                        t.elapsed()
                    })
                    .collect(),
            )
        };
        let fingerprint = step(&mut || {
            black_box(iptables_fingerprint(&text));
        });
        let summary = iptables_summary(&text, Family::V4);
        let parse = step(&mut || {
            black_box(iptables_summary(&text, Family::V4));
        });
        // Copies made before the clock starts: packing consumes its text.
        let mut copies: Vec<String> = (0..5).map(|_| text.clone()).collect();
        let pack = step(&mut || {
            black_box(with_text(&summary, copies.pop().unwrap_or_default()));
        });
        let parsing = fingerprint + parse;
        println!(
            "{services} Services: changed poll {poll:.2?} wall, {poll_cpu:.2?} CPU; of which parsing {parsing:.2?} (fingerprint {fingerprint:.2?} + parser {parse:.2?}), packing {pack:.2?}"
        );
        let kernel = kernel_save_time(&text);
        match &kernel {
            Ok(k) => println!(
                "{services} Services: kernel {} iptables-save (median of {}) {:.2?} wall, {:.2?} CPU; parsing adds {:.1}% to its wall time, the whole changed poll {:.1}% (wall) / {:.1}% (CPU)",
                k.backend,
                k.runs,
                k.wall,
                k.cpu,
                100.0 * parsing.as_secs_f64() / k.wall.as_secs_f64(),
                100.0 * poll.as_secs_f64() / k.wall.as_secs_f64(),
                100.0 * poll_cpu.as_secs_f64() / k.cpu.as_secs_f64(),
            ),
            Err(why) => println!("{services} Services: kernel iptables-save not measured: {why}"),
        }
        match kernel.as_ref().map(|k| &k.streamed) {
            Ok(Ok(s)) => println!(
                "{services} Services: streamed (median of {} alternated runs): iptables-save alone {:.2?} wall, the agent's read + fingerprint + parse of it {:.2?} wall: parsing adds {:.1}% to iptables-save's wall time; CPU per run: tool {:.2?} alone / {:.2?} with the agent reading, agent threads {:.2?} (reading alone {:.2?}); joining the pieces for packing (changed polls) {:.2?}; an unchanged poll's read (marks: fingerprint, no parse) {:.2?} wall, agent threads {:.2?} CPU; from the tool's last byte to the parse's end {:.2?}",
                s.runs,
                s.alone,
                s.agent,
                100.0 * (s.agent.as_secs_f64() / s.alone.as_secs_f64() - 1.0),
                s.alone_cpu.0,
                s.agent_cpu.0,
                s.agent_cpu.1,
                s.alone_cpu.1,
                s.join,
                s.unchanged,
                s.unchanged_cpu.1,
                s.tail,
            ),
            Ok(Err(why)) => println!("{services} Services: streamed read not measured: {why}"),
            Err(_) => {}
        }
        drop(hub);
        // The agent purges freed pages at once (`sys::purge_freed_memory_at_once`); the last
        // run restores mimalloc's default delay to show what that buys.
        for (client, env) in [
            (true, &[][..]),
            (false, &[][..]),
            (true, &[("MIMALLOC_PURGE_DELAY", "10")][..]),
        ] {
            match process_memory(&text, &changed.0, client, env) {
                Ok(m) => println!(
                    "{services} Services: agent process (release, {} client) {env:?}: {m}",
                    if client { "1" } else { "no" }
                ),
                Err(why) => println!("{services} Services: agent process not measured: {why}"),
            }
        }

        let mut g = c.benchmark_group(format!("agent/{services}svc"));
        g.sample_size(10);
        g.throughput(Throughput::Elements(rules as u64));
        g.bench_function("collect_first", |b| {
            b.iter(|| black_box(collect(&sys, &none)))
        });
        let hub = Hub::new(serde_json::json!({}), collect(&sys, &none));
        let known = hub.fingerprints();
        // As the agent's loop polls: with the last poll's marks, so the unchanged dump is
        // fingerprinted and not parsed.
        let mut marks = DumpMarks::default();
        collect_with(&sys, &known, &mut marks);
        g.bench_function("poll_unchanged", |b| {
            b.iter(|| assert_eq!(hub.apply(collect_with(&sys, &known, &mut marks)), None))
        });
        let changed = OnlyIptables(text.replacen("-A ", "-A KUBE-FORWARD -j ACCEPT\n-A ", 1));
        let mut flip = false;
        g.bench_function("apply_changed", |b| {
            b.iter_batched(
                || {
                    flip = !flip;
                    collect(if flip { &changed } else { &sys }, &hub.fingerprints())
                },
                |c| assert!(hub.apply(c).is_some()),
                criterion::BatchSize::LargeInput,
            )
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
