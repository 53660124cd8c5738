//! The `kernel-lab` command: parses arguments, runs a subcommand, and turns any
//! error into one line on stderr and a non-zero exit.

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// Counts host allocations so records can show the CPU's measured memory.
#[global_allocator]
static ALLOCATOR: kernel_lab::memory::CountingAllocator = kernel_lab::memory::CountingAllocator;

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so printing into a closed pipe (`| head`) panics;
    // a command-line tool should end quietly there, as `cat` does.
    #[cfg(unix)]
    // SAFETY: called first in main, before any thread exists; restores the
    // signal's default action, which is valid for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            // The cause chain, each cause once: a typed error that already
            // names its cause (`path: what the OS said`) is not followed by it again.
            let mut line = e.to_string();
            for cause in e.chain().skip(1) {
                let c = cause.to_string();
                if !line.contains(&c) {
                    line = format!("{line}: {c}");
                }
            }
            eprintln!("error: {line}");
            ExitCode::FAILURE
        }
    }
}
