//! Small helpers shared by the tasks: failures with exit codes, running
//! commands, hashing.

use std::fmt::Display;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// A task failure: the message printed to the user and the exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) message: String,
    pub(crate) code: u8,
}

impl Failure {
    /// A plain failure (exit code 1).
    pub(crate) fn new(message: impl Display) -> Self {
        Self { message: message.to_string(), code: 1 }
    }

    /// Bad command-line usage (exit code 2).
    pub(crate) fn usage(message: impl Display) -> Self {
        Self { message: message.to_string(), code: 2 }
    }

    /// An input that cannot be obtained on this machine (exit code 3).
    pub(crate) fn unavailable(message: impl Display) -> Self {
        Self { message: message.to_string(), code: 3 }
    }
}

pub(crate) type Result<T> = std::result::Result<T, Failure>;

/// Runs `cmd`, returning its stdout; a non-zero exit becomes a failure that
/// carries stderr.
pub(crate) fn output(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| Failure::new(format!("cannot run {shown}: {e}")))?;
    if !out.status.success() {
        return Err(Failure::new(format!(
            "{shown} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    String::from_utf8(out.stdout).map_err(|e| Failure::new(format!("{shown}: output is not UTF-8: {e}")))
}

/// SHA-256 of `data` as lowercase hex, computed by coreutils' `sha256sum`
/// (present on every Linux machine this project targets) so that xtask needs
/// no hashing dependency.
pub(crate) fn sha256_hex(data: &[u8]) -> Result<String> {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Failure::new(format!("cannot run sha256sum: {e}")))?;
    {
        let mut stdin = child.stdin.take().expect("stdin was piped");
        stdin.write_all(data).map_err(|e| Failure::new(format!("cannot feed sha256sum: {e}")))?;
    }
    let out = child.wait_with_output().map_err(|e| Failure::new(format!("sha256sum failed: {e}")))?;
    if !out.status.success() {
        return Err(Failure::new(format!("sha256sum failed: {}", String::from_utf8_lossy(&out.stderr))));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text.split_whitespace().next().unwrap_or_default();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Failure::new(format!("sha256sum printed something unexpected: {text:?}")));
    }
    Ok(hex.to_owned())
}

/// SHA-256 of a file's contents.
pub(crate) fn sha256_file(path: &Path) -> Result<String> {
    let data = std::fs::read(path).map_err(|e| Failure::new(format!("cannot read {}: {e}", path.display())))?;
    sha256_hex(&data)
}

/// Reads a file to a string, with the path in the error.
pub(crate) fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Failure::new(format!("cannot read {}: {e}", path.display())))
}

/// Writes a file, creating its parent directories, with the path in the error.
pub(crate) fn write(path: &Path, contents: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Failure::new(format!("cannot create {}: {e}", parent.display())))?;
    }
    std::fs::write(path, contents).map_err(|e| Failure::new(format!("cannot write {}: {e}", path.display())))
}
