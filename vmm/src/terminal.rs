//! The host terminal while the guest runs: character-at-a-time input without local echo,
//! but with ISIG kept so Ctrl-C still raises SIGINT (which stops the guest cleanly). The
//! saved settings are restored when the guard is dropped, on every path out of l4vmm.

use std::os::fd::AsRawFd;

/// Restores stdin's terminal settings on drop.
pub struct TerminalGuard {
    saved: Option<libc::termios>,
}

impl TerminalGuard {
    /// Switches stdin to non-canonical, no-echo mode if it is a terminal.
    pub fn new() -> Self {
        let fd = std::io::stdin().as_raw_fd();
        // SAFETY: isatty only inspects the descriptor.
        if unsafe { libc::isatty(fd) } != 1 {
            return TerminalGuard { saved: None };
        }
        // SAFETY: termios is plain data; tcgetattr fills it and we check its result.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd is a terminal and `t` is a valid termios to write into.
        if unsafe { libc::tcgetattr(fd, &mut t) } != 0 {
            return TerminalGuard { saved: None };
        }
        let saved = t;
        t.c_lflag &= !(libc::ICANON | libc::ECHO);
        t.c_cc[libc::VMIN] = 1;
        t.c_cc[libc::VTIME] = 0;
        // SAFETY: a valid termios for a terminal fd.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) } != 0 {
            return TerminalGuard { saved: None };
        }
        TerminalGuard { saved: Some(saved) }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        if let Some(saved) = self.saved {
            // SAFETY: restores the settings read from the same terminal in `new`.
            unsafe { libc::tcsetattr(std::io::stdin().as_raw_fd(), libc::TCSANOW, &saved) };
        }
    }
}
