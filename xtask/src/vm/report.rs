//! Reading the results out of a run's output (the serial log of a VM, or
//! the same protocol written by the host run): libtest's counts for tests
//! ([`parse`]), each binary's own output for benches ([`sections`]).
//!
//! The guest's init prints marker lines around each test binary:
//!
//! ```text
//! @@URING-VM BEGIN <kernel release>
//! @@URING-VM RUN <binary>
//! ... libtest output of that binary, run with --show-output ...
//! @@URING-VM EXIT <binary> <exit status>
//! @@URING-VM END <0|1>
//! ```
//!
//! Markers are found anywhere in a line (a kernel message may precede one
//! on the serial console). Inside a binary's section the parser reads
//! libtest's summary (`test result: ok. N passed; M failed; K ignored; ...`),
//! the per-test lines (`test name ... FAILED`, `... ignored`), the captured
//! output headers (`---- name stdout ----`) and the skip lines tests print
//! (`SKIPPED <test>: <reason>` or `SKIPPED: <reason>` under a header).

/// The marker prefix of the guest's protocol lines.
pub(crate) const MARK: &str = "@@URING-VM";

/// One skip: which binary and test, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Skip {
    /// `crate/target` label of the test binary.
    pub(crate) binary: String,
    /// The test's name (`?` when nothing names it).
    pub(crate) test: String,
    /// The reason the test printed.
    pub(crate) reason: String,
}

/// Everything one run reported.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// `uname -r` as the guest printed it.
    pub(crate) release: Option<String>,
    /// Tests libtest counted as passed (including those that skipped).
    pub(crate) libtest_passed: u32,
    /// Tests libtest counted as failed.
    pub(crate) libtest_failed: u32,
    /// Tests libtest counted as ignored (`#[ignore]`).
    pub(crate) ignored: Vec<String>,
    /// `binary: test` of each failed test, plus binaries that ended without
    /// a result (crash, signal) or never ran to the end.
    pub(crate) failures: Vec<String>,
    /// `(failure, first panic message)` for failures that panicked.
    pub(crate) reasons: Vec<(String, String)>,
    /// Each skip line, attributed.
    pub(crate) skips: Vec<Skip>,
    /// Binaries that started.
    pub(crate) binaries_run: u32,
    /// The overall status the guest printed at the end (`None`: no end
    /// marker, the run never finished).
    pub(crate) end_status: Option<i32>,
}

impl Outcome {
    /// Distinct tests that printed at least one skip line and did not fail
    /// (a failed test counts as failed, whatever it printed).
    pub(crate) fn skipped_tests(&self) -> usize {
        let mut seen: Vec<(&str, &str)> = self
            .skips
            .iter()
            .filter(|s| !self.failures.contains(&format!("{}: {}", s.binary, s.test)))
            .map(|s| (s.binary.as_str(), s.test.as_str()))
            .collect();
        seen.sort_unstable();
        seen.dedup();
        seen.len()
    }

    /// Passed and not skipped.
    pub(crate) fn passed(&self) -> usize {
        (self.libtest_passed as usize).saturating_sub(self.skipped_tests())
    }

    /// Failed tests, and binaries that failed without a per-test failure.
    pub(crate) fn failed(&self) -> usize {
        self.failures.len().max(self.libtest_failed as usize)
    }

    /// True when the run finished and nothing failed.
    pub(crate) fn ok(&self) -> bool {
        self.end_status == Some(0) && self.failed() == 0
    }
}

/// The state of the binary section being read.
#[derive(Debug, Default)]
struct Section {
    binary: String,
    /// The test whose captured output is being read.
    current: Option<String>,
    /// A `test result:` line was seen.
    summarized: bool,
    /// Failures named by `test x ... FAILED`.
    failed_names: Vec<String>,
    /// `(test, "at file:line: message")` of each panic seen.
    panics: Vec<(String, String)>,
    /// The panic whose message is on the next line.
    panic_pending: Option<(String, String)>,
    /// The last line read was part of a panic message.
    panic_detail: bool,
    /// Why the guest killed the binary, if it did.
    killed: Option<String>,
}

/// Parses a whole log.
pub(crate) fn parse(log: &str) -> Outcome {
    let mut out = Outcome::default();
    let mut section: Option<Section> = None;
    for raw in log.lines() {
        let line = raw.trim_end_matches('\r');
        if let Some(at) = line.find(MARK) {
            let mut words = line[at + MARK.len()..].split_whitespace();
            match words.next() {
                Some("BEGIN") => out.release = words.next().map(str::to_owned),
                Some("RUN") => {
                    if let Some(open) = section.take() {
                        close(&mut out, open, None);
                    }
                    out.binaries_run += 1;
                    section = Some(Section { binary: words.next().unwrap_or("?").to_owned(), ..Section::default() });
                }
                Some("EXIT") => {
                    let _name = words.next();
                    let status = words.next().and_then(|s| s.parse::<i32>().ok());
                    if let Some(open) = section.take() {
                        close(&mut out, open, Some(status.unwrap_or(-1)));
                    }
                }
                Some("KILLED") => {
                    if let Some(open) = section.as_mut() {
                        let _name = words.next();
                        open.killed = Some(words.collect::<Vec<_>>().join(" "));
                    }
                }
                Some("END") => {
                    if let Some(open) = section.take() {
                        close(&mut out, open, None);
                    }
                    out.end_status = words.next().and_then(|s| s.parse().ok());
                }
                _ => {}
            }
            continue;
        }
        let Some(sec) = section.as_mut() else { continue };
        read_line(&mut out, sec, line);
    }
    if let Some(open) = section.take() {
        close(&mut out, open, None);
    }
    out
}

/// One line of libtest output inside a binary's section.
fn read_line(out: &mut Outcome, sec: &mut Section, line: &str) {
    let trimmed = line.trim();
    if let Some((test, at)) = sec.panic_pending.take() {
        sec.panics.push((test, format!("panicked at {at} {trimmed}")));
        sec.panic_detail = true;
        return;
    }
    // assert_eq!'s `left:` and `right:` lines belong to the message.
    if sec.panic_detail && (trimmed.starts_with("left:") || trimmed.starts_with("right:")) {
        if let Some((_, why)) = sec.panics.last_mut() {
            why.push_str(&format!("; {trimmed}"));
        }
        return;
    }
    sec.panic_detail = false;
    // thread 'name' (123) panicked at file.rs:1:2:
    if let Some(rest) = trimmed.strip_prefix("thread '")
        && let Some((test, tail)) = rest.split_once('\'')
        && let Some((_, at)) = tail.split_once("panicked at ")
    {
        sec.panic_pending = Some((test.to_owned(), at.to_owned()));
        return;
    }
    if let Some(rest) = trimmed.strip_prefix("test result: ") {
        sec.summarized = true;
        out.libtest_passed += count(rest, "passed");
        out.libtest_failed += count(rest, "failed");
        sec.current = None;
    } else if let Some(rest) = trimmed.strip_prefix("test ")
        && let Some((name, verdict)) = rest.split_once(" ... ")
    {
        let name = name.trim();
        let verdict = verdict.trim();
        if verdict.starts_with("FAILED") {
            sec.failed_names.push(name.to_owned());
        } else if verdict.starts_with("ignored") {
            let why = verdict.strip_prefix("ignored").unwrap_or("").trim_start_matches(',').trim();
            out.ignored.push(if why.is_empty() {
                format!("{}: {name}", sec.binary)
            } else {
                format!("{}: {name} ({why})", sec.binary)
            });
        }
    } else if let Some(rest) = trimmed.strip_prefix("---- ")
        && let Some(name) = rest.strip_suffix(" stdout ----").or_else(|| rest.strip_suffix(" stderr ----"))
    {
        sec.current = Some(name.trim().to_owned());
    } else if trimmed == "successes:" || trimmed == "failures:" {
        sec.current = None;
    } else if let Some(at) = line.find("SKIPPED") {
        let rest = &line[at + "SKIPPED".len()..];
        let (named, reason) = if let Some(reason) = rest.strip_prefix(':') {
            (None, reason.trim())
        } else if let Some((name, reason)) = rest.trim_start().split_once(": ") {
            (Some(name.trim()), reason.trim())
        } else {
            (None, rest.trim())
        };
        // A name printed by the test is a label of the test's choosing;
        // the libtest header says which test function printed it.
        let test = sec.current.clone().or_else(|| named.map(str::to_owned)).unwrap_or_else(|| "?".to_owned());
        let reason = match named {
            Some(n) if sec.current.as_deref().is_some_and(|c| !c.ends_with(n) && n != c) => format!("{n}: {reason}"),
            _ => reason.to_owned(),
        };
        out.skips.push(Skip { binary: sec.binary.clone(), test, reason });
    }
}

/// Ends a binary's section; `status` is its exit status when it exited.
fn close(out: &mut Outcome, sec: Section, status: Option<i32>) {
    let named = !sec.failed_names.is_empty();
    for name in &sec.failed_names {
        out.failures.push(format!("{}: {name}", sec.binary));
        if let Some((_, why)) = sec.panics.iter().find(|(t, _)| t == name) {
            out.reasons.push((format!("{}: {name}", sec.binary), why.clone()));
        }
    }
    if let Some(why) = sec.killed {
        out.failures.push(format!("{}: killed {why}", sec.binary));
        return;
    }
    match status {
        None => out.failures.push(format!("{}: never finished (the VM stopped or timed out)", sec.binary)),
        Some(0) if !sec.summarized => {
            out.failures.push(format!("{}: exited 0 without a libtest summary", sec.binary));
        }
        Some(0) => {}
        Some(code) if !named => {
            let what = if sec.summarized { "exited" } else { "ended without a libtest summary, status" };
            out.failures.push(format!("{}: {what} {code}", sec.binary));
        }
        Some(_) => {}
    }
}

/// One binary's section of a log, as it printed it: for benches, whose
/// output is the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BinaryOutput {
    /// The binary's label.
    pub(crate) binary: String,
    /// Everything between its `RUN` and `EXIT` markers (lines end in `\n`).
    pub(crate) output: String,
    /// Its exit status (`None`: the run stopped before it exited).
    pub(crate) status: Option<i32>,
    /// Why the guest killed it, if it did.
    pub(crate) killed: Option<String>,
}

/// Every binary's section of a log, in the order they ran.
pub(crate) fn sections(log: &str) -> Vec<BinaryOutput> {
    let mut out = Vec::new();
    let mut open: Option<BinaryOutput> = None;
    for raw in log.lines() {
        let line = raw.trim_end_matches('\r');
        let Some(at) = line.find(MARK) else {
            if let Some(sec) = open.as_mut() {
                sec.output.push_str(line);
                sec.output.push('\n');
            }
            continue;
        };
        // Output without a final newline runs into the marker.
        if let Some(sec) = open.as_mut()
            && !line[..at].trim().is_empty()
        {
            sec.output.push_str(&line[..at]);
            sec.output.push('\n');
        }
        let mut words = line[at + MARK.len()..].split_whitespace();
        match words.next() {
            Some("RUN") => {
                out.extend(open.take());
                let binary = words.next().unwrap_or("?").to_owned();
                open = Some(BinaryOutput { binary, output: String::new(), status: None, killed: None });
            }
            Some("KILLED") => {
                if let Some(sec) = open.as_mut() {
                    let _name = words.next();
                    sec.killed = Some(words.collect::<Vec<_>>().join(" "));
                }
            }
            Some("EXIT") => {
                if let Some(mut sec) = open.take() {
                    let _name = words.next();
                    sec.status = Some(words.next().and_then(|s| s.parse().ok()).unwrap_or(-1));
                    out.push(sec);
                }
            }
            Some("END") => out.extend(open.take()),
            _ => {}
        }
    }
    out.extend(open);
    out
}

/// `N` from `... N <word>; ...`.
fn count(summary: &str, word: &str) -> u32 {
    summary
        .split(';')
        .find_map(|part| {
            let mut it = part.split_whitespace().rev();
            let (w, n) = (it.next()?, it.next()?);
            (w == word).then(|| n.parse().ok()).flatten()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
\x1bc\x1b[2JSeaBIOS
[    1.0] random kernel line
@@URING-VM BEGIN 7.3.4+deb13-cloud-amd64\r
@@URING-VM RUN uring-core/ring\r
\r
running 3 tests\r
test a ... ok\r
test b ... ok\r
test slow ... ignored, takes a minute\r
\r
successes:\r
\r
---- a stdout ----\r
SKIPPED: IORING_FEAT_MIN_TIMEOUT needs Linux 6.12; this kernel lacks it\r
\r
successes:\r
    a\r
    b\r
\r
test result: ok. 2 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s\r
\r
@@URING-VM EXIT uring-core/ring 0\r
@@URING-VM RUN uring-ops/ops\r
running 2 tests\r
test x ... FAILED\r
test y ... ok\r
failures:\r
---- x stdout ----\r
SKIPPED x: half a reason: with a colon\r
thread 'x' (77) panicked at src/x.rs:1:1:\r
assertion `left == right` failed: expected\r
  left: 1\r
 right: 2\r
successes:\r
---- y stdout ----\r
SKIPPED y: no NIC\r
test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s\r
@@URING-VM EXIT uring-ops/ops 101\r
@@URING-VM RUN uring-ops/crash\r
running 1 test\r
@@URING-VM EXIT uring-ops/crash 139\r
[    9.0] @@URING-VM END 1\r
";

    #[test]
    fn parses_counts_failures_and_skips() {
        let o = parse(LOG);
        assert_eq!(o.release.as_deref(), Some("7.3.4+deb13-cloud-amd64"));
        assert_eq!((o.libtest_passed, o.libtest_failed, o.binaries_run), (3, 1, 3));
        assert_eq!(o.ignored, vec!["uring-core/ring: slow (takes a minute)".to_owned()]);
        assert_eq!(
            o.failures,
            vec![
                "uring-ops/ops: x".to_owned(),
                "uring-ops/crash: ended without a libtest summary, status 139".to_owned()
            ]
        );
        assert_eq!(
            o.skips,
            vec![
                Skip {
                    binary: "uring-core/ring".into(),
                    test: "a".into(),
                    reason: "IORING_FEAT_MIN_TIMEOUT needs Linux 6.12; this kernel lacks it".into()
                },
                Skip { binary: "uring-ops/ops".into(), test: "x".into(), reason: "half a reason: with a colon".into() },
                Skip { binary: "uring-ops/ops".into(), test: "y".into(), reason: "no NIC".into() },
            ]
        );
        assert_eq!(
            o.reasons,
            vec![(
                "uring-ops/ops: x".to_owned(),
                "panicked at src/x.rs:1:1: assertion `left == right` failed: expected; left: 1; right: 2".to_owned()
            )]
        );
        assert_eq!(o.end_status, Some(1));
        assert_eq!((o.passed(), o.failed(), o.skipped_tests()), (1, 2, 2));
        assert!(!o.ok());
    }

    #[test]
    fn a_run_that_stops_midway_fails() {
        let o = parse("@@URING-VM BEGIN 7.0.13\n@@URING-VM RUN a/b\nrunning 1 test\ntest t ... ");
        assert_eq!(o.failures, vec!["a/b: never finished (the VM stopped or timed out)".to_owned()]);
        assert_eq!(o.end_status, None);
        assert!(!o.ok());
    }

    #[test]
    fn a_killed_binary_is_a_failure_that_says_so() {
        let o = parse(
            "@@URING-VM RUN a/b\nrunning 1 test\n@@URING-VM KILLED a/b by SIGKILL: its 300 s limit\n@@URING-VM EXIT a/b \
             137\n@@URING-VM END 1\n",
        );
        assert_eq!(o.failures, vec!["a/b: killed by SIGKILL: its 300 s limit".to_owned()]);
    }

    #[test]
    fn a_clean_run_is_ok() {
        let o = parse(
            "@@URING-VM BEGIN 6.18\n@@URING-VM RUN a/b\ntest t ... ok\ntest result: ok. 1 passed; 0 failed; 0 \
             ignored; 0 measured; 0 filtered out; finished in 0.00s\n@@URING-VM EXIT a/b 0\n@@URING-VM END 0\n",
        );
        assert!(o.ok());
        assert_eq!((o.passed(), o.failed(), o.skipped_tests()), (1, 0, 0));
    }

    #[test]
    fn sections_keep_each_binary_output() {
        let log = "\
[    1.0] boot line\r
@@URING-VM BEGIN 7.3.4+deb13-cloud-amd64\r
@@URING-VM RUN uring-core/bench:nop\r
Benchmarking nop/1: Analyzing\r
nop/1                   time:   [101.12 ns 101.50 ns 101.93 ns]\r
                        thrpt:  [9.8 Melem/s 9.85 Melem/s 9.88 Melem/s]\r
no newline@@URING-VM EXIT uring-core/bench:nop 0\r
@@URING-VM RUN uring-zcrx/bench:throughput\r
Benchmarking zcrx/recv: Warming up for 3.0000 s\r
@@URING-VM KILLED uring-zcrx/bench:throughput by SIGKILL: its 60 s limit, or out of memory\r
@@URING-VM EXIT uring-zcrx/bench:throughput 137\r
@@URING-VM RUN uring-zcrx/bench:refill\r
Benchmarking refill/1\r
";
        let s = sections(log);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].binary, "uring-core/bench:nop");
        let lines: Vec<&str> = log.lines().skip(3).take(4).map(|l| l.trim_end_matches('\r')).collect();
        assert_eq!(s[0].output, format!("{}\nno newline\n", lines[..3].join("\n")));
        assert_eq!((s[0].status, s[0].killed.as_deref()), (Some(0), None));
        assert_eq!(s[1].status, Some(137));
        assert_eq!(s[1].killed.as_deref(), Some("by SIGKILL: its 60 s limit, or out of memory"));
        // The VM stopped while it ran.
        assert_eq!((s[2].binary.as_str(), s[2].status), ("uring-zcrx/bench:refill", None));
        assert_eq!(s[2].output, "Benchmarking refill/1\n");
    }

    #[test]
    fn named_skip_under_a_different_header_keeps_its_label() {
        let o =
            parse("@@URING-VM RUN a/b\n---- outer stdout ----\nSKIPPED inner_case: no thing\n@@URING-VM EXIT a/b 0\n");
        assert_eq!(o.skips[0].test, "outer");
        assert_eq!(o.skips[0].reason, "inner_case: no thing");
    }
}
