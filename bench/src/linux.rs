//! Linux baselines on the host, measured in the same run: round trips between two
//! processes over a pipe, a unix socket, eventfds, a futex, and a spinning shared-memory
//! flag with the two processes on different CPUs.

use std::time::Instant;

use crate::Scenario;

/// Reads or writes exactly one u64 (eventfd) or one byte.
fn xfer(fd: i32, write: bool, len: usize) {
    let mut buf = [1u8; 8];
    loop {
        // SAFETY: buf is valid for `len` <= 8 bytes.
        let n = unsafe {
            if write {
                libc::write(fd, buf.as_ptr().cast(), len)
            } else {
                libc::read(fd, buf.as_mut_ptr().cast(), len)
            }
        };
        if n == len as isize {
            return;
        }
        if n == 0 || (n < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR)) {
            // SAFETY: the child leaves when its partner is gone.
            unsafe { libc::_exit(0) };
        }
    }
}

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t with one bit set, for this process.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Forks a child running `child` for ever, times `samples` × `per` runs of `ping` in the
/// parent (ns per round trip per sample), then kills the child.
fn measure(samples: usize, per: usize, child: impl FnOnce(), mut ping: impl FnMut()) -> Vec<f64> {
    // SAFETY: the child only runs `child` (plain system calls) and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        child();
        // SAFETY: leave without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    for _ in 0..per * 10 {
        ping();
    }
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        for _ in 0..per {
            ping();
        }
        out.push(t.elapsed().as_nanos() as f64 / per as f64);
    }
    // SAFETY: our own child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
    out
}

pub fn scenario(path: &str, mut ns: Vec<f64>) -> Scenario {
    ns.sort_by(|a, b| a.total_cmp(b));
    let median = ns[ns.len() / 2];
    Scenario {
        name: path.to_string(),
        path: path.to_string(),
        placement: "host".into(),
        size_bytes: 1,
        batch: 1,
        median_ns: median,
        p99_ns: ns[(ns.len() * 99 / 100).min(ns.len() - 1)],
        min_ns: ns[0],
        ops_per_sec: 1e9 / median,
        ring0_instructions_per_op: None,
    }
}

fn fds2() -> [i32; 2] {
    let mut f = [0i32; 2];
    // SAFETY: f has room for two descriptors.
    assert_eq!(unsafe { libc::pipe(f.as_mut_ptr()) }, 0, "pipe");
    f
}

pub fn run(quick: bool, _tsc_khz: u64) -> Vec<Scenario> {
    let (samples, per) = if quick { (200, 10) } else { (2000, 10) };
    let mut out = Vec::new();

    let (a, b) = (fds2(), fds2());
    out.push(scenario(
        "linux-pipe",
        measure(
            samples,
            per,
            || loop {
                xfer(a[0], false, 1);
                xfer(b[1], true, 1);
            },
            || {
                xfer(a[1], true, 1);
                xfer(b[0], false, 1);
            },
        ),
    ));

    let mut sv = [0i32; 2];
    // SAFETY: sv has room for two descriptors.
    assert_eq!(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, sv.as_mut_ptr()) }, 0);
    out.push(scenario(
        "linux-unix",
        measure(
            samples,
            per,
            || loop {
                xfer(sv[1], false, 1);
                xfer(sv[1], true, 1);
            },
            || {
                xfer(sv[0], true, 1);
                xfer(sv[0], false, 1);
            },
        ),
    ));

    // SAFETY: plain eventfd creation.
    let (e1, e2) = unsafe { (libc::eventfd(0, 0), libc::eventfd(0, 0)) };
    out.push(scenario(
        "linux-eventfd",
        measure(
            samples,
            per,
            || loop {
                xfer(e1, false, 8);
                xfer(e2, true, 8);
            },
            || {
                xfer(e1, true, 8);
                xfer(e2, false, 8);
            },
        ),
    ));

    // A shared word: 1 = ping, 2 = pong.
    // SAFETY: an anonymous shared mapping of one page, inherited by the child.
    let word = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(word, libc::MAP_FAILED, "mmap of the shared futex word failed");
    let word = word as *mut u32;
    // SAFETY: `word` is a live, page-aligned shared mapping for the rest of the process.
    let atom = || unsafe { &*(word as *const std::sync::atomic::AtomicU32) };
    let futex = |op: i32, val: u32| {
        // SAFETY: a futex call on the shared word.
        unsafe { libc::syscall(libc::SYS_futex, word, op, val, std::ptr::null::<libc::timespec>()) };
    };
    use std::sync::atomic::Ordering::SeqCst;
    out.push(scenario(
        "linux-futex",
        measure(
            samples,
            per,
            || loop {
                while atom().load(SeqCst) != 1 {
                    futex(libc::FUTEX_WAIT, 0);
                }
                atom().store(2, SeqCst);
                futex(libc::FUTEX_WAKE, 1);
            },
            || {
                atom().store(1, SeqCst);
                futex(libc::FUTEX_WAKE, 1);
                while atom().load(SeqCst) != 2 {
                    futex(libc::FUTEX_WAIT, 1);
                }
                atom().store(0, SeqCst);
            },
        ),
    ));

    atom().store(0, SeqCst);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus >= 2 {
        pin(0);
        out.push(scenario(
            "linux-spin",
            measure(
                samples,
                per * 10,
                || {
                    pin(1);
                    loop {
                        while atom().load(SeqCst) != 1 {
                            std::hint::spin_loop();
                        }
                        atom().store(2, SeqCst);
                    }
                },
                || {
                    atom().store(1, SeqCst);
                    while atom().load(SeqCst) != 2 {
                        std::hint::spin_loop();
                    }
                },
            ),
        ));
        // SAFETY: undo the pinning: every CPU allowed again.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            for c in 0..cpus {
                libc::CPU_SET(c, &mut set);
            }
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
    out
}
