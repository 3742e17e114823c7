//! How l4vmm ends: why the run ended ([`End`]), and the exit status each reason maps to
//! ([`ExitStatus`], one meaning each; see the README and `l4vmm --help`), with the line
//! l4vmm prints for it.

use std::time::Duration;

use l4_abi::exit;

/// How the guest ended, as the vCPU that saw it reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The guest wrote this value to the exit device.
    GuestExit(u8),
    /// Triple fault, or a shutdown/reset request.
    Shutdown,
    /// KVM could not run or emulate the guest.
    InternalError,
    /// KVM_RUN itself failed.
    RunFailed(String),
    /// gdb killed the guest.
    Killed,
}

/// Why a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// A vCPU's outcome.
    Outcome(Outcome),
    /// `--timeout` (this long) expired.
    Timeout(Duration),
    /// l4vmm got this stop signal.
    Signal(i32),
}

impl End {
    /// The process exit status for this end.
    pub fn status(&self) -> ExitStatus {
        match self {
            End::Outcome(Outcome::GuestExit(code)) => ExitStatus::from_guest(*code),
            End::Outcome(Outcome::Shutdown) => ExitStatus::GuestShutdown,
            End::Outcome(Outcome::InternalError) => ExitStatus::InternalError,
            End::Outcome(Outcome::Killed) => ExitStatus::GdbKill,
            End::Outcome(Outcome::RunFailed(_)) => ExitStatus::VmmError,
            End::Timeout(_) => ExitStatus::Timeout,
            End::Signal(sig) => ExitStatus::Signal(*sig),
        }
    }

    /// What l4vmm says about it on stderr, if anything (a guest's own exit, a shutdown and
    /// an internal error have their reports printed where they happen).
    pub fn message(&self) -> Option<String> {
        Some(match self {
            End::Outcome(Outcome::GuestExit(code)) if !exit::is_guest_code(*code) => {
                format!("the guest wrote exit value {code}, which is not a guest exit code (0, 1, 3-63)")
            }
            End::Outcome(Outcome::Killed) => "killed from gdb".into(),
            End::Outcome(Outcome::RunFailed(e)) => format!("error: {e}"),
            End::Timeout(d) => format!("--timeout of {d:?} expired; guest stopped"),
            End::Signal(sig) => format!("stopped by signal {sig}"),
            _ => return None,
        })
    }
}

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
    fn every_end_maps_to_its_status_and_says_what_it_must() {
        let cases = [
            (End::Outcome(Outcome::GuestExit(0)), 0, None),
            (End::Outcome(Outcome::GuestExit(3)), 3, None),
            (End::Outcome(Outcome::GuestExit(64)), 68, Some("exit value 64")),
            (End::Outcome(Outcome::Shutdown), 65, None),
            (End::Outcome(Outcome::InternalError), 66, None),
            (End::Outcome(Outcome::Killed), 69, Some("killed from gdb")),
            (End::Outcome(Outcome::RunFailed("KVM_RUN: EFAULT".into())), 64, Some("error: KVM_RUN: EFAULT")),
            (End::Timeout(Duration::from_secs(5)), 67, Some("--timeout of 5s expired")),
            (End::Signal(15), 143, Some("stopped by signal 15")),
        ];
        for (end, code, says) in cases {
            assert_eq!(end.status().code(), code, "{end:?}");
            match (end.message(), says) {
                (None, None) => {}
                (Some(m), Some(s)) => assert!(m.contains(s), "{end:?}: {m}"),
                (m, s) => panic!("{end:?}: says {m:?}, expected {s:?}"),
            }
        }
    }

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
