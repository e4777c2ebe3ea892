//! The `proxyscope` binary: a thin shell over `proxyscope-core`.
//!
//! Exit codes (a contract scripts rely on): 0 ok, 1 internal error (or a failed `--check`),
//! 2 bad input.

mod agent;
mod alloc;
mod cmd;
mod error;
mod kernel;

use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

#[derive(Parser)]
#[command(
    name = "proxyscope",
    version,
    about = "See how kube-proxy sends Service traffic to Pods, packet by packet"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the rules kube-proxy programs for a scenario
    Rules(cmd::rules::RulesArgs),
    /// Trace a packet through the rules, hook by hook and rule by rule
    Trace(cmd::trace::TraceArgs),
    /// Measure generation, parsing, tracing and memory against their references
    Bench(cmd::bench::BenchArgs),
    /// IPVS tools (scheduler replay, ...)
    #[command(subcommand)]
    Ipvs(cmd::ipvs::IpvsCommand),
    /// Serve the built web explainer (scripts/build-web.sh → web/dist)
    Serve(cmd::serve::ServeArgs),
    /// Check core's rules and traces against the running kernel (root; network namespaces)
    VerifyKernel(cmd::verify_kernel::VerifyKernelArgs),
    /// Serve this node's rules, IPVS and conntrack state (read-only) over a websocket
    Agent(cmd::agent::AgentArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Rules(a) => cmd::rules::run(a),
        Command::Trace(a) => cmd::trace::run(a),
        Command::Bench(a) => cmd::bench::run(a),
        Command::Ipvs(c) => cmd::ipvs::run(c),
        Command::Serve(a) => cmd::serve::run(a),
        Command::VerifyKernel(a) => cmd::verify_kernel::run(a),
        Command::Agent(a) => cmd::agent::run(a),
    };
    if let Err(e) = result {
        eprintln!("proxyscope: {e}");
        std::process::exit(e.exit_code());
    }
}
