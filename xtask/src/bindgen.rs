//! `cargo xtask bindgen`: generate `uring-sys/src/bindings/<arch>.rs` from
//! pinned kernel uapi headers, or check that the committed files are what
//! the generator produces.
//!
//! Determinism: the inputs are pinned (the `linux-libc-dev` package by
//! version and SHA-256, bindgen by an exact version in the workspace
//! manifest, libclang by version, checked before generating), host headers
//! are never seen (`-nostdinc`), items are sorted semantically, and the
//! output is formatted by bindgen's bundled prettyplease rather than
//! whichever rustfmt happens to be installed.

use std::path::{Path, PathBuf};

use bindgen::callbacks::{DeriveInfo, IntKind, ParseCallbacks};

use crate::apt::{self, PrivateApt};
use crate::deps::{self, Need};
use crate::util::{self, Failure, Result};
use crate::workspace_root;

/// Where the pin lives, relative to the workspace root.
pub(crate) const PIN_FILE: &str = "uring-sys/headers.pin";
/// Where the generated files live, relative to the workspace root.
const BINDINGS_DIR: &str = "uring-sys/src/bindings";

/// One architecture the bindings are generated for. The uapi package is
/// architecture-independent (`Architecture: all`) and carries every
/// architecture's `asm/` headers, so one download serves all targets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target {
    /// Rust's `target_arch` and the generated file's stem.
    pub(crate) arch: &'static str,
    /// The clang target triple.
    clang: &'static str,
    /// Debian's multiarch directory holding this architecture's `asm/`.
    multiarch: &'static str,
}

/// The architectures `uring-sys` supports.
pub(crate) const TARGETS: [Target; 2] = [
    Target { arch: "x86_64", clang: "x86_64-unknown-linux-gnu", multiarch: "x86_64-linux-gnu" },
    Target { arch: "aarch64", clang: "aarch64-unknown-linux-gnu", multiarch: "aarch64-linux-gnu" },
];

/// The headers whose io_uring ABI is bound. Each include is there because
/// an io_uring structure or opcode argument is declared in it.
const WRAPPER: &str = "\
/* io_uring itself; includes linux/io_uring/zcrx.h and linux/time_types.h */
#include <linux/io_uring.h>
#include <linux/io_uring/query.h>
#include <linux/io_uring/bpf_filter.h>
#include <linux/io_uring/mock_file.h>
/* RWF_* (read/write flags), the io_uring_sqe rw_flags argument */
#include <linux/fs.h>
/* open_how and RESOLVE_* for IORING_OP_OPENAT2 */
#include <linux/openat2.h>
/* futex_waitv and FUTEX2_* for IORING_OP_FUTEX_* */
#include <linux/futex.h>
/* epoll_event for IORING_OP_EPOLL_CTL / IORING_OP_EPOLL_WAIT */
#include <linux/eventpoll.h>
/* struct statx and STATX_* for IORING_OP_STATX */
#include <linux/stat.h>
/* AT_* for the *at opcodes */
#include <linux/fcntl.h>
/* FALLOC_FL_* for IORING_OP_FALLOCATE */
#include <linux/falloc.h>
/* XATTR_CREATE / XATTR_REPLACE for the xattr opcodes */
#include <linux/xattr.h>
/* P_* id types for IORING_OP_WAITID */
#include <linux/wait.h>
/* nvme_uring_cmd and NVME_URING_CMD_* for IORING_OP_URING_CMD on NVMe
 * generic char devices (/dev/ngXnY) */
#include <linux/nvme_ioctl.h>
/* BLOCK_URING_CMD_* for IORING_OP_URING_CMD on block devices */
#include <linux/blkdev.h>
";

/// Items kept from the headers. Types they depend on follow automatically.
const ALLOWLIST: &[&str] = &[
    // io_uring's own ABI.
    "io_uring_.*",
    "io_sqring_offsets",
    "io_cqring_offsets",
    "io_timespec",
    "io_wq_type",
    "IORING_.*",
    "IOSQE_.*",
    "IOU_.*",
    "IO_URING_.*",
    "IO_WQ_.*",
    "ZCRX_.*",
    "zcrx_.*",
    "SOCKET_URING_OP_.*",
    // Argument types and flag values of individual opcodes.
    "__kernel_timespec",
    "open_how",
    "RESOLVE_.*",
    "futex_waitv",
    "FUTEX2_.*",
    "FUTEX_WAITV_MAX",
    "epoll_event",
    "EPOLL_CTL_.*",
    "statx",
    "statx_timestamp",
    "STATX_.*",
    "AT_.*",
    "RWF_.*",
    "SPLICE_F_FD_IN_FIXED",
    "FALLOC_FL_.*",
    "XATTR_CREATE",
    "XATTR_REPLACE",
    "P_ALL",
    "P_PID",
    "P_PGID",
    "P_PIDFD",
    "WEXITED",
    "WSTOPPED",
    "WCONTINUED",
    "WNOWAIT",
    "WNOHANG",
    // IORING_OP_URING_CMD payloads.
    "nvme_uring_cmd",
    "NVME_URING_CMD_.*",
    "BLOCK_URING_CMD_.*",
];

/// Integer types for macros whose C type bindgen cannot infer from the
/// value alone.
#[derive(Debug)]
struct MacroTypes;

impl ParseCallbacks for MacroTypes {
    fn int_macro(&self, name: &str, _value: i64) -> Option<IntKind> {
        // mmap offsets are `unsigned long long` in the header (0x8000000ULL…);
        // keep them 64-bit rather than narrowing to the smallest fitting type.
        if name.starts_with("IORING_OFF_") && name != "IORING_OFF_PBUF_SHIFT" {
            return Some(IntKind::U64);
        }
        match name {
            "IORING_ZCRX_AREA_MASK" => Some(IntKind::U64),
            "IORING_REGISTER_FILES_SKIP" => Some(IntKind::I32),
            _ => None,
        }
    }

    fn add_derives(&self, info: &DeriveInfo<'_>) -> Vec<String> {
        // bindgen will not derive for the SQE's last union because of its
        // zero-length `cmd[0]` member, and so not for the SQE either. Every
        // member is plain integers (all-zero is a valid SQE), so the
        // derives hold; without them nothing could copy an SQE. (bindgen
        // already writes `Default` for them as all-zero bytes.)
        match info.name {
            "io_uring_sqe" | "io_uring_sqe__bindgen_ty_6" => {
                vec!["Copy".into(), "Clone".into()]
            }
            _ => Vec::new(),
        }
    }
}

/// The parsed `uring-sys/headers.pin`.
#[derive(Debug, Clone)]
pub(crate) struct Pin {
    pub(crate) headers_package: String,
    pub(crate) headers_version: String,
    pub(crate) headers_sha256: String,
    pub(crate) headers_suites: Vec<String>,
    pub(crate) libclang_package: String,
    pub(crate) libclang_version: String,
    /// The file's text, kept so that `--repin` changes only the values.
    text: String,
}

impl Pin {
    pub(crate) fn parse(text: &str) -> Result<Self> {
        let get = |key: &str| -> Result<String> {
            text.lines()
                .map(str::trim)
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.split_once('='))
                .find(|(k, _)| k.trim() == key)
                .map(|(_, v)| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| Failure::new(format!("{PIN_FILE} has no `{key} = …` line")))
        };
        Ok(Self {
            headers_package: get("headers_package")?,
            headers_version: get("headers_version")?,
            headers_sha256: get("headers_sha256")?,
            headers_suites: get("headers_suites")?.split_whitespace().map(str::to_owned).collect(),
            libclang_package: get("libclang_package")?,
            libclang_version: get("libclang_version")?,
            text: text.to_owned(),
        })
    }

    /// The pin's text with `key`'s value replaced.
    fn with(&self, key: &str, value: &str) -> String {
        self.text
            .lines()
            .map(|line| match line.split_once('=') {
                Some((k, _)) if !line.trim_start().starts_with('#') && k.trim() == key => {
                    format!("{key} = {value}")
                }
                _ => line.to_owned(),
            })
            .map(|l| l + "\n")
            .collect()
    }
}

/// Where the headers come from, as the preamble records it.
#[derive(Debug)]
enum Source {
    Pinned { include: PathBuf },
    Dir { include: PathBuf },
}

impl Source {
    fn include(&self) -> &Path {
        match self {
            Self::Pinned { include } | Self::Dir { include } => include,
        }
    }
}

#[derive(Debug, Default)]
struct Args {
    check: bool,
    repin: bool,
    headers: Option<PathBuf>,
}

fn parse_args(args: &[String]) -> Result<Args> {
    let mut parsed = Args::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--check" => parsed.check = true,
            "--repin" => parsed.repin = true,
            "--headers" => {
                let dir = it.next().ok_or_else(|| Failure::usage("--headers needs a directory"))?;
                parsed.headers = Some(PathBuf::from(dir));
            }
            other => return Err(Failure::usage(format!("bindgen: unknown option `{other}`"))),
        }
    }
    if parsed.check && parsed.repin {
        return Err(Failure::usage("--check and --repin contradict each other"));
    }
    if parsed.headers.is_some() && parsed.repin {
        return Err(Failure::usage("--repin downloads headers; it cannot be combined with --headers"));
    }
    Ok(parsed)
}

/// Entry point of `cargo xtask bindgen`.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let args = parse_args(args)?;
    let root = workspace_root();
    let pin_path = root.join(PIN_FILE);
    let mut pin = Pin::parse(&util::read(&pin_path)?)?;

    // Every tool the run needs, checked before anything starts, all missing
    // ones in one line. Without sha256sum even the integrity check cannot
    // run, so `--check` fails (1) rather than reporting an unavailable input
    // (3), which CI would take as "integrity verified".
    let task = if args.check { "bindgen --check" } else { "bindgen" };
    let mut needs = vec![Need::Hash, Need::Libclang];
    if args.headers.is_none() {
        needs.push(Need::Apt);
    }
    if args.check {
        needs.push(Need::Diff);
    }
    let lacking = deps::require(task, &needs).err();
    if let Some(f) = &lacking
        && args.check
        && deps::require(task, &[Need::Hash]).is_err()
    {
        return Err(Failure::new(&f.message));
    }

    if args.check {
        // The integrity check needs neither headers nor libclang, so it runs
        // first and holds even where the rest cannot.
        for target in TARGETS {
            let path = bindings_path(&root, target);
            verify_integrity(&util::read(&path)?)
                .map_err(|f| Failure::new(format!("{}: {}", path.display(), f.message)))?;
        }
        println!("bindgen --check: the committed bindings are untouched since generation");
    }

    if let Some(f) = lacking {
        return Err(f);
    }

    if args.repin {
        pin = repin(&root, &pin, &pin_path)?;
    }

    // libclang before any download: a wrong one fails at once.
    let libclang = load_libclang(&pin)?;
    let source = match &args.headers {
        Some(dir) => {
            if !dir.join("linux/io_uring.h").exists() {
                return Err(Failure::usage(format!(
                    "{} has no linux/io_uring.h: pass the usr/include directory of a linux-libc-dev tree",
                    dir.display()
                )));
            }
            Source::Dir { include: dir.clone() }
        }
        None => Source::Pinned { include: obtain_pinned(&root, &pin)? },
    };

    let bindgen_version = bindgen_version(&root)?;
    let scratch = root.join("target/xtask/bindgen");

    let mut stale = Vec::new();
    for target in TARGETS {
        let body = generate(source.include(), target, &scratch)?;
        let text = render(&pin, &source, target, &bindgen_version, &libclang, &body)?;
        let path = bindings_path(&root, target);
        if args.check {
            let committed = util::read(&path)?;
            if committed != text {
                let fresh = scratch.join(format!("fresh-{}.rs", target.arch));
                util::write(&fresh, &text)?;
                stale.push(diff(&path, &fresh));
            }
        } else {
            util::write(&path, &text)?;
            println!("wrote {}", path.display());
        }
    }
    if !stale.is_empty() {
        return Err(Failure::new(format!(
            "the committed bindings differ from what `cargo xtask bindgen` generates; run it and commit the result:\n{}",
            stale.join("\n")
        )));
    }
    if args.check {
        println!("bindgen --check: the committed bindings are what the pinned inputs generate");
    }
    Ok(())
}

pub(crate) fn bindings_path(root: &Path, target: Target) -> PathBuf {
    root.join(BINDINGS_DIR).join(format!("{}.rs", target.arch))
}

/// Downloads (once) and unpacks the pinned headers package, verifying its
/// SHA-256; returns its `usr/include`.
fn obtain_pinned(root: &Path, pin: &Pin) -> Result<PathBuf> {
    let unpacked = root.join("target/xtask/headers").join(sanitize(&pin.headers_version));
    let stamp = unpacked.join(".sha256");
    let include = unpacked.join("usr/include");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == pin.headers_sha256) && include.exists() {
        return Ok(include);
    }
    println!(
        "fetching {} {} with a private apt configuration under target/xtask/apt",
        pin.headers_package, pin.headers_version
    );
    let apt = PrivateApt::new(&root.join("target/xtask/apt"), &pin.headers_suites)?;
    apt.update()?;
    let deb = apt.download(&pin.headers_package, &pin.headers_version, &root.join("target/xtask/debs"))?;
    let actual = util::sha256_file(&deb)?;
    if actual != pin.headers_sha256 {
        return Err(Failure::new(format!(
            "{} has SHA-256 {actual}, but {PIN_FILE} records {}: refusing to generate from it",
            deb.display(),
            pin.headers_sha256
        )));
    }
    apt::extract(&deb, &unpacked)?;
    util::write(&stamp, &actual)?;
    Ok(include)
}

/// Moves the pin to the newest headers package the suites offer.
fn repin(root: &Path, pin: &Pin, pin_path: &Path) -> Result<Pin> {
    let apt = PrivateApt::new(&root.join("target/xtask/apt"), &pin.headers_suites)?;
    apt.update()?;
    let newest =
        apt.versions(&pin.headers_package)?.into_iter().next().ok_or_else(|| {
            Failure::new(format!("the suites {:?} offer no {}", pin.headers_suites, pin.headers_package))
        })?;
    let deb = apt.download(&pin.headers_package, &newest, &root.join("target/xtask/debs"))?;
    let sha = util::sha256_file(&deb)?;
    let text = Pin::parse(&pin.with("headers_version", &newest))?.with("headers_sha256", &sha);
    util::write(pin_path, &text)?;
    println!("pinned {} {newest} (sha256 {sha})", pin.headers_package);
    Pin::parse(&text)
}

fn sanitize(version: &str) -> String {
    version.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' }).collect()
}

/// Points clang-sys at the pinned libclang and checks its version, because
/// bindgen's output (layout of anonymous members, comments) changes with it.
fn load_libclang(pin: &Pin) -> Result<String> {
    if std::env::var_os("LIBCLANG_PATH").is_none() {
        let dir = deps::libclang_dir(pin);
        if Path::new(&dir).exists() {
            // SAFETY: xtask is single-threaded here: no other thread can be
            // reading the environment while it is modified.
            unsafe { std::env::set_var("LIBCLANG_PATH", &dir) };
        }
    }
    // bindgen panics when no libclang loads. `run` checked for the file
    // first; a file that is there but does not load still ends in one line.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let loaded = std::panic::catch_unwind(bindgen::clang_version);
    std::panic::set_hook(hook);
    let version = loaded.map_err(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("bindgen panicked");
        Failure::unavailable(format!(
            "cargo xtask bindgen cannot load libclang {} ({why}; LIBCLANG_PATH={}): run `cargo xtask deps` \
             (apt-get install {}) or set LIBCLANG_PATH to its directory",
            pin.libclang_version,
            std::env::var("LIBCLANG_PATH").unwrap_or_else(|_| "unset".to_owned()),
            pin.libclang_package
        ))
    })?;
    let wanted = format!(" {} ", pin.libclang_version);
    if !format!("{} ", version.full).contains(&wanted) {
        return Err(Failure::unavailable(format!(
            "libclang {} is pinned but `{}` was loaded (LIBCLANG_PATH={}). Install the pinned \
             one (`cargo xtask deps`, or `apt-get install {}`) or set LIBCLANG_PATH to its directory.",
            pin.libclang_version,
            version.full,
            std::env::var("LIBCLANG_PATH").unwrap_or_else(|_| "unset".to_owned()),
            pin.libclang_package
        )));
    }
    Ok(version.full.trim().to_owned())
}

/// bindgen's exact version, read from the workspace lockfile.
fn bindgen_version(root: &Path) -> Result<String> {
    let lock = util::read(&root.join("Cargo.lock"))?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"bindgen\""
            && let Some(v) = lines.next().and_then(|l| l.trim().strip_prefix("version = \""))
        {
            return Ok(v.trim_end_matches('"').to_owned());
        }
    }
    Err(Failure::new("Cargo.lock names no bindgen package"))
}

/// Runs bindgen for one target and returns the formatted Rust source.
fn generate(include: &Path, target: Target, scratch: &Path) -> Result<String> {
    let arch_include = include.join(target.multiarch);
    if !arch_include.join("asm/types.h").exists() {
        return Err(Failure::new(format!("{} has no asm/types.h for {}", arch_include.display(), target.arch)));
    }
    let build_dir = scratch.join(target.arch);
    std::fs::create_dir_all(&build_dir)
        .map_err(|e| Failure::new(format!("cannot create {}: {e}", build_dir.display())))?;
    // A real file (not `header_contents`): clang's macro fallback needs one.
    let wrapper = build_dir.join("uring_sys_wrapper.h");
    util::write(&wrapper, WRAPPER)?;

    let mut builder = bindgen::Builder::default()
        .header(wrapper.to_string_lossy())
        .clang_arg(format!("--target={}", target.clang))
        .clang_arg("-nostdinc")
        .clang_arg(format!("-isystem{}", arch_include.display()))
        .clang_arg(format!("-isystem{}", include.display()))
        .rust_target(bindgen::RustTarget::stable(85, 0).map_err(|e| Failure::new(format!("{e}")))?)
        .rust_edition(bindgen::RustEdition::Edition2024)
        .use_core()
        .ctypes_prefix("::core::ffi")
        .default_enum_style(bindgen::EnumVariation::Consts)
        .prepend_enum_name(false)
        .derive_default(true)
        .derive_debug(true)
        .derive_copy(true)
        .derive_eq(true)
        .derive_hash(true)
        .impl_debug(true)
        .wrap_unsafe_ops(true)
        .layout_tests(true)
        .generate_comments(true)
        .sort_semantically(true)
        .merge_extern_blocks(true)
        .clang_macro_fallback()
        .clang_macro_fallback_build_dir(&build_dir)
        .parse_callbacks(Box::new(MacroTypes))
        .formatter(bindgen::Formatter::Prettyplease);
    for item in ALLOWLIST {
        builder = builder.allowlist_item(item);
    }
    let bindings = builder.generate().map_err(|e| Failure::new(format!("bindgen failed for {}: {e}", target.arch)))?;
    let text = bindings.to_string();
    // The build directory's path must not leak into committed output.
    if text.contains(&*build_dir.to_string_lossy()) || text.contains(&*include.to_string_lossy()) {
        return Err(Failure::new("generated bindings mention a local path; refusing to write them"));
    }
    Ok(text)
}

const BODY_HASH_KEY: &str = "// body-sha256: ";

/// The preamble and body of a generated file.
fn render(pin: &Pin, source: &Source, target: Target, bindgen: &str, libclang: &str, body: &str) -> Result<String> {
    let headers = match source {
        Source::Pinned { .. } => {
            format!("Debian {} {} (sha256 {})", pin.headers_package, pin.headers_version, pin.headers_sha256)
        }
        Source::Dir { include } => format!("{} (given with --headers, not the pinned package)", include.display()),
    };
    Ok(format!(
        "// @generated by `cargo xtask bindgen` (xtask/src/bindgen.rs). DO NOT EDIT.\n\
         // To change it, change the generator or uring-sys/headers.pin and rerun the\n\
         // command; CI runs `cargo xtask bindgen --check`, which fails on any difference.\n\
         //\n\
         // headers:  {headers}\n\
         // target:   {}\n\
         // bindgen:  {bindgen}\n\
         // libclang: {libclang}\n\
         {BODY_HASH_KEY}{}\n\
         \n\
         {body}",
        target.clang,
        util::sha256_hex(body.as_bytes())?
    ))
}

/// Checks that a generated file's body still has the hash its preamble
/// recorded: any edit after generation, even of one line, fails.
pub(crate) fn verify_integrity(text: &str) -> Result<()> {
    let (preamble, body) = text
        .split_once("\n\n")
        .ok_or_else(|| Failure::new("no preamble: not a file written by `cargo xtask bindgen`"))?;
    let recorded = preamble.lines().find_map(|l| l.strip_prefix(BODY_HASH_KEY)).ok_or_else(|| {
        Failure::new("the preamble records no body-sha256: not a file written by `cargo xtask bindgen`")
    })?;
    let actual = util::sha256_hex(body.as_bytes())?;
    if actual != recorded.trim() {
        return Err(Failure::new(format!(
            "edited after generation: its body hashes to {actual} but the preamble records {}; \
             regenerate with `cargo xtask bindgen` instead of editing",
            recorded.trim()
        )));
    }
    Ok(())
}

/// A unified diff of the committed and regenerated file (trimmed), by `diff -u`.
fn diff(committed: &Path, fresh: &Path) -> String {
    let out = std::process::Command::new("diff").arg("-u").arg(committed).arg(fresh).output();
    match out {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            let lines: Vec<&str> = text.lines().collect();
            let shown = lines.iter().take(200).copied().collect::<Vec<_>>().join("\n");
            if lines.len() > 200 {
                format!("{shown}\n… ({} more diff lines; full file at {})", lines.len() - 200, fresh.display())
            } else {
                shown
            }
        }
        Err(e) => format!("(cannot run diff: {e}; regenerated file at {})", fresh.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed(target: Target) -> String {
        util::read(&bindings_path(&workspace_root(), target)).expect("committed bindings exist")
    }

    #[test]
    fn committed_bindings_are_untouched() {
        for target in TARGETS {
            verify_integrity(&committed(target)).unwrap_or_else(|f| panic!("{}: {}", target.arch, f.message));
        }
    }

    #[test]
    fn editing_one_line_is_detected() {
        for target in TARGETS {
            let text = committed(target);
            // Change the value of one constant in the body, as a hand edit would.
            let line = text
                .lines()
                .find(|l| l.starts_with("pub const IORING_SETUP_SQPOLL:"))
                .expect("IORING_SETUP_SQPOLL is generated");
            let edited = text.replacen(line, &line.replace("= 2;", "= 3;"), 1);
            assert_ne!(edited, text, "the edit must change the file");
            let err = verify_integrity(&edited).expect_err("a one-line edit must fail the check");
            assert!(err.message.contains("edited after generation"), "{}", err.message);
        }
    }

    #[test]
    fn preamble_names_the_inputs() {
        let pin = Pin::parse(&util::read(&workspace_root().join(PIN_FILE)).unwrap()).unwrap();
        for target in TARGETS {
            let text = committed(target);
            let preamble = text.split_once("\n\n").unwrap().0;
            assert!(preamble.contains("DO NOT EDIT"));
            assert!(preamble.contains(&pin.headers_version), "{preamble}");
            assert!(preamble.contains(&pin.headers_sha256), "{preamble}");
            assert!(preamble.contains(target.clang), "{preamble}");
            assert!(preamble.contains(&format!("clang version {}", pin.libclang_version)), "{preamble}");
            assert!(preamble.contains(&format!("bindgen:  {}", bindgen_version(&workspace_root()).unwrap())));
        }
    }

    #[test]
    fn pin_round_trips_and_rewrites_one_value() {
        let text = "# c\nheaders_package = p\nheaders_version = 1\nheaders_sha256 = aa\nheaders_suites = a b\n\
                    libclang_package = l\nlibclang_version = 19.1.7\n";
        let pin = Pin::parse(text).unwrap();
        assert_eq!(pin.headers_suites, ["a", "b"]);
        let moved = Pin::parse(&pin.with("headers_version", "2")).unwrap();
        assert_eq!(moved.headers_version, "2");
        assert_eq!(moved.headers_sha256, "aa");
        assert!(Pin::parse("headers_package = p\n").is_err());
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        let args = |a: &[&str]| parse_args(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(args(&["--bogus"]).unwrap_err().code, 2);
        assert_eq!(args(&["--headers"]).unwrap_err().code, 2);
        assert_eq!(args(&["--check", "--repin"]).unwrap_err().code, 2);
        assert!(args(&["--check", "--headers", "/x"]).unwrap().check);
    }
}
