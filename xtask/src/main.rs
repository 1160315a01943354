//! Developer tasks for the uring workspace, run as `cargo xtask <task>`.
//!
//! This crate is never a dependency of a library crate. It owns the
//! generation of `uring-sys`'s bindings and the checks that CI runs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod apt;
mod bindgen;
mod util;

const USAGE: &str = "\
usage: cargo xtask <task> [options]

tasks:
  bindgen [--check] [--headers DIR] [--repin]
      Regenerate uring-sys/src/bindings/*.rs from the pinned kernel uapi
      headers (uring-sys/headers.pin), downloaded into target/xtask/ with a
      private apt configuration.
        --check        regenerate into target/ and fail with a diff when the
                       committed files differ (exit 1); exit 3 when the pinned
                       headers can no longer be obtained (the committed files'
                       integrity is still verified).
        --headers DIR  use DIR (a linux-libc-dev `usr/include` tree) instead
                       of the pinned package.
        --repin        move the pin to the newest linux-libc-dev that the
                       pinned suites offer, then regenerate.
  doctor
      Not available yet: the machine diagnosis arrives with uring-core.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((task, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = match task.as_str() {
        "bindgen" => bindgen::run(rest),
        "doctor" => Err(util::Failure::new(
            "`cargo xtask doctor` is not implemented yet: it arrives with the uring-core crate \
             (see README.md). Until then, SETUP.md lists the manual checks.",
        )),
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(())
        }
        other => Err(util::Failure::usage(format!("unknown task `{other}`\n\n{USAGE}"))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// The workspace root: the parent of this crate's manifest directory.
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}
