//! The `reactor-pool` command line: parse, load the config, bind, install the signal trigger,
//! run. Everything else lives in the library.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use reactor_pool::config::{Model, Overrides, parse_duration};
use reactor_pool::{Config, Server};
use tracing::{error, info, warn};

/// Exit code for bad arguments or configuration.
const EXIT_USAGE: u8 = 2;
/// Exit code for failures at run time (address in use, permission denied, I/O errors).
const EXIT_FAILURE: u8 = 1;

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
}

#[derive(Debug, Args)]
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
}

impl ServeArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen.clone(),
            workers: self.workers,
            model: self.model.clone(),
            backlog: self.backlog,
            max_connections: self.max_connections,
            buffer_size: self.buffer_size,
            idle_timeout: self.idle_timeout,
            shutdown_timeout: self.shutdown_timeout,
            nodelay: self.no_nodelay.then_some(false),
            log_level: self.log_level.clone(),
            thread_stack_size: self.thread_stack_size,
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_error(e),
    };
    match cli.command {
        Command::Serve(args) => serve(&args),
        Command::Models => {
            for model in Model::ALL {
                println!("{:<10} {}", model.name(), model.describe());
            }
            ExitCode::SUCCESS
        }
    }
}

/// Prints clap's help and version normally; squeezes real errors into one line, exit 2.
fn clap_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let _ = e.print();
        return ExitCode::from(EXIT_USAGE);
    }
    let text = e.render().to_string();
    let line: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("For more information") && !l.starts_with("Usage:")
        })
        .collect();
    eprintln!("reactor-pool: {} (see --help)", line.join(" "));
    ExitCode::from(EXIT_USAGE)
}

fn serve(args: &ServeArgs) -> ExitCode {
    let config = match Config::load(args.config.as_deref(), &args.overrides()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("reactor-pool: error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    init_logging(args.log_level.is_some(), &config.log_level);
    for warning in &config.warnings {
        warn!("{warning}");
    }

    let server = match Server::bind(&config) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("reactor-pool: error: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let trigger = server.shutdown_handle();
    // The termination feature covers SIGINT, SIGTERM and SIGHUP; each starts a graceful drain.
    // ctrlc runs the trigger on a thread of its own; the fork model must stay single-threaded
    // and installed its own handlers at bind time instead.
    if !server.handles_signals() {
        if let Err(e) = ctrlc::set_handler(move || trigger.shutdown()) {
            eprintln!("reactor-pool: error: cannot install signal handlers: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    }
    let addr = server.local_addr();
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "listening on {addr}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        // Nobody is reading stdout; the server still works, so carry on.
    }
    drop(stdout);
    info!(%addr, model = %config.model, workers = config.workers, buffer_size = config.buffer_size,
        max_connections = config.max_connections, idle_timeout = ?config.idle_timeout, "serving");
    match server.run() {
        Ok(()) => {
            info!("shut down cleanly");
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!(error = %e, "server failed");
            eprintln!("reactor-pool: error: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Logs go to stderr. Precedence: `--log-level`, then `RUST_LOG`, then the config file.
fn init_logging(flag_given: bool, configured: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !flag_given && !env.trim().is_empty() => EnvFilter::try_new(&env)
            .unwrap_or_else(|e| {
                eprintln!("reactor-pool: warning: ignoring RUST_LOG ({e}); using '{configured}'");
                EnvFilter::new(configured)
            }),
        _ => EnvFilter::new(configured),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}
