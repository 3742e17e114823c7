//! l4vmm's exit statuses: one meaning each (see the README and `l4vmm --help`).

use l4_abi::exit;

/// How l4vmm ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// The guest wrote this code to the exit device (a valid guest code).
    Guest(u8),
    /// Usage or configuration error.
    Usage,
    /// l4vmm itself failed (KVM, host).
    VmmError,
    /// The guest triple-faulted or asked for a shutdown/reset.
    GuestShutdown,
    /// KVM internal error, emulation failure or failed VM entry.
    InternalError,
    /// --timeout expired.
    Timeout,
    /// The guest wrote a value that is not a valid guest exit code.
    InvalidGuestExit,
    /// Stopped by this signal.
    Signal(i32),
    /// gdb killed the guest.
    GdbKill,
}

impl ExitStatus {
    /// The process exit status.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Guest(c) => i32::from(c),
            ExitStatus::Usage => i32::from(exit::USAGE),
            ExitStatus::VmmError => 64,
            ExitStatus::GuestShutdown => 65,
            ExitStatus::InternalError => 66,
            ExitStatus::Timeout => 67,
            ExitStatus::InvalidGuestExit => 68,
            ExitStatus::GdbKill => 69,
            ExitStatus::Signal(s) => 128 + s,
        }
    }

    /// The status for a value the guest wrote to the exit device.
    pub fn from_guest(value: u8) -> Self {
        if exit::is_guest_code(value) {
            ExitStatus::Guest(value)
        } else {
            ExitStatus::InvalidGuestExit
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for s in [
            ExitStatus::Usage,
            ExitStatus::VmmError,
            ExitStatus::GuestShutdown,
            ExitStatus::InternalError,
            ExitStatus::Timeout,
            ExitStatus::InvalidGuestExit,
            ExitStatus::Signal(2),
            ExitStatus::Signal(15),
        ] {
            assert!(seen.insert(s.code()), "{s:?}");
        }
        for g in 0..=255u8 {
            if let ExitStatus::Guest(c) = ExitStatus::from_guest(g) {
                assert!(seen.insert(i32::from(c)), "guest code {c} collides");
            }
        }
        assert_eq!(ExitStatus::from_guest(2), ExitStatus::InvalidGuestExit);
        assert_eq!(ExitStatus::from_guest(64), ExitStatus::InvalidGuestExit);
    }
}
