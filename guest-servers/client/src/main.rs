//! A client of the echo server: finds it by name, checks a series of round trips, and
//! reports to the root task.
#![no_std]
#![no_main]

use l4_rt::ipc::{self, Msg};
use l4_rt::{names, println};

l4_rt::entry!(main);

const ROUNDS: u64 = 100;

fn main() -> u64 {
    // Start only once the spinner spins: from then on this task gets the CPU back only
    // through timer preemption.
    if let Ok(Some(_)) = names::wait_for("spinner", 10) {
        println!("client: the spinner is running; working beside it");
    }
    let echo = match names::wait_for("echo", 10) {
        Ok(Some(c)) => c,
        _ => {
            println!("client: no echo server");
            let _ = names::done(1);
            return 1;
        }
    };
    println!("client: found 'echo' in slot {}", echo);
    let mut ok = 0;
    for i in 0..ROUNDS {
        let words = [i, i * 3, !i, 0x1234_5678_9abc_def0 ^ i, i + 1, i + 2, i + 3, u64::MAX - i];
        match ipc::call(echo, &Msg::new(0x42, &words)) {
            Ok(r) if r.label == 0x42 && r.words() == words => ok += 1,
            Ok(r) => println!("client: round {} came back wrong: {:?}", i, r),
            Err(e) => println!("client: round {} failed: {}", i, e.name()),
        }
    }
    println!("client: {}/{} echo round trips correct", ok, ROUNDS);
    let status = if ok == ROUNDS { 0 } else { 1 };
    let _ = names::done(status);
    status
}
