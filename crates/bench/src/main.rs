//! `reactor-pool-bench`: the load generator and comparison runner. `reactor-pool bench ARGS`
//! execs this binary (it must sit next to `reactor-pool`) with the same arguments; running it
//! directly is the same thing.

use std::process::ExitCode;

use clap::Parser;
use reactor_pool_bench::BenchArgs;

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
        Err(e) => reactor_pool::ops::clap_error(e),
    }
}
