//! Obtaining Debian's `cloud-amd64` kernels.
//!
//! The cloud flavour has io_uring, loopback networking and the 8250 serial
//! console built in, so the bare bzImage boots an initramfs with no
//! modules. Up to 6.18 the image is in `linux-image-<abi>`; from 6.19 that
//! package is a metapackage and the image is in `linux-binary-<abi>`, and
//! where inside the package it lies changes between versions
//! (`boot/vmlinuz-<abi>`, `usr/lib/modules/<abi>/vmlinuz`), so it is
//! searched for. Packages come from the suites in [`SUITES`] through a
//! private apt configuration under `target/xtask/vm/apt`; the extracted
//! image is cached under `target/xtask/vm/kernels/<abi>/`.

use std::path::{Path, PathBuf};

use crate::apt::{self, PrivateApt};
use crate::util::{self, Failure, Result};

/// The suites Debian publishes its newest kernels in.
pub(crate) const SUITES: [&str; 2] = ["trixie-backports", "sid"];
/// The kernel flavour: everything the tests need is built in.
const FLAVOUR: &str = "cloud-amd64";

/// A kernel ready to boot.
#[derive(Debug, Clone)]
pub(crate) struct Kernel {
    /// The package ABI name, e.g. `7.3.4+deb13-cloud-amd64`.
    pub(crate) abi: String,
    /// The bzImage.
    pub(crate) image: PathBuf,
    /// `package version` it came from.
    pub(crate) source: String,
}

/// A requested kernel: `7.3` (newest 7.3.x), `7.3.4` (newest Debian build
/// of 7.3.4) or a full ABI name `7.3.4+deb13-cloud-amd64`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spec(pub(crate) String);

impl Spec {
    /// Checks the shape of a `--kernel` argument.
    pub(crate) fn parse(text: &str) -> Result<Self> {
        let upstream = text.split('+').next().unwrap_or_default();
        let parts: Vec<&str> = upstream.split('.').collect();
        if !(2..=3).contains(&parts.len())
            || parts.iter().any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(Failure::usage(format!(
                "--kernel {text}: expected `host`, a series (7.3), a release (7.3.4) or a Debian ABI name \
                 (7.3.4+deb13-{FLAVOUR})"
            )));
        }
        Ok(Self(text.to_owned()))
    }

    fn is_abi(&self) -> bool {
        self.0.contains('+')
    }

    /// Whether upstream version `v` (`[7, 3, 4]`) is one this spec names.
    fn matches(&self, v: &[u32]) -> bool {
        let want: Vec<u32> =
            self.0.split('+').next().unwrap_or_default().split('.').filter_map(|p| p.parse().ok()).collect();
        v.starts_with(&want)
    }
}

/// Resolves and fetches kernels, sharing one apt index refresh.
pub(crate) struct Fetcher {
    dir: PathBuf,
    apt: Option<PrivateApt>,
}

impl Fetcher {
    /// Kernels live under `dir` (`target/xtask/vm`).
    pub(crate) fn new(dir: &Path) -> Self {
        Self { dir: dir.to_path_buf(), apt: None }
    }

    /// The private apt, with fresh indexes (refreshed once per run).
    fn apt(&mut self) -> Result<&PrivateApt> {
        if self.apt.is_none() {
            let suites: Vec<String> = SUITES.iter().map(|s| (*s).to_owned()).collect();
            let apt = PrivateApt::new(&self.dir.join("apt"), &suites)?;
            println!(
                "reading Debian's kernel indexes ({}) with a private apt under target/xtask/vm/apt",
                suites.join(", ")
            );
            apt.update()?;
            self.apt = Some(apt);
        }
        Ok(self.apt.as_ref().expect("set above"))
    }

    /// The cached kernel of ABI `abi`, if a previous run extracted it.
    fn cached(&self, abi: &str) -> Option<Kernel> {
        let dir = self.dir.join("kernels").join(abi);
        let image = dir.join("vmlinuz");
        let source = std::fs::read_to_string(dir.join("source")).ok()?;
        image.is_file().then(|| Kernel { abi: abi.to_owned(), image, source: source.trim().to_owned() })
    }

    /// The newest kernel matching `spec` among those cached.
    pub(crate) fn newest_cached(&self, spec: &Spec) -> Option<Kernel> {
        let mut found: Vec<(Vec<u32>, Kernel)> = std::fs::read_dir(self.dir.join("kernels"))
            .ok()?
            .flatten()
            .filter_map(|e| {
                let abi = e.file_name().to_string_lossy().into_owned();
                let v = upstream_version(&abi)?;
                let wanted = if spec.is_abi() { abi == spec.0 } else { spec.matches(&v) };
                wanted.then(|| self.cached(&abi).map(|k| (v, k))).flatten()
            })
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found.pop().map(|(_, k)| k)
    }

    /// The kernel `spec` names, downloaded and extracted unless cached.
    pub(crate) fn get(&mut self, spec: &Spec) -> Result<Kernel> {
        if spec.is_abi()
            && let Some(k) = self.cached(&spec.0)
        {
            return Ok(k);
        }
        let abi = match self.resolve(spec) {
            Ok(abi) => abi,
            // Offline, or Debian dropped it: a kernel fetched earlier will do.
            Err(f) if f.code == 3 => match self.newest_cached(spec) {
                Some(k) => {
                    println!("using the cached {} ({}): {}", k.abi, k.source, f.message);
                    return Ok(k);
                }
                None => return Err(f),
            },
            Err(f) => return Err(f),
        };
        if let Some(k) = self.cached(&abi) {
            return Ok(k);
        }
        self.fetch(&abi)
    }

    /// The newest ABI name Debian offers for `spec`.
    fn resolve(&mut self, spec: &Spec) -> Result<String> {
        let apt = self.apt()?;
        let mut abis: Vec<(Vec<u32>, String)> = Vec::new();
        for prefix in ["linux-binary-", "linux-image-"] {
            for name in apt.package_names(prefix)? {
                let Some(abi) = name.strip_prefix(prefix) else { continue };
                let Some(v) = upstream_version(abi) else { continue };
                if abis.iter().any(|(_, a)| a == abi) {
                    continue;
                }
                let wanted = if spec.is_abi() { abi == spec.0 } else { spec.matches(&v) };
                if wanted {
                    abis.push((v, abi.to_owned()));
                }
            }
        }
        abis.sort();
        abis.pop().map(|(_, abi)| abi).ok_or_else(|| {
            Failure::unavailable(format!(
                "Debian ({}) offers no {FLAVOUR} kernel matching `{}`",
                SUITES.join(", "),
                spec.0
            ))
        })
    }

    /// Downloads the package holding the image of `abi` and extracts it.
    fn fetch(&mut self, abi: &str) -> Result<Kernel> {
        let debs = self.dir.join("debs");
        let dest = self.dir.join("kernels").join(abi);
        let unpacked = self.dir.join("unpacked").join(abi);
        let apt = self.apt()?;
        let mut tried = Vec::new();
        for package in [format!("linux-binary-{abi}"), format!("linux-image-{abi}")] {
            let Some(version) = apt.versions(&package)?.into_iter().next() else { continue };
            println!("fetching {package} {version}");
            let deb = apt.download(&package, &version, &debs)?;
            apt::extract(&deb, &unpacked)?;
            let found = find_vmlinuz(&unpacked);
            tried.push(format!("{package} {version}"));
            if let Some(image) = found {
                std::fs::create_dir_all(&dest)
                    .map_err(|e| Failure::new(format!("cannot create {}: {e}", dest.display())))?;
                std::fs::rename(&image, dest.join("vmlinuz"))
                    .or_else(|_| std::fs::copy(&image, dest.join("vmlinuz")).map(drop))
                    .map_err(|e| Failure::new(format!("cannot keep {}: {e}", image.display())))?;
                let source = format!("{package} {version}");
                util::write(&dest.join("source"), &source)?;
                let _ = std::fs::remove_dir_all(&unpacked);
                return Ok(Kernel { abi: abi.to_owned(), image: dest.join("vmlinuz"), source });
            }
        }
        Err(Failure::new(format!(
            "no vmlinuz in {} (looked for boot/vmlinuz-* and */vmlinuz)",
            if tried.is_empty() { format!("any package of {abi}") } else { tried.join(" or ") }
        )))
    }
}

/// `[7, 3, 4]` of a `cloud-amd64` ABI name `7.3.4+deb13-cloud-amd64`;
/// `None` for other flavours and names (`-dbg`, `-unsigned`).
fn upstream_version(abi: &str) -> Option<Vec<u32>> {
    let upstream = abi.strip_suffix(&format!("-{FLAVOUR}"))?.split('+').next()?;
    let v: Vec<u32> = upstream.split('.').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    (v.len() >= 2).then_some(v)
}

/// The first regular file named `vmlinuz` or `vmlinuz-*` under `dir`.
fn find_vmlinuz(dir: &Path) -> Option<PathBuf> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else { continue };
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() && (name == "vmlinuz" || name.starts_with("vmlinuz-")) {
                return Some(path);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert!(Spec::parse("7.3").is_ok());
        assert!(Spec::parse("7.3.4").is_ok());
        assert!(Spec::parse("7.3.4+deb13-cloud-amd64").is_ok());
        assert!(Spec::parse("7").is_err());
        assert!(Spec::parse("latest").is_err());
        assert!(Spec::parse("7.x").is_err());
        let s = Spec::parse("7.2").unwrap();
        assert!(s.matches(&[7, 2, 12]));
        assert!(!s.matches(&[7, 20, 1]));
        assert!(!s.matches(&[7, 3, 4]));
        assert!(Spec::parse("7.2.1").unwrap().matches(&[7, 2, 1]));
        assert!(!Spec::parse("7.2.1").unwrap().matches(&[7, 2, 12]));
    }

    #[test]
    fn abi_names() {
        assert_eq!(upstream_version("7.3.4+deb13-cloud-amd64"), Some(vec![7, 3, 4]));
        assert_eq!(upstream_version("6.18.15+deb13-cloud-amd64"), Some(vec![6, 18, 15]));
        assert_eq!(upstream_version("7.3.4+deb13-cloud-amd64-dbg"), None);
        assert_eq!(upstream_version("7.3.4+deb13-amd64"), None);
        assert_eq!(upstream_version("unsigned-7.3.4+deb13-cloud-amd64"), None);
    }

    #[test]
    fn vmlinuz_is_found_wherever_the_package_puts_it() {
        let root = std::env::temp_dir().join(format!("xtask-vmlinuz-{}", std::process::id()));
        for (rel, want) in [
            ("boot/vmlinuz-7.0.13+deb13-cloud-amd64", true),
            ("usr/lib/modules/7.3.4+deb13-cloud-amd64/vmlinuz", true),
            ("usr/share/doc/vmlinuz.txt", false),
        ] {
            let _ = std::fs::remove_dir_all(&root);
            let path = root.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, b"MZ").unwrap();
            assert_eq!(find_vmlinuz(&root), want.then_some(path), "{rel}");
        }
        let _ = std::fs::remove_dir_all(&root);
    }
}
