//! Obtaining Debian packages with a private apt configuration.
//!
//! Everything lives under `target/xtask/apt/`: sources, lists, cache, an
//! empty dpkg status. Nothing system-wide is read for sources or written;
//! the only shared input is Debian's archive keyring, which verifies the
//! downloaded indexes.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{self, Failure, Result};

/// Debian's archive keyring, shipped by `debian-archive-keyring`.
pub(crate) const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// The Debian mirror the suites are read from.
const MIRROR: &str = "http://deb.debian.org/debian";

/// A private apt: one configuration directory under `target/`.
#[derive(Debug)]
pub(crate) struct PrivateApt {
    root: PathBuf,
}

impl PrivateApt {
    /// Prepares `root` with a sources list naming `suites` (main component).
    pub(crate) fn new(root: &Path, suites: &[String]) -> Result<Self> {
        if !Path::new(KEYRING).exists() {
            return Err(Failure::unavailable(format!(
                "{KEYRING} is missing: this is not a Debian machine with debian-archive-keyring. \
                 Pass the headers yourself with --headers DIR (a linux-libc-dev usr/include tree)."
            )));
        }
        let sources: String =
            suites.iter().map(|suite| format!("deb [signed-by={KEYRING}] {MIRROR} {suite} main\n")).collect();
        util::write(&root.join("etc/sources.list"), &sources)?;
        for dir in ["etc/sources.list.d", "etc/preferences.d", "state/lists/partial", "cache/archives/partial"] {
            std::fs::create_dir_all(root.join(dir))
                .map_err(|e| Failure::new(format!("cannot create {}: {e}", root.join(dir).display())))?;
        }
        let status = root.join("status");
        if !status.exists() {
            util::write(&status, "")?;
        }
        Ok(Self { root: root.to_path_buf() })
    }

    fn options(&self) -> Vec<String> {
        let r = self.root.display();
        vec![
            format!("-oDir::Etc={r}/etc"),
            format!("-oDir::Etc::sourcelist={r}/etc/sources.list"),
            format!("-oDir::Etc::sourceparts={r}/etc/sources.list.d"),
            format!("-oDir::Etc::preferences={r}/etc/preferences"),
            format!("-oDir::Etc::preferencesparts={r}/etc/preferences.d"),
            format!("-oDir::State={r}/state"),
            format!("-oDir::State::status={r}/status"),
            format!("-oDir::Cache={r}/cache"),
            // Downloads land in directories owned by root; apt's `_apt`
            // sandbox user could not write them.
            "-oAPT::Sandbox::User=root".to_owned(),
            "-oDebug::NoLocking=1".to_owned(),
            "-qq".to_owned(),
        ]
    }

    fn apt(&self, tool: &str) -> Command {
        let mut cmd = Command::new(tool);
        cmd.args(self.options());
        cmd
    }

    /// Refreshes the package indexes of the private configuration.
    pub(crate) fn update(&self) -> Result<()> {
        util::output(self.apt("apt-get").arg("update"))
            .map_err(|f| Failure::unavailable(format!("cannot read Debian's package indexes: {}", f.message)))?;
        Ok(())
    }

    /// Every version of `package` the configured suites offer, newest first.
    pub(crate) fn versions(&self, package: &str) -> Result<Vec<String>> {
        let text = util::output(self.apt("apt-cache").args(["madison", package]))?;
        let versions = text.lines().filter_map(|line| line.split('|').nth(1)).map(str::trim).filter(|v| !v.is_empty());
        // Sort newest first with dpkg's own version ordering; a version
        // offered by several suites is listed once.
        let mut sorted: Vec<String> = Vec::new();
        for v in versions.map(str::to_owned) {
            if sorted.contains(&v) {
                continue;
            }
            let pos = sorted.iter().position(|s| dpkg_newer(&v, s)).unwrap_or(sorted.len());
            sorted.insert(pos, v);
        }
        Ok(sorted)
    }

    /// Names of the packages the configured suites offer that start with
    /// `prefix` (from the local indexes: no network).
    pub(crate) fn package_names(&self, prefix: &str) -> Result<Vec<String>> {
        let text = util::output(self.apt("apt-cache").args(["pkgnames", prefix]))?;
        Ok(text.lines().map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned).collect())
    }

    /// Downloads `package=version` into `dir` and returns the `.deb` path.
    /// A version the suites no longer offer is an `unavailable` failure that
    /// lists what they do offer.
    pub(crate) fn download(&self, package: &str, version: &str, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).map_err(|e| Failure::new(format!("cannot create {}: {e}", dir.display())))?;
        let offered = self.versions(package)?;
        if !offered.iter().any(|v| v == version) {
            return Err(Failure::unavailable(format!(
                "Debian no longer offers {package} {version} (offered now: {}). Run \
                 `cargo xtask bindgen --repin` to move the pin to the newest, review the \
                 regenerated bindings and commit both.",
                if offered.is_empty() { "nothing".to_owned() } else { offered.join(", ") }
            )));
        }
        let mut cmd = self.apt("apt-get");
        cmd.current_dir(dir).args(["download", &format!("{package}={version}")]);
        util::output(&mut cmd)?;
        let prefix = format!("{package}_");
        let found = std::fs::read_dir(dir)
            .map_err(|e| Failure::new(format!("cannot list {}: {e}", dir.display())))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .find(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                // apt escapes ':' in epochs as %3a; versions here have none.
                name.starts_with(&prefix) && name.contains(version) && name.ends_with(".deb")
            });
        found.ok_or_else(|| {
            Failure::new(format!("apt-get download left no {package} {version} .deb in {}", dir.display()))
        })
    }
}

/// Whether Debian version `a` is newer than `b`.
fn dpkg_newer(a: &str, b: &str) -> bool {
    Command::new("dpkg").args(["--compare-versions", a, "gt", b]).status().map(|s| s.success()).unwrap_or(false)
}

/// Extracts a `.deb` into `dest` with `dpkg-deb -x`.
pub(crate) fn extract(deb: &Path, dest: &Path) -> Result<()> {
    if dest.exists() {
        std::fs::remove_dir_all(dest).map_err(|e| Failure::new(format!("cannot clear {}: {e}", dest.display())))?;
    }
    std::fs::create_dir_all(dest).map_err(|e| Failure::new(format!("cannot create {}: {e}", dest.display())))?;
    util::output(Command::new("dpkg-deb").arg("-x").arg(deb).arg(dest))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_version_order_comes_from_dpkg() {
        // Backport suffixes sort below the release they backport, and
        // numeric parts compare as numbers, not strings.
        assert!(dpkg_newer("7.3.4-1~bpo13+1", "7.2.13-1"));
        assert!(dpkg_newer("7.2.13-1", "7.2.13-1~bpo13+1"));
        assert!(dpkg_newer("7.10.1-1", "7.9.9-1"));
        assert!(!dpkg_newer("7.2.13-1", "7.2.13-1"));
    }
}
