//! The in-guest tests' report: one line per check, `NAME: ok WHAT` or
//! `NAME: FAIL WHAT: WHY`, which the host tests look for, and a count of the failures.

use crate::println;

/// The checks of one test server.
pub struct Checks {
    name: &'static str,
    failed: u32,
}

impl Checks {
    /// Checks reported under `name` (the server's name).
    pub const fn new(name: &'static str) -> Self {
        Checks { name, failed: 0 }
    }

    /// Reports check `what`: passed, or failed and why.
    pub fn check(&mut self, what: &str, r: Result<(), &str>) {
        match r {
            Ok(()) => println!("{}: ok {}", self.name, what),
            Err(why) => {
                self.failed += 1;
                println!("{}: FAIL {}: {}", self.name, what, why);
            }
        }
    }

    /// How many checks failed so far.
    pub fn failed(&self) -> u32 {
        self.failed
    }
}
