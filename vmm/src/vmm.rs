//! The virtual machine: built from a validated [`Config`] in named boot steps, then run
//! until the guest exits, fails, times out or l4vmm is signalled.
//!
//! Boot steps, in order (see [`Vmm::build`]):
//! 1. `open_kvm`      /dev/kvm, host kind, required capabilities
//! 2. `create_vm`     the VM and its in-kernel irqchip (before any vCPU)
//! 3. `guest_memory`  RAM from anonymous mappings, registered as KVM memory slots
//! 4. `load_image`    validate + load the kernel ELF, place the modules
//! 5. `start_info`    ACPI tables (the CPUs) and the PVH start info: memory map, modules,
//!    command line
//! 6. `devices`       serial console (IRQ 4), exit device, marker port
//! 7. `vcpus`         create the vCPUs; the boot vCPU at the PVH entry
//! 8. `gdb`           bind the gdb stub's socket (with `--gdb`)
//!
//! Each step logs its time at debug level (`RUST_LOG=debug`: "boot step NAME: N us").
//!
//! Running: one host thread per vCPU ([`vcpu::run_loop`]); the main thread runs the
//! event-manager loop (stdin -> serial, stop signals, --timeout, vCPU outcomes), then
//! stops and joins every vCPU thread before returning.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use event_manager::{EventManager, EventOps, EventSet, Events, MutEventSubscriber, SubscriberOps};
use kvm_ioctls::{Cap, Kvm, VcpuFd, VmFd};
use l4_abi::port::Marker;
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm_sys_util::timerfd::TimerFd;

use crate::boot::{elf, pvh};
use crate::config::Config;
use crate::devices::serial::Console;
use crate::devices::Devices;
use crate::error::{Error, Result};
use crate::exit_status::ExitStatus;
use crate::exit_status::{End, Outcome};
use crate::host::HostKvm;
use crate::seccomp;
use crate::signals::{self, StopSignals};
use crate::terminal::TerminalGuard;
use crate::vcpu::{self, Shared};
use crate::{gdb, image, memory};

/// A built VM, ready to run.
pub struct Vmm {
    config: Config,
    started: Instant,
    // Field order is drop order: vCPUs and the VM go before the memory they map.
    vcpus: Vec<VcpuFd>,
    devices: Arc<Devices>,
    gdb: Option<gdb::Listener>,
    vm: Arc<VmFd>,
    kvm: Arc<Kvm>,
    memory: GuestMemoryMmap,
}

impl Vmm {
    /// Runs the boot steps.
    pub fn build(config: Config, started: Instant) -> Result<Self> {
        let mut step_start = Instant::now();
        let mut step = |name: &str| {
            log::debug!("boot step {name}: {} us", step_start.elapsed().as_micros());
            step_start = Instant::now();
        };
        let kvm = open_kvm()?;
        step("open_kvm");
        let vm = create_vm(&kvm)?;
        step("create_vm");
        let mem_bytes = config.mem_mib << 20;
        let memory = memory::create(&vm, mem_bytes)?;
        step("guest_memory");
        let image = load_image(&config, &memory)?;
        step("load_image");
        start_info(&config, &memory, &image)?;
        step("start_info");
        let entry = image.entry;
        let devices = Arc::new(Devices::new(Console::new(&vm)?, memory.clone()));
        step("devices");
        let vcpus = create_vcpus(&kvm, &vm, config.vcpus, entry)?;
        if let Some(khz) = vcpus.first().and_then(|v| v.get_tsc_khz().ok()) {
            log::info!("guest TSC: {khz} kHz");
        }
        step("vcpus");
        let gdb = match &config.gdb {
            Some(addr) => {
                let l = gdb::Listener::bind(addr)
                    .map_err(|source| Error::GdbListen { addr: format!("{addr:?}"), source })?;
                log::info!("gdb: listening on {}", l.describe());
                Some(l)
            }
            None => None,
        };
        step("gdb");
        Ok(Vmm { config, started, vcpus, devices, gdb, vm: Arc::new(vm), kvm: Arc::new(kvm), memory })
    }

    /// Runs the guest to its end.
    pub fn run(self) -> Result<ExitStatus> {
        let Vmm { config, started, vcpus, devices, gdb, vm, kvm, memory } = self;
        // Before any thread exists, so that every thread inherits the blocked stop signals.
        let stop_signals = StopSignals::new()?;
        signals::install_kick_handler()?;
        let _terminal = TerminalGuard::new();
        let shared = Arc::new(Shared::new()?);

        let (mut gdb_side, mut ports) = match &gdb {
            Some(_) => {
                let (side, ports) = gdb::control::channels(vcpus.len(), config.gdb_wait)?;
                (Some(side), ports.into_iter().map(Some).collect())
            }
            None => (None, (0..vcpus.len()).map(|_| None).collect::<Vec<_>>()),
        };
        if config.gdb_wait {
            log::info!("gdb: the guest waits for gdb before its first instruction");
        }

        let filter = if config.seccomp {
            let extra = match &config.gdb {
                Some(gdb::GdbAddr::Unix(_)) => seccomp::UNIX_SOCKET_CLEANUP,
                _ => &[],
            };
            let p = Arc::new(seccomp::program(extra)?);
            log::info!("seccomp: every l4vmm thread limited to {} system calls", seccomp::ALLOWED.len() + extra.len());
            Some(p)
        } else {
            log::warn!("seccomp: off (--no-seccomp): l4vmm runs unconfined");
            None
        };
        let mut threads = Vec::with_capacity(vcpus.len());
        for (id, fd) in vcpus.into_iter().enumerate() {
            let (devices, memory, shared) = (devices.clone(), memory.clone(), shared.clone());
            let port = ports[id].take();
            let filter = filter.clone();
            let t = std::thread::Builder::new()
                .name(format!("vcpu{id}"))
                .spawn(move || vcpu::run_loop(fd, id as u8, devices, memory, shared, port, filter))
                .map_err(Error::host("spawning a vCPU thread"))?;
            threads.push(t);
        }
        let gdb_thread = match (gdb, gdb_side.take()) {
            (Some(listener), Some(mut side)) => {
                side.set_threads(threads.iter().map(|t| t.as_pthread_t()).collect());
                let hub = side.hub().clone();
                let (memory, shared, filter) = (memory.clone(), shared.clone(), filter.clone());
                let t = std::thread::Builder::new()
                    .name("gdb".into())
                    .spawn(move || gdb::serve(listener, side, memory, kvm, vm, shared, filter))
                    .map_err(Error::host("spawning the gdb thread"))?;
                Some((t, hub))
            }
            _ => None,
        };

        // The main thread is confined last, once it has spawned the others and set up its
        // event loop (clone, timerfd_create and epoll_create are not on the list).
        let ended = event_loop(&config, &devices, &shared, stop_signals, filter.as_deref());
        if let Some((t, hub)) = gdb_thread {
            // Tell gdb how the guest ended, give it a moment to hear it, then go on.
            let code = match &ended {
                Ok(End::Outcome(Outcome::GuestExit(c))) => Some(*c),
                _ => None,
            };
            hub.send(gdb::control::Event { vcpu: 0, kind: gdb::control::EventKind::Ended(code) });
            let deadline = Instant::now() + Duration::from_secs(2);
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        stop_vcpus(&shared, threads);
        devices.console.flush();
        let end = ended?;

        let elapsed = |t: Instant| t.duration_since(started).as_secs_f64() * 1e3;
        let entry = devices.marker_time(Marker::KernelEntry).map(elapsed);
        if let Some(message) = end.message() {
            eprintln!("l4vmm: {message}");
        }
        let status = end.status();
        let unknown = devices.unknown_accesses();
        if unknown > 0 {
            log::info!("the guest made {unknown} accesses to ports or addresses without a device (ignored)");
        }
        log::info!(
            "exit status {}: kernel entry at {}, end at {:.3} ms after l4vmm started",
            status.code(),
            entry.map_or("(never)".to_string(), |ms| format!("{ms:.3} ms")),
            elapsed(Instant::now()),
        );
        Ok(status)
    }
}

/// Step 1: /dev/kvm.
fn open_kvm() -> Result<Kvm> {
    let kvm = Kvm::new().map_err(Error::KvmOpen)?;
    log::info!("host KVM: {}", HostKvm::detect().describe());
    if kvm.get_api_version() != 12 {
        return Err(Error::KvmCapability("KVM API version 12"));
    }
    for (cap, name) in
        [(Cap::Irqchip, "KVM_CAP_IRQCHIP"), (Cap::Irqfd, "KVM_CAP_IRQFD"), (Cap::UserMemory, "KVM_CAP_USER_MEMORY")]
    {
        if !kvm.check_extension(cap) {
            return Err(Error::KvmCapability(name));
        }
    }
    Ok(kvm)
}

/// Step 2: the VM and its irqchip (KVM only accepts the irqchip before the first vCPU).
fn create_vm(kvm: &Kvm) -> Result<VmFd> {
    let vm = kvm.create_vm().map_err(Error::kvm("create_vm"))?;
    vm.create_irq_chip().map_err(Error::kvm("create_irqchip"))?;
    Ok(vm)
}

/// What step 4 loaded, for step 5.
struct Loaded {
    entry: GuestAddress,
    modules: Vec<image::Blob>,
    placed: Vec<pvh::PlacedModule>,
}

/// Step 4: the kernel and the modules, checked to fit before anything is written.
fn load_image(config: &Config, memory: &GuestMemoryMmap) -> Result<Loaded> {
    let kernel = image::kernel(&config.kernel)?;
    let modules = image::modules(&config.modules)?;
    let layout = elf::validate(&kernel)?;
    let placed = pvh::place_modules(&modules, layout.end, config.mem_mib << 20, memory)?;
    let entry = elf::load(&kernel, memory)?;
    log::debug!("kernel [{:#x}, {:#x}) entry {:#x}, {} module(s)", layout.start, layout.end, entry.0, placed.len());
    Ok(Loaded { entry, modules, placed })
}

/// Step 5: the ACPI tables (the CPUs) and the PVH start info.
fn start_info(config: &Config, memory: &GuestMemoryMmap, image: &Loaded) -> Result<()> {
    let rsdp = crate::boot::acpi::write(memory, config.vcpus)?;
    pvh::write_start_info(memory, config.mem_mib << 20, &config.cmdline, &image.modules, &image.placed, rsdp)?;
    Ok(())
}

/// Step 7: the vCPUs. vCPU 0 starts at the PVH entry; the others wait in the in-kernel
/// local APIC for INIT/SIPI from the guest.
fn create_vcpus(kvm: &Kvm, vm: &VmFd, count: u32, entry: GuestAddress) -> Result<Vec<VcpuFd>> {
    let max = kvm.get_max_vcpus();
    if count as usize > max {
        return Err(Error::KvmCapability("as many vCPUs as --vcpus asks for"));
    }
    (0..count)
        .map(|id| {
            let fd = vm.create_vcpu(u64::from(id)).map_err(Error::kvm("create_vcpu"))?;
            vcpu::set_cpuid(kvm, &fd, id as u8)?;
            if id == 0 {
                vcpu::set_pvh_entry_state(&fd, entry.0)?;
            }
            Ok(fd)
        })
        .collect()
}

const EV_STDIN: u32 = 1;
const EV_SIGNAL: u32 = 2;
const EV_TIMER: u32 = 3;
const EV_VCPU: u32 = 4;

/// The main thread's event sources.
struct Controller {
    devices: Arc<Devices>,
    shared: Arc<Shared>,
    signals: StopSignals,
    timer: Option<TimerFd>,
    stdin_open: bool,
    timeout: Duration,
    end: Option<End>,
}

impl MutEventSubscriber for Controller {
    fn init(&mut self, ops: &mut EventOps) {
        let add = |ops: &mut EventOps, fd: i32, data: u32| {
            // stdin may be a file or /dev/null, which epoll refuses: then there is no input.
            if let Err(e) = ops.add(Events::with_data_raw(fd, data, EventSet::IN)) {
                log::debug!("event loop: not watching fd {fd}: {e:?}");
            }
        };
        if self.stdin_open {
            add(ops, std::io::stdin().as_raw_fd(), EV_STDIN);
        }
        add(ops, self.signals.as_raw_fd(), EV_SIGNAL);
        if let Some(t) = &self.timer {
            add(ops, t.as_raw_fd(), EV_TIMER);
        }
        add(ops, self.shared.wake.as_raw_fd(), EV_VCPU);
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        match events.data() {
            EV_STDIN => {
                let mut buf = [0u8; 64];
                match std::io::stdin().read(&mut buf) {
                    Ok(n) if n > 0 => self.devices.console.input(&buf[..n]),
                    _ => {
                        // EOF or error: stop watching stdin, keep running the guest.
                        let _ = ops.remove(events);
                        self.stdin_open = false;
                    }
                }
            }
            EV_SIGNAL => {
                if let Some(sig) = self.signals.read() {
                    self.end.get_or_insert(End::Signal(sig));
                }
            }
            EV_TIMER => {
                if let Some(t) = &mut self.timer {
                    let _ = t.wait();
                }
                self.end.get_or_insert(End::Timeout(self.timeout));
            }
            EV_VCPU => {
                let _ = self.shared.wake.read();
                if let Some(o) = self.shared.outcome() {
                    self.end.get_or_insert(End::Outcome(o));
                }
            }
            _ => {}
        }
    }
}

fn event_loop(
    config: &Config,
    devices: &Arc<Devices>,
    shared: &Arc<Shared>,
    signals: StopSignals,
    filter: Option<&seccompiler::BpfProgram>,
) -> Result<End> {
    let timer = match config.timeout {
        Some(d) => {
            let mut t = TimerFd::new().map_err(|e| Error::host("timerfd")(e.into()))?;
            t.reset(d, None).map_err(|e| Error::host("timerfd")(e.into()))?;
            Some(t)
        }
        None => None,
    };
    let controller = Arc::new(Mutex::new(Controller {
        devices: devices.clone(),
        shared: shared.clone(),
        signals,
        timer,
        timeout: config.timeout.unwrap_or_default(),
        stdin_open: true,
        end: None,
    }));
    let mut manager: EventManager<Arc<Mutex<Controller>>> = EventManager::new().map_err(Error::EventLoop)?;
    manager.add_subscriber(controller.clone());
    if let Some(p) = filter {
        seccomp::install(p)?;
    }
    loop {
        manager.run().map_err(Error::EventLoop)?;
        let mut c = controller.lock().map_err(|_| Error::Memory("event loop state poisoned".into()))?;
        if let Some(end) = c.end.take() {
            return Ok(end);
        }
    }
}

/// How long `stop_vcpus` kicks a vCPU thread before it leaves it behind.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Tells every vCPU to stop and kicks it out of KVM_RUN until its thread has ended. A
/// thread that has not ended after [`STOP_GRACE`] is blocked outside KVM (writing guest
/// output to a stdout nobody reads: `write` restarts after the kick) and is left behind:
/// l4vmm exits without it rather than never.
fn stop_vcpus(shared: &Shared, threads: Vec<JoinHandle<()>>) {
    shared.stop.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + STOP_GRACE;
    for (id, t) in threads.into_iter().enumerate() {
        // The thread may be about to enter KVM_RUN when the first kick lands: kick again
        // until it is gone.
        while !t.is_finished() && Instant::now() < deadline {
            // SAFETY: the pthread is alive (not yet joined); the kick signal has a no-op
            // handler installed by `signals::install_kick_handler`.
            unsafe { libc::pthread_kill(t.as_pthread_t(), signals::kick_signal()) };
            std::thread::sleep(Duration::from_millis(1));
        }
        if t.is_finished() {
            let _ = t.join();
        } else {
            log::warn!(
                "vCPU {id} did not stop within {STOP_GRACE:?} (blocked writing guest output to a stdout nobody \
                 reads?): l4vmm ends without it"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    /// The boot steps this file's documentation lists are the ones `Vmm::build` runs, in
    /// that order.
    #[test]
    fn the_documented_boot_steps_are_the_steps_run() {
        let src = include_str!("vmm.rs");
        let documented: Vec<&str> = src
            .lines()
            .filter_map(|l| l.strip_prefix("//! "))
            .filter(|l| l.split('.').next().is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit())))
            .filter_map(|l| l.split('`').nth(1))
            .collect();
        let run: Vec<&str> =
            src.lines().filter_map(|l| l.trim().strip_prefix("step(\"")).filter_map(|l| l.split('"').next()).collect();
        assert_eq!(documented.len(), 8, "{documented:?}");
        assert_eq!(documented, run);
    }
}
