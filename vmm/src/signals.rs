//! Signals: SIGINT/SIGTERM/SIGHUP reach the event loop through a signalfd; vCPU threads
//! are kicked out of KVM_RUN with a real-time signal whose handler does nothing.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};

use vmm_sys_util::signal::{register_signal_handler, SIGRTMIN};

use crate::error::{Error, Result};

/// The signal that interrupts a vCPU's KVM_RUN.
pub fn kick_signal() -> i32 {
    SIGRTMIN()
}

extern "C" fn noop_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// Installs the kick handler. Call once, before vCPU threads start.
pub fn install_kick_handler() -> Result<()> {
    register_signal_handler(kick_signal(), noop_handler)
        .map_err(|e| Error::Host { what: "registering the vCPU kick signal", source: e.into() })
}

/// The stop signals, delivered through a signalfd.
pub struct StopSignals {
    fd: File,
}

const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

impl StopSignals {
    /// Blocks the stop signals in this thread (threads spawned later inherit the mask) and
    /// opens a signalfd for them. Call before spawning any thread.
    pub fn new() -> Result<Self> {
        // SAFETY: sigset_t is plain data initialised by sigemptyset.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid sigset_t; the signal numbers are valid.
        unsafe {
            libc::sigemptyset(&mut set);
            for s in STOP_SIGNALS {
                libc::sigaddset(&mut set, s);
            }
        }
        // SAFETY: blocks signals for this thread; `set` is valid.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(Error::host("blocking stop signals")(std::io::Error::from_raw_os_error(rc)));
        }
        // SAFETY: creates a new descriptor; checked below.
        let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
        if fd < 0 {
            return Err(Error::host("signalfd")(std::io::Error::last_os_error()));
        }
        // SAFETY: fd is a fresh descriptor we own.
        Ok(StopSignals { fd: unsafe { File::from_raw_fd(fd) } })
    }

    /// The signal that arrived, if any.
    pub fn read(&mut self) -> Option<i32> {
        let mut buf = [0u8; std::mem::size_of::<libc::signalfd_siginfo>()];
        match self.fd.read(&mut buf) {
            Ok(n) if n == buf.len() => {
                let signo = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
                Some(signo as i32)
            }
            _ => None,
        }
    }
}

impl AsRawFd for StopSignals {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
