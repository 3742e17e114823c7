//! The gdb remote stub, built on the gdbstub crate (x86_64 with SSE registers, the
//! segment bases and the system registers: see [`arch`]).
//!
//! One gdb thread per VM serves one connection at a time on `--gdb tcp:HOST:PORT` or
//! `unix:PATH`. Each vCPU is a gdb thread (tid = vCPU id + 1). While gdb has control every
//! vCPU is parked (see [`control`]); memory is read and written by guest-virtual address
//! through a walk of the selected vCPU's page tables. Breakpoints and watchpoints use the
//! four debug registers; software breakpoints use `int3` only if a probe shows that KVM
//! can intercept it in guest ring 0 (not on PVM hosts), else they take hardware slots.
//! Without a connection nothing is enabled: the guest runs at full speed.

mod arch;
mod breakpoints;
pub mod control;
mod step;
mod target;
pub mod watch;

use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::Arc;

use gdbstub::stub::{DisconnectReason, GdbStub};
use kvm_ioctls::{Kvm, VmFd};
use vm_memory::GuestMemoryMmap;

pub use crate::config::GdbAddr;
use crate::exit_status::Outcome;
use crate::vcpu::Shared;

/// A bound listening socket.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Binds `addr`. Done before the guest starts, so a bad address is a config error.
    pub fn bind(addr: &GdbAddr) -> std::io::Result<Self> {
        Ok(match addr {
            GdbAddr::Tcp(a) => Listener::Tcp(TcpListener::bind(a)?),
            GdbAddr::Unix(p) => Listener::Unix(UnixListener::bind(p)?, p.clone()),
        })
    }

    /// What it is bound to (the real port if 0 was asked for).
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => l.local_addr().map_or_else(|_| "tcp:?".into(), |a| format!("tcp:{a}")),
            Listener::Unix(_, p) => format!("unix:{}", p.display()),
        }
    }

    fn fd(&self) -> RawFd {
        match self {
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Unix(l, _) => l.as_raw_fd(),
        }
    }

    fn accept(&self) -> std::io::Result<target::Conn> {
        Ok(match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept()?;
                let _ = s.set_nodelay(true);
                target::Conn::Tcp(s)
            }
            Listener::Unix(l, _) => target::Conn::Unix(l.accept()?.0),
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, p) = self {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Waits until `a` or `b` is readable; returns (a ready, b ready).
fn poll2(a: RawFd, b: RawFd) -> (bool, bool) {
    let mut fds = [
        libc::pollfd { fd: a, events: libc::POLLIN, revents: 0 },
        libc::pollfd { fd: b, events: libc::POLLIN, revents: 0 },
    ];
    loop {
        // SAFETY: `fds` is a valid array of two pollfds for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n > 0 {
            return (fds[0].revents != 0, fds[1].revents != 0);
        }
        if n < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return (false, true);
        }
    }
}

/// Runs the stub until the VM ends or gdb kills it.
pub fn serve(
    listener: Listener,
    vcpus: control::Vcpus,
    memory: GuestMemoryMmap,
    kvm: Arc<Kvm>,
    vm: Arc<VmFd>,
    shared: Arc<Shared>,
    filter: Option<Arc<seccompiler::BpfProgram>>,
) {
    // Confined before the first connection.
    if let Some(p) = &filter {
        if let Err(e) = crate::seccomp::install(p) {
            log::error!("gdb: {e}; the gdb stub is off");
            return;
        }
    }
    let mut target = target::L4Target::new(vcpus, memory, kvm, vm);
    loop {
        let (conn_ready, _) = poll2(listener.fd(), target.wake_fd());
        if target.vm_ended() {
            return;
        }
        if !conn_ready {
            continue;
        }
        let conn = match listener.accept() {
            Ok(c) => c,
            Err(e) => {
                log::warn!("gdb: accept failed: {e}");
                continue;
            }
        };
        log::info!("gdb: connected");
        target.attach();
        let gdb = GdbStub::new(conn);
        match gdb.run_blocking::<target::EventLoop>(&mut target) {
            Ok(DisconnectReason::Kill) => {
                log::info!("gdb: kill");
                shared.finish(Outcome::Killed);
                return;
            }
            Ok(DisconnectReason::TargetExited(_)) | Ok(DisconnectReason::TargetTerminated(_)) => return,
            Ok(DisconnectReason::Disconnect) => log::info!("gdb: detached; the guest continues"),
            Err(e) => log::warn!("gdb: connection ended: {e}"),
        }
        if target.vm_ended() {
            return;
        }
        target.detach();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        assert_eq!("tcp:127.0.0.1:1234".parse(), Ok(GdbAddr::Tcp("127.0.0.1:1234".into())));
        assert_eq!(":1234".parse(), Ok(GdbAddr::Tcp("127.0.0.1:1234".into())));
        assert_eq!("unix:/tmp/g".parse(), Ok(GdbAddr::Unix("/tmp/g".into())));
        assert!("tcp:localhost".parse::<GdbAddr>().is_err());
        assert!("tcp:h:99999".parse::<GdbAddr>().is_err());
        assert!("unix:".parse::<GdbAddr>().is_err());
    }
}
