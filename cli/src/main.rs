//! `centaur`: run and watch turns, inspect executions, manage threads, API keys and the
//! warm pool, check a deployment. `centaur --help` lists the commands and exit codes.

use centaur_cli::{commands, Cli, Exit};
use clap::Parser;

fn main() {
    // Bad flags: clap's message and exit code 2; `--help`/`--version`: exit 0.
    let cli = Cli::try_parse().unwrap_or_else(|err| err.exit());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            std::process::exit(Exit::Unreachable.code());
        }
    };
    let exit = runtime.block_on(commands::execute(cli));
    std::process::exit(exit.code());
}
