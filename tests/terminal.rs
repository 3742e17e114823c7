//! Ctrl-C on a real terminal: l4vmm runs with a pseudo-terminal as its controlling
//! terminal, we type ^C into it, and check that the guest stopped cleanly and the
//! terminal's settings came back exactly as they were.

mod common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn lflag(fd: i32) -> libc::tcflag_t {
    // SAFETY: termios is plain data filled in by tcgetattr, whose result we check.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd is an open terminal; `t` is valid for writing.
    assert_eq!(unsafe { libc::tcgetattr(fd, &mut t) }, 0, "tcgetattr");
    t.c_lflag
}

#[test]
fn ctrl_c_stops_the_guest_and_restores_the_terminal() {
    require_kvm();
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two new descriptors into the given ints; we check the result.
    let rc =
        unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
    assert_eq!(rc, 0, "openpty");
    // SAFETY: fresh descriptors that we own from here on.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let before = lflag(slave.as_raw_fd());
    assert_ne!(before & libc::ICANON, 0, "a new pty starts in canonical mode");

    let mut cmd = Command::new(l4vmm_path());
    cmd.args(["--cmdline", "ktest=spin", "--timeout", "60"])
        .stdin(Stdio::from(slave.try_clone().expect("dup")))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls between fork and exec: make the pty the child's
    // controlling terminal, as a shell would, so ^C typed into it raises SIGINT there.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("spawn l4vmm");

    // Wait until l4vmm has put the terminal into character mode.
    let start = Instant::now();
    while lflag(slave.as_raw_fd()) & libc::ICANON != 0 {
        assert!(start.elapsed() < Duration::from_secs(20), "l4vmm never switched the terminal to character mode");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(lflag(slave.as_raw_fd()) & libc::ECHO, 0, "local echo is off while the guest runs");
    assert_ne!(lflag(slave.as_raw_fd()) & libc::ISIG, 0, "^C must still raise SIGINT");
    std::thread::sleep(Duration::from_millis(200));

    // Type ^C.
    // SAFETY: writes one byte from a valid buffer to our pty master.
    assert_eq!(unsafe { libc::write(master.as_raw_fd(), b"\x03".as_ptr().cast(), 1) }, 1);
    let r = finish(child, Duration::from_secs(20));
    r.assert_code(130).assert_stderr_has("stopped by signal 2");
    assert_eq!(lflag(slave.as_raw_fd()), before, "terminal settings restored");
}
