//! Boot-time fault injection for the VMM's own tests, chosen with `ktest=NAME` on the
//! kernel command line. Each one makes the guest misbehave in one defined way so the tests
//! can check that l4vmm reports it with the right exit status.

use crate::arch;

/// Runs the named test; returns only for an unknown name.
pub fn run(name: &str) {
    crate::kprintln!("l4: ktest=", name);
    match name {
        // An exception with no IDT: #UD -> #GP -> #DF -> triple fault (a shutdown exit).
        "triple-fault" => arch::ktest::triple_fault(),
        // Jump to guest-physical memory that no device or RAM backs: KVM cannot fetch the
        // instruction and reports an internal (emulation) error.
        "bad-fetch" => arch::ktest::bad_fetch(),
        // Spin forever with interrupts off (only --timeout or a signal ends it).
        "spin" => arch::ktest::spin(),
        // Halt forever with interrupts off: the vCPU sleeps inside KVM.
        "hang" => arch::ktest::hang(),
        "panic" => panic!("ktest=panic"),
        // Every kind of device access l4vmm does not expect, then a clean exit 0.
        "hostile" => arch::ktest::hostile(),
        // One 8-byte write across a page boundary, read back (exit 0 if it arrived whole):
        // with a gdb watchpoint on those bytes it is two MMIO fragments (tests/gdb.rs).
        "straddle" => arch::ktest::straddle(),
        // Port writes as fast as the vCPU can make them, for ever (--timeout ends it).
        "flood" => arch::ktest::flood(),
        // The interrupt flag, checked: a fast timer, long stretches with interrupts off
        // full of VM exits, each followed by a short window with them on. An interrupt taken inside a
        // stretch is the host's fault: the kernel survives it and exits 5 (HOST_FAULT).
        "irq-mask" => {
            arch::init_cpu();
            arch::ktest::irq_mask()
        }
        // A page fault in ring 0 with the IDT set up: the kernel's fault report.
        "kernel-fault" => {
            arch::init_cpu();
            arch::ktest::kernel_page_fault()
        }
        // One instruction of each kind a debugger steps over (cpuid, MSRs, CR3, a fault,
        // sti; hlt, the exit), after a write gdb can watch: see tests/gdb.rs.
        "steps" => {
            arch::init_cpu();
            arch::ktest::steps()
        }
        // How long a 4 KiB copy takes in ring 0 with each kind of move (exit 0).
        "copy" => arch::ktest::copy(),
        _ => {
            if let Some(code) = name.strip_prefix("exit=").and_then(|c| c.parse::<u8>().ok()) {
                arch::exit(code);
            }
            crate::kprintln!("l4: unknown ktest '", name, "', ignored");
        }
    }
}
