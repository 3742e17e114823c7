//! A hostile task for the name service (tests/robust.rs): run beside `echo`
//! (`run=echo,nametest`), it tries to take over the name "echo" with an endpoint of its
//! own, then registers names of its own until root refuses. Root must refuse the first
//! with `Exists` (a name belongs to the task that registered it until that task dies) and
//! the others after `l4_rt::names::NAMES_PER_TASK` with `NoSlots`; afterwards "echo" must
//! still be echo's (a call through it gets echo's answer). It prints `nametest: ok
//! NAME` or `nametest: FAIL NAME: why` per check, and reports 0 only if all passed.
#![no_std]
#![no_main]

use l4_abi::syscall::Error;
use l4_rt::ipc::{self, Msg};
use l4_rt::{names, println, sys};

l4_rt::entry!(main);

/// What echo answers with: the label and words sent.
const ECHO: u32 = 0x42;

fn check(failed: &mut u32, what: &str, ok: bool, why: &dyn Fn()) {
    if ok {
        println!("nametest: ok {}", what);
    } else {
        *failed += 1;
        println!("nametest: FAIL {}", what);
        why();
    }
}

fn main() -> u64 {
    let mut failed = 0;
    let Ok(Some(echo)) = names::wait_for("echo", 30) else {
        println!("nametest: FAIL echo never registered");
        return 1;
    };
    let Ok(mine) = sys::endpoint_create() else {
        println!("nametest: FAIL no endpoint");
        return 1;
    };
    let taken = names::register("echo", mine);
    check(&mut failed, "taking over echo's name refused with Exists", taken == Err(Error::Exists), &|| {
        println!("nametest:   register(\"echo\") gave {:?}", taken.map_err(|e| e.name()))
    });
    let mut made = 0;
    let refused = loop {
        let mut name = *b"thief-00";
        name[6] = b'0' + (made / 10) as u8 % 10;
        name[7] = b'0' + made as u8 % 10;
        match names::register(core::str::from_utf8(&name).unwrap_or("thief"), mine) {
            Ok(()) => made += 1,
            Err(e) => break e,
        }
        if made > 100 {
            break Error::BadArgument;
        }
    };
    let bound = names::NAMES_PER_TASK;
    check(
        &mut failed,
        "names of its own refused with NoSlots at the bound",
        refused == Error::NoSlots && made == bound,
        &|| println!("nametest:   {} names registered, then {} (the bound is {})", made, refused.name(), bound),
    );
    // Registering one of its own names again is not taking it: it keeps it.
    let again = names::register("thief-00", mine);
    check(&mut failed, "its own name registered again", again.is_ok(), &|| {
        println!("nametest:   gave {:?}", again.map_err(|e| e.name()))
    });
    let echo_again = names::lookup("echo");
    let answer = match echo_again {
        Ok(Some(ep)) => ipc::call(ep, &Msg::new(ECHO, &[7, 8, 9])).ok(),
        _ => None,
    };
    check(
        &mut failed,
        "echo's name still gives echo",
        answer.is_some_and(|r| r.label == ECHO && r.words() == [7, 8, 9]),
        &|| println!("nametest:   lookup gave {:?}", echo_again.map(|c| c.is_some())),
    );
    let _ = echo;
    println!("nametest: {} checks failed", failed);
    let status = if failed == 0 { 0 } else { 1 };
    let _ = names::done(status);
    status
}
