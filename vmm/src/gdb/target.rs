//! The gdbstub target: registers, memory, resume, breakpoints and monitor commands for the
//! parked vCPUs, and the blocking event loop that waits for gdb or a vCPU stop.

use std::collections::HashMap;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use gdbstub::common::{Signal, Tid};
use gdbstub::conn::{Connection, ConnectionExt};
use gdbstub::outputln;
use gdbstub::stub::run_blocking::{BlockingEventLoop, Event as LoopEvent, WaitForStopReasonError};
use gdbstub::stub::MultiThreadStopReason;
use gdbstub::target::ext::base::multithread::{
    MultiThreadBase, MultiThreadResume, MultiThreadResumeOps, MultiThreadSchedulerLocking,
    MultiThreadSchedulerLockingOps, MultiThreadSingleStep, MultiThreadSingleStepOps,
};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::WatchKind;
use gdbstub::target::ext::breakpoints::{
    Breakpoints, BreakpointsOps, HwBreakpoint, HwBreakpointOps, HwWatchpoint, HwWatchpointOps, SwBreakpoint,
    SwBreakpointOps,
};
use gdbstub::target::ext::monitor_cmd::{ConsoleOutput, MonitorCmd, MonitorCmdOps};
use gdbstub::target::{Target, TargetError, TargetResult};
use kvm_bindings::{
    kvm_guest_debug, kvm_regs, kvm_sregs, KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_SINGLESTEP, KVM_GUESTDBG_USE_HW_BP,
    KVM_GUESTDBG_USE_SW_BP,
};
use kvm_ioctls::{Kvm, VcpuExit, VmFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::arch::{L4Regs, L4X86_64};
use super::breakpoints::{HwSlots, Planted, Slot, SlotError, SlotKind};
use super::control::{Cmd, EventKind, Reply, Vcpus};
use super::step::{self, StepFrom};
use super::watch;
use crate::paging::PagingMode;

/// A gdb connection: TCP or Unix, pollable.
pub enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl AsRawFd for Conn {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Conn::Tcp(s) => s.as_raw_fd(),
            Conn::Unix(s) => s.as_raw_fd(),
        }
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Conn::Tcp($s) => $e,
            Conn::Unix($s) => $e,
        }
    };
}

impl Connection for Conn {
    type Error = std::io::Error;
    fn write(&mut self, byte: u8) -> std::io::Result<()> {
        delegate!(self, s => Connection::write(s, byte))
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        delegate!(self, s => Connection::write_all(s, buf))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        delegate!(self, s => Connection::flush(s))
    }
    fn on_session_start(&mut self) -> std::io::Result<()> {
        delegate!(self, s => Connection::on_session_start(s))
    }
}

impl ConnectionExt for Conn {
    fn read(&mut self) -> std::io::Result<u8> {
        delegate!(self, s => ConnectionExt::read(s))
    }
    fn peek(&mut self) -> std::io::Result<Option<u8>> {
        delegate!(self, s => ConnectionExt::peek(s))
    }
}

/// Runs `code` at guest-physical 0x1000 in a throw-away VM (32-bit protected mode, paging
/// off, ring 0, as at the PVH entry) with guest debugging `dbg`, and returns the first exit
/// as a debug exception vector, if it was a debug exit.
fn probe_debug_exit(kvm: &Kvm, code: &[u8], dbg: &kvm_guest_debug) -> Option<u32> {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)]).ok()?;
    mem.write_slice(code, GuestAddress(0x1000)).ok()?;
    let host = vm_memory::GuestMemoryBackend::get_host_address(&mem, GuestAddress(0)).ok()?;
    let vm = kvm.create_vm().ok()?;
    let region = kvm_bindings::kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: 0x10000,
        userspace_addr: host as u64,
    };
    // SAFETY: `mem` is declared before `vm`, so it is dropped after it: the mapping outlives
    // every use KVM can make of it.
    unsafe { vm.set_user_memory_region(region) }.ok()?;
    let mut vcpu = vm.create_vcpu(0).ok()?;
    crate::vcpu::set_cpuid(kvm, &vcpu, 0).ok()?;
    crate::vcpu::set_pvh_entry_state(&vcpu, 0x1000).ok()?;
    vcpu.set_guest_debug(dbg).ok()?;
    match vcpu.run() {
        Ok(VcpuExit::Debug(arch)) => Some(arch.exception),
        _ => None,
    }
}

/// Whether KVM can intercept `int3` executed in the guest's ring 0 on this host: a probe VM
/// runs `int3` with `KVM_GUESTDBG_USE_SW_BP`. On PVM hosts the emulator fails instead.
pub fn probe_sw_breakpoints(kvm: &Kvm) -> bool {
    let dbg = kvm_guest_debug { control: KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_SW_BP, ..Default::default() };
    probe_debug_exit(kvm, &[0xcc, 0xf4], &dbg) == Some(3)
}

/// Whether debug-register execution breakpoints fire in guest ring 0 on this host: a probe
/// VM runs two `nop`s with a breakpoint on the second. They do on PVM and hardware KVM; on
/// a kvm_amd host nested under QEMU's TCG they do not (TCG's SVM does not apply the debug
/// registers to its guest: QEMU's own gdbstub with -enable-kvm misses them there too, see
/// docs/DEBUGGING.md).
pub fn probe_hw_breakpoints(kvm: &Kvm) -> bool {
    let mut dbg = kvm_guest_debug { control: KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP, ..Default::default() };
    let mut slots = HwSlots::default();
    let _ = slots.insert(Slot { addr: 0x1001, kind: SlotKind::Exec { from_sw: false } });
    dbg.arch.debugreg[..4].copy_from_slice(&slots.addrs());
    dbg.arch.debugreg[7] = slots.dr7();
    // nop ; nop ; hlt
    probe_debug_exit(kvm, &[0x90, 0x90, 0xf4], &dbg) == Some(1)
}

/// Whether debug-register data watchpoints fire for guest ring-0 writes on this host: a
/// probe VM writes to a watched address. On PVM hosts, whose emulator does not check data
/// breakpoints, they do not.
pub fn probe_data_watchpoints(kvm: &Kvm) -> bool {
    let mut dbg = kvm_guest_debug { control: KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP, ..Default::default() };
    let mut slots = HwSlots::default();
    let _ = slots.insert(Slot { addr: 0x2000, kind: SlotKind::Write { len: 4 } });
    dbg.arch.debugreg[..4].copy_from_slice(&slots.addrs());
    dbg.arch.debugreg[7] = slots.dr7();
    // mov %eax, 0x2000 ; hlt
    probe_debug_exit(kvm, &[0xa3, 0x00, 0x20, 0x00, 0x00, 0xf4], &dbg) == Some(1)
}

/// What gdb sees.
pub struct L4Target {
    vcpus: Vcpus,
    memory: GuestMemoryMmap,
    kvm: Arc<Kvm>,
    slots: HwSlots,
    /// Software breakpoints planted as `int3`.
    sw: Planted,
    sw_supported: Option<bool>,
    /// Whether debug-register execution breakpoints fire here (probed at the first attach).
    hw_supported: Option<bool>,
    stepping: Vec<usize>,
    /// Where each vCPU's current step began (see [`step`]).
    step_from: HashMap<usize, StepFrom>,
    /// KVM_GUESTDBG_BLOCKIRQ where this KVM has it: no interrupt is delivered during a
    /// single step (as QEMU's gdbstub steps by default), see docs/DEBUGGING.md.
    block_irq: u32,
    /// A step over `hlt` served by a breakpoint after it: the vCPU and that slot (see
    /// [`L4Target::step_over_hlt`]).
    hlt_step: Option<(usize, Slot)>,
    ended: Option<Option<u8>>,
    vm: Arc<VmFd>,
    /// Whether debug-register data watchpoints fire here (probed at the first attach);
    /// if not, write watches trap pages instead (`watch.rs`).
    dr_watch: Option<bool>,
    /// KVM memory slots in use, and whether the trapped pages changed since.
    mem_slots: u32,
    traps_dirty: bool,
}

impl L4Target {
    pub fn new(vcpus: Vcpus, memory: GuestMemoryMmap, kvm: Arc<Kvm>, vm: Arc<VmFd>) -> Self {
        let mem_slots = vm_memory::GuestMemoryBackend::num_regions(&memory) as u32;
        L4Target {
            vcpus,
            memory,
            kvm,
            slots: HwSlots::default(),
            sw: Planted::default(),
            sw_supported: None,
            hw_supported: None,
            stepping: Vec::new(),
            step_from: HashMap::new(),
            block_irq: 0,
            hlt_step: None,
            ended: None,
            vm,
            dr_watch: None,
            mem_slots,
            traps_dirty: false,
        }
    }

    /// Re-registers guest RAM if the trapped pages changed. vCPUs must be parked.
    fn sync_traps(&mut self) -> Result<(), String> {
        if !self.traps_dirty {
            return Ok(());
        }
        let pages = self.vcpus.hub().traps.pages();
        self.mem_slots =
            crate::memory::register(&self.vm, &self.memory, &pages, self.mem_slots).map_err(|e| e.to_string())?;
        self.traps_dirty = false;
        Ok(())
    }

    pub fn wake_fd(&self) -> RawFd {
        self.vcpus.hub().wake.as_raw_fd()
    }

    /// Drains events; true once the VM has ended.
    pub fn vm_ended(&mut self) -> bool {
        let _ = self.vcpus.hub().wake.read();
        while let Some(e) = self.vcpus.try_event() {
            if let EventKind::Ended(code) = e.kind {
                self.ended = Some(code);
            }
        }
        self.ended.is_some()
    }

    /// A new connection: probe the host once, park every vCPU.
    pub fn attach(&mut self) {
        if self.sw_supported.is_none() {
            let s = probe_sw_breakpoints(&self.kvm);
            log::info!(
                "gdb: software breakpoints {}",
                if s {
                    "use int3"
                } else {
                    "are served from the 4 hardware slots (int3 cannot be intercepted in guest ring 0 here)"
                }
            );
            self.sw_supported = Some(s);
            let h = probe_hw_breakpoints(&self.kvm);
            if !h {
                log::warn!(
                    "gdb: hardware breakpoints do not fire in guest ring 0 on this host (its KVM does not apply \
                     the debug registers to guests){}: gdb is refused them; stepping works",
                    if s { "" } else { ", and int3 cannot be intercepted either, so breakpoints are refused too" }
                );
            }
            self.hw_supported = Some(h);
            let w = probe_data_watchpoints(&self.kvm);
            log::info!(
                "gdb: data watchpoints {}",
                if w {
                    "use the debug registers"
                } else {
                    "trap pages (debug-register data breakpoints do not fire in guest ring 0 here)"
                }
            );
            self.dr_watch = Some(w);
            let flags = self.kvm.check_extension_raw(kvm_bindings::KVM_CAP_SET_GUEST_DEBUG2.into()) as u32;
            self.block_irq = flags & kvm_bindings::KVM_GUESTDBG_BLOCKIRQ;
            log::info!(
                "gdb: single steps {}",
                if self.block_irq != 0 {
                    "hold interrupts back (KVM_GUESTDBG_BLOCKIRQ): a step never enters an interrupt handler"
                } else {
                    "may enter interrupt handlers (this KVM cannot hold interrupts back during a step)"
                }
            );
        }
        for e in self.vcpus.pause_all() {
            if let EventKind::Ended(code) = e.kind {
                self.ended = Some(code);
            }
        }
    }

    /// gdb left: remove every breakpoint, switch guest debugging off, run on. gdb may have
    /// left while the guest ran (a dropped connection): every vCPU is parked first, since
    /// memory slots must not change under a running vCPU (the page-trap slots are taken
    /// out and put back) and only a parked vCPU takes new guest-debug settings.
    pub fn detach(&mut self) {
        for e in self.vcpus.pause_all() {
            if let EventKind::Ended(code) = e.kind {
                self.ended = Some(code);
            }
        }
        self.end_hlt_step();
        self.sw.lift_all(&self.memory);
        self.slots.clear();
        self.stepping.clear();
        self.vcpus.hub().traps.clear();
        self.traps_dirty = true;
        if let Err(e) = self.sync_traps() {
            log::warn!("gdb: cannot restore guest memory slots: {e}");
        }
        for i in 0..self.vcpus.count() {
            let _ = self.vcpus.request(i, Cmd::SetDebug(Box::default(), false));
        }
        let all: Vec<usize> = (0..self.vcpus.count()).collect();
        self.vcpus.resume(&all, false);
    }

    fn vcpu_of(tid: Tid) -> usize {
        tid.get() - 1
    }

    fn regs(&self, vcpu: usize) -> Result<kvm_regs, String> {
        match self.vcpus.request(vcpu, Cmd::GetRegs)? {
            Reply::Regs(r) => Ok(*r),
            _ => Err("unexpected reply".into()),
        }
    }

    fn sregs(&self, vcpu: usize) -> Result<kvm_sregs, String> {
        match self.vcpus.request(vcpu, Cmd::GetSregs)? {
            Reply::Sregs(s) => Ok(*s),
            _ => Err("unexpected reply".into()),
        }
    }

    fn paging(&self, vcpu: usize) -> Result<PagingMode, String> {
        let s = self.sregs(vcpu)?;
        Ok(PagingMode { cr0: s.cr0, cr3: s.cr3, efer: s.efer })
    }

    /// Applies breakpoints and stepping to every vCPU's guest-debug state.
    fn apply_debug(&self) -> Result<(), String> {
        let addrs = self.slots.addrs();
        for i in 0..self.vcpus.count() {
            let mut d = kvm_guest_debug::default();
            if self.slots.any() || !self.sw.is_empty() || self.stepping.contains(&i) {
                d.control = KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP;
                if !self.sw.is_empty() {
                    d.control |= KVM_GUESTDBG_USE_SW_BP;
                }
                if self.stepping.contains(&i) && !self.hlt_step.is_some_and(|(v, _)| v == i) {
                    d.control |= KVM_GUESTDBG_SINGLESTEP | self.block_irq;
                }
                d.arch.debugreg[..4].copy_from_slice(&addrs);
                d.arch.debugreg[7] = self.slots.dr7();
            }
            match self.vcpus.request(i, Cmd::SetDebug(Box::new(d), self.stepping.contains(&i)))? {
                Reply::Done => {}
                _ => return Err("unexpected reply".into()),
            }
        }
        Ok(())
    }

    /// The stop reason for a debug exit on `vcpu`.
    fn debug_stop(&self, vcpu: usize, arch: kvm_bindings::kvm_debug_exit_arch) -> MultiThreadStopReason<u64> {
        let tid = Tid::new(vcpu + 1).expect("non-zero");
        if arch.exception == 3 {
            return MultiThreadStopReason::SwBreak(tid);
        }
        if arch.dr6 & (1 << 14) == 0 {
            for b in 0..4 {
                if arch.dr6 & (1 << b) == 0 {
                    continue;
                }
                match self.slots.get(b) {
                    Some(Slot { kind: SlotKind::Exec { from_sw: true }, .. }) => {
                        return MultiThreadStopReason::SwBreak(tid)
                    }
                    Some(Slot { kind: SlotKind::Exec { from_sw: false }, .. }) => {
                        return MultiThreadStopReason::HwBreak(tid)
                    }
                    Some(Slot { addr, kind: SlotKind::Write { .. } }) => {
                        return MultiThreadStopReason::Watch { tid, kind: WatchKind::Write, addr }
                    }
                    Some(Slot { addr, kind: SlotKind::Access { .. } }) => {
                        return MultiThreadStopReason::Watch { tid, kind: WatchKind::ReadWrite, addr }
                    }
                    None => {}
                }
            }
        }
        MultiThreadStopReason::SignalWithThread { tid, signal: Signal::SIGTRAP }
    }
}

impl L4Target {
    /// A single step over `hlt`: where debug-register breakpoints work, the vCPU runs
    /// (interrupts allowed) to a breakpoint on the next instruction instead, so the step
    /// ends as `hlt` does on hardware, once an interrupt has woken it and its handler has
    /// returned. Single-stepping `hlt` itself leaves PVM's vCPU unable to run again after
    /// the next `continue` (it executes one instruction and then never returns from
    /// KVM_RUN: docs/DEBUGGING.md). Without a free slot the plain step is used.
    fn step_over_hlt(&mut self, v: usize) -> Result<(), String> {
        let (mode, r) = (self.paging(v)?, self.regs(v)?);
        let mut op = [0u8; 1];
        if mode.read_virt(&self.memory, r.rip, &mut op) != 1 || op[0] != 0xf4 {
            return Ok(());
        }
        // Such a step ends only with an interrupt, or with gdb's Ctrl-C.
        log::debug!("gdb: vCPU {v} steps over hlt at {:#x}", r.rip);
        if self.hw_supported != Some(true) {
            return Ok(());
        }
        let slot = Slot { addr: r.rip + 1, kind: SlotKind::Exec { from_sw: false } };
        if self.slots.insert(slot).is_ok() {
            self.hlt_step = Some((v, slot));
        }
        Ok(())
    }

    /// Removes a step-over-hlt breakpoint; whether `vcpu` stopped on it.
    fn end_hlt_step_on(&mut self, vcpu: usize, arch: Option<&kvm_bindings::kvm_debug_exit_arch>) -> bool {
        let Some((v, slot)) = self.hlt_step.take() else { return false };
        let hit =
            v == vcpu && arch.is_some_and(|a| (0..4).any(|b| a.dr6 & (1 << b) != 0 && self.slots.get(b) == Some(slot)));
        self.slots.remove(slot);
        hit
    }

    fn end_hlt_step(&mut self) {
        self.end_hlt_step_on(usize::MAX, None);
    }

    /// After `vcpu`'s step stopped: clears the TF that the step leaked into a pushed
    /// interrupt frame or R11 (see [`step`]). Failures only cost the repair, and are logged.
    fn untrap(&mut self, vcpu: usize) {
        let Some(from) = self.step_from.remove(&vcpu) else { return };
        if let Err(e) = self.untrap_from(vcpu, &from) {
            log::warn!("gdb: vCPU {vcpu}: cannot check the step for a leaked trap flag: {e}");
        }
    }

    fn untrap_from(&mut self, vcpu: usize, from: &StepFrom) -> Result<(), String> {
        let mode = self.paging(vcpu)?;
        let mut r = self.regs(vcpu)?;
        let mut insn = [0u8; 2];
        mode.read_virt(&self.memory, from.rip, &mut insn);
        if step::syscall_leak(from, &insn, r.r11) {
            r.r11 &= !step::TF;
            log::debug!("gdb: vCPU {vcpu}: cleared the step's TF in r11 (syscall)");
            return match self.vcpus.request(vcpu, Cmd::SetRegs(Box::new(r)))? {
                Reply::Done => Ok(()),
                _ => Err("unexpected reply".into()),
            };
        }
        let mut bytes = [0u8; 8 * step::STACK_WORDS];
        let n = mode.read_virt(&self.memory, r.rsp, &mut bytes) / 8;
        let words: Vec<u64> =
            bytes.chunks_exact(8).take(n).map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default())).collect();
        if let Some(i) = step::pushed_rflags(from, &words) {
            let va = r.rsp + 8 * i as u64;
            let pa = mode.translate(&self.memory, va).ok_or("the frame's page vanished")?;
            let cleared = words[i] & !step::TF;
            self.memory.write_obj(cleared, GuestAddress(pa)).map_err(|e| e.to_string())?;
            log::debug!("gdb: vCPU {vcpu}: cleared the step's TF in the interrupt frame at {va:#x}");
        }
        Ok(())
    }
}

/// The MSR behind gdb's `k_gs_base` (the base `swapgs` exchanges with gs_base).
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;

/// The system registers in [`L4Regs::extra`]'s order (`arch::EXTRA`), from the vCPU's
/// special registers and its KERNEL_GS_BASE MSR.
fn sys_regs(s: &kvm_sregs, k_gs_base: u64) -> [u64; 9] {
    [s.fs.base, s.gs.base, k_gs_base, s.cr0, s.cr2, s.cr3, s.cr4, s.cr8, s.efer]
}

/// Puts [`L4Regs::extra`] into the special registers (all but k_gs_base, an MSR).
fn set_sys_regs(s: &mut kvm_sregs, x: &[u64; 9]) {
    (s.fs.base, s.gs.base) = (x[0], x[1]);
    (s.cr0, s.cr2, s.cr3, s.cr4, s.cr8, s.efer) = (x[3], x[4], x[5], x[6], x[7], x[8]);
}

fn err(e: String) -> TargetError<String> {
    log::debug!("gdb: {e}");
    TargetError::NonFatal
}

impl Target for L4Target {
    type Arch = L4X86_64;
    type Error = String;

    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::MultiThread(self)
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }

    fn support_monitor_cmd(&mut self) -> Option<MonitorCmdOps<'_, Self>> {
        Some(self)
    }
}

impl MultiThreadBase for L4Target {
    fn read_registers(&mut self, all: &mut L4Regs, tid: Tid) -> TargetResult<(), Self> {
        let v = Self::vcpu_of(tid);
        let r = self.regs(v).map_err(err)?;
        let s = self.sregs(v).map_err(err)?;
        let regs = &mut all.core;
        regs.regs = [
            r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14,
            r.r15,
        ];
        regs.rip = r.rip;
        regs.eflags = r.rflags as u32;
        regs.segments.cs = u32::from(s.cs.selector);
        regs.segments.ss = u32::from(s.ss.selector);
        regs.segments.ds = u32::from(s.ds.selector);
        regs.segments.es = u32::from(s.es.selector);
        regs.segments.fs = u32::from(s.fs.selector);
        regs.segments.gs = u32::from(s.gs.selector);
        if let Ok(Reply::Fpu(f)) = self.vcpus.request(v, Cmd::GetFpu) {
            for (i, x) in f.xmm.iter().enumerate() {
                regs.xmm[i] = u128::from_le_bytes(*x);
            }
            regs.mxcsr = f.mxcsr;
            regs.fpu.fctrl = u32::from(f.fcw);
            regs.fpu.fstat = u32::from(f.fsw);
            regs.fpu.fop = u32::from(f.last_opcode);
        }
        let k_gs_base = match self.vcpus.request(v, Cmd::GetMsr(MSR_KERNEL_GS_BASE)).map_err(err)? {
            Reply::Msr(m) => m,
            _ => return Err(TargetError::NonFatal),
        };
        all.extra = sys_regs(&s, k_gs_base);
        Ok(())
    }

    fn write_registers(&mut self, all: &L4Regs, tid: Tid) -> TargetResult<(), Self> {
        let v = Self::vcpu_of(tid);
        let regs = &all.core;
        let mut r = self.regs(v).map_err(err)?;
        let g = &regs.regs;
        (r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp) = (g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7]);
        (r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15) = (g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]);
        r.rip = regs.rip;
        r.rflags = (r.rflags & !0xffff_ffff) | u64::from(regs.eflags) | 0x2;
        // The system registers are written only where gdb changed them (a `G` packet
        // carries every register; rewriting unchanged control registers is not free).
        let mut s = self.sregs(v).map_err(err)?;
        let k_gs_base = match self.vcpus.request(v, Cmd::GetMsr(MSR_KERNEL_GS_BASE)).map_err(err)? {
            Reply::Msr(m) => m,
            _ => return Err(TargetError::NonFatal),
        };
        let before = sys_regs(&s, k_gs_base);
        set_sys_regs(&mut s, &all.extra);
        if sys_regs(&s, k_gs_base) != before {
            match self.vcpus.request(v, Cmd::SetSregs(Box::new(s))).map_err(err)? {
                Reply::Done => {}
                _ => return Err(TargetError::NonFatal),
            }
        }
        if all.extra[2] != k_gs_base {
            match self.vcpus.request(v, Cmd::SetMsr(MSR_KERNEL_GS_BASE, all.extra[2])).map_err(err)? {
                Reply::Done => {}
                _ => return Err(TargetError::NonFatal),
            }
        }
        match self.vcpus.request(v, Cmd::SetRegs(Box::new(r))).map_err(err)? {
            Reply::Done => Ok(()),
            _ => Err(TargetError::NonFatal),
        }
    }

    fn read_addrs(&mut self, start: u64, data: &mut [u8], tid: Tid) -> TargetResult<usize, Self> {
        let mode = self.paging(Self::vcpu_of(tid)).map_err(err)?;
        let n = mode.read_virt(&self.memory, start, data);
        if n == 0 && !data.is_empty() {
            return Err(TargetError::Errno(14)); // EFAULT: not mapped
        }
        // Show the original bytes under planted int3s, as gdb expects.
        // (A read may wrap from the top of the address space to 0: `start + n` would
        // overflow, so the offset is computed modulo 2^64.)
        for (va, old) in self.sw.originals() {
            let off = va.wrapping_sub(start);
            if off < n as u64 {
                data[off as usize] = old;
            }
        }
        Ok(n)
    }

    fn write_addrs(&mut self, start: u64, data: &[u8], tid: Tid) -> TargetResult<(), Self> {
        let mode = self.paging(Self::vcpu_of(tid)).map_err(err)?;
        for (i, b) in data.iter().enumerate() {
            let va = start.wrapping_add(i as u64);
            let pa = mode.translate(&self.memory, va).ok_or(TargetError::Errno(14))?;
            self.memory.write_obj(*b, GuestAddress(pa)).map_err(|_| TargetError::Errno(14))?;
        }
        Ok(())
    }

    fn list_active_threads(&mut self, thread_is_active: &mut dyn FnMut(Tid)) -> Result<(), Self::Error> {
        for i in 0..self.vcpus.count() {
            if let Some(t) = Tid::new(i + 1) {
                thread_is_active(t);
            }
        }
        Ok(())
    }

    fn support_resume(&mut self) -> Option<MultiThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

impl MultiThreadResume for L4Target {
    fn resume(&mut self) -> Result<(), Self::Error> {
        self.end_hlt_step();
        if let [v] = self.stepping[..] {
            self.step_over_hlt(v)?;
        }
        self.sync_traps()?;
        self.apply_debug()?;
        self.step_from.clear();
        if self.stepping.is_empty() {
            let all: Vec<usize> = (0..self.vcpus.count()).collect();
            self.vcpus.resume(&all, false);
        } else {
            // Step only the stepping vCPUs; the others stay parked (scheduler locking).
            let step = self.stepping.clone();
            // A step over hlt runs with TF clear: it has no trap flag to leak.
            for &v in step.iter().filter(|&&v| !self.hlt_step.is_some_and(|(h, _)| h == v)) {
                let (r, s) = (self.regs(v)?, self.sregs(v)?);
                let from = StepFrom { rip: r.rip, rsp: r.rsp, rflags: r.rflags, cs: s.cs.selector, ss: s.ss.selector };
                self.step_from.insert(v, from);
            }
            self.vcpus.resume(&step, true);
        }
        Ok(())
    }

    fn clear_resume_actions(&mut self) -> Result<(), Self::Error> {
        self.stepping.clear();
        Ok(())
    }

    fn set_resume_action_continue(&mut self, _tid: Tid, _signal: Option<Signal>) -> Result<(), Self::Error> {
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<MultiThreadSingleStepOps<'_, Self>> {
        Some(self)
    }

    fn support_scheduler_locking(&mut self) -> Option<MultiThreadSchedulerLockingOps<'_, Self>> {
        Some(self)
    }
}

/// A step always runs only the stepping vCPUs, so scheduler locking is what `resume`
/// does already.
impl MultiThreadSchedulerLocking for L4Target {
    fn set_resume_action_scheduler_lock(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

impl MultiThreadSingleStep for L4Target {
    fn set_resume_action_step(&mut self, tid: Tid, _signal: Option<Signal>) -> Result<(), Self::Error> {
        self.stepping.push(Self::vcpu_of(tid));
        Ok(())
    }
}

impl Breakpoints for L4Target {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }
    fn support_hw_breakpoint(&mut self) -> Option<HwBreakpointOps<'_, Self>> {
        Some(self)
    }
    fn support_hw_watchpoint(&mut self) -> Option<HwWatchpointOps<'_, Self>> {
        Some(self)
    }
}

fn slot_result(r: Result<(), SlotError>, what: &str) -> TargetResult<bool, L4Target> {
    match r {
        Ok(()) => Ok(true),
        Err(SlotError::Full) => {
            log::warn!("gdb: cannot set {what}: all 4 hardware debug registers are in use");
            Ok(false)
        }
        Err(SlotError::BadLength) => Ok(false),
    }
}

impl SwBreakpoint for L4Target {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        if self.sw_supported == Some(true) {
            let mode = self.paging(0).map_err(err)?;
            let pa = mode.translate(&self.memory, addr).ok_or(TargetError::Errno(14))?;
            self.sw.plant(&self.memory, addr, pa).map_err(|_| TargetError::Errno(14))?;
            return Ok(true);
        }
        if self.hw_supported == Some(false) {
            log::warn!("gdb: breakpoint at {addr:#x} refused: neither int3 nor the debug registers work on this host");
            return Ok(false);
        }
        let r = self.slots.insert(Slot { addr, kind: SlotKind::Exec { from_sw: true } });
        slot_result(r, "a breakpoint (served by a hardware slot on this host)")
    }

    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        if let Some(r) = self.sw.lift(&self.memory, addr) {
            return r.map(|()| true).map_err(|()| TargetError::Errno(14));
        }
        Ok(self.slots.remove(Slot { addr, kind: SlotKind::Exec { from_sw: true } }))
    }
}

impl HwBreakpoint for L4Target {
    fn add_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        if self.hw_supported == Some(false) {
            log::warn!("gdb: hardware breakpoint at {addr:#x} refused: the debug registers do not work on this host");
            return Ok(false);
        }
        slot_result(self.slots.insert(Slot { addr, kind: SlotKind::Exec { from_sw: false } }), "a hardware breakpoint")
    }

    fn remove_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.slots.remove(Slot { addr, kind: SlotKind::Exec { from_sw: false } }))
    }
}

fn watch_slot(addr: u64, len: u64, kind: WatchKind) -> Option<Slot> {
    let len = u8::try_from(len).ok()?;
    match kind {
        WatchKind::Write => Some(Slot { addr, kind: SlotKind::Write { len } }),
        WatchKind::ReadWrite => Some(Slot { addr, kind: SlotKind::Access { len } }),
        // x86 debug registers cannot watch reads alone.
        WatchKind::Read => None,
    }
}

impl HwWatchpoint for L4Target {
    fn add_hw_watchpoint(&mut self, addr: u64, len: u64, kind: WatchKind) -> TargetResult<bool, Self> {
        if self.dr_watch == Some(false) {
            if kind != WatchKind::Write {
                log::warn!("gdb: only write watchpoints work in guest ring 0 on this host (they trap pages)");
                return Ok(false);
            }
            let mode = self.paging(0).map_err(err)?;
            let gpa = mode.translate(&self.memory, addr).ok_or(TargetError::Errno(14))?;
            let added = self.vcpus.hub().traps.add(watch::TrapWatch { gva: addr, gpa, len });
            self.traps_dirty |= added;
            return Ok(added);
        }
        match watch_slot(addr, len, kind) {
            Some(slot) => slot_result(self.slots.insert(slot), "a watchpoint"),
            None => Ok(false),
        }
    }

    fn remove_hw_watchpoint(&mut self, addr: u64, len: u64, kind: WatchKind) -> TargetResult<bool, Self> {
        if self.dr_watch == Some(false) {
            let removed = self.vcpus.hub().traps.remove(addr, len);
            self.traps_dirty |= removed;
            return Ok(removed);
        }
        Ok(watch_slot(addr, len, kind).is_some_and(|s| self.slots.remove(s)))
    }
}

impl MonitorCmd for L4Target {
    fn handle_monitor_cmd(&mut self, cmd: &[u8], mut out: ConsoleOutput<'_>) -> Result<(), Self::Error> {
        let cmd = String::from_utf8_lossy(cmd);
        let mut words = cmd.split_whitespace();
        match words.next() {
            None | Some("help") => {
                outputln!(out, "l4vmm monitor commands:");
                outputln!(out, "  help          this list");
                outputln!(out, "  regs [VCPU]   control registers, EFER and descriptor tables of a vCPU (default 0)");
                outputln!(out, "  slots         the hardware debug-register slots in use");
            }
            Some("regs") => {
                let v: usize = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
                match self.sregs(v) {
                    Ok(s) => {
                        outputln!(out, "vCPU {v}:");
                        outputln!(out, "  cr0  {:#018x}  cr2 {:#018x}  cr3 {:#018x}", s.cr0, s.cr2, s.cr3);
                        outputln!(
                            out,
                            "  cr4  {:#018x}  cr8 {:#x}  efer {:#x}  apic_base {:#x}",
                            s.cr4,
                            s.cr8,
                            s.efer,
                            s.apic_base
                        );
                        outputln!(out, "  gdt  base {:#018x} limit {:#x}", s.gdt.base, s.gdt.limit);
                        outputln!(out, "  idt  base {:#018x} limit {:#x}", s.idt.base, s.idt.limit);
                        outputln!(out, "  tr   {:#06x} base {:#018x}", s.tr.selector, s.tr.base);
                        outputln!(out, "  fs.base {:#018x}  gs.base {:#018x}", s.fs.base, s.gs.base);
                    }
                    Err(e) => outputln!(out, "vCPU {v}: {e}"),
                }
            }
            Some("slots") => {
                outputln!(out, "{} of 4 hardware slots free", self.slots.free());
                for i in 0..4 {
                    if let Some(s) = self.slots.get(i) {
                        outputln!(out, "  dr{i}: {:#018x} {:?}", s.addr, s.kind);
                    }
                }
            }
            Some(other) => outputln!(out, "unknown monitor command '{other}'; try 'monitor help'"),
        }
        Ok(())
    }
}

/// Waits for gdb's next byte or the next vCPU stop, without busy polling.
pub enum EventLoop {}

impl BlockingEventLoop for EventLoop {
    type Target = L4Target;
    type Connection = Conn;
    type StopReason = MultiThreadStopReason<u64>;

    fn wait_for_stop_reason(
        target: &mut L4Target,
        conn: &mut Conn,
    ) -> Result<LoopEvent<Self::StopReason>, WaitForStopReasonError<String, std::io::Error>> {
        loop {
            if let Some(code) = target.ended {
                return Ok(LoopEvent::TargetStopped(match code {
                    Some(c) => MultiThreadStopReason::Exited(c),
                    None => MultiThreadStopReason::Terminated(Signal::SIGKILL),
                }));
            }
            let (data, _) = super::poll2(conn.as_raw_fd(), target.wake_fd());
            if data {
                let byte = ConnectionExt::read(conn).map_err(WaitForStopReasonError::Connection)?;
                return Ok(LoopEvent::IncomingData(byte));
            }
            let _ = target.vcpus.hub().wake.read();
            while let Some(e) = target.vcpus.try_event() {
                match e.kind {
                    EventKind::Ended(code) => target.ended = Some(code),
                    EventKind::Paused => {}
                    EventKind::PageWatch(addr) => {
                        target.vcpus.pause_all();
                        let tid = Tid::new(e.vcpu + 1).expect("non-zero");
                        return Ok(LoopEvent::TargetStopped(MultiThreadStopReason::Watch {
                            tid,
                            kind: WatchKind::Write,
                            addr,
                        }));
                    }
                    EventKind::Debug(arch) => {
                        let more = target.vcpus.pause_all();
                        target.untrap(e.vcpu);
                        if target.end_hlt_step_on(e.vcpu, Some(&arch)) {
                            let tid = Tid::new(e.vcpu + 1).expect("non-zero");
                            return Ok(LoopEvent::TargetStopped(MultiThreadStopReason::SignalWithThread {
                                tid,
                                signal: Signal::SIGTRAP,
                            }));
                        }
                        if let Some(code) = more.iter().find_map(|m| match m.kind {
                            EventKind::Ended(c) => Some(c),
                            _ => None,
                        }) {
                            target.ended = Some(code);
                            break;
                        }
                        return Ok(LoopEvent::TargetStopped(target.debug_stop(e.vcpu, arch)));
                    }
                }
            }
        }
    }

    fn on_interrupt(target: &mut L4Target) -> Result<Option<Self::StopReason>, String> {
        target.vcpus.pause_all();
        target.end_hlt_step();
        Ok(Some(MultiThreadStopReason::SignalWithThread { tid: Tid::new(1).expect("1"), signal: Signal::SIGINT }))
    }
}
