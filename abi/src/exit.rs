//! Exit codes.
//!
//! The guest ends the VM by writing a code to the exit device ([`crate::port::EXIT`]).
//! Guest codes are `0..=GUEST_MAX` except [`USAGE`], which l4vmm keeps for its own usage
//! errors so that every exit status of l4vmm has one meaning. The VMM's own statuses for
//! things the guest did not choose (triple fault, emulation failure, timeout...) are above
//! `GUEST_MAX` and listed in `vmm/src/exit_status.rs` and the README.

/// The guest ran to completion and everything it checked passed.
pub const SUCCESS: u8 = 0;
/// The guest ran to completion but something it checked failed (a test, a demo step).
pub const FAILURE: u8 = 1;
/// Reserved: l4vmm's usage/configuration error status. A guest that writes it is reported
/// as having written an invalid exit value.
pub const USAGE: u8 = 2;
/// The kernel panicked (a Rust panic in ring 0).
pub const KERNEL_PANIC: u8 = 3;
/// The kernel took an exception in ring 0 (a kernel bug, not a user fault).
pub const KERNEL_FAULT: u8 = 4;
/// The kernel caught the (virtual) CPU breaking an architectural rule it relies on, e.g.
/// an interrupt delivered while interrupts are disabled: the host cannot run it reliably.
pub const HOST_FAULT: u8 = 5;
/// The highest exit code the guest may use.
pub const GUEST_MAX: u8 = 63;

/// Whether `code` is a valid guest exit code.
pub const fn is_guest_code(code: u8) -> bool {
    code <= GUEST_MAX && code != USAGE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_codes_exclude_the_usage_status() {
        assert!(is_guest_code(SUCCESS));
        assert!(is_guest_code(FAILURE));
        assert!(is_guest_code(KERNEL_PANIC));
        assert!(is_guest_code(GUEST_MAX));
        assert!(!is_guest_code(USAGE));
        assert!(!is_guest_code(GUEST_MAX + 1));
        assert!(!is_guest_code(255));
    }
}
