//! A hostile task for the name service (tests/robust.rs): run beside `echo`
//! (`run=echo,nametest`), it tries to take over the name "echo" with an endpoint of its
//! own, then registers names of its own until root refuses. Root must refuse the first
//! with `Exists` (a name belongs to the task that registered it until that task dies) and
//! the others after `l4_rt::names::NAMES_PER_TASK` with `NoSlots`; afterwards "echo" must
//! still be echo's (a call through it gets echo's answer). It also tries what a client
//! could do with the capability `lookup` gives (receive on it, give it a badge of its
//! choice) and registers a badged capability: all refused. And it is a hostile client of
//! echo: a shared region it claims is larger than its memory object, and a read of
//! pages it never sent. It prints `nametest: ok
//! NAME` or `nametest: FAIL NAME: why` per check, and reports 0 only if all passed.
#![no_std]
#![no_main]

use l4_abi::syscall::{rights, Error};
use l4_rt::ipc::{self, Msg};
use l4_rt::transfer::{COW_READ, SINK_SHARED, SINK_SHARED_SETUP, WHO};
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
    // A badged capability cannot be registered: root mints every client's badge from it.
    let badged = sys::cap_derive(mine, rights::ALL, 9);
    let unfit = badged.map(|b| names::register("badged", b));
    check(
        &mut failed,
        "registering a badged capability refused with NoRights",
        unfit == Ok(Err(Error::NoRights)),
        &|| println!("nametest:   gave {:?}", unfit.map(|r| r.map_err(|e| e.name())).map_err(|e| e.name())),
    );
    // What lookup gives: send, never receive (not even through a copy asking for every
    // right: rights only shrink), and a badge root chose, which cannot be changed.
    let recv = ipc::recv_nb(echo).map(|_| ());
    let copy = sys::cap_derive(echo, rights::ALL, 0);
    let recv_copy = copy.map(|c| ipc::recv_nb(c).map(|_| ()));
    check(
        &mut failed,
        "a looked-up endpoint cannot receive",
        recv == Err(Error::NoRights) && recv_copy == Ok(Err(Error::NoRights)),
        &|| println!("nametest:   RecvNB gave {:?}, through a copy {:?}", recv.map_err(|e| e.name()), recv_copy),
    );
    let forged = sys::cap_derive(echo, rights::SEND, 0xbad);
    let who = |c: u8| ipc::call(c, &Msg::new(WHO, &[])).map(|r| r.words[0]);
    let badge = who(echo);
    let again = names::lookup("echo").ok().flatten().map(who);
    check(
        &mut failed,
        "a looked-up endpoint carries root's badge, the same on every lookup, and no other",
        forged == Err(Error::BadArgument) && badge.is_ok_and(|b| b != 0 && b != 0xbad) && again == Some(badge),
        &|| println!("nametest:   derive(0xbad) gave {:?}, badge {:?}, again {:?}", forged, badge, again),
    );
    // As a hostile client of echo: a shared region larger than its object, and pages it
    // never sent. Echo must check both against what the kernel mapped and who sent what
    // (it crashed on the first, and showed the last client's pages on the second).
    let region = sys::mem_create(1);
    let setup =
        region.map(|m| ipc::call(echo, &Msg::new(SINK_SHARED_SETUP, &[64 << 20]).with_cap(m)).map(|r| r.words[0]));
    let past = ipc::call(echo, &Msg::new(SINK_SHARED, &[100 * 4096, 8])).map(|r| r.words[0]);
    let alive = who(echo);
    check(
        &mut failed,
        "echo believes the kernel's size of a shared region, not the client's",
        setup == Ok(Ok(0)) && past == Ok(u64::MAX) && alive == badge,
        &|| println!("nametest:   setup {:?}, read past the object {:?}, then {:?}", setup, past, alive),
    );
    let theirs = ipc::call(echo, &Msg::new(COW_READ, &[0])).map(|r| r.words[0]);
    check(&mut failed, "echo shows no client pages it did not send", theirs == Ok(u64::MAX), &|| {
        println!("nametest:   COW_READ gave {:?}", theirs)
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
