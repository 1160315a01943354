//! Huge pages for the tests that need them, shared by uring-core's and
//! uring-buffers' tests (`#[path]`-included there).
#![allow(dead_code)] // Each test binary uses a different subset.
#![allow(unreachable_pub)] // A module of test binaries, not of a library.

/// Reserves `n` 2 MiB huge pages if fewer are free; returns the previous
/// `nr_hugepages` to restore, or why none can be had.
pub fn reserve_huge_pages(n: u64) -> Result<Option<u64>, String> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").map_err(|e| e.to_string())?;
    let field = |name: &str| {
        meminfo.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
    };
    if field("Hugepagesize:") != Some(2048) {
        return Err(format!("the default huge page size is {:?} kB, not 2048", field("Hugepagesize:")));
    }
    let free = field("HugePages_Free:").unwrap_or(0);
    if free >= n {
        return Ok(None);
    }
    let path = "/proc/sys/vm/nr_hugepages";
    let old: u64 = std::fs::read_to_string(path).map_err(|e| e.to_string())?.trim().parse().map_err(|_| "?")?;
    std::fs::write(path, format!("{}", old + n - free)).map_err(|e| format!("cannot write {path}: {e}"))?;
    let now: u64 = std::fs::read_to_string(path).map_err(|e| e.to_string())?.trim().parse().map_err(|_| "?")?;
    if now < old + n - free {
        let _ = std::fs::write(path, format!("{old}"));
        return Err(format!(
            "asked the kernel for {} huge pages, it has {now} (memory too fragmented)",
            old + n - free
        ));
    }
    Ok(Some(old))
}
