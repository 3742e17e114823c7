//! Mechanical checks on the kernel ELF: no SSE arithmetic (and none of the other
//! instructions that kill a VM whose ring 0 runs in KVM's emulator, as on PVM hosts) in any
//! code the kernel can execute.
//!
//! "Can execute" is computed from the disassembly: every function reachable from the PVH
//! entry point through calls, jumps and address references (direct, RIP-relative or
//! absolute immediates). One kind of edge is not followed: from core's panic-message
//! builders (`core::panicking::*`, `core::slice::index::*`, ...) to `core::fmt`. Those only
//! put `fmt` function pointers into the `fmt::Arguments` they hand to the panic handler, and
//! the kernel's panic handler never formats (it prints the literal message, if any). The
//! handler itself is checked like any other function: if it ever reached `core::fmt`, the
//! SSE in there would fail this test.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::Command;

use common::kernel_elf;

/// SSE instructions that KVM's emulator does execute: plain moves and FXSAVE/FXRSTOR.
const ALLOWED_SSE: [&str; 6] = ["movups", "movaps", "movdqa", "movdqu", "fxsave", "fxrstor"];
/// Instructions that are no SSE but still kill (or silently mis-execute in) the emulator.
const FORBIDDEN: [&str; 9] = ["popcnt", "crc32", "rdtscp", "invpcid", "xgetbv", "vmcall", "vmmcall", "tzcnt", "lzcnt"];

struct Function {
    start: u64,
    end: u64,
    insns: Vec<String>,
}

fn objdump(extra: &[&str]) -> BTreeMap<String, Function> {
    let out = Command::new("objdump")
        .args(["-d", "-C", "-w", "--no-show-raw-insn"])
        .args(extra)
        .arg(kernel_elf())
        .output()
        .expect("objdump (binutils) must be installed");
    assert!(out.status.success(), "objdump failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut funcs: BTreeMap<String, Function> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some((addr, rest)) = line.split_once(" <") {
            if let (Ok(a), Some(name)) = (u64::from_str_radix(addr.trim(), 16), rest.strip_suffix(">:")) {
                funcs.insert(name.to_string(), Function { start: a, end: a, insns: Vec::new() });
                current = Some(name.to_string());
                continue;
            }
        }
        let Some(name) = &current else { continue };
        let Some((addr, insn)) = line.split_once(":\t") else {
            continue;
        };
        let Ok(a) = u64::from_str_radix(addr.trim(), 16) else {
            continue;
        };
        let f = funcs.get_mut(name).expect("current function");
        f.end = a + 1;
        f.insns.push(insn.trim().to_string());
    }
    funcs
}

/// The kernel's functions. `pvh_start` is 32-bit code (the PVH entry runs in protected
/// mode), so it is decoded as such; everything else is 64-bit.
fn disassemble() -> BTreeMap<String, Function> {
    let mut funcs = objdump(&[]);
    let entry32 = objdump(&["-M", "i386", "--section", ".boot"]);
    let pvh = entry32.into_iter().find(|(n, _)| n == "pvh_start").expect("pvh_start in .boot").1;
    funcs.insert("pvh_start".into(), pvh);
    funcs
}

/// The image's allocated data (virtual address, bytes), to follow pointers stored in it.
struct Data(Vec<(u64, Vec<u8>)>);

impl Data {
    fn load() -> Self {
        let bytes = std::fs::read(kernel_elf()).expect("read kernel");
        let elf = goblin::elf::Elf::parse(&bytes).expect("parse kernel");
        let mut out = Vec::new();
        for sh in &elf.section_headers {
            let alloc = sh.sh_flags & u64::from(goblin::elf::section_header::SHF_ALLOC) != 0;
            let exec = sh.sh_flags & u64::from(goblin::elf::section_header::SHF_EXECINSTR) != 0;
            if alloc && !exec && sh.sh_type == goblin::elf::section_header::SHT_PROGBITS {
                let r = sh.sh_offset as usize..(sh.sh_offset + sh.sh_size) as usize;
                out.push((sh.sh_addr, bytes[r].to_vec()));
            }
        }
        Data(out)
    }

    /// The 8-byte words stored in `[addr, addr + len)`.
    fn words(&self, addr: u64, len: u64) -> Vec<u64> {
        let mut words = Vec::new();
        for (base, bytes) in &self.0 {
            if addr < *base || addr >= base + bytes.len() as u64 {
                continue;
            }
            let mut off = (addr - base) as usize;
            while off + 8 <= bytes.len() && (off as u64) < addr - base + len {
                words.push(u64::from_le_bytes(bytes[off..off + 8].try_into().unwrap()));
                off += 8;
            }
        }
        words
    }
}

/// Names of the functions an instruction refers to: call/jump targets, immediates and
/// RIP-relative addresses that fall in a function, and function pointers stored in data
/// the instruction reads (a GOT slot: one word) or takes the address of (a vtable or a
/// table: the first 64 bytes, a deliberate over-approximation).
fn references<'a>(insn: &str, by_addr: &'a [(u64, u64, String)], data: &Data) -> Vec<&'a str> {
    let mut out = Vec::new();
    let lookup = |a: u64| by_addr.iter().find(|(s, e, _)| *s <= a && a < *e).map(|(_, _, n)| n.as_str());
    let span = if insn.starts_with("lea") { 64 } else { 8 };
    for tok in insn.split(|c: char| !c.is_ascii_hexdigit() && c != 'x') {
        let hex = tok.strip_prefix("0x").unwrap_or(tok);
        if hex.len() >= 6 {
            if let Ok(a) = u64::from_str_radix(hex, 16) {
                if let Some(n) = lookup(a) {
                    out.push(n);
                }
                out.extend(data.words(a, span).into_iter().filter_map(lookup));
            }
        }
    }
    out
}

fn is_panic_builder(name: &str) -> bool {
    [
        "core::panicking::",
        "core::slice::index::",
        "core::str::slice_error_fail",
        "core::result::unwrap_failed",
        "core::option::expect_failed",
        "core::option::unwrap_failed",
        "core::cell::panic_already",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

fn is_fmt(name: &str) -> bool {
    name.starts_with("core::fmt::") || name.starts_with("<core::fmt::") || name.contains(" as core::fmt::")
}

/// The instructions that reachable code must not contain, each with the path that reaches
/// it. `exempt_panic_fmt` switches the one exemption described above.
fn forbidden_reachable_instructions(exempt_panic_fmt: bool) -> Vec<String> {
    let funcs = disassemble();
    assert!(funcs.contains_key("pvh_start") && funcs.contains_key("kernel_main"), "unexpected disassembly");
    let by_addr: Vec<(u64, u64, String)> = funcs.iter().map(|(n, f)| (f.start, f.end, n.clone())).collect();
    let data = Data::load();

    let mut reached: HashSet<&str> = HashSet::new();
    let mut parent: HashMap<&str, &str> = HashMap::new();
    let mut todo = vec!["pvh_start"];
    while let Some(name) = todo.pop() {
        if !reached.insert(name) {
            continue;
        }
        for insn in &funcs[name].insns {
            for target in references(insn, &by_addr, &data) {
                if exempt_panic_fmt && is_panic_builder(name) && is_fmt(target) {
                    continue;
                }
                if !reached.contains(target) {
                    parent.entry(target).or_insert(name);
                    todo.push(target);
                }
            }
        }
    }
    // The analysis must see through the boot code and the GOT to the panic handler.
    for f in ["kernel_main", "core::panicking::panic_fmt", "__rustc::rust_begin_unwind"] {
        assert!(reached.contains(f), "the analysis does not reach {f}");
    }

    let mut bad = Vec::new();
    for name in &reached {
        for insn in &funcs[*name].insns {
            let mnemonic = insn.split_whitespace().next().unwrap_or("");
            let sse =
                insn.contains("%xmm") || insn.contains("%ymm") || insn.contains("%mm") || mnemonic.contains("mxcsr");
            if (sse && !ALLOWED_SSE.contains(&mnemonic)) || FORBIDDEN.contains(&mnemonic) {
                let mut path = vec![*name];
                while let Some(p) = parent.get(path.last().unwrap()) {
                    path.push(p);
                }
                bad.push(format!("{insn}  in {name}\n    reached via {}", path.join(" <- ")));
                break;
            }
        }
    }
    bad
}

#[test]
fn reachable_kernel_code_has_no_sse_arithmetic() {
    let bad = forbidden_reachable_instructions(true);
    assert!(
        bad.is_empty(),
        "ring-0 code the kernel can execute contains instructions that KVM's emulator cannot run:\n{}",
        bad.join("\n")
    );
}

/// The check itself finds SSE: without the panic exemption, core::fmt's SSE code (linked
/// for bounds-check panic messages) is reported, with the path that reaches it.
#[test]
fn the_sse_check_finds_core_fmt_without_the_panic_exemption() {
    let bad = forbidden_reachable_instructions(false);
    assert!(
        bad.iter().any(|b| b.contains("core::fmt") && b.contains("<- kernel_main <- boot_long <- pvh_start")),
        "{bad:#?}"
    );
}

#[test]
fn the_image_carries_a_pvh_note_and_loads_above_1mib() {
    let out = Command::new("readelf").args(["-n", "-l", "-W"]).arg(kernel_elf()).output().expect("readelf");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Xen") && text.contains("0x00000012"), "no XEN_ELFNOTE_PHYS32_ENTRY note:\n{text}");
    assert!(text.contains("NOTE"), "the note must be in a PT_NOTE segment:\n{text}");
}
