//! Tidy: the documents still name things that exist (`cargo test -p
//! xtask`).
//!
//! Every inline code span of ARCHITECTURE.md and README.md (fenced code
//! blocks are compiled as doctests instead) that looks like a path or a
//! code item is checked against the workspace:
//!
//! - a file or directory path (`uring-core/src/ring.rs`, or `src/keep.rs`
//!   and `tests/stop.rs` relative to the crate whose section it appears
//!   in; a bare `guest.rs` anywhere in the workspace) must exist;
//! - a Rust item (`Ring::cq_position`, `BufferSelection::vouch`,
//!   `LayerData::PAYLOAD_MAX`, a test `socket::connect_reaches_...`) must be
//!   defined in the workspace's `.rs` files: every segment as `fn`,
//!   `struct`, `enum`, `trait`, `type`, `const`, `static`, `mod`, `union`,
//!   `macro_rules!`, an enum variant or a field (or a module's file), a
//!   trailing `*` standing for any suffix;
//! - `cargo xtask <task>` must be a task of `xtask/src/main.rs`, and a
//!   label `crate/target` a test, bench or example of that crate.
//!
//! Spans with spaces (commands, prose), absolute paths (`/dev/port`),
//! `target/` paths (build output), kernel header paths and names outside
//! the workspace ([`ALLOWED`]: std, libc, the `io-uring` crate, errnos,
//! shell tools) are not checked. Kernel C names (`IORING_*`) are checked
//! against the generated bindings, short forms (`NO_MMAP`, `RECV_ZC`) as
//! the end of a generated or defined name. Environment variables are found
//! as the string literals the code reads them with.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::workspace_root;

/// The documents checked, and whether a relative path in a crate's section
/// may name another crate's file (README does so in running text;
/// ARCHITECTURE's code map sections name only their own crate's).
const DOCUMENTS: &[(&str, bool)] = &[
    ("ARCHITECTURE.md", false),
    ("README.md", true),
    ("docs/crates.md", true),
    ("docs/performance.md", true),
    ("docs/coverage.md", true),
    ("docs/kernel-matrix.md", true),
    ("docs/ci.md", true),
];

/// Names that are not defined in the workspace and that the documents
/// rightly use: Rust's std and keywords, libc, the `io-uring` crate the
/// benchmarks compare against, kernel and shell vocabulary.
const ALLOWED: &[&str] = &[
    // Rust: keywords, std, core.
    "unsafe",
    "false",
    "true",
    "std",
    "core",
    "io",
    "Send",
    "Sync",
    "Drop",
    "Clone",
    "Copy",
    "Debug",
    "Default",
    "Box",
    "Vec",
    "Arc",
    "Mutex",
    "Option",
    "Some",
    "None",
    "Result",
    "Ok",
    "Err",
    "CString",
    "libc",
    "syscall",
    "errno",
    // The io-uring crate, compared against in benches and README.
    "IoUring",
    "Submitter",
    "cqueue",
    "squeue",
    "opcode",
    "types",
    "register_ifq",
    "Display",
    // libc and kernel names of the waits (signal masks, clocks) and of
    // huge pages (`vm.nr_hugepages`).
    "ppoll",
    "CLOCK_MONOTONIC",
    "CLOCK_BOOTTIME",
    "nr_hugepages",
    // Ring memory: the madvise flag and liburing's equivalents of
    // `Options::memory_size` and `Ring::from_raw_fd`.
    "MADV_DONTFORK",
    "io_uring_memory_size",
    "io_uring_queue_mmap",
    // Lints and attributes.
    "clippy",
    "unsafe_op_in_unsafe_fn",
    "allow",
    // bindgen's numbered names, as a pattern.
    "__bindgen_anon_N",
    "__bindgen_ty_N",
    // Syscalls, tools, files and instructions outside the workspace.
    "mmap",
    "rustc",
    "cargo",
    "setpriv",
    "addr2line",
    "vmlinuz",
    "int3",
    "wait4",
    "cp",
    "copy_file_range",
    "sendfile",
    "O_DIRECT",
    "taskset",
];

/// Path prefixes that name things outside the workspace: kernel uapi
/// headers and kernel sources.
const FOREIGN_PATH_PREFIXES: &[&str] = &["linux/", "asm/", "io_uring/"];

/// What the workspace defines, read once.
#[derive(Debug, Default)]
struct Index {
    root: PathBuf,
    /// Names defined as items, variants or fields.
    defs: HashSet<String>,
    /// Stems of `.rs` files and names of directories (modules, test and
    /// example targets).
    stems: HashSet<String>,
    /// Base names of every file.
    files: HashSet<String>,
    /// Contents of string literals made only of `[A-Z0-9_]` (environment
    /// variables).
    env_literals: HashSet<String>,
    /// Workspace members (directory names).
    members: Vec<String>,
    /// `cargo xtask` tasks.
    tasks: HashSet<String>,
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn is_ident(s: &str) -> bool {
    !s.is_empty() && !s.starts_with(|c: char| c.is_ascii_digit()) && s.chars().all(is_ident_char)
}

/// Every file under `dir`, skipping `target` and hidden directories.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if name == "target" || name.starts_with('.') {
                continue;
            }
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

impl Index {
    fn build(root: &Path) -> Self {
        let mut index = Index { root: root.to_path_buf(), ..Index::default() };
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("workspace Cargo.toml");
        // `members = [...]`, on one line or several.
        let start = manifest.find("members").expect("the workspace lists its members");
        let list = &manifest[start..];
        let list = &list[..list.find(']').expect("members = [...]")];
        index.members = list.split('"').skip(1).step_by(2).map(str::to_owned).collect();
        assert!(index.members.iter().any(|m| m == "uring-core"), "cannot read the members: {:?}", index.members);
        let main = std::fs::read_to_string(root.join("xtask/src/main.rs")).expect("xtask/src/main.rs");
        for line in main.lines() {
            if let Some((arms, _)) = line.trim().split_once("=>") {
                for arm in arms.split('|') {
                    if let Some(task) = arm.trim().strip_prefix('"').and_then(|a| a.strip_suffix('"')) {
                        index.tasks.insert(task.to_owned());
                    }
                }
            }
        }
        let mut files = Vec::new();
        walk(root, &mut files);
        for file in &files {
            for dir in file.strip_prefix(root).unwrap_or(file).parent().into_iter().flat_map(Path::iter) {
                index.stems.insert(dir.to_string_lossy().into_owned());
            }
            let name = file.file_name().unwrap_or_default().to_string_lossy().into_owned();
            index.files.insert(name.clone());
            if let Some(stem) = name.strip_suffix(".rs") {
                index.stems.insert(stem.to_owned());
                if let Ok(text) = std::fs::read_to_string(file) {
                    index.scan(&text);
                }
            }
        }
        index
    }

    /// Collects the definitions and environment literals of one source file.
    fn scan(&mut self, text: &str) {
        const KEYWORDS: &[&str] = &["fn", "struct", "enum", "trait", "type", "const", "static", "mod", "union"];
        for line in text.lines() {
            let code = line.trim();
            if code.starts_with("//") {
                continue;
            }
            // `<keyword> NAME` anywhere on the line (after `pub`, `unsafe`,
            // `async`, inside a macro body ...).
            let words: Vec<&str> =
                code.split(|c: char| !is_ident_char(c) && c != '!').filter(|w| !w.is_empty()).collect();
            for pair in words.windows(2) {
                if (KEYWORDS.contains(&pair[0]) || pair[0] == "macro_rules!") && is_ident(pair[1]) {
                    self.defs.insert(pair[1].to_owned());
                }
            }
            // A variant or a field: `Name,` `Name(..),` `Name {` `name: T,`
            // `Name = 3,` on a line of its own that ends a declaration
            // piece (`,`, `{`, `(`), never a statement (`;`).
            let rest = code.strip_prefix("pub(crate) ").or_else(|| code.strip_prefix("pub ")).unwrap_or(code);
            let name: String = rest.chars().take_while(|c| is_ident_char(*c)).collect();
            if is_ident(&name) && (code.ends_with(',') || code.ends_with('{') || code.ends_with('(')) {
                let after = rest[name.len()..].trim_start();
                let field = after.starts_with(':') && !after.starts_with("::");
                if field
                    || after.starts_with(',')
                    || after.starts_with('(')
                    || after.starts_with('{')
                    || after.starts_with('=')
                {
                    self.defs.insert(name);
                }
            }
            // The accessor macro's `name, set_name: T = path` pairs
            // (uring-sys/src/accessors.rs).
            if let Some((getter, rest)) = code.split_once(',')
                && let Some((setter, _)) = rest.split_once(':')
                && is_ident(getter.trim())
                && is_ident(setter.trim())
            {
                self.defs.insert(getter.trim().to_owned());
                self.defs.insert(setter.trim().to_owned());
            }
            // Environment variables: "NAME" literals.
            for literal in code.split('"').skip(1).step_by(2) {
                if literal.len() > 2
                    && literal.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                {
                    self.env_literals.insert(literal.to_owned());
                }
            }
        }
    }

    /// Whether `segment` of a code item is known (`None`) or why not.
    fn item_segment(&self, segment: &str, last: bool) -> Option<String> {
        if ALLOWED.contains(&segment) || self.defs.contains(segment) {
            return None;
        }
        if let Some(prefix) = segment.strip_suffix('*') {
            return if self.defs.iter().any(|d| d.starts_with(prefix)) {
                None
            } else {
                Some(format!("nothing defined starts with `{prefix}`"))
            };
        }
        // A crate (`uring_core`), a module's file or a test target.
        if self.members.iter().any(|m| m.replace('-', "_") == segment) || self.stems.contains(segment) {
            return None;
        }
        let upper = segment.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if upper {
            // errnos (`ENOBUFS`), libc limits and capabilities.
            let errno =
                segment.len() > 2 && segment.starts_with('E') && segment.chars().all(|c| c.is_ascii_uppercase());
            if errno || ["RLIMIT_", "CAP_", "SIG"].iter().any(|p| segment.starts_with(p)) {
                return None;
            }
            // A kernel flag's short form (`NO_MMAP` for IORING_SETUP_NO_MMAP).
            let suffix = format!("_{segment}");
            if self.defs.iter().any(|d| d.ends_with(&suffix)) || self.env_literals.contains(segment) {
                return None;
            }
        }
        let what = if last { "definition" } else { "type, trait or module" };
        Some(format!("no {what} named `{segment}` in the workspace's .rs files"))
    }

    /// Checks one code span; `Some(why)` when it names something missing.
    /// `lenient`: a relative path may be in any member, whatever the
    /// section (README names other crates' files in running text).
    fn check(&self, span: &str, krate: Option<&str>, lenient: bool) -> Option<String> {
        let span = span.trim();
        if let Some(task) = span.strip_prefix("cargo xtask ") {
            let task = task.split_whitespace().next().unwrap_or_default();
            if task.starts_with('<') || task.starts_with('[') || self.tasks.contains(task) {
                return None;
            }
            return Some(format!("`cargo xtask {task}` is not a task in xtask/src/main.rs"));
        }
        if span.starts_with("cargo ") {
            return self.check_cargo(span);
        }
        // Flag combinations: `SINGLE_ISSUER | DEFER_TASKRUN`.
        if span.contains(" | ") {
            let parts: Vec<&str> = span.split(" | ").map(str::trim).collect();
            if parts.iter().all(|p| is_ident(p)) {
                let problems: Vec<String> = parts.iter().filter_map(|p| self.check_item(p)).collect();
                return if problems.is_empty() { None } else { Some(problems.join("; ")) };
            }
        }
        // Our crates by name.
        if span.starts_with("uring-") && span.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return if self.members.iter().any(|m| m == span) {
                None
            } else {
                Some(format!("`{span}` is not a workspace member"))
            };
        }
        // Prose (`g` for a group, commands with arguments) and man pages
        // (`getsockname(2)`).
        let man_page = span.ends_with(')')
            && span[..span.len() - 1].ends_with(|c: char| c.is_ascii_digit())
            && span.contains('(')
            && span[span.rfind('(').unwrap_or(0) + 1..span.len() - 1].chars().all(|c| c.is_ascii_digit());
        if span.contains(char::is_whitespace) || span.chars().count() < 2 || man_page {
            return None;
        }
        if let Some(why) = self.check_path(span, krate, lenient) {
            return why;
        }
        self.check_item(span)
    }

    /// Whether crate `member` has a target `target` in one of `dirs`
    /// (`tests`, `benches`, `examples`: a file or a directory of that name).
    fn check_target(&self, member: &str, dirs: &[&str], target: &str) -> Option<String> {
        let dir = self.root.join(member);
        let found = target == "lib"
            || dirs
                .iter()
                .any(|d| dir.join(d).join(format!("{target}.rs")).exists() || dir.join(d).join(target).is_dir());
        if found { None } else { Some(format!("`{member}` has no {} target `{target}`", dirs.join("/"))) }
    }

    /// A `cargo` command other than `cargo xtask`: its `-p` must be a
    /// member and its `--test`, `--bench`, `--example` a target of it.
    fn check_cargo(&self, span: &str) -> Option<String> {
        let words: Vec<&str> = span.split_whitespace().collect();
        let mut member = None;
        let mut problems = Vec::new();
        for pair in words.windows(2) {
            let value = pair[1];
            if !value.chars().all(|c| is_ident_char(c) || c == '-') {
                continue; // `'*'`, `…`, a placeholder
            }
            match pair[0] {
                "-p" | "--package" => {
                    if self.members.iter().any(|m| m == value) {
                        member = Some(value);
                    } else {
                        problems.push(format!("`{value}` is not a workspace member"));
                    }
                }
                "--test" | "--bench" | "--example" => {
                    let dir = match pair[0] {
                        "--test" => "tests",
                        "--bench" => "benches",
                        _ => "examples",
                    };
                    if let Some(m) = member
                        && let Some(why) = self.check_target(m, &[dir], value)
                    {
                        problems.push(why);
                    }
                }
                _ => {}
            }
        }
        if problems.is_empty() { None } else { Some(problems.join("; ")) }
    }

    /// `Some(result)` when `span` is a path (result `None`: it exists).
    fn check_path(&self, span: &str, krate: Option<&str>, lenient: bool) -> Option<Option<String>> {
        const EXTENSIONS: &[&str] = &[".rs", ".md", ".toml", ".pin", ".c", ".h", ".lock", ".sh"];
        let has_ext = EXTENSIONS.iter().any(|e| span.ends_with(e));
        if !has_ext && !span.contains('/') {
            return None;
        }
        if span.contains(['<', '*', '…', ':', '(', '=', '[', '{'])
            || span.starts_with('/')
            || span.starts_with("target/")
            || span.starts_with('-')
            || FOREIGN_PATH_PREFIXES.iter().any(|p| span.starts_with(p))
        {
            return Some(None);
        }
        let rel = span.trim_end_matches('/');
        let mut bases = vec![self.root.clone()];
        if let Some(k) = krate {
            bases.push(self.root.join(k));
            bases.push(self.root.join(k).join("src"));
        }
        if bases.iter().any(|b| b.join(rel).exists()) {
            return Some(None);
        }
        if !rel.contains('/') {
            // A bare file name: anywhere in the workspace.
            return Some(if self.files.contains(rel) {
                None
            } else {
                Some(format!("no file named `{rel}` in the workspace"))
            });
        }
        let (first, rest) = rel.split_once('/').expect("contains /");
        if self.members.iter().any(|m| m == first) && !rest.contains('/') && !has_ext {
            // A target label: `uring-core/ring`, `uring-zcrx/throughput`.
            let target = rest.trim_start_matches("bench:").trim_start_matches("example:");
            return Some(self.check_target(first, &["tests", "benches", "examples"], target));
        }
        const WORKSPACE_DIRS: &[&str] = &["src", "tests", "benches", "examples", "docs", ".ci", ".cargo"];
        let ours = WORKSPACE_DIRS.contains(&first) || self.members.iter().any(|m| m == first);
        if !ours {
            // `crate/name` and other placeholders.
            return Some(None);
        }
        // Outside a crate's section (and anywhere in a lenient document),
        // `tests/x.rs` may be any crate's.
        if (krate.is_none() || lenient) && self.members.iter().any(|m| self.root.join(m).join(rel).exists()) {
            return Some(None);
        }
        let tried: Vec<String> = bases
            .iter()
            .map(|b| b.join(rel).strip_prefix(&self.root).map(|p| p.display().to_string()).unwrap_or_default())
            .map(|p| if p.is_empty() { ".".to_owned() } else { p })
            .collect();
        Some(Some(format!("no such file or directory (tried {})", tried.join(", "))))
    }

    /// Checks a span that may be a code item (`Ring::cq_position`,
    /// `buf.release()`, `group_for(size)`).
    fn check_item(&self, span: &str) -> Option<String> {
        let mut s = span.trim_start_matches('&').trim_end_matches('!');
        // Generic parameters: `Cqe<'a>`, `ZcrxReceiver<H: ZcrxHandler>`.
        if let Some(open) = s.find('<')
            && s.ends_with('>')
        {
            s = &s[..open];
        }
        if let Some(open) = s.find('(') {
            if !s.ends_with(')') {
                return None;
            }
            s = &s[..open];
        }
        // A method call on a value: `buf.release` checks `release`.
        if let Some((_, method)) = s.rsplit_once('.') {
            s = method;
        }
        let segments: Vec<&str> = s.split("::").collect();
        let shaped = |seg: &str| is_ident(seg) || seg.strip_suffix('*').is_some_and(is_ident);
        if segments.is_empty() || !segments.iter().all(|seg| shaped(seg)) {
            return None;
        }
        let n = segments.len();
        let mut problems = Vec::new();
        for (i, seg) in segments.iter().enumerate() {
            // Segments after an outside name (`io::Error`, `libc::syscall`)
            // are not ours to check.
            if ALLOWED.contains(seg) && i + 1 < n {
                return None;
            }
            if let Some(why) = self.item_segment(seg, i + 1 == n) {
                problems.push(why);
            }
        }
        if problems.is_empty() { None } else { Some(problems.join("; ")) }
    }
}

/// One inline code span of a document.
#[derive(Debug)]
struct Span {
    line: usize,
    text: String,
    /// The workspace member whose section it is in.
    krate: Option<String>,
}

/// The inline code spans of `text`, outside fenced blocks, each with its
/// line and section's crate.
fn spans(text: &str, members: &[String]) -> Vec<Span> {
    let mut out = Vec::new();
    let mut fenced = false;
    let mut krate: Option<String> = None;
    // An open span continued from the previous line: (line, text so far).
    let mut open: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            open = None;
            continue;
        }
        if fenced {
            continue;
        }
        if line.starts_with('#') && open.is_none() {
            let level = line.chars().take_while(|c| *c == '#').count();
            let title = line[level..].replace('`', "");
            let named = members.iter().find(|m| title.split_whitespace().any(|w| w == m.as_str()));
            if let Some(m) = named {
                krate = Some(m.clone());
            } else if level <= 2 || title.trim() == ".ci/run" {
                krate = None;
            }
            continue;
        }
        if line.trim().is_empty() {
            open = None;
        }
        let mut rest = line;
        while !rest.is_empty() {
            match &mut open {
                Some((start, acc)) => match rest.find('`') {
                    Some(end) => {
                        acc.push(' ');
                        acc.push_str(rest[..end].trim());
                        out.push(Span { line: *start, text: acc.clone(), krate: krate.clone() });
                        open = None;
                        rest = &rest[end + 1..];
                    }
                    None => {
                        acc.push(' ');
                        acc.push_str(rest.trim());
                        rest = "";
                    }
                },
                None => match rest.find('`') {
                    Some(start) => {
                        // Double backticks (`` x ``) and empty spans are rare
                        // and never names: skip them whole.
                        let after = &rest[start + 1..];
                        if let Some(inner) = after.strip_prefix('`') {
                            rest = inner.find("``").map_or("", |e| &inner[e + 2..]);
                            continue;
                        }
                        match after.find('`') {
                            Some(end) => {
                                out.push(Span { line: n, text: after[..end].to_owned(), krate: krate.clone() });
                                rest = &after[end + 1..];
                            }
                            None => {
                                open = Some((n, after.trim().to_owned()));
                                rest = "";
                            }
                        }
                    }
                    None => rest = "",
                },
            }
        }
    }
    out
}

/// `document:line: `span`: why` for everything `text` names that is gone.
fn check_document(index: &Index, document: &str, text: &str, lenient: bool) -> Vec<String> {
    spans(text, &index.members)
        .into_iter()
        .filter_map(|span| {
            index.check(&span.text, span.krate.as_deref(), lenient).map(|why| {
                let section = span.krate.as_deref().map(|k| format!(" (section {k})")).unwrap_or_default();
                format!("{document}:{}: `{}`{section}: {why}", span.line, span.text)
            })
        })
        .collect()
}

#[test]
fn documents_name_only_what_exists() {
    let root = workspace_root();
    let index = Index::build(&root);
    let mut failures = Vec::new();
    for (document, lenient) in DOCUMENTS {
        let text = std::fs::read_to_string(root.join(document)).expect("document exists");
        failures.extend(check_document(&index, document, &text, *lenient));
    }
    assert!(
        failures.is_empty(),
        "\n{} name(s) in the documents no longer exist in the workspace:\n  {}\n\n\
         If a name was renamed or moved, update the document to the new name or path. If it never \
         was ours (a std, libc, kernel or io-uring crate name), add it to ALLOWED in xtask/src/tidy.rs.\n",
        failures.len(),
        failures.join("\n  ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> Index {
        Index::build(&workspace_root())
    }

    #[test]
    fn rot_is_caught() {
        let index = index();
        let doc = "# t\n\n## uring-core\n\n- `src/gone.rs`: `Ring::no_such_method`, `NO_SUCH_CONST`,\n  \
                   `tests/stop.rs` and `src/keep.rs` exist; `socket::no_such_test`\n\n\
                   ```\n`src/in_a_fence.rs`\n```\n`cargo xtask no-such-task` `uring-zcrx/no_bench`\n";
        let failures = check_document(&index, "T.md", doc, false);
        let joined = failures.join("\n");
        assert!(joined.contains("T.md:5: `src/gone.rs` (section uring-core): no such file"), "{joined}");
        assert!(joined.contains("T.md:5: `Ring::no_such_method`"), "{joined}");
        assert!(joined.contains("`no_such_method`"), "{joined}");
        assert!(joined.contains("T.md:5: `NO_SUCH_CONST`"), "{joined}");
        assert!(joined.contains("T.md:6: `socket::no_such_test`"), "{joined}");
        assert!(joined.contains("`cargo xtask no-such-task`"), "{joined}");
        assert!(joined.contains("`uring-zcrx/no_bench`"), "{joined}");
        assert!(
            !joined.contains("in_a_fence") && !joined.contains("stop.rs") && !joined.contains("keep.rs"),
            "{joined}"
        );
        assert_eq!(failures.len(), 6, "{joined}");
        for rot in [
            "SINGLE_ISSUER | NO_SUCH_FLAG",
            "NoSuchType<'a>",
            "uring-nothing",
            "cargo bench -p uring-buffers --bench no_such_bench",
            "cargo test -p uring-nothing",
            "cargo run -p uring-ops --example no_such_example",
        ] {
            assert!(index.check(rot, Some("uring-core"), true).is_some(), "{rot}");
        }
    }

    #[test]
    fn what_exists_passes() {
        let index = index();
        for span in [
            "Ring::cq_position",
            "BufferSelection::vouch",
            "LayerData::PAYLOAD_MAX",
            "uring_core::Layer::*",
            "IORING_SETUP_R_DISABLED",
            "NO_MMAP",
            "buf.release()",
            "Error::LockedMemory",
            "uring-core/src/ring.rs",
            "cargo xtask vm-test",
            "cargo xtask deps",
            "uring-zcrx/throughput",
            "io::Error",
            "URING_ZCRX_IFNAME",
            "SINGLE_ISSUER | DEFER_TASKRUN",
            "Cqe<'a>",
            "uring-buffers",
            "cargo bench -p uring-buffers --bench bufring",
            "cargo test -p uring-zcrx --test nic -- --nocapture",
            "cargo bench -p uring-zcrx --bench …",
        ] {
            assert_eq!(index.check(span, None, false), None, "{span}");
        }
        assert_eq!(index.check("src/keep.rs", Some("uring-core"), false), None);
        assert!(index.check("src/keep.rs", Some("uring-ops"), false).is_some());
        assert_eq!(index.check("src/keep.rs", Some("uring-ops"), true), None);
        for prose in ["g", "getsockname(2)", "cargo test -p uring-core", "crate/name", "/dev/port", "target/asan"] {
            assert_eq!(index.check(prose, Some("uring-core"), false), None, "{prose}");
        }
    }

    /// How much of each document the check covers: every span with its
    /// last name changed, and which changes go unnoticed (commands, crate
    /// names of other projects, errnos...). A tuning aid:
    /// `cargo test -p xtask mutation_coverage -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn mutation_coverage() {
        let index = index();
        for (doc, lenient) in DOCUMENTS {
            let text = std::fs::read_to_string(workspace_root().join(doc)).unwrap();
            let mut caught = 0;
            let mut missed = Vec::new();
            for span in spans(&text, &index.members) {
                let t = span.text.trim();
                let mutated = if let Some(i) = t.rfind(|c: char| is_ident_char(c)) {
                    format!("{}Q{}", &t[..=i], &t[i + 1..])
                } else {
                    continue;
                };
                if index.check(&mutated, span.krate.as_deref(), *lenient).is_some() {
                    caught += 1;
                } else {
                    missed.push(format!("{}: {t}", span.line));
                }
            }
            println!("{doc}: caught {caught}, missed {}:\n{}", missed.len(), missed.join("\n"));
        }
    }

    #[test]
    fn spans_cross_lines_and_skip_fences() {
        let s = spans("a `one\n  two` b\n```\n`x`\n```\n`three`", &[]);
        let got: Vec<(usize, &str)> = s.iter().map(|s| (s.line, s.text.as_str())).collect();
        assert_eq!(got, [(1, "one two"), (6, "three")]);
    }
}
