//! vCPUs: set-up for the PVH entry, and the exit loop each vCPU thread runs.
//!
//! Invariants: a vCPU thread never panics on anything the guest does; it turns every exit
//! into either device emulation or exactly one [`Outcome`], reported once through
//! [`Shared::finish`]; it leaves its loop when `Shared::stop` is set and it is kicked out
//! of KVM_RUN by the kick signal.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_segment, kvm_sregs, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd};
use seccompiler::BpfProgram;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use crate::boot::layout::START_INFO;
use crate::devices::counter::Steps;
use crate::devices::{Devices, PioAction};
use crate::error::{Error, Result};
use crate::exit_status::Outcome;
use crate::gdb::control::{EventKind, VcpuPort};
use crate::paging::PagingMode;

/// State shared by the vCPU threads and the event loop.
pub struct Shared {
    /// Set by the event loop when the VM must stop.
    pub stop: AtomicBool,
    /// The first outcome any vCPU reported.
    outcome: Mutex<Option<Outcome>>,
    /// Written when an outcome is reported, to wake the event loop.
    pub wake: EventFd,
}

impl Shared {
    pub fn new() -> Result<Self> {
        Ok(Shared {
            stop: AtomicBool::new(false),
            outcome: Mutex::new(None),
            wake: EventFd::new(libc::EFD_NONBLOCK).map_err(Error::host("vcpu eventfd"))?,
        })
    }

    /// Records `outcome` (the first one wins) and wakes the event loop.
    pub fn finish(&self, outcome: Outcome) {
        if let Ok(mut o) = self.outcome.lock() {
            o.get_or_insert(outcome);
        }
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.wake.write(1);
    }

    /// The reported outcome, if any.
    pub fn outcome(&self) -> Option<Outcome> {
        self.outcome.lock().ok()?.clone()
    }
}

/// Sets the CPUID the guest sees: what KVM supports, with this vCPU's APIC ID.
pub fn set_cpuid(kvm: &Kvm, vcpu: &VcpuFd, id: u8) -> Result<()> {
    let mut cpuid = kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).map_err(Error::kvm("get_supported_cpuid"))?;
    let mut has_lm = false;
    for e in cpuid.as_mut_slice() {
        match e.function {
            1 => e.ebx = (e.ebx & 0x00ff_ffff) | (u32::from(id) << 24),
            0xb => e.edx = u32::from(id),
            0x8000_0001 => has_lm = e.edx & (1 << 29) != 0,
            _ => {}
        }
    }
    if !has_lm {
        return Err(Error::KvmCapability("long mode in CPUID (0x80000001 EDX.LM)"));
    }
    vcpu.set_cpuid2(&cpuid).map_err(Error::kvm("set_cpuid2"))
}

/// Puts the boot vCPU in the state the PVH boot protocol specifies: 32-bit protected
/// mode, paging off, flat segments, `%ebx` = start info, at `entry`.
pub fn set_pvh_entry_state(vcpu: &VcpuFd, entry: u64) -> Result<()> {
    let seg = |selector: u16, type_: u8| kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl: 0,
        db: 1,
        s: 1,
        l: 0,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    };
    let mut sregs: kvm_sregs = vcpu.get_sregs().map_err(Error::kvm("get_sregs"))?;
    sregs.cs = seg(0x08, 0xb);
    let data = seg(0x10, 0x3);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = kvm_segment { limit: 0x67, selector: 0x18, type_: 0xb, s: 0, db: 0, g: 0, ..seg(0x18, 0xb) };
    sregs.cr0 = 0x11; // PE | ET
    sregs.cr3 = 0;
    sregs.cr4 = 0;
    sregs.efer = 0;
    vcpu.set_sregs(&sregs).map_err(Error::kvm("set_sregs"))?;
    let regs = kvm_regs { rip: entry, rbx: START_INFO, rflags: 0x2, ..Default::default() };
    vcpu.set_regs(&regs).map_err(Error::kvm("set_regs"))?;
    let fpu = kvm_fpu { fcw: 0x37f, mxcsr: 0x1f80, ..Default::default() };
    vcpu.set_fpu(&fpu).map_err(Error::kvm("set_fpu"))
}

/// The most instructions `L4VMM_COUNT_TRACE` writes per vCPU (about 200 MB of text).
const TRACE_MAX: u64 = 10_000_000;

/// Runs one vCPU until the VM stops.
pub fn run_loop(
    mut vcpu: VcpuFd,
    id: u8,
    devices: Arc<Devices>,
    memory: GuestMemoryMmap,
    shared: Arc<Shared>,
    gdb: Option<VcpuPort>,
    filter: Option<Arc<BpfProgram>>,
) {
    // After gdb resumes a vCPU it runs at least once (a single step) before parking again.
    let mut resumed = false;
    // Ring-0 instructions counted since a CountStart marker (see `count_start`).
    let mut counting: Option<Steps> = None;
    // With L4VMM_COUNT_TRACE=FILE, the RIP of every counted instruction goes to FILE: an
    // exact profile of the kernel paths being counted.
    // At most TRACE_MAX lines: a window left open (until the kernel's watchdog) must not
    // fill the disk.
    let mut trace =
        std::env::var_os("L4VMM_COUNT_TRACE").and_then(|p| std::fs::File::create(p).ok()).map(std::io::BufWriter::new);
    let mut traced: u64 = 0;
    // Confined before the guest's first instruction on this vCPU.
    if let Some(p) = &filter {
        if let Err(e) = crate::seccomp::install(p) {
            shared.finish(Outcome::RunFailed(e.to_string()));
            return;
        }
    }
    // Whether the last exit was port I/O or MMIO that KVM completes on the next KVM_RUN.
    let mut io_pending = false;
    while !shared.stop.load(Ordering::SeqCst) {
        if let Some(port) = &gdb {
            if !resumed && port.pause_requested() {
                // Never park in the middle of an instruction: gdb would see (and might
                // change) registers of a half-done `in`/`out`.
                if io_pending {
                    complete_pending_io(&mut vcpu, &devices, Some(port), &memory);
                    io_pending = false;
                }
                port.park(&mut vcpu, EventKind::Paused, &shared.stop);
                resumed = true;
                continue;
            }
        }
        if resumed && counting.take().is_some() {
            // gdb parked this vCPU in a counting window and now owns its guest-debug
            // state (breakpoints, steps): the count is lost, and the window's end must
            // not touch gdb's settings.
            log::info!("vCPU {id}: gdb took over guest debugging; this instruction count is lost");
        }
        resumed = false;
        let exit = vcpu.run();
        io_pending = matches!(
            exit,
            Ok(VcpuExit::IoOut(..) | VcpuExit::IoIn(..) | VcpuExit::MmioRead(..) | VcpuExit::MmioWrite(..))
        );
        let outcome = match exit {
            Ok(VcpuExit::IoOut(port, data)) => match devices.pio_write(port, data) {
                PioAction::Continue => None,
                PioAction::Exit(code) => Some(Outcome::GuestExit(code)),
                PioAction::CountStart => {
                    counting = count_start(&vcpu, gdb.is_some());
                    None
                }
                PioAction::CountStop => {
                    devices.set_count(count_stop(&vcpu, counting.take()));
                    None
                }
            },
            Ok(VcpuExit::IoIn(port, data)) => {
                devices.pio_read(port, data);
                None
            }
            Ok(VcpuExit::MmioRead(addr, data)) => {
                devices.mmio_unknown(addr, Some(data));
                None
            }
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                let data = data.to_vec();
                if let Some(w) = mmio_write(&devices, gdb.as_ref(), &memory, addr, &data) {
                    if let Some(port) = &gdb {
                        complete_pending_io(&mut vcpu, &devices, Some(port), &memory);
                        port.park(&mut vcpu, EventKind::PageWatch(w.gva), &shared.stop);
                        resumed = true;
                    }
                }
                None
            }
            Ok(VcpuExit::Debug(_)) if counting.is_some() => {
                // One single-step exit per instruction (but see `Steps`); count those in
                // ring 0.
                let (sregs, regs) = (vcpu.get_sregs(), vcpu.get_regs());
                if let (Some(steps), Ok(s), Ok(r)) = (counting.as_mut(), &sregs, &regs) {
                    let mode = PagingMode { cr0: s.cr0, cr3: s.cr3, efer: s.efer };
                    let ring0 = s.cs.selector & 3 == 0;
                    let extra = steps.step(r.rip, ring0, |at| {
                        let mut code = vec![0; 15];
                        let n = mode.read_virt(&memory, at, &mut code);
                        code.truncate(n);
                        code
                    });
                    // One line per counted instruction (where the step stopped after it):
                    // the one run without a stop of its own first.
                    for at in extra.into_iter().chain(ring0.then_some(r.rip)) {
                        if let (Some(t), true) = (trace.as_mut(), traced < TRACE_MAX) {
                            use std::io::Write;
                            let _ = writeln!(t, "{at:#x}");
                            traced += 1;
                            if traced == TRACE_MAX {
                                log::warn!(
                                    "vCPU {id}: L4VMM_COUNT_TRACE holds {TRACE_MAX} instructions; no more are written"
                                );
                            }
                        }
                    }
                }
                None
            }
            Ok(VcpuExit::Debug(arch)) => {
                let arch = arch;
                if let Some(port) = &gdb {
                    port.park(&mut vcpu, EventKind::Debug(arch), &shared.stop);
                    resumed = true;
                }
                None
            }
            // With the in-kernel irqchip HLT waits inside KVM; an exit here is spurious.
            Ok(VcpuExit::Hlt) | Ok(VcpuExit::IrqWindowOpen) | Ok(VcpuExit::Intr) => None,
            Ok(VcpuExit::Shutdown) => {
                let lost = if in_reset_state(&vcpu) {
                    "\n  the state before the triple fault is lost: KVM on AMD (SVM) resets a vCPU when it \
                     intercepts the shutdown (on Intel and PVM hosts it is kept); the registers below are the \
                     reset state"
                } else {
                    ""
                };
                eprintln!("l4vmm: vCPU {id}: guest triple fault (shutdown){lost}\n{}", dump_state(&vcpu, &memory));
                Some(Outcome::Shutdown)
            }
            Ok(VcpuExit::SystemEvent(kind, _)) => {
                eprintln!(
                    "l4vmm: vCPU {id}: guest requested system event {kind} (shutdown/reset)\n{}",
                    dump_state(&vcpu, &memory)
                );
                Some(Outcome::Shutdown)
            }
            Ok(VcpuExit::InternalError) => {
                let internal = vcpu.get_kvm_run();
                // SAFETY: for KVM_EXIT_INTERNAL_ERROR the `internal` member of the exit union
                // is the one KVM filled in; it is plain integers.
                let (suberror, ndata, data) = unsafe {
                    let i = internal.__bindgen_anon_1.internal;
                    (i.suberror, i.ndata, i.data)
                };
                let kind = match suberror {
                    1 => "instruction emulation failure",
                    2 => "simultaneous exceptions",
                    3 => "delivery event failure",
                    4 => "unexpected exit reason",
                    _ => "internal error",
                };
                let words: Vec<String> = data.iter().take(ndata.min(16) as usize).map(|w| format!("{w:#x}")).collect();
                eprintln!(
                    "l4vmm: vCPU {id}: KVM internal error: {kind} (suberror {suberror}, data [{}])\n{}",
                    words.join(", "),
                    dump_state(&vcpu, &memory)
                );
                Some(Outcome::InternalError)
            }
            Ok(VcpuExit::FailEntry(reason, cpu)) => {
                eprintln!(
                    "l4vmm: vCPU {id}: VM entry failed (reason {reason:#x}, host cpu {cpu})\n{}",
                    dump_state(&vcpu, &memory)
                );
                Some(Outcome::InternalError)
            }
            Ok(other) => {
                let what = format!("{other:?}");
                eprintln!("l4vmm: vCPU {id}: unexpected exit {what}\n{}", dump_state(&vcpu, &memory));
                Some(Outcome::InternalError)
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => None,
            Err(e) => Some(Outcome::RunFailed(format!("vCPU {id}: KVM_RUN: {e}"))),
        };
        if let Some(o) = outcome {
            shared.finish(o);
            break;
        }
        // A single step over port I/O or MMIO: the exit came in the middle of the
        // instruction. Complete it, and the step is done (KVM does not always report the
        // step's debug exit after completing I/O: PVM's emulator does not, so the step
        // would run on into the next instruction).
        if io_pending {
            if let Some(port) = gdb.as_ref().filter(|p| p.is_stepping()) {
                let arch = finish_io_step(&mut vcpu, &devices, port, &memory);
                io_pending = false;
                port.park(&mut vcpu, EventKind::Debug(arch), &shared.stop);
                resumed = true;
            }
        }
    }
}

/// Completes the instruction whose I/O l4vmm just served, without running further, and
/// returns the single-step stop it ends with: KVM's own debug exit where it reports one
/// after completing the I/O, else a single-step (DR6.BS) stop at the next instruction.
fn finish_io_step(
    vcpu: &mut VcpuFd,
    devices: &Devices,
    port: &VcpuPort,
    memory: &GuestMemoryMmap,
) -> kvm_bindings::kvm_debug_exit_arch {
    complete_pending_io(vcpu, devices, Some(port), memory).unwrap_or_else(|| kvm_bindings::kvm_debug_exit_arch {
        exception: 1,
        dr6: 0xffff_4ff0, // BS: a single-step trap
        pc: vcpu.get_regs().map(|r| r.rip).unwrap_or(0),
        ..Default::default()
    })
}

/// Serves a guest's MMIO write: to a page gdb traps for a watchpoint, performed on guest
/// RAM here (and the watch it hits returned); anywhere else nothing is mapped, and the
/// devices count it and ignore it.
fn mmio_write(
    devices: &Devices,
    gdb: Option<&VcpuPort>,
    memory: &GuestMemoryMmap,
    addr: u64,
    data: &[u8],
) -> Option<crate::gdb::watch::TrapWatch> {
    match gdb {
        Some(port) if port.traps().is_trapped(addr) => {
            let _ = vm_memory::Bytes::write_slice(memory, data, vm_memory::GuestAddress(addr));
            port.traps().hit(addr, data.len() as u64)
        }
        _ => {
            devices.mmio_unknown(addr, None);
            None
        }
    }
}

/// The most MMIO exits one instruction's completion may still make (KVM splits an access
/// into at most two fragments, one per page; the rest is margin).
const MAX_FRAGMENTS: usize = 4;

/// Starts counting ring-0 instructions by single-stepping (KVM_GUESTDBG_SINGLESTEP gives
/// one debug exit per executed instruction). Not while gdb owns guest debugging.
fn count_start(vcpu: &VcpuFd, gdb: bool) -> Option<Steps> {
    if gdb {
        return None;
    }
    let dbg = kvm_bindings::kvm_guest_debug {
        control: kvm_bindings::KVM_GUESTDBG_ENABLE | kvm_bindings::KVM_GUESTDBG_SINGLESTEP,
        ..Default::default()
    };
    vcpu.set_guest_debug(&dbg).ok().map(|_| Steps::default())
}

/// Stops counting; the count, or `None` if counting was not on or saw no instruction.
/// Guest debugging is switched off only if counting had switched it on: otherwise it may
/// be gdb's (breakpoints set while no count runs must survive every window's end).
fn count_stop(vcpu: &VcpuFd, count: Option<Steps>) -> Option<u64> {
    if count.is_some() {
        let _ = vcpu.set_guest_debug(&kvm_bindings::kvm_guest_debug::default());
    }
    count.map(|s| s.count()).filter(|&n| n > 0)
}

/// Lets KVM finish the instruction whose port I/O or MMIO l4vmm just served, without
/// running further: KVM_RUN with `immediate_exit` completes it and returns EINTR. An access
/// across two pages that are both MMIO (two pages a watchpoint traps) comes in two
/// fragments, and that KVM_RUN returns the second as one more MMIO exit: it is served here
/// like the first (a watch it hits belongs to the stop already under way), or its bytes
/// would be lost. Returns the debug exit the completion ended with, if KVM reported one
/// (a single step).
fn complete_pending_io(
    vcpu: &mut VcpuFd,
    devices: &Devices,
    gdb: Option<&VcpuPort>,
    memory: &GuestMemoryMmap,
) -> Option<kvm_bindings::kvm_debug_exit_arch> {
    vcpu.set_kvm_immediate_exit(1);
    let mut debug = None;
    for _ in 0..MAX_FRAGMENTS {
        match vcpu.run() {
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                let data = data.to_vec();
                let _ = mmio_write(devices, gdb, memory, addr, &data);
            }
            Ok(VcpuExit::MmioRead(addr, data)) => devices.mmio_unknown(addr, Some(data)),
            Ok(VcpuExit::Debug(arch)) => {
                debug = Some(arch);
                break;
            }
            _ => break,
        }
    }
    vcpu.set_kvm_immediate_exit(0);
    debug
}

/// Whether the vCPU is in the architectural reset state (real mode at 0xf000:0xfff0), which
/// is where KVM on AMD leaves a vCPU after a shutdown intercept: no kernel of ours runs there.
fn in_reset_state(vcpu: &VcpuFd) -> bool {
    match (vcpu.get_regs(), vcpu.get_sregs()) {
        (Ok(r), Ok(sr)) => r.rip == 0xfff0 && sr.cs.selector == 0xf000 && sr.cr0 & 1 == 0,
        _ => false,
    }
}

/// The vCPU's registers and, when readable, the bytes at RIP, for a crash report.
pub fn dump_state(vcpu: &VcpuFd, memory: &GuestMemoryMmap) -> String {
    let mut s = String::new();
    let (Ok(r), Ok(sr)) = (vcpu.get_regs(), vcpu.get_sregs()) else {
        return "  (registers unavailable)".into();
    };
    let _ = writeln!(
        s,
        "  rip {:#018x}  rflags {:#010x}  cs {:#06x}  ss {:#06x}",
        r.rip, r.rflags, sr.cs.selector, sr.ss.selector
    );
    let _ = writeln!(s, "  rax {:#018x}  rbx {:#018x}  rcx {:#018x}  rdx {:#018x}", r.rax, r.rbx, r.rcx, r.rdx);
    let _ = writeln!(s, "  rsi {:#018x}  rdi {:#018x}  rbp {:#018x}  rsp {:#018x}", r.rsi, r.rdi, r.rbp, r.rsp);
    let _ = writeln!(s, "  r8  {:#018x}  r9  {:#018x}  r10 {:#018x}  r11 {:#018x}", r.r8, r.r9, r.r10, r.r11);
    let _ = writeln!(s, "  r12 {:#018x}  r13 {:#018x}  r14 {:#018x}  r15 {:#018x}", r.r12, r.r13, r.r14, r.r15);
    let _ = writeln!(
        s,
        "  cr0 {:#018x}  cr2 {:#018x}  cr3 {:#018x}  cr4 {:#018x}  efer {:#x}",
        sr.cr0, sr.cr2, sr.cr3, sr.cr4, sr.efer
    );
    let mode = PagingMode { cr0: sr.cr0, cr3: sr.cr3, efer: sr.efer };
    let mut bytes = [0u8; 16];
    let n = mode.read_virt(memory, r.rip, &mut bytes);
    if n == 0 {
        let _ = write!(s, "  instruction bytes at rip: unreadable (rip is not mapped to guest RAM)");
    } else {
        let hex: Vec<String> = bytes[..n].iter().map(|b| format!("{b:02x}")).collect();
        let _ = write!(s, "  instruction bytes at rip: {}", hex.join(" "));
    }
    s
}
