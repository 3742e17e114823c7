//! The seccomp filter every l4vmm thread runs under once the VM is built.
//!
//! The VM is built (KVM opened, memory mapped, the image loaded, devices and vCPUs
//! created, the gdb socket bound) before any filter exists; then each thread installs the
//! same filter as its first act (the vCPU threads before their first `KVM_RUN`, the gdb
//! thread before it accepts a connection, the main thread once it has spawned the others),
//! so no guest instruction ever runs beside an unfiltered l4vmm thread. Only the system
//! calls in [`ALLOWED`] pass; any other fails with `EPERM` (an error l4vmm reports rather
//! than a kill, so a call missing from the list shows up as a clear error, not a vanished
//! process). docs/SECURITY.md explains each entry. `--no-seccomp` turns it off for
//! debugging (l4vmm says so).

use std::collections::BTreeMap;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

/// The system calls l4vmm threads make after the VM is built, each with its reason.
pub const ALLOWED: &[(i64, &str)] = &[
    (libc::SYS_ioctl, "KVM_RUN and the vCPU/VM ioctls (registers, debug, interrupts); terminal modes"),
    (libc::SYS_read, "stdin, eventfds, the signalfd, the gdb connection"),
    (libc::SYS_write, "stdout (the guest's serial console), stderr (logs), eventfds, the gdb connection"),
    (libc::SYS_readv, "buffered reads of the above"),
    (libc::SYS_writev, "buffered writes of the above"),
    (libc::SYS_poll, "the gdb thread waits for its socket and its wake-up eventfd"),
    (libc::SYS_ppoll, "as poll, where libc uses ppoll"),
    (libc::SYS_epoll_wait, "the event-manager loop (stdin, signals, timeout, vCPU outcomes)"),
    (libc::SYS_epoll_pwait, "as epoll_wait, where libc uses epoll_pwait"),
    (libc::SYS_epoll_ctl, "the event-manager loop adds and removes sources"),
    (libc::SYS_accept4, "gdb connects"),
    (libc::SYS_accept, "gdb connects (older libc)"),
    (libc::SYS_recvfrom, "reads from the gdb connection"),
    (libc::SYS_sendto, "writes to the gdb connection"),
    (libc::SYS_shutdown, "closing the gdb connection"),
    (libc::SYS_setsockopt, "TCP_NODELAY on the gdb connection"),
    (libc::SYS_getsockname, "logging where gdb is served"),
    (libc::SYS_close, "closing eventfds, the gdb connection, KVM fds at the end"),
    (libc::SYS_fcntl, "non-blocking gdb connections"),
    (libc::SYS_futex, "mutexes, condition variables, thread joins"),
    (libc::SYS_sched_yield, "spin-waits"),
    (libc::SYS_nanosleep, "short sleeps while stopping vCPUs"),
    (libc::SYS_clock_nanosleep, "as nanosleep, where libc uses clock_nanosleep"),
    (libc::SYS_clock_gettime, "timestamps when the vDSO is not used"),
    (libc::SYS_tgkill, "kicking a vCPU thread out of KVM_RUN with a signal"),
    (libc::SYS_rt_sigreturn, "returning from the kick signal's handler"),
    (libc::SYS_rt_sigprocmask, "signal masks around thread exits"),
    (libc::SYS_sigaltstack, "Rust's thread exit removes its alternate signal stack"),
    (libc::SYS_mmap, "the allocator"),
    (libc::SYS_munmap, "the allocator; unmapping guest memory and thread stacks at the end"),
    (libc::SYS_mremap, "the allocator"),
    (libc::SYS_mprotect, "the allocator"),
    (libc::SYS_madvise, "the allocator; thread exit"),
    (libc::SYS_brk, "the allocator"),
    (libc::SYS_getrandom, "hash-map seeds"),
    (libc::SYS_gettid, "logging"),
    (libc::SYS_getpid, "tgkill needs the process id"),
    (libc::SYS_exit, "a thread ends"),
    (libc::SYS_exit_group, "l4vmm ends"),
];

/// Why the filter could not be built or installed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot build the seccomp filter: {0}")]
    Build(seccompiler::BackendError),
    #[error("cannot compile the seccomp filter: {0}")]
    Compile(seccompiler::BackendError),
    #[error("cannot install the seccomp filter: {0}")]
    Install(seccompiler::Error),
}

/// Added with `--gdb unix:PATH`: removing the socket file when l4vmm ends. (seccomp cannot
/// look at the path, so this allows unlinking any file l4vmm's user may remove.)
pub const UNIX_SOCKET_CLEANUP: &[(i64, &str)] = &[
    (libc::SYS_unlink, "removing the gdb unix socket at exit"),
    (libc::SYS_unlinkat, "as unlink, where libc uses unlinkat"),
];

/// The filter, compiled to BPF: [`ALLOWED`] plus `extra`.
pub fn program(extra: &[(i64, &str)]) -> Result<BpfProgram, Error> {
    let rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>> =
        ALLOWED.iter().chain(extra).map(|&(n, _)| (n, vec![])).collect();
    let filter =
        SeccompFilter::new(rules, SeccompAction::Errno(libc::EPERM as u32), SeccompAction::Allow, TargetArch::x86_64)
            .map_err(Error::Build)?;
    filter.try_into().map_err(Error::Compile)
}

/// Confines the calling thread (and threads it spawns later) to [`ALLOWED`]. Irrevocable.
pub fn install(program: &BpfProgram) -> Result<(), Error> {
    seccompiler::apply_filter(program).map_err(Error::Install)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filtered_thread_is_refused_what_is_not_listed_and_allowed_the_rest() {
        let prog = program(&[]).expect("the filter builds");
        let (a, b) = std::thread::spawn(move || {
            install(&prog).expect("installs");
            // SAFETY: plain system calls on values this thread owns.
            unsafe {
                let s = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
                let socket_errno = *libc::__errno_location();
                let pid = libc::getpid();
                ((s, socket_errno), pid)
            }
        })
        .join()
        .expect("the thread ran");
        assert_eq!(a, (-1, libc::EPERM), "socket() must be refused");
        assert_eq!(b, std::process::id() as i32, "getpid() passes");
        // The filter belonged to that thread only: this one still may.
        // SAFETY: as above; the descriptor is closed at once.
        let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
        assert!(s >= 0);
        // SAFETY: closing the socket just made.
        unsafe { libc::close(s) };
    }

    #[test]
    fn every_entry_is_listed_once_with_a_reason() {
        let mut seen = std::collections::HashSet::new();
        for (n, why) in ALLOWED {
            assert!(seen.insert(n), "{n} twice");
            assert!(!why.is_empty());
        }
        for forbidden in [libc::SYS_execve, libc::SYS_openat, libc::SYS_socket, libc::SYS_clone, libc::SYS_ptrace] {
            assert!(!seen.contains(&forbidden), "{forbidden} must not be allowed");
        }
    }
}
