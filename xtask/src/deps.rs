//! `cargo xtask deps`: the system packages every xtask command and `.ci/run`
//! need, in one list ([`PACKAGES`]), and the up-front check each command
//! makes before it starts ([`require`]).
//!
//! The list is the only place a package is named: `.ci/run` installs
//! through `cargo xtask deps`, and a command that lacks a tool says, in one
//! line, which command it is, every tool it lacks and that `cargo xtask
//! deps` installs them, instead of stopping at the first one (or panicking
//! in a library, as bindgen does without libclang).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::apt::KEYRING;
use crate::bindgen::{PIN_FILE, Pin};
use crate::util::{self, Failure, Result};
use crate::workspace_root;

/// What a package is needed for. A command asks for the needs of what it
/// is about to do ([`require`]); `deps` installs every package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// SHA-256 of files: bindgen's integrity check, pinned downloads.
    Hash,
    /// The pinned libclang, which bindgen loads at run time.
    Libclang,
    /// The private apt configuration that fetches pinned Debian packages
    /// (bindgen's headers, vm-test's and vm-bench's kernels).
    Apt,
    /// `diff -u` of committed and regenerated bindings.
    Diff,
    /// Booting a kernel under QEMU with a busybox initramfs.
    Boot,
    /// An ext4 scratch disk for the guest (without it: ext2, no fallocate).
    Ext4,
    /// Linking the static (`+crt-static`) test and bench binaries.
    StaticBuild,
    /// valgrind: `cargo xtask callgrind` and `compare`, and `.ci/run`'s
    /// memcheck step.
    Valgrind,
    /// A C compiler: `cargo xtask compare` builds its liburing workloads.
    CCompiler,
    /// Only `.ci/run` and the workspace's tests, not an xtask command.
    Ci,
}

/// How to tell, without the package database, that a package's tool is
/// usable.
#[derive(Debug, Clone, Copy)]
enum Probe {
    /// An executable of this name on `PATH`.
    Command(&'static str),
    /// An executable on `PATH` or in `/usr/sbin` or `/sbin` (mkfs.ext4 is
    /// in sbin, which a user's `PATH` may lack).
    Sbin(&'static str),
    /// A file at this absolute path.
    File(&'static str),
    /// A statically linked executable at this absolute path.
    Static(&'static str),
    /// The pinned libclang: in `LIBCLANG_PATH` when it is set (the only
    /// place bindgen then looks), else in `/usr/lib/llvm-<major>/lib`.
    Libclang,
}

/// One system package.
#[derive(Debug)]
pub(crate) struct Package {
    /// The Debian package; `None` for the pinned libclang, whose name is
    /// `libclang_package` in `uring-sys/headers.pin`.
    name: Option<&'static str>,
    /// What it brings that the commands use.
    probes: &'static [Probe],
    needs: Need,
    /// Who uses it, for `deps --list`.
    why: &'static str,
}

/// Where vm-test and vm-bench take busybox from (see `vm/guest.rs`).
pub(crate) const BUSYBOX: &str = "/bin/busybox";
/// glibc's static C library, which `+crt-static` links.
const LIBC_A: &str = "/usr/lib/x86_64-linux-gnu/libc.a";

/// Every system package the xtask commands and `.ci/run` need: the one list.
pub(crate) const PACKAGES: &[Package] = &[
    Package {
        name: None,
        probes: &[Probe::Libclang],
        needs: Need::Libclang,
        why: "bindgen loads it at run time: cargo xtask bindgen [--check]",
    },
    Package {
        name: Some("debian-archive-keyring"),
        probes: &[Probe::File(KEYRING)],
        needs: Need::Apt,
        why: "verifies the Debian indexes the private apt reads: bindgen's headers, vm-test's and vm-bench's kernels",
    },
    Package {
        name: Some("apt"),
        probes: &[Probe::Command("apt-get"), Probe::Command("apt-cache")],
        needs: Need::Apt,
        why: "the private apt that downloads pinned packages: bindgen, vm-test, vm-bench",
    },
    Package {
        name: Some("dpkg"),
        probes: &[Probe::Command("dpkg"), Probe::Command("dpkg-deb")],
        needs: Need::Apt,
        why: "orders Debian versions and unpacks the downloads: bindgen, vm-test, vm-bench",
    },
    Package {
        name: Some("coreutils"),
        probes: &[Probe::Command("sha256sum")],
        needs: Need::Hash,
        why: "sha256sum: the bindings' body hash and the pinned headers' checksum: bindgen",
    },
    Package {
        name: Some("diffutils"),
        probes: &[Probe::Command("diff")],
        needs: Need::Diff,
        why: "diff: shows stale bindings: bindgen --check",
    },
    Package {
        name: Some("ca-certificates"),
        probes: &[],
        needs: Need::Ci,
        why: "HTTPS for .ci/run's downloads (rustup's aarch64 standard library)",
    },
    Package {
        name: Some("qemu-system-x86"),
        probes: &[Probe::Command("qemu-system-x86_64")],
        needs: Need::Boot,
        why: "boots the kernel matrix under TCG: vm-test, vm-bench",
    },
    Package {
        name: Some("busybox-static"),
        probes: &[Probe::Static(BUSYBOX)],
        needs: Need::Boot,
        why: "the guest's shell and tools in the initramfs: vm-test, vm-bench",
    },
    Package {
        name: Some("cpio"),
        probes: &[Probe::Command("cpio")],
        needs: Need::Boot,
        why: "packs the initramfs: vm-test, vm-bench",
    },
    Package {
        name: Some("e2fsprogs"),
        probes: &[Probe::Sbin("mkfs.ext4")],
        needs: Need::Ext4,
        why: "formats the guest's ext4 scratch disk (else ext2, without fallocate): vm-test, vm-bench",
    },
    Package {
        name: Some("libc6-dev"),
        probes: &[Probe::File(LIBC_A)],
        needs: Need::StaticBuild,
        why: "glibc's static libraries for the +crt-static builds (vm-test, vm-bench) and C headers (compare)",
    },
    Package {
        name: Some("util-linux"),
        probes: &[Probe::Command("setpriv")],
        needs: Need::Ci,
        why: "setpriv: the locked-memory tests drop CAP_IPC_LOCK in a child (cargo test)",
    },
    Package {
        name: Some("binutils"),
        probes: &[Probe::Command("addr2line")],
        needs: Need::Ci,
        why: "addr2line symbolizes ASan/LSan stacks when llvm-symbolizer is absent (.ci/run)",
    },
    Package {
        name: Some("valgrind"),
        probes: &[Probe::Command("valgrind")],
        needs: Need::Valgrind,
        why: "cargo xtask callgrind and compare, and .ci/run's memcheck of the examples",
    },
    Package {
        name: Some("gcc"),
        probes: &[Probe::Command("gcc")],
        needs: Need::CCompiler,
        why: "compiles compare's liburing workloads (liburing-dev itself is fetched by the private apt): compare",
    },
];

/// Where the probes look: the process's `PATH` and `LIBCLANG_PATH`, and
/// the file system under `root` (`/` except in tests).
#[derive(Debug, Clone)]
pub(crate) struct Env {
    path: Option<OsString>,
    libclang_path: Option<OsString>,
    root: PathBuf,
}

impl Env {
    /// The running process's environment.
    pub(crate) fn current() -> Self {
        Self {
            path: std::env::var_os("PATH"),
            libclang_path: std::env::var_os("LIBCLANG_PATH"),
            root: PathBuf::from("/"),
        }
    }

    /// The absolute path `abs` under this environment's root.
    fn file(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    /// `name` as an executable file on `PATH`.
    fn command(&self, name: &str) -> Option<PathBuf> {
        std::env::split_paths(self.path.as_deref()?).map(|dir| dir.join(name)).find(|p| is_executable(p))
    }

    /// Whether `probe` finds its tool.
    fn found(&self, probe: Probe, pin: &Pin) -> bool {
        match probe {
            Probe::Command(name) => self.command(name).is_some(),
            Probe::Sbin(name) => {
                self.command(name).is_some()
                    || ["/usr/sbin", "/sbin"].iter().any(|d| is_executable(&self.file(&format!("{d}/{name}"))))
            }
            Probe::File(abs) => self.file(abs).is_file(),
            Probe::Static(abs) => {
                let p = self.file(abs);
                p.is_file() && crate::vm::is_static(&p).unwrap_or(false)
            }
            Probe::Libclang => match &self.libclang_path {
                Some(dir) => has_libclang(Path::new(dir)),
                None => has_libclang(&self.file(&libclang_dir(pin))),
            },
        }
    }
}

/// The directory Debian's pinned libclang package installs into.
pub(crate) fn libclang_dir(pin: &Pin) -> String {
    let major = pin.libclang_version.split('.').next().unwrap_or_default();
    format!("/usr/lib/llvm-{major}/lib")
}

/// Whether `path` is a libclang shared library or a directory holding one
/// (clang-sys's own test: `libclang*.so*`).
fn has_libclang(path: &Path) -> bool {
    let is_lib = |p: &Path| {
        p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libclang") && n.contains(".so"))
    };
    if path.is_file() {
        return is_lib(path);
    }
    std::fs::read_dir(path)
        .map(|entries| entries.filter_map(|e| e.ok()).any(|e| is_lib(&e.path()) && !e.path().is_dir()))
        .unwrap_or(false)
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The pin, read from the workspace.
fn pin() -> Result<Pin> {
    Pin::parse(&util::read(&workspace_root().join(PIN_FILE))?)
}

impl Package {
    /// The Debian package name (the pinned libclang's from the pin).
    fn name<'a>(&'a self, pin: &'a Pin) -> &'a str {
        self.name.unwrap_or(&pin.libclang_package)
    }

    /// What it provides, for messages: `qemu-system-x86_64 (qemu-system-x86)`.
    fn describe(&self, pin: &Pin, env: &Env) -> String {
        let tools: Vec<String> = self
            .probes
            .iter()
            .filter(|p| !env.found(**p, pin))
            .map(|p| match *p {
                Probe::Command(n) | Probe::Sbin(n) => n.to_owned(),
                Probe::File(f) => f.to_owned(),
                Probe::Static(f) => format!("a static {f}"),
                Probe::Libclang => match &env.libclang_path {
                    Some(d) => format!("libclang {} in LIBCLANG_PATH={}", pin.libclang_version, d.display()),
                    None => format!("libclang {} in {}", pin.libclang_version, libclang_dir(pin)),
                },
            })
            .collect();
        format!("{} ({})", tools.join(", "), self.name(pin))
    }
}

/// The packages among `PACKAGES` with a need in `needs` whose tools `env`
/// lacks.
fn missing<'a>(needs: &[Need], env: &Env, pin: &Pin) -> Vec<&'a Package> {
    PACKAGES
        .iter()
        .filter(|p| needs.contains(&p.needs))
        .filter(|p| p.probes.iter().any(|probe| !env.found(*probe, pin)))
        .collect()
}

/// The one-line failure for `task` lacking `missing`.
fn lacking(task: &str, missing: &[&Package], env: &Env, pin: &Pin) -> String {
    let what: Vec<String> = missing.iter().map(|p| p.describe(pin, env)).collect();
    let names: Vec<&str> = missing.iter().map(|p| p.name(pin)).collect();
    format!(
        "cargo xtask {task} needs {}: run `cargo xtask deps` to install them (apt-get install {})",
        what.join(", "),
        names.join(" ")
    )
}

/// Checks, before `task` starts, that every tool its `needs` name is here;
/// fails (exit 3) with one line listing all that are missing.
pub(crate) fn require(task: &str, needs: &[Need]) -> Result<()> {
    require_in(task, needs, &Env::current())
}

/// [`require`] in a given environment.
pub(crate) fn require_in(task: &str, needs: &[Need], env: &Env) -> Result<()> {
    let pin = pin()?;
    let missing = missing(needs, env, &pin);
    if missing.is_empty() { Ok(()) } else { Err(Failure::unavailable(lacking(task, &missing, env, &pin))) }
}

/// For optional tools: the one-line note `task` prints when they are
/// missing, if they are.
pub(crate) fn note_optional(task: &str, needs: &[Need]) -> Option<String> {
    if needs.is_empty() {
        return None;
    }
    let pin = pin().ok()?;
    let env = Env::current();
    let missing = missing(needs, &env, &pin);
    (!missing.is_empty()).then(|| {
        let what: Vec<String> = missing.iter().map(|p| p.describe(&pin, &env)).collect();
        format!(
            "note: cargo xtask {task} works without {}, but less well; `cargo xtask deps` installs it",
            what.join(", ")
        )
    })
}

/// How `deps` can run apt-get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Privilege {
    Root,
    Sudo,
    None,
}

/// The commands that install `packages`, as run (with `sudo` first when
/// that is how root is reached).
fn install_commands(packages: &[String], how: Privilege) -> Vec<Vec<String>> {
    let lead: Vec<String> = if how == Privilege::Sudo { vec!["sudo".into()] } else { Vec::new() };
    let mut update = lead.clone();
    update.extend(["apt-get", "update", "-qq"].map(String::from));
    let mut install = lead;
    install.extend(["apt-get", "install", "-y", "-qq", "--no-install-recommends"].map(String::from));
    install.extend(packages.iter().cloned());
    vec![update, install]
}

/// The commands as one shell line.
fn shell_line(commands: &[Vec<String>]) -> String {
    commands.iter().map(|c| c.join(" ")).collect::<Vec<_>>().join(" && ")
}

/// Whether Debian package `name` is installed, by dpkg-query.
fn installed(dpkg_query: &Path, name: &str) -> bool {
    Command::new(dpkg_query)
        .args(["-W", "-f=${Status}", name])
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

#[derive(Debug, Default)]
struct Args {
    list: bool,
}

fn parse_args(args: &[String]) -> Result<Args> {
    let mut parsed = Args::default();
    for arg in args {
        match arg.as_str() {
            "--list" => parsed.list = true,
            other => return Err(Failure::usage(format!("deps: unknown option `{other}`"))),
        }
    }
    Ok(parsed)
}

/// Entry point of `cargo xtask deps`.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let args = parse_args(args)?;
    let pin = pin()?;
    let env = Env::current();
    let names: Vec<String> = PACKAGES.iter().map(|p| p.name(&pin).to_owned()).collect();
    let Some(dpkg_query) = env.command("dpkg-query") else {
        return Err(Failure::unavailable(format!(
            "cargo xtask deps: no dpkg-query on PATH, so this is not a Debian-like system; install the \
             equivalents of these Debian packages yourself: {}",
            names.join(" ")
        )));
    };
    let absent: Vec<String> = names.iter().filter(|n| !installed(&dpkg_query, n)).cloned().collect();
    if args.list {
        for (p, name) in PACKAGES.iter().zip(&names) {
            let state = if absent.contains(name) { "MISSING" } else { "ok" };
            println!("  {state:<7} {name:<24} {}", p.why);
        }
        if !absent.is_empty() {
            println!("to install: {}", shell_line(&install_commands(&absent, Privilege::Root)));
        }
        return Ok(());
    }
    if absent.is_empty() {
        println!("deps: all {} packages present: {}", names.len(), names.join(" "));
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let how = if euid == 0 {
        Privilege::Root
    } else if env.command("sudo").is_some() {
        Privilege::Sudo
    } else {
        Privilege::None
    };
    if how == Privilege::None {
        return Err(Failure::unavailable(format!(
            "cargo xtask deps: not root and no sudo; as root, run: {}",
            shell_line(&install_commands(&absent, Privilege::Root))
        )));
    }
    let commands = install_commands(&absent, how);
    println!("deps: installing {}", absent.join(" "));
    println!("+ {}", shell_line(&commands));
    for c in &commands {
        let mut cmd = Command::new(&c[0]);
        cmd.args(&c[1..]).env("DEBIAN_FRONTEND", "noninteractive");
        util::output(&mut cmd)?;
    }
    let still: Vec<&String> = absent.iter().filter(|n| !installed(&dpkg_query, n)).collect();
    if !still.is_empty() {
        return Err(Failure::new(format!(
            "cargo xtask deps: apt-get succeeded but these are still not installed: {}",
            still.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
        )));
    }
    println!("deps: installed {}", absent.join(" "));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An environment where nothing is installed: an empty `PATH`
    /// directory, an empty `LIBCLANG_PATH` and an empty root.
    fn empty_env(test: &str) -> (Env, PathBuf) {
        let dir = std::env::temp_dir().join(format!("xtask-deps-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let env = Env { path: Some(dir.clone().into()), libclang_path: Some(dir.clone().into()), root: dir.clone() };
        (env, dir)
    }

    #[test]
    fn one_entry_per_package() {
        let pin = pin().unwrap();
        let mut names: Vec<&str> = PACKAGES.iter().map(|p| p.name(&pin)).collect();
        assert!(names.contains(&pin.libclang_package.as_str()), "the pinned libclang is in the list");
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n, "a package is listed twice");
    }

    #[test]
    fn every_missing_tool_is_listed_in_one_line() {
        let (env, _dir) = empty_env("all");
        let needs = [Need::Apt, Need::Boot, Need::StaticBuild];
        let err = require_in("vm-test", &needs, &env).unwrap_err();
        assert_eq!(err.code, 3);
        assert!(!err.message.contains('\n'), "{}", err.message);
        assert!(err.message.starts_with("cargo xtask vm-test needs "), "{}", err.message);
        assert!(err.message.contains("run `cargo xtask deps`"), "{}", err.message);
        for tool in ["qemu-system-x86_64", "cpio", "apt-get", "dpkg-deb", KEYRING, BUSYBOX, LIBC_A] {
            assert!(err.message.contains(tool), "{tool} missing from: {}", err.message);
        }
        for package in ["qemu-system-x86", "busybox-static", "cpio", "debian-archive-keyring", "libc6-dev"] {
            assert!(err.message.contains(package), "{package} missing from: {}", err.message);
        }
        // Nothing that vm-test does not need.
        assert!(!err.message.contains("valgrind"), "{}", err.message);
    }

    #[test]
    fn libclang_is_looked_for_where_bindgen_will_load_it() {
        let (env, dir) = empty_env("libclang");
        let pin = pin().unwrap();
        let err = require_in("bindgen", &[Need::Libclang], &env).unwrap_err();
        assert!(err.message.contains(&pin.libclang_package), "{}", err.message);
        assert!(err.message.contains("LIBCLANG_PATH"), "{}", err.message);
        let lib = dir.join("libclang-test.so.1");
        std::fs::write(&lib, b"").unwrap();
        assert!(require_in("bindgen", &[Need::Libclang], &env).is_ok());
        std::fs::remove_file(&lib).unwrap();
        // Unset: the pinned package's directory under the root.
        let env = Env { libclang_path: None, ..env };
        let err = require_in("bindgen", &[Need::Libclang], &env).unwrap_err();
        assert!(err.message.contains(&libclang_dir(&pin)), "{}", err.message);
    }

    #[test]
    fn the_install_commands_are_exact() {
        let pkgs = vec!["cpio".to_owned(), "valgrind".to_owned()];
        assert_eq!(
            shell_line(&install_commands(&pkgs, Privilege::Root)),
            "apt-get update -qq && apt-get install -y -qq --no-install-recommends cpio valgrind"
        );
        assert_eq!(
            shell_line(&install_commands(&pkgs, Privilege::Sudo)),
            "sudo apt-get update -qq && sudo apt-get install -y -qq --no-install-recommends cpio valgrind"
        );
    }

    #[test]
    fn arguments() {
        assert!(parse_args(&["--list".to_owned()]).unwrap().list);
        assert_eq!(parse_args(&["--bogus".to_owned()]).unwrap_err().code, 2);
    }
}
