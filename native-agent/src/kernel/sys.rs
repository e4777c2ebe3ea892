//! The only place the harness touches the OS: running tools inside a network namespace and
//! moving a thread into one. Everything else in `kernel` is logic over the text these return.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A tool run that failed: which command, and what it said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysError(pub String);

impl std::fmt::Display for SysError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SysError {}

/// Upper bound for any single tool invocation (iptables-restore of a 10k-service payload takes
/// a few seconds; anything slower is a hang we must not wait on forever).
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// Run `program args…` (inside `netns` when given), feeding `stdin`, and return stdout.
/// Non-zero exit, a spawn failure or a timeout is an error naming the command.
///
/// The child is spawned from a thread that has entered `netns`: a new process takes the network
/// namespace of the thread that forks it. That is what `ip netns exec` achieves too, minus its
/// private mount namespace and `/sys` remount (none of the tools run here read `/sys`), and it
/// saves an `ip` process per call, which dominated the suite's run time.
pub fn run(
    netns: Option<&str>,
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, SysError> {
    match netns {
        Some(ns) => in_netns(ns, || run_here(netns, program, args, stdin))?,
        None => run_here(None, program, args, stdin),
    }
}

/// [`run`] in the calling thread's network namespace; `netns` only names it in errors.
fn run_here(
    netns: Option<&str>,
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, SysError> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let shown = || {
        let ns = netns.map(|n| format!("[netns {n}] ")).unwrap_or_default();
        format!("{ns}{program} {}", args.join(" "))
    };
    let mut child = cmd
        .spawn()
        .map_err(|e| SysError(format!("{}: cannot start: {e}", shown())))?;
    // Feed stdin and drain stdout/stderr on threads so a large payload cannot deadlock on a full pipe.
    let writer = stdin.map(|text| {
        let mut pipe = child.stdin.take().expect("stdin was piped");
        let text = text.to_owned();
        std::thread::spawn(move || {
            let _ = pipe.write_all(text.as_bytes());
        })
    });
    let mut out_pipe = child.stdout.take().expect("stdout was piped");
    let mut err_pipe = child.stderr.take().expect("stderr was piped");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out_pipe.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + TOOL_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            Ok(None) => {
                // Our own child, by PID.
                let _ = child.kill();
                let _ = child.wait();
                return Err(SysError(format!(
                    "{}: timed out after {TOOL_TIMEOUT:?}",
                    shown()
                )));
            }
            Err(e) => return Err(SysError(format!("{}: wait failed: {e}", shown()))),
        }
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    if !status.success() {
        return Err(SysError(format!(
            "{}: {status}: {}",
            shown(),
            stderr.trim()
        )));
    }
    Ok(stdout)
}

/// Move the calling thread into network namespace `name` (`/var/run/netns/<name>`). Sockets the
/// thread opens afterwards live in that namespace. Only call this on threads the harness owns
/// and never on the main thread: the namespace is per thread and is not restored.
pub fn enter_netns(name: &str) -> Result<(), SysError> {
    let path = format!("/var/run/netns/{name}");
    let file = File::open(&path).map_err(|e| SysError(format!("{path}: {e}")))?;
    // SAFETY: setns on a valid, open namespace fd; it only changes this thread's network namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(SysError(format!(
            "setns({path}): {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

/// Run `f` on a fresh thread inside network namespace `name` and return its result.
pub fn in_netns<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> Result<T, SysError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter_netns(name)?;
            Ok(f())
        })
        .join()
        .map_err(|_| SysError(format!("thread in netns {name} panicked")))?
    })
}

/// Whether we can create network namespaces here (root, `ip` present, kernel support).
pub fn netns_unavailable_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root".into());
    }
    if run(None, "ip", &["netns", "list"], None).is_err() {
        return Some("`ip netns` does not work here".into());
    }
    None
}

/// Whether process `pid` is still alive (its `/proc` entry exists).
pub fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}
