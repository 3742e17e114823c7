//! The module layering of the kernel and of l4vmm: which source file imports which, and
//! whether any of them import each other in a circle (a lower layer importing an upper
//! one). This is the project's own checker (docs/ARCHITECTURE.md, "Layers"): it reads
//! every `use` (with its `{...}` trees) and every `crate::`/`super::` path in code, maps
//! each to the module file it names, and reports the strongly connected components of
//! that graph. Test code (`#[cfg(test)]` modules and `*_tests.rs`) is left out: a test
//! module may import what it tests. Not seen: a bare `child::item` path in code (a
//! parent's use of the modules it declares, which it owns), and what a `pub use`
//! re-exports is attributed to the module that re-exports it. The kernel's library
//! (lib.rs) and binary (main.rs) roots are one node.
//!
//! Neither l4vmm nor the kernel may have a cycle. The kernel's object types live in the
//! modules of their concepts, below kernel.rs (which holds their tables), and the
//! operations on them are `impl Kernel` blocks above it (docs/ARCHITECTURE.md, "Layers").

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

/// A crate's modules by file: module path ("" for the root, "a::b") -> source.
fn modules(src: &Path) -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("read source dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(src, &mut files);
    let mut out = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(src).unwrap().with_extension("");
        let mut parts: Vec<String> = rel.iter().map(|s| s.to_string_lossy().to_string()).collect();
        if parts.last().is_some_and(|l| l.ends_with("_tests")) {
            continue;
        }
        if matches!(parts.last().map(String::as_str), Some("mod" | "main" | "lib")) {
            parts.pop();
        }
        // A package with a library and a binary (the kernel): both roots are "".
        let text = std::fs::read_to_string(&f).expect("read source");
        out.entry(parts.join("::")).or_insert_with(String::new).push_str(&text);
    }
    out
}

/// The code without comments, string contents and `#[cfg(test)]` items.
fn code_only(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let b = src.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            i += 2;
            while i < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') {
            // A char literal ('x', '\n', '\''); lifetimes are left alone.
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    // A `#[cfg(test)]` item: drop from the attribute to the end of its braces or `;`.
    let mut kept = String::new();
    let mut rest = out.as_str();
    while let Some(at) = rest.find("#[cfg(test)]") {
        kept.push_str(&rest[..at]);
        let after = &rest[at..];
        let (mut depth, mut end) = (0i32, after.len());
        for (j, ch) in after.char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = j + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = j + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    kept.push_str(rest);
    kept
}

/// The paths a `use` tree names: "crate::a::{b, c::{d, self}}" -> crate::a::b, crate::a::c::d, crate::a::c.
fn expand(tree: &str) -> Vec<String> {
    // `X as Y` -> `X@Y`, then no whitespace.
    let tree: String = tree.split_whitespace().collect::<Vec<_>>().join(" ").replace(" as ", "@");
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let mut out = Vec::new();
    fn go(prefix: &str, t: &str, out: &mut Vec<String>) {
        if let Some(open) = t.find('{') {
            let head = &t[..open];
            let inner = &t[open + 1..t.rfind('}').unwrap_or(t.len())];
            let mut depth = 0;
            let mut start = 0;
            let p = format!("{prefix}{head}");
            for (j, ch) in inner.char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        go(&p, &inner[start..j], out);
                        start = j + 1;
                    }
                    _ => {}
                }
            }
            go(&p, &inner[start..], out);
        } else if !t.is_empty() {
            let t = t.split('@').next().unwrap_or(t);
            let full = format!("{prefix}{t}");
            out.push(full.trim_end_matches("::self").trim_end_matches("::*").to_string());
        }
    }
    go("", &tree, &mut out);
    out
}

/// Module paths this module's code names, resolved against `known` (longest prefix).
fn imports(module: &str, code: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let here: Vec<&str> = if module.is_empty() { vec![] } else { module.split("::").collect() };
    // Child modules declared here (`mod x;`), which a bare `x::...` path names.
    let children: BTreeSet<String> = code
        .split(';')
        .filter_map(|s| {
            let s = s.trim();
            let s = s.strip_prefix("pub(crate) ").or_else(|| s.strip_prefix("pub ")).unwrap_or(s);
            s.rsplit('\n').next().and_then(|l| l.trim().strip_prefix("mod ")).map(|m| m.trim().to_string())
        })
        .collect();
    let mut paths = Vec::new();
    // `use` statements.
    for stmt in code.split(';') {
        let s = stmt.trim_start();
        let body = s.lines().map(str::trim).collect::<Vec<_>>().join(" ");
        let body = body.trim();
        let Some(at) = body.find("use ").filter(|&at| {
            let before = &body[..at];
            before.is_empty() || before.ends_with("pub ") || before.ends_with("pub(crate) ") || before.ends_with('}')
        }) else {
            continue;
        };
        // `use` after the end of a previous block on the same "statement" split.
        let tree = body[at + 4..].trim();
        if tree.starts_with('{') || tree.contains('(') {
            continue;
        }
        paths.extend(expand(tree));
    }
    // Paths in code: `crate::a::b`, `super::a`.
    for key in ["crate::", "super::"] {
        let mut rest = code;
        while let Some(at) = rest.find(key) {
            let prev = rest[..at].chars().last();
            let tail = &rest[at..];
            let end = tail.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(tail.len());
            // (`crate::{...}` is a use tree, read above.)
            if !prev.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') && end > key.len() {
                paths.push(tail[..end].trim_end_matches(':').to_string());
            }
            rest = &tail[end.max(1)..];
        }
    }
    let mut out = BTreeSet::new();
    for p in paths {
        let mut segs: Vec<&str> = p.split("::").filter(|s| !s.is_empty()).collect();
        let mut base: Vec<&str> = match segs.first().copied() {
            Some("crate") => {
                segs.remove(0);
                vec![]
            }
            Some("self") => {
                segs.remove(0);
                here.clone()
            }
            Some("super") => {
                let mut b = here.clone();
                while segs.first() == Some(&"super") {
                    segs.remove(0);
                    b.pop();
                }
                b
            }
            Some(first) if children.contains(first) => here.clone(),
            _ => continue, // another crate, or a name in scope
        };
        // The longest prefix that is a module file.
        let mut best = None;
        for n in 0..=segs.len() {
            let cand = base.iter().chain(segs[..n].iter()).copied().collect::<Vec<_>>().join("::");
            if known.contains(&cand) {
                best = Some(cand);
            }
        }
        base.clear();
        if let Some(m) = best.filter(|m| m != module) {
            out.insert(m);
        }
    }
    out
}

fn graph(src: &Path) -> Graph {
    let mods = modules(src);
    let known: BTreeSet<String> = mods.keys().cloned().collect();
    mods.iter().map(|(m, s)| (m.clone(), imports(m, &code_only(s), &known))).collect()
}

/// The strongly connected components with more than one module (Tarjan).
fn cycles(g: &Graph) -> Vec<Vec<String>> {
    struct St<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut St<'a>, v: &'a str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on.insert(v);
        let g = s.g;
        for w in g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s = St { g, index: BTreeMap::new(), low: BTreeMap::new(), stack: vec![], on: BTreeSet::new(), out: vec![] };
    for v in g.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out.sort();
    s.out
}

/// One import of each cycle, to say where it is: `a -> b` edges inside the component.
fn describe(g: &Graph, comp: &[String]) -> String {
    let set: BTreeSet<&String> = comp.iter().collect();
    let mut edges = Vec::new();
    for m in comp {
        for w in g.get(m).into_iter().flatten().filter(|w| set.contains(w)) {
            edges.push(format!("{m} -> {w}"));
        }
    }
    format!("[{}]: {}", comp.join(", "), edges.join("; "))
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn l4vmm_has_no_import_cycle() {
    let g = graph(&root().join("vmm/src"));
    assert!(g.len() > 20 && g.contains_key("gdb::target"), "the checker found l4vmm's modules: {:?}", g.keys());
    let found = cycles(&g);
    let text: Vec<String> = found.iter().map(|c| describe(&g, c)).collect();
    assert!(found.is_empty(), "import cycles in vmm/src:\n{}", text.join("\n"));
}

#[test]
fn the_kernel_has_no_import_cycle() {
    let g = graph(&root().join("guest-kernel/src"));
    assert!(
        g.len() > 30 && g.contains_key("arch::x86_64::trap") && g["ipc::slowpath"].contains("kernel"),
        "the checker found the kernel's modules and their imports: {:?}",
        g.keys()
    );
    let found = cycles(&g);
    let text: Vec<String> = found.iter().map(|c| describe(&g, c)).collect();
    assert!(found.is_empty(), "import cycles in guest-kernel/src:\n{}", text.join("\n"));
}

/// The x86 registers and trap-frame fields, as the portable kernel would name them.
const X86_REGS: &[&str] = &[
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
    "rip", "rflags", "cs", "ss", "vector", "error",
];

/// The places in `code` where a register is named as a field (`.rax`, `rax:`; the trap
/// frame's `.vector` and `.error`), and the arch constants.
fn names_registers(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    for (line_no, line) in code.lines().enumerate() {
        for reg in X86_REGS {
            let mut from = 0;
            while let Some(at) = line[from..].find(reg) {
                let (start, end) = (from + at, from + at + reg.len());
                from = end;
                let before = line[..start].chars().next_back();
                let after = line[end..].chars().next();
                if before.is_some_and(ident) || after.is_some_and(ident) {
                    continue;
                }
                // `name:` (a struct literal or pattern) only for the registers: a
                // parameter may be called `vector` or `error`.
                let register = !matches!(*reg, "vector" | "error");
                let rest = line[end..].trim_start();
                let field = before == Some('.') || register && rest.starts_with(':') && !rest.starts_with("::");
                if field {
                    found.push(format!("line {}: {}", line_no + 1, line.trim()));
                }
            }
        }
        for c in ["USER_CS", "USER_SS", "USER_RFLAGS"] {
            if line.contains(c) {
                found.push(format!("line {}: {}", line_no + 1, line.trim()));
            }
        }
    }
    found
}

/// The portable kernel's modules (the library: every module but the binary's), with
/// their code (comments and strings blanked).
fn portable_modules() -> Vec<(String, String)> {
    let src = root().join("guest-kernel/src");
    let main = std::fs::read_to_string(src.join("main.rs")).expect("main.rs");
    // The binary's own modules (`mod x;` in main.rs).
    let binary: BTreeSet<String> = code_only(&main)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("mod ").map(|m| m.trim_end_matches(';').trim().to_string()))
        .collect();
    assert!(binary.contains("arch"), "main.rs declares the arch layer: {binary:?}");
    let out: Vec<(String, String)> = modules(&src)
        .into_iter()
        .filter(|(module, _)| !module.is_empty() && !binary.contains(module.split("::").next().unwrap_or("")))
        .map(|(module, text)| (module, code_only(&text)))
        .collect();
    assert!(out.len() > 20, "the check saw the portable kernel's modules ({})", out.len());
    out
}

/// The portable kernel (but `machine`, the arch boundary) names no x86 register: it
/// reaches a thread's registers through `machine::UserRegs`'s methods, which name what
/// they carry.
#[test]
fn the_portable_kernel_names_no_x86_register_outside_the_machine_module() {
    let mut offenders = Vec::new();
    for (module, code) in portable_modules() {
        if module == "machine" {
            continue;
        }
        for hit in names_registers(&code) {
            offenders.push(format!("{module}: {hit}"));
        }
    }
    assert!(offenders.is_empty(), "x86 registers named outside machine.rs:\n{}", offenders.join("\n"));
    // The check sees what it looks for.
    let probe = code_only("fn f(t: &mut T) { t.regs.rdi = 1; let r = R { rip: 0 }; let x = a.rax_like; }\n");
    assert_eq!(names_registers(&probe).len(), 2, "{:?}", names_registers(&probe));
}

/// The portable kernel denies `unsafe` (lib.rs), and only the IPC fast path allows it
/// back (its tables indexed without bounds checks: docs/DECISIONS.md, "The fast path
/// indexes without bounds checks").
#[test]
fn the_portable_kernel_has_unsafe_only_in_the_fast_path() {
    let lib = code_only(&std::fs::read_to_string(root().join("guest-kernel/src/lib.rs")).expect("lib.rs"));
    assert!(lib.contains("#![deny(unsafe_code)]"), "lib.rs denies unsafe code");
    let allowing: Vec<String> = portable_modules()
        .into_iter()
        .filter(|(_, code)| code.contains("allow(unsafe_code)"))
        .map(|(m, _)| m)
        .collect();
    assert_eq!(allowing, ["ipc::fastpath"], "modules that allow unsafe code");
}

/// The checker itself: it sees a cycle through a brace tree, `super::` and a path in
/// code, and none where there is none.
#[test]
fn the_checker_sees_cycles_through_every_kind_of_path() {
    let known: BTreeSet<String> = ["", "a", "a::b", "c"].iter().map(|s| s.to_string()).collect();
    let code_a = code_only("pub mod b;\nuse crate::c::{self, X};\n// use crate::nothing;\n");
    let code_b = code_only("fn f() { super::super::c::g(); let s = \"crate::a\"; }\n");
    let code_c = code_only("use crate::{a::b::Y};\n#[cfg(test)]\nmod tests { use crate::a; }\n");
    let g: Graph = [
        ("a".to_string(), imports("a", &code_a, &known)),
        ("a::b".to_string(), imports("a::b", &code_b, &known)),
        ("c".to_string(), imports("c", &code_c, &known)),
    ]
    .into_iter()
    .collect();
    assert_eq!(g["a"], ["c".to_string()].into_iter().collect());
    assert_eq!(g["a::b"], ["c".to_string()].into_iter().collect());
    assert_eq!(g["c"], ["a::b".to_string()].into_iter().collect());
    assert_eq!(cycles(&g), vec![vec!["a::b".to_string(), "c".to_string()]]);
    let acyclic: Graph = [("a".to_string(), g["a"].clone()), ("c".to_string(), BTreeSet::new())].into_iter().collect();
    assert!(cycles(&acyclic).is_empty());
}
