//! `kiln`: the command-line front door. Subcommands: `run`, `inspect`, `bench`, `demo`.
//!
//! Parses arguments, reads and writes .npy files and JSON, and maps every error to one line on
//! stderr and exit code 2. Depends on kiln-engine (the Session API), kiln-onnx (for `inspect`,
//! which must work even on models Kiln cannot run) and kiln-tensor.

mod bench;
mod demo;
mod inspect;
mod json;
mod run;
mod serve;

use std::process::ExitCode;

/// A user-facing failure: one line, exit code 2.
pub struct CliError(pub String);

impl<E: std::fmt::Display> From<E> for CliError {
    fn from(e: E) -> CliError {
        CliError(e.to_string())
    }
}

const USAGE: &str = "usage:
  kiln run MODEL --input NAME=FILE.npy [--input ...] --output-dir DIR [--threads N]
  kiln inspect MODEL [--json]
  kiln bench MODEL [--input NAME=FILE.npy ...] [--dim NAME=SIZE ...] [--threads N] [--warmup K] [--duration SECONDS] [--json]
  kiln demo
  kiln serve [--model-repository DIR] [--http-port P] [--grpc-port Q] (see kiln serve --help)
  kiln --version";

/// Keeps freed tensor buffers in the process heap instead of returning them to the kernel: with
/// glibc's defaults, multi-megabyte activations are mmap'd and unmapped on every run, and each
/// run pays the page faults again (EfficientNet-B0: 13 → 18 ms depending on heap history).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    // SAFETY: mallopt only changes allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

/// A closed stdout (`kiln bench ... | head`) ends the process quietly, as it does other Unix
/// filters: Rust ignores SIGPIPE, so the next print failed and the panic hook reported an
/// internal error. `serve` keeps ignoring it: a client that disconnects is an error on that
/// client's socket, not the end of the server.
#[cfg(unix)]
fn default_sigpipe() {
    // SAFETY: restores the default disposition of one signal, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn default_sigpipe() {}

fn main() -> ExitCode {
    tune_allocator();
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        eprintln!("kiln: internal error: {msg} (please report this)");
    }));
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some("serve") {
        default_sigpipe();
    }
    let result = match args.first().map(String::as_str) {
        Some("run") => run::main(&args[1..]),
        Some("inspect") => inspect::main(&args[1..]),
        Some("demo") => demo::main(&args[1..]),
        Some("bench") => bench::main(&args[1..]),
        Some("serve") => serve::main(&args[1..]),
        Some("--version") | Some("-V") => {
            println!("kiln {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Some("--help") | Some("-h") | Some("help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(CliError(format!("unknown command '{other}' (commands: run, inspect, bench, demo; see kiln --help)"))),
        None => Err(CliError("missing command (commands: run, inspect, bench, demo; see kiln --help)".into())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kiln: {}", e.0);
            ExitCode::from(2)
        }
    }
}

/// Pulls the value following a flag.
pub fn flag_value<'a>(it: &mut impl Iterator<Item = &'a String>, flag: &str) -> Result<&'a String, CliError> {
    it.next().ok_or_else(|| CliError(format!("{flag} needs a value")))
}

/// Parses `--threads N`.
pub fn parse_threads(s: &str) -> Result<usize, CliError> {
    s.parse::<usize>()
        .map_err(|_| CliError(format!("--threads must be a non-negative integer, got '{s}'")))
}
