//! How the gdb thread stops, inspects and resumes vCPU threads.
//!
//! A vCPU thread owns its `VcpuFd`; while gdb is in control it is *parked*: it has left
//! KVM_RUN and serves [`Cmd`]s from the gdb thread until told to [`Cmd::Resume`].
//! Invariants: a vCPU parks only between KVM_RUN calls; it announces every park with one
//! [`Event`]; the gdb thread reads guest state only from parked vCPUs; a parked vCPU still
//! leaves when the VM stops (`stop`), so gdb can never keep l4vmm from exiting.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kvm_bindings::{kvm_debug_exit_arch, kvm_fpu, kvm_guest_debug, kvm_msr_entry, kvm_regs, kvm_sregs, Msrs};
use kvm_ioctls::VcpuFd;
use vmm_sys_util::eventfd::EventFd;

use super::watch::PageTraps;
use crate::error::{Error, Result};
use crate::signals;

/// A request to a parked vCPU.
pub enum Cmd {
    GetRegs,
    SetRegs(Box<kvm_regs>),
    GetSregs,
    SetSregs(Box<kvm_sregs>),
    /// Reads one MSR (gdb's `k_gs_base`).
    GetMsr(u32),
    SetMsr(u32, u64),
    GetFpu,
    /// Sets guest debugging; with `true`, the vCPU runs on through other exits until its
    /// debug exit (a step, or a step over `hlt` served by a breakpoint).
    SetDebug(Box<kvm_guest_debug>, bool),
    /// Leave the parked state and run (at least one KVM_RUN before parking again).
    Resume,
}

/// A parked vCPU's answer.
pub enum Reply {
    Regs(Box<kvm_regs>),
    Sregs(Box<kvm_sregs>),
    Fpu(Box<kvm_fpu>),
    Msr(u64),
    Done,
    Failed(String),
}

/// Why a vCPU parked, or that the VM ended.
#[derive(Debug, Clone, Copy)]
pub enum EventKind {
    /// Asked to (the pause flag).
    Paused,
    /// KVM_EXIT_DEBUG: breakpoint, watchpoint or single step.
    Debug(kvm_debug_exit_arch),
    /// A write hit a page-trap watch (see `watch.rs`); the guest-virtual watch address.
    PageWatch(u64),
    /// The VM ended; `Some(code)` if the guest wrote an exit code.
    Ended(Option<u8>),
}

/// An event for the gdb thread.
#[derive(Debug, Clone, Copy)]
pub struct Event {
    pub vcpu: usize,
    pub kind: EventKind,
}

/// State shared by the vCPU threads and the gdb thread.
pub struct Hub {
    /// While set, running vCPUs park at their next exit (a stepping vCPU only once its
    /// step is done, or when `interrupt` is set too).
    pub pause: AtomicBool,
    /// Set by [`Vcpus::pause_all`] (gdb's Ctrl-C or a stop elsewhere): even a vCPU in the
    /// middle of a single step parks (e.g. one halted in `hlt`).
    pub interrupt: AtomicBool,
    events: Sender<Event>,
    /// Written with every event, so the gdb thread can poll it next to its socket.
    pub wake: EventFd,
    /// Write watches served by page trapping.
    pub traps: PageTraps,
}

impl Hub {
    /// Sends an event and wakes the gdb thread.
    pub fn send(&self, event: Event) {
        let _ = self.events.send(event);
        let _ = self.wake.write(1);
    }
}

/// The vCPU thread's end.
pub struct VcpuPort {
    id: usize,
    hub: Arc<Hub>,
    cmds: Receiver<Cmd>,
    replies: Sender<Reply>,
    /// Whether gdb set this vCPU to single-step (its last `SetDebug`).
    stepping: std::cell::Cell<bool>,
    /// Whether it runs until its debug exit, through other exits (its last `SetDebug`).
    runs_to_debug_exit: std::cell::Cell<bool>,
}

impl VcpuPort {
    /// The page-trap watches.
    pub fn traps(&self) -> &PageTraps {
        &self.hub.traps
    }

    /// Whether gdb wants this vCPU parked now. A vCPU that is stepping keeps running
    /// through exits that are not its step's debug exit (port I/O, MMIO: the instruction is
    /// not done yet; or the interrupt handler that ends a step over `hlt`) unless gdb
    /// interrupts it.
    pub fn pause_requested(&self) -> bool {
        self.hub.pause.load(Ordering::SeqCst)
            && (!self.runs_to_debug_exit.get() || self.hub.interrupt.load(Ordering::SeqCst))
    }

    /// Whether gdb set this vCPU to single-step.
    pub fn is_stepping(&self) -> bool {
        self.stepping.get()
    }

    /// Parks: announces `kind` and serves commands until resumed or the VM stops.
    pub fn park(&self, vcpu: &mut VcpuFd, kind: EventKind, stop: &AtomicBool) {
        self.hub.send(Event { vcpu: self.id, kind });
        loop {
            let cmd = match self.cmds.recv_timeout(Duration::from_millis(50)) {
                Ok(c) => c,
                Err(RecvTimeoutError::Timeout) if !stop.load(Ordering::SeqCst) => continue,
                Err(_) => return,
            };
            let reply = match cmd {
                Cmd::Resume => return,
                Cmd::GetRegs => vcpu.get_regs().map(|r| Reply::Regs(Box::new(r))),
                Cmd::SetRegs(r) => vcpu.set_regs(&r).map(|_| Reply::Done),
                Cmd::GetSregs => vcpu.get_sregs().map(|s| Reply::Sregs(Box::new(s))),
                Cmd::SetSregs(s) => vcpu.set_sregs(&s).map(|_| Reply::Done),
                Cmd::GetMsr(index) => get_msr(vcpu, index).map(Reply::Msr),
                Cmd::SetMsr(index, data) => set_msr(vcpu, index, data).map(|_| Reply::Done),
                Cmd::GetFpu => vcpu.get_fpu().map(|f| Reply::Fpu(Box::new(f))),
                Cmd::SetDebug(d, runs) => vcpu.set_guest_debug(&d).map(|_| {
                    self.stepping.set(d.control & kvm_bindings::KVM_GUESTDBG_SINGLESTEP != 0);
                    self.runs_to_debug_exit.set(runs);
                    Reply::Done
                }),
            };
            let _ = self.replies.send(reply.unwrap_or_else(|e| Reply::Failed(e.to_string())));
        }
    }
}

fn get_msr(vcpu: &VcpuFd, index: u32) -> std::result::Result<u64, kvm_ioctls::Error> {
    let mut msrs = Msrs::from_entries(&[kvm_msr_entry { index, ..Default::default() }])
        .map_err(|_| kvm_ioctls::Error::new(libc::EINVAL))?;
    match vcpu.get_msrs(&mut msrs)? {
        1 => Ok(msrs.as_slice()[0].data),
        _ => Err(kvm_ioctls::Error::new(libc::EINVAL)),
    }
}

fn set_msr(vcpu: &VcpuFd, index: u32, data: u64) -> std::result::Result<(), kvm_ioctls::Error> {
    let msrs = Msrs::from_entries(&[kvm_msr_entry { index, data, ..Default::default() }])
        .map_err(|_| kvm_ioctls::Error::new(libc::EINVAL))?;
    match vcpu.set_msrs(&msrs)? {
        1 => Ok(()),
        _ => Err(kvm_ioctls::Error::new(libc::EINVAL)),
    }
}

/// The gdb thread's handle on one vCPU.
struct Remote {
    cmds: Sender<Cmd>,
    replies: Receiver<Reply>,
    parked: bool,
}

/// The gdb thread's handle on all vCPUs.
pub struct Vcpus {
    hub: Arc<Hub>,
    events: Receiver<Event>,
    remotes: Vec<Remote>,
    threads: Vec<libc::pthread_t>,
}

/// Creates the hub, one port per vCPU thread, and the gdb side. `start_paused` parks every
/// vCPU before its first instruction (--gdb-wait).
pub fn channels(count: usize, start_paused: bool) -> Result<(Vcpus, Vec<VcpuPort>)> {
    let (etx, erx) = mpsc::channel();
    let wake = EventFd::new(libc::EFD_NONBLOCK).map_err(Error::host("gdb eventfd"))?;
    let hub = Arc::new(Hub {
        pause: AtomicBool::new(start_paused),
        interrupt: AtomicBool::new(false),
        events: etx,
        wake,
        traps: PageTraps::default(),
    });
    let mut ports = Vec::with_capacity(count);
    let mut remotes = Vec::with_capacity(count);
    for id in 0..count {
        let (ctx, crx) = mpsc::channel();
        let (rtx, rrx) = mpsc::channel();
        ports.push(VcpuPort {
            id,
            hub: hub.clone(),
            cmds: crx,
            replies: rtx,
            stepping: std::cell::Cell::new(false),
            runs_to_debug_exit: std::cell::Cell::new(false),
        });
        remotes.push(Remote { cmds: ctx, replies: rrx, parked: false });
    }
    Ok((Vcpus { hub, events: erx, remotes, threads: Vec::new() }, ports))
}

impl Vcpus {
    /// Records the vCPU threads so they can be kicked out of KVM_RUN.
    pub fn set_threads(&mut self, threads: Vec<libc::pthread_t>) {
        self.threads = threads;
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    pub fn count(&self) -> usize {
        self.remotes.len()
    }

    /// Takes the next event without waiting, marking parked vCPUs.
    pub fn try_event(&mut self) -> Option<Event> {
        let e = self.events.try_recv().ok()?;
        if !matches!(e.kind, EventKind::Ended(_)) {
            if let Some(r) = self.remotes.get_mut(e.vcpu) {
                r.parked = true;
            }
        }
        Some(e)
    }

    /// Parks every vCPU. Debug events that arrive meanwhile are returned (they are stops
    /// in their own right); an `Ended` event ends the wait.
    pub fn pause_all(&mut self) -> Vec<Event> {
        self.hub.interrupt.store(true, Ordering::SeqCst);
        self.hub.pause.store(true, Ordering::SeqCst);
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.remotes.iter().any(|r| !r.parked) && Instant::now() < deadline {
            for (i, r) in self.remotes.iter().enumerate() {
                if !r.parked {
                    if let Some(&t) = self.threads.get(i) {
                        // SAFETY: vCPU threads live until the VM stops, after the gdb
                        // thread is done; the kick signal's handler does nothing.
                        unsafe { libc::pthread_kill(t, signals::kick_signal()) };
                    }
                }
            }
            while let Some(e) = self.try_event() {
                let ended = matches!(e.kind, EventKind::Ended(_));
                if !matches!(e.kind, EventKind::Paused) {
                    seen.push(e);
                }
                if ended {
                    return seen;
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        seen
    }

    /// Resumes the given parked vCPUs. With `others_stay` false, the pause flag is lifted
    /// so that they keep running; otherwise they run until their next debug exit.
    pub fn resume(&mut self, which: &[usize], others_stay: bool) {
        self.hub.interrupt.store(false, Ordering::SeqCst);
        self.hub.pause.store(others_stay, Ordering::SeqCst);
        for &i in which {
            if let Some(r) = self.remotes.get_mut(i) {
                if r.parked {
                    r.parked = false;
                    let _ = r.cmds.send(Cmd::Resume);
                }
            }
        }
    }

    /// Sends a command to a parked vCPU and waits for its reply.
    pub fn request(&self, vcpu: usize, cmd: Cmd) -> std::result::Result<Reply, String> {
        let r = self.remotes.get(vcpu).ok_or_else(|| format!("no vCPU {vcpu}"))?;
        if !r.parked {
            return Err(format!("vCPU {vcpu} is running"));
        }
        r.cmds.send(cmd).map_err(|_| "vCPU thread gone".to_string())?;
        match r.replies.recv_timeout(Duration::from_secs(5)) {
            Ok(Reply::Failed(e)) => Err(e),
            Ok(reply) => Ok(reply),
            Err(_) => Err("vCPU did not answer".into()),
        }
    }
}
