//! Claims in the documents that tests must back: every "Enforced" item of
//! docs/SECURITY.md names the tests that prove it, and each test it names exists.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("vmm/ has a parent").to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "target" && n != "corpus") {
                rust_files(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The name of the function a line declares (`fn NAME(` or `fn NAME<`), if it does.
fn declared(line: &str) -> Option<&str> {
    let rest = line.trim_start().split("fn ").nth(1)?;
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
    Some(&rest[..end])
}

/// Every test function in the project's Rust sources: a `fn` after `#[test]` (other
/// attributes and comments may come between), or any `fn` inside a `proptest!` block.
fn tests() -> BTreeSet<String> {
    let mut files = Vec::new();
    for d in ["tests", "vmm/src", "guest-kernel/src", "abi/src", "bench/src"] {
        rust_files(&repo().join(d), &mut files);
    }
    let mut names = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let (mut after_test, mut proptest_depth) = (false, 0i32);
        for line in text.lines() {
            let t = line.trim();
            if t.starts_with("proptest!") {
                proptest_depth = 0;
            }
            let in_proptest = proptest_depth > 0 || t.starts_with("proptest!");
            if let Some(name) = declared(line) {
                if after_test || in_proptest {
                    names.insert(name.to_string());
                }
                after_test = false;
            } else if t == "#[test]" {
                after_test = true;
            } else if !(t.is_empty() || t.starts_with("#[") || t.starts_with("//")) {
                after_test = false;
            }
            if in_proptest {
                proptest_depth += t.matches('{').count() as i32 - t.matches('}').count() as i32;
            }
        }
    }
    names
}

/// The items under each "**Enforced.**" of SECURITY.md: (first line number, text).
fn enforced_items(doc: &str) -> Result<Vec<(usize, String)>, String> {
    let mut items: Vec<(usize, String)> = Vec::new();
    let mut inside = false;
    for (i, line) in doc.lines().enumerate() {
        let n = i + 1;
        if line.starts_with("**Enforced.**") {
            inside = true;
            continue;
        }
        if line.starts_with("**Not yet.**") || line.starts_with("## ") {
            inside = false;
        }
        if !inside || line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("- ") {
            items.push((n, rest.to_string()));
        } else if line.starts_with("  ") && !items.is_empty() {
            let last = items.last_mut().expect("an item");
            last.1.push(' ');
            last.1.push_str(line.trim());
        } else {
            return Err(format!("SECURITY.md:{n}: an enforced claim outside a list item: {line}"));
        }
    }
    Ok(items)
}

/// Backticked words that look like test names: lower case, digits and at least three
/// underscores.
fn named_tests(item: &str) -> Vec<&str> {
    item.split('`')
        .skip(1)
        .step_by(2)
        .filter(|w| {
            w.matches('_').count() >= 3 && w.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
        .collect()
}

#[test]
fn every_enforced_claim_of_the_security_document_names_tests_that_exist() {
    let doc = std::fs::read_to_string(repo().join("docs/SECURITY.md")).expect("docs/SECURITY.md");
    let known = tests();
    assert!(known.len() > 100, "the scan found only {} tests: {known:?}", known.len());
    let items = enforced_items(&doc).unwrap_or_else(|e| panic!("{e}"));
    assert!(items.len() >= 20, "only {} enforced items found", items.len());
    let mut problems = Vec::new();
    for (line, item) in &items {
        let named = named_tests(item);
        if named.is_empty() {
            problems.push(format!("SECURITY.md:{line}: names no test: {}", &item[..item.len().min(80)]));
        }
        for t in named {
            if !known.contains(t) {
                problems.push(format!("SECURITY.md:{line}: no test is called `{t}`"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checker_sees_a_claim_without_a_test_and_a_misnamed_test() {
    let doc = "## 1\n\n**Enforced.**\n- *A* holds. Test: `a_real_test_name_here`.\n- *B* holds too.\n  \
               More of B.\n\n**Not yet.** C.\n";
    let items = enforced_items(doc).expect("well-formed");
    assert_eq!(items.len(), 2);
    assert_eq!(named_tests(&items[0].1), ["a_real_test_name_here"]);
    assert!(named_tests(&items[1].1).is_empty(), "{items:?}");
    assert!(enforced_items("**Enforced.** A claim in prose.\n").is_ok(), "the heading line itself is skipped");
    assert!(enforced_items("**Enforced.**\nA claim in prose.\n").is_err());
    assert!(tests().contains("the_checker_sees_a_claim_without_a_test_and_a_misnamed_test"));
    assert!(tests().contains("mutated_elfs_are_validated_or_refused_never_half_loaded"), "proptest functions count");
}
