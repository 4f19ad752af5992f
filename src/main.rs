//! The `cairn` binary: parse the command line, run one command, turn its
//! outcome into an exit code. Everything else lives in the library.

/// `println!` that returns the write error instead of panicking, so a
/// closed pipe (`cairn snapshots | head -1`) ends the command quietly.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*)
    }};
}

mod cli;
mod commands;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    cairn::alloc::tune();
    let cli = cli::Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new(format!("cairn={level}")))
        .with_target(false)
        // Colour codes only for a person at a terminal, never into a file or pipe.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    cairn::interrupt::install();
    match commands::run(cli) {
        Ok(code) => ExitCode::from(code),
        // The reader went away (`| head`): nothing more to say, as any Unix tool.
        Err(err) if commands::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(commands::exit_code(&err))
        }
    }
}
