//! `reactor-pool-bench`: the load generator and comparison runner. `reactor-pool bench ARGS`
//! execs this binary (it must sit next to `reactor-pool`) with the same arguments; running it
//! directly is the same thing.

use std::process::ExitCode;

use clap::Parser;
use reactor_pool_bench::{BenchArgs, EXIT_USAGE};

#[derive(Debug, Parser)]
#[command(
    name = "reactor-pool bench",
    bin_name = "reactor-pool bench",
    version,
    about = "Load an echo server and measure it, or compare servers (--compare)"
)]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

fn main() -> ExitCode {
    match Cli::try_parse() {
        Ok(cli) => reactor_pool_bench::main(&cli.args),
        Err(e) => clap_error(e),
    }
}

/// Prints clap's help and version normally; squeezes real errors into one line, exit 2
/// (the format of the server's own `clap_error`, so `reactor-pool bench` reads the same).
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
