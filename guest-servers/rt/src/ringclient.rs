//! The client side of the ring server protocol (`ringsrv`): hand a ring to the server,
//! run batches in kernel-entry or polling mode, and let go of the ring.

use l4_abi::ring::{Cqe, Sqe};
use l4_abi::syscall::Error;

use crate::ipc::{self, Msg};
use crate::ring::{self, Ring, RingError};
use crate::sys;

pub const SETUP_RING: u32 = 0x300;
pub const SETUP_MEM: u32 = 0x301;

/// A ring handed to the server.
pub struct Client {
    pub ring: Ring,
    /// The ring object's memory capability and its size in pages.
    pub mem: u8,
    pub pages: u64,
    pub polling: bool,
    /// The CPU the server said it runs on.
    pub server_cpu: u64,
}

impl Client {
    /// Creates a ring (`entries` slots, `data_pages` of data) at `va`, sets its indices to
    /// `start`, and hands it to the server behind `server` (polling after `spin` idle
    /// rounds if `polling`). If the server does not take it, the ring is let go of
    /// (nothing stays mapped at `va`) and the error returned.
    pub fn connect(
        server: u8,
        va: u64,
        entries: u32,
        data_pages: u64,
        polling: bool,
        spin: u64,
        start: u32,
    ) -> Result<Client, Error> {
        let (mut r, mem, theirs) = ring::create(entries, data_pages, va)?;
        r.data_len = (data_pages * 4096) as usize;
        r.reset_indices(start);
        let pages = (l4_abi::ring::data_offset(entries) / 4096) as u64 + data_pages;
        let took = ipc::call(server, &Msg::new(SETUP_RING, &[]).with_cap(theirs));
        let _ = sys::cap_delete(theirs);
        let set_up = took.and_then(|m| match m.label {
            SETUP_RING => ipc::call(server, &Msg::new(SETUP_MEM, &[polling as u64, spin, data_pages]).with_cap(mem)),
            // The server did not get the ring capability (its table was full) or refused it.
            _ => Err(Error::BadArgument),
        });
        let c = Client { ring: r, mem, pages, polling, server_cpu: 0 };
        match set_up {
            Ok(reply) if reply.words[0] == 1 => Ok(Client { server_cpu: reply.words[1], ..c }),
            refused => {
                c.close();
                Err(refused.err().unwrap_or(Error::BadArgument))
            }
        }
    }

    /// Submits `sqes` (all of them, waiting for room as needed) and waits for as many
    /// completions, which land in `out`. Kernel-entry mode: one `RingEnter` per batch
    /// (more only when the batch is larger than the ring). Polling mode: no kernel entry
    /// unless the server sleeps.
    pub fn batch(&self, sqes: &[Sqe], out: &mut [Cqe]) -> Result<(), RingError> {
        let mut sent = 0;
        let mut got = 0;
        while got < sqes.len() {
            sent += self.ring.submit(&sqes[sent..]);
            let want = (sent - got) as u32;
            if self.polling {
                if self.ring.needs_wakeup() {
                    ring::enter(self.ring.slot, 0, false).map_err(RingError::Sys)?;
                }
                // The completion's own cache line, which the answer brings; now and then the
                // tail and the kernel are asked too, so that a server that broke the ring or
                // went away (its ring dropped) ends the wait with an error.
                let mut spins = 0u32;
                while !self.ring.completion_ready() {
                    spins = spins.wrapping_add(1);
                    if spins % (1 << 16) == 0 {
                        self.ring.completions()?;
                        ring::enter(self.ring.slot, 0, false).map_err(RingError::Sys)?;
                    }
                    core::hint::spin_loop();
                }
            } else if self.ring.completions()? < want {
                ring::enter(self.ring.slot, want, false).map_err(RingError::Sys)?;
            }
            got += self.ring.reap(&mut out[got..sent])?;
        }
        Ok(())
    }

    /// Lets go of the ring (the server is told and waits for the next one).
    pub fn close(self) {
        let _ = sys::mem_unmap(self.ring.base, self.pages);
        let _ = sys::cap_delete(self.mem);
        let _ = sys::cap_delete(self.ring.slot);
    }
}
