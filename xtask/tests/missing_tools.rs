//! Every xtask command that lacks a tool ends with one line that names the
//! command, every missing tool and `cargo xtask deps`: never a panic or a
//! backtrace, never one missing tool at a time.
//!
//! The built `xtask` binary runs with `PATH` and `LIBCLANG_PATH` pointing
//! at an empty directory (and `RUST_BACKTRACE=1`, so that a panic would
//! show). Every command checks its tools before it fetches or builds
//! anything, so these runs take milliseconds.

use std::path::PathBuf;
use std::process::{Command, Output};

/// An empty directory of its own for each test.
fn empty_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xtask-missing-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn xtask(args: &[&str], path: Option<&PathBuf>, libclang: &PathBuf) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(args).env("LIBCLANG_PATH", libclang).env("RUST_BACKTRACE", "1");
    if let Some(path) = path {
        cmd.env("PATH", path);
    }
    cmd.output().expect("run xtask")
}

/// The run failed with `code` and exactly one stderr line, about `task`,
/// naming `cargo xtask deps`; returns that line.
fn one_clean_line(out: &Output, task: &str, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let shown =
        format!("exit {:?}\nstdout:\n{}\nstderr:\n{stderr}", out.status.code(), String::from_utf8_lossy(&out.stdout));
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "a panic: {shown}");
    assert_eq!(out.status.code(), Some(code), "{shown}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "not one line: {shown}");
    let line = lines[0];
    assert!(line.starts_with(&format!("error: cargo xtask {task} ")), "does not name `{task}`: {shown}");
    assert!(line.contains("`cargo xtask deps`"), "does not say how to get the tools: {shown}");
    line.to_owned()
}

#[test]
fn vm_test_lists_every_missing_tool_at_once() {
    let empty = empty_dir("vm-test");
    let out = xtask(&["vm-test"], Some(&empty), &empty);
    let line = one_clean_line(&out, "vm-test", 3);
    // (apt's tools too, unless every kernel is cached under target/: the
    // unit tests in deps.rs check that part.)
    for tool in ["qemu-system-x86_64", "cpio"] {
        assert!(line.contains(tool), "{tool} is not named: {line}");
    }
    // Nothing was fetched or built (at most a note on optional tools).
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.lines().all(|l| l.starts_with("note: ")), "{stdout}");
}

#[test]
fn vm_bench_lists_every_missing_tool_at_once() {
    let empty = empty_dir("vm-bench");
    let out = xtask(&["vm-bench", "--bench", "uring-zcrx/throughput"], Some(&empty), &empty);
    let line = one_clean_line(&out, "vm-bench", 3);
    assert!(line.contains("qemu-system-x86_64") && line.contains("cpio"), "{line}");
}

#[test]
fn callgrind_without_valgrind() {
    let empty = empty_dir("callgrind");
    let line = one_clean_line(&xtask(&["callgrind"], Some(&empty), &empty), "callgrind", 3);
    assert!(line.contains("valgrind"), "{line}");
}

#[test]
fn compare_lists_every_missing_tool_at_once() {
    let empty = empty_dir("compare");
    let line = one_clean_line(&xtask(&["compare", "--check"], Some(&empty), &empty), "compare", 3);
    for tool in ["valgrind", "gcc", "apt-get"] {
        assert!(line.contains(tool), "{tool} missing from: {line}");
    }
}

#[test]
fn bindgen_without_libclang_is_one_line_not_a_panic() {
    // Only libclang missing: the integrity check still runs and the exit
    // is 3 (CI's "regeneration inputs unavailable").
    let empty = empty_dir("bindgen-libclang");
    let out = xtask(&["bindgen", "--check"], None, &empty);
    let line = one_clean_line(&out, "bindgen --check", 3);
    assert!(line.contains("libclang") && line.contains("LIBCLANG_PATH"), "{line}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("untouched since generation"));
    let line = one_clean_line(&xtask(&["bindgen"], None, &empty), "bindgen", 3);
    assert!(line.contains("libclang"), "{line}");
}

#[test]
fn bindgen_with_a_libclang_that_does_not_load_is_one_line() {
    // A file that passes the up-front check but is no library: bindgen
    // would panic while loading it.
    let dir = empty_dir("bindgen-broken");
    std::fs::write(dir.join("libclang.so"), b"not a library").unwrap();
    let out = xtask(&["bindgen", "--check"], None, &dir);
    let line = one_clean_line(&out, "bindgen", 3);
    assert!(line.contains("cannot load libclang"), "{line}");
}

#[test]
fn bindgen_check_without_sha256sum_cannot_verify_and_fails() {
    // Without sha256sum the committed files cannot be verified: exit 1,
    // not 3, and every other missing tool is in the same line.
    let empty = empty_dir("bindgen-path");
    let line = one_clean_line(&xtask(&["bindgen", "--check"], Some(&empty), &empty), "bindgen --check", 1);
    for tool in ["sha256sum", "libclang", "apt-get", "diff"] {
        assert!(line.contains(tool), "{tool} is not named: {line}");
    }
}

#[test]
fn deps_without_dpkg_says_what_to_install() {
    let empty = empty_dir("deps");
    let out = xtask(&["deps"], Some(&empty), &empty);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("qemu-system-x86") && stderr.contains("libclang1-"), "{stderr}");
}

#[test]
fn deps_list_names_every_package_and_installs_nothing() {
    let empty = empty_dir("deps-list");
    let out = xtask(&["deps", "--list"], None, &empty);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !std::path::Path::new("/usr/bin/dpkg-query").exists() {
        return; // not Debian: covered by the test above
    }
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    for pkg in ["qemu-system-x86", "busybox-static", "cpio", "e2fsprogs", "debian-archive-keyring", "valgrind"] {
        assert!(stdout.contains(pkg), "{pkg} is not listed:\n{stdout}");
    }
}

#[test]
fn deps_without_root_or_sudo_prints_the_exact_command() {
    // As nobody, with a PATH holding only a dpkg-query that reports cpio
    // and valgrind as not installed (and no sudo). Needs root and setpriv
    // to become nobody, and a workspace nobody can read.
    let setpriv = "/usr/bin/setpriv";
    let exe = env!("CARGO_BIN_EXE_xtask");
    let pin = concat!(env!("CARGO_MANIFEST_DIR"), "/../uring-sys/headers.pin");
    let as_nobody = |args: &[&str], path: &std::path::Path| {
        Command::new(setpriv)
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "env"])
            .arg(format!("PATH={}", path.display()))
            .args(args)
            .output()
    };
    let bin = empty_dir("deps-nobody");
    let usable = std::path::Path::new(setpriv).exists()
        && std::path::Path::new("/usr/bin/dpkg-query").exists()
        && as_nobody(&["/usr/bin/test", "-x", exe, "-a", "-r", pin], &bin).is_ok_and(|o| o.status.success());
    if !usable {
        eprintln!("skipped: needs root, setpriv, dpkg-query and a workspace readable by nobody");
        return;
    }
    let fake = bin.join("dpkg-query");
    std::fs::write(&fake, "#!/bin/sh\ncase \"$3\" in cpio|valgrind) exit 1;; esac\nexec /usr/bin/dpkg-query \"$@\"\n")
        .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = as_nobody(&[exe, "deps"], &bin).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert_eq!(
        stderr.trim(),
        "error: cargo xtask deps: not root and no sudo; as root, run: apt-get update -qq && \
         apt-get install -y -qq --no-install-recommends cpio valgrind"
    );
}
