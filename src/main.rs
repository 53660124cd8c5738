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
    private_runtime_dir();
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

/// Mesa's window-system code prints "XDG_RUNTIME_DIR is invalid or not set
/// in the environment" twice when it is unset (a container, `su`, cron): it
/// only looks for a display to connect to, which a compute lab never needs.
/// Where the variable is unset or not a folder, point it at a private one
/// (mode 0700, as the XDG spec asks) so the loader stays quiet.
fn private_runtime_dir() {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let ok =
            std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| std::path::Path::new(&d).is_dir());
        if ok {
            return;
        }
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        let dir = std::env::temp_dir().join(format!("kernel-lab-runtime-{uid}"));
        let made = std::fs::DirBuilder::new().mode(0o700).create(&dir);
        let usable = made.is_ok()
            || std::fs::metadata(&dir)
                .is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o077 == 0);
        if usable {
            // SAFETY: called first in main, before any thread exists.
            unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
        }
    }
}
