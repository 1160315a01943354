//! The opcode coverage table (docs/coverage.md) matches the code: every opcode the
//! uapi defines has a row; every builder, ring method and test a row names
//! exists, and each builder's module uses the row's opcode.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The backticked items of one table cell.
fn items(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

#[test]
fn readme_table_matches_the_code() {
    let readme = read(&root().join("docs/coverage.md"));
    let begin = readme.find("<!-- ops-coverage:begin -->").expect("coverage table start marker");
    let end = readme.find("<!-- ops-coverage:end -->").expect("coverage table end marker");
    let src_dir = root().join("uring-ops/src");
    let sources: Vec<(String, String)> = std::fs::read_dir(&src_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), read(&p)))
        .collect();
    let module = |m: &str| sources.iter().find(|(n, _)| n == m).map(|(_, s)| s.as_str());
    let mut problems = Vec::new();
    let mut rows = Vec::new();
    for line in readme[begin..end].lines().filter(|l| l.starts_with("| `IORING_OP_")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (op, builders, methods, tests) = (items(cells[1])[0], items(cells[2]), items(cells[3]), cells[4]);
        rows.push(op.to_owned());
        if builders.is_empty() && !tests.contains("uring-zcrx") && !tests.contains("6.19") {
            problems.push(format!("{op}: no builder and no reason"));
        }
        for b in &builders {
            let (m, ty) = b.split_once("::").unwrap_or_else(|| panic!("{op}: builder `{b}` is not module::Type"));
            match module(m) {
                None => problems.push(format!("{op}: no module {m}")),
                Some(src) => {
                    if !src.contains(&format!("pub struct {ty} ")) && !src.contains(&format!("pub struct {ty}<")) {
                        problems.push(format!("{op}: no `pub struct {ty}` in src/{m}.rs"));
                    }
                    if !src.contains(&format!("sys::{op}")) && !src.contains(&format!("{op} ")) {
                        problems.push(format!("{op}: src/{m}.rs never uses {op}"));
                    }
                }
            }
        }
        for meth in &methods {
            let (tr, name) =
                meth.split_once("::").unwrap_or_else(|| panic!("{op}: method `{meth}` is not Trait::name"));
            let found = sources
                .iter()
                .any(|(_, s)| s.contains(&format!("pub trait {tr} ")) && s.contains(&format!("fn {name}")));
            if !found {
                problems.push(format!("{op}: no trait {tr} with fn {name}"));
            }
        }
        for t in items(tests).into_iter().filter(|t| t.contains("::")) {
            let (file, name) = t.split_once("::").unwrap();
            if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
                continue; // a type named in prose, not a test
            }
            let path = root().join("uring-ops/tests").join(format!("{file}.rs"));
            if !path.exists() || !read(&path).contains(&format!("fn {name}(")) {
                problems.push(format!("{op}: no test fn {name} in tests/{file}.rs"));
            }
        }
    }
    for (_, name) in uring_core::OPCODES {
        if !rows.iter().any(|r| r == name) {
            problems.push(format!("{name}: no row in docs/coverage.md's table"));
        }
    }
    assert!(rows.len() >= 60, "the table was not parsed: {} rows", rows.len());
    assert!(problems.is_empty(), "docs/coverage.md's table is out of date:\n{}", problems.join("\n"));
}
