//! The `reactor-pool` command line: parse, then hand over to the library (`ops::serve` for the
//! server and its process management, `client::run` for the client).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use reactor_pool::Model;
use reactor_pool::client::{self, ClientArgs};
use reactor_pool::config::{Overrides, parse_duration};
use reactor_pool::ops::{self, OpsArgs};

#[derive(Debug, Parser)]
#[command(
    name = "reactor-pool",
    version,
    about = "A reactor-pool TCP echo server (RFC 862) and a lab for comparing I/O models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the echo server.
    Serve(Box<ServeArgs>),
    /// List the I/O models `serve --model` accepts.
    Models,
    /// Send lines from stdin (or --send TEXT) to an echo server and print the echoes.
    Client(ClientArgs),
    /// Load an echo server and measure it, or compare servers (--compare): runs the
    /// `reactor-pool-bench` binary next to this one with the same arguments.
    #[command(disable_help_flag = true)]
    Bench {
        /// Arguments for `reactor-pool-bench` (see `reactor-pool bench --help`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<OsString>,
    },
}

// A later occurrence of a flag overrides an earlier one: the supervisor appends absolute paths
// to its children's arguments.
#[derive(Debug, Args)]
#[command(args_override_self = true)]
struct ServeArgs {
    /// TOML config file (see config.example.toml); flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on, IP:PORT (port 0 picks a free port). Default 127.0.0.1:7007.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Worker threads (reactor model); 0 means one per CPU.
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// I/O model (see `reactor-pool models`).
    #[arg(long, value_name = "MODEL")]
    model: Option<String>,
    /// How connections reach the reactor's workers: round-robin (default), least-connections,
    /// reuseport (a SO_REUSEPORT listener per worker), shared (every worker accepts on the one
    /// listener, EPOLLEXCLUSIVE).
    #[arg(long, value_name = "MODE")]
    dispatch: Option<String>,
    /// Per-connection bound on unsent bytes, and each worker's read buffer size.
    #[arg(long, value_name = "BYTES")]
    buffer_size: Option<usize>,
    /// Connections open at once; more are closed at accept.
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Close connections idle this long (seconds, fractions allowed, or "500ms"); 0 disables.
    #[arg(long, value_name = "SECS", value_parser = parse_duration)]
    idle_timeout: Option<Duration>,
    /// How long a graceful shutdown waits for open connections (seconds or "500ms").
    #[arg(long, value_name = "SECS", value_parser = parse_duration)]
    shutdown_timeout: Option<Duration>,
    /// Listen backlog.
    #[arg(long, value_name = "N")]
    backlog: Option<u32>,
    /// Log filter, e.g. "info", "debug", "reactor_pool=trace" (overrides RUST_LOG).
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Leave Nagle's algorithm on for accepted connections (TCP_NODELAY is set by default).
    #[arg(long)]
    no_nodelay: bool,
    /// Stack size of each connection thread (thread model only), in bytes.
    #[arg(long, value_name = "BYTES")]
    thread_stack_size: Option<usize>,
    /// Set SO_REUSEPORT on the listener, so several instances can share one port.
    #[arg(long)]
    reuse_port: bool,
    /// Turn on TCP keepalive for accepted connections: probe a peer after SECS without
    /// traffic (whole seconds; interval and count derived); 0 or absent: off.
    #[arg(long, value_name = "SECS", value_parser = parse_duration)]
    tcp_keepalive: Option<Duration>,
    /// Set TCP_USER_TIMEOUT on accepted connections: close one whose sent data stays
    /// unacknowledged SECS; 0 or absent: the kernel's default.
    #[arg(long, value_name = "SECS", value_parser = parse_duration)]
    tcp_user_timeout: Option<Duration>,
    /// Log one info line when each connection opens and one when it closes (peer, worker,
    /// bytes each way, duration, close reason).
    #[arg(long)]
    log_connections: bool,
    /// Longest pause between idle rounds (nonblocking model only; seconds or "500us").
    #[arg(long, value_name = "SECS", value_parser = parse_duration)]
    poll_interval: Option<Duration>,
    /// Also serve UDP echo on the listen address (reactor model).
    #[arg(long)]
    udp: bool,
    /// UDP datagrams per second echoed per source address; 0 means unlimited (the default).
    #[arg(long, value_name = "N")]
    udp_rate_limit: Option<u32>,
    #[command(flatten)]
    ops: OpsArgs,
}

impl ServeArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen.clone(),
            workers: self.workers,
            model: self.model.clone(),
            dispatch: self.dispatch.clone(),
            backlog: self.backlog,
            max_connections: self.max_connections,
            buffer_size: self.buffer_size,
            idle_timeout: self.idle_timeout,
            shutdown_timeout: self.shutdown_timeout,
            nodelay: self.no_nodelay.then_some(false),
            log_level: self.log_level.clone(),
            thread_stack_size: self.thread_stack_size,
            poll_interval: self.poll_interval,
            metrics_listen: self.ops.metrics_listen.clone(),
            metrics_allow_remote: self.ops.metrics_allow_remote.then_some(true),
            reuse_port: self.reuse_port.then_some(true),
            tcp_keepalive: self.tcp_keepalive,
            tcp_user_timeout: self.tcp_user_timeout,
            log_connections: self.log_connections.then_some(true),
            udp: self.udp.then_some(true),
            udp_rate_limit: self.udp_rate_limit,
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return reactor_pool::ops::clap_error(e),
    };
    match cli.command {
        Command::Serve(args) => ExitCode::from(ops::serve(
            args.config.as_deref(),
            &args.overrides(),
            &args.ops,
        )),
        Command::Client(args) => ExitCode::from(client::run(&args)),
        Command::Models => {
            let width = Model::ALL.iter().map(|m| m.name().len()).max().unwrap_or(0);
            for model in Model::ALL {
                println!("{:<width$} {}", model.name(), model.describe());
            }
            ExitCode::SUCCESS
        }
        Command::Bench { args } => bench(&args),
    }
}

/// `reactor-pool bench ARGS`: replaces this process with the sibling `reactor-pool-bench`
/// (built from `crates/bench`), which keeps the load generator's dependencies out of the
/// server. Returns only when that fails.
fn bench(args: &[OsString]) -> ExitCode {
    const BENCH_BIN: &str = "reactor-pool-bench";
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("reactor-pool: bench: cannot find this program's path: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bench = exe.with_file_name(BENCH_BIN);
    let e = std::process::Command::new(&bench).args(args).exec();
    if e.kind() == std::io::ErrorKind::NotFound {
        eprintln!(
            "reactor-pool: bench: {} is missing; build it with `cargo build --release -p {BENCH_BIN}`",
            bench.display()
        );
    } else {
        eprintln!("reactor-pool: bench: cannot run {}: {e}", bench.display());
    }
    ExitCode::FAILURE
}
