//! The objects over a futex word (the module docs of `sys/unix/sync.rs`):
//! waiting on a word and waking it (Linux `FUTEX_WAIT`/`FUTEX_WAKE`,
//! shared; elsewhere a poll), [`SysSemaphore`] and [`SysEvent`] (a word
//! and a count of sleepers in a block of their own), [`SysWaker`] (a
//! counter in the caller's block).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use super::{
    invalid, Block, EventLayout, SemaphoreLayout, KIND_EVENT, KIND_SEMAPHORE, SPIN_ROUNDS,
};
use crate::deadline;

// ---------------------------------------------------------------------------
// Waiting on a word
// ---------------------------------------------------------------------------

/// Sleeps while `word` holds `val`, at most until `deadline`; may return
/// early (woken, interrupted, spuriously): the caller looks again.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn wait_word(word: &AtomicU32, val: u32, deadline: Option<Instant>) {
    use rustix::thread::futex;
    let ts = deadline::left(deadline).map(|d| futex::Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: d.subsec_nanos().into(),
    });
    // EAGAIN (the word changed), ETIMEDOUT and EINTR all mean "look
    // again"; FUTEX_WAIT's timeout is relative, on CLOCK_MONOTONIC.
    let _ = futex::wait(word, futex::Flags::empty(), val, ts.as_ref());
}

/// Wakes up to `n` sleepers of `word`.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn wake_word(word: &AtomicU32, n: u32) {
    use rustix::thread::futex;
    let _ = futex::wake(word, futex::Flags::empty(), n);
}

/// Without futexes: polls, sleeping at most a millisecond.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn wait_word(word: &AtomicU32, val: u32, deadline: Option<Instant>) {
    if word.load(Ordering::Acquire) != val {
        return;
    }
    let nap = std::time::Duration::from_millis(1);
    std::thread::sleep(deadline::left(deadline).map_or(nap, |l| l.min(nap)));
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn wake_word(_: &AtomicU32, _: u32) {}

// ---------------------------------------------------------------------------
// Semaphore
// ---------------------------------------------------------------------------

/// A counting semaphore with a maximum count; see the module docs.
#[derive(Debug)]
pub(crate) struct SysSemaphore {
    block: Block<SemaphoreLayout>,
}

impl SysSemaphore {
    /// The number of handles the wire form carries.
    pub(crate) const HANDLES: usize = 1;

    /// A semaphore holding `initial` (at most `max`, checked above).
    pub(crate) fn new(initial: u32, max: u32) -> io::Result<SysSemaphore> {
        let block = Block::<SemaphoreLayout>::create()?;
        block.get().count.store(initial, Ordering::Relaxed);
        block.get().max.store(max, Ordering::Relaxed);
        Ok(SysSemaphore {
            block: block.publish(KIND_SEMAPHORE),
        })
    }

    /// Takes one, waiting at most until `deadline`; false on timeout.
    ///
    /// Before it sleeps it looks at the count a few times with growing
    /// pauses (as [`SysMutex::lock`](super::SysMutex::lock) spins; a few microseconds in all,
    /// unless the deadline passed already): a release often comes that
    /// soon — a queue's consumer on one core that emptied the ring, its
    /// producer on the other — and a release finds no sleeper then, so
    /// neither side makes a syscall (`FUTEX_WAIT`, and the `FUTEX_WAKE`
    /// the releaser would make, under the queue's lock).
    pub(crate) fn acquire(&self, deadline: Option<Instant>) -> io::Result<bool> {
        let s = self.block.get();
        if !deadline::passed(deadline) {
            for round in 0..SPIN_ROUNDS {
                if Self::take_one(s) {
                    return Ok(true);
                }
                for _ in 0..1u32 << round {
                    std::hint::spin_loop();
                }
            }
        }
        loop {
            if Self::take_one(s) {
                return Ok(true);
            }
            if deadline::passed(deadline) {
                return Ok(false);
            }
            // Announce the sleep before the last look (both SeqCst, paired
            // with `release`'s): either `release` sees us, or we see its count.
            s.sleepers.fetch_add(1, Ordering::SeqCst);
            if s.count.load(Ordering::SeqCst) == 0 {
                wait_word(&s.count, 0, deadline);
            }
            s.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Takes one if the count is not 0.
    fn take_one(s: &SemaphoreLayout) -> bool {
        let mut c = s.count.load(Ordering::Acquire);
        while c > 0 {
            match s
                .count
                .compare_exchange_weak(c, c - 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => c = now,
            }
        }
        false
    }

    /// Gives back `n`; false (and nothing given) if that would pass the
    /// maximum.
    pub(crate) fn release(&self, n: u32) -> io::Result<bool> {
        let s = self.block.get();
        let max = s.max.load(Ordering::Relaxed);
        let mut c = s.count.load(Ordering::Relaxed);
        loop {
            let Some(new) = c.checked_add(n).filter(|&v| v <= max) else {
                return Ok(false);
            };
            match s
                .count
                .compare_exchange_weak(c, new, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => c = now,
            }
        }
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            wake_word(&s.count, n);
        }
        Ok(true)
    }

    /// The count now (others may change it at once).
    pub(crate) fn value(&self) -> Option<u32> {
        Some(self.block.get().count.load(Ordering::Relaxed))
    }

    /// The handles of the wire form, and a word of its own (unused here).
    pub(crate) fn parts(&self) -> (Vec<BorrowedFd<'_>>, u64) {
        (vec![self.block.fd.as_fd()], 0)
    }

    /// A received semaphore: the block is checked (size, magic, kind).
    pub(crate) fn from_parts(handles: Vec<OwnedFd>, _: u64) -> io::Result<SysSemaphore> {
        Ok(SysSemaphore {
            block: Block::open(handles, KIND_SEMAPHORE)?,
        })
    }
}

// ---------------------------------------------------------------------------
// Event
// ---------------------------------------------------------------------------

/// A manual-reset event; see the module docs.
#[derive(Debug)]
pub(crate) struct SysEvent {
    pub(super) block: Block<EventLayout>,
}

impl SysEvent {
    /// The number of handles the wire form carries.
    pub(crate) const HANDLES: usize = 1;

    /// A new event, not set.
    pub(crate) fn new() -> io::Result<SysEvent> {
        Ok(SysEvent {
            block: Block::<EventLayout>::create()?.publish(KIND_EVENT),
        })
    }

    /// Sets it, waking every waiter.
    pub(crate) fn set(&self) -> io::Result<()> {
        let e = self.block.get();
        e.flag.store(1, Ordering::SeqCst);
        if e.sleepers.load(Ordering::SeqCst) > 0 {
            wake_word(&e.flag, i32::MAX as u32);
        }
        Ok(())
    }

    /// Clears it.
    pub(crate) fn clear(&self) -> io::Result<()> {
        self.block.get().flag.store(0, Ordering::SeqCst);
        Ok(())
    }

    /// Whether it is set.
    pub(crate) fn is_set(&self) -> io::Result<bool> {
        Ok(self.block.get().flag.load(Ordering::Acquire) != 0)
    }

    /// Waits until it is set, at most until `deadline`; whether it is.
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> io::Result<bool> {
        let e = self.block.get();
        loop {
            if e.flag.load(Ordering::Acquire) != 0 {
                return Ok(true);
            }
            if deadline::passed(deadline) {
                return Ok(false);
            }
            e.sleepers.fetch_add(1, Ordering::SeqCst);
            if e.flag.load(Ordering::SeqCst) == 0 {
                wait_word(&e.flag, 0, deadline);
            }
            e.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// The handles of the wire form, and a word of its own (unused here).
    pub(crate) fn parts(&self) -> (Vec<BorrowedFd<'_>>, u64) {
        (vec![self.block.fd.as_fd()], 0)
    }

    /// A received event: the block is checked (size, magic, kind).
    pub(crate) fn from_parts(handles: Vec<OwnedFd>, _: u64) -> io::Result<SysEvent> {
        Ok(SysEvent {
            block: Block::open(handles, KIND_EVENT)?,
        })
    }
}

// ---------------------------------------------------------------------------
// Waker
// ---------------------------------------------------------------------------

/// Sleeping until a counter moves on; see the module docs. The counter
/// lives in the caller's block, which must be mapped shared (a `Shm`) for
/// a bump in one process to wake a sleeper in another.
#[derive(Debug)]
pub(crate) struct SysWaker {
    _private: (),
}

impl SysWaker {
    /// The number of handles the wire form carries: none, the futex is
    /// the counter itself.
    pub(crate) const HANDLES: usize = 0;

    /// A new waker.
    pub(crate) fn new() -> io::Result<SysWaker> {
        Ok(SysWaker { _private: () })
    }

    /// Sleeps while `word` holds `seen`, at most until `deadline`; may
    /// return early (woken, interrupted, spuriously): the caller looks
    /// again.
    pub(crate) fn wait(
        &self,
        word: &AtomicU32,
        seen: u32,
        deadline: Option<Instant>,
    ) -> io::Result<()> {
        wait_word(word, seen, deadline);
        Ok(())
    }

    /// Adds one to `word` and wakes every sleeper (callers bump one at a
    /// time, under a lock).
    pub(crate) fn bump(&self, word: &AtomicU32) -> io::Result<()> {
        word.fetch_add(1, Ordering::SeqCst);
        wake_word(word, i32::MAX as u32);
        Ok(())
    }

    /// The handles of the wire form (none), and a word (unused here).
    pub(crate) fn parts(&self) -> (Vec<BorrowedFd<'_>>, u64) {
        (Vec::new(), 0)
    }

    /// A received waker: no handles.
    pub(crate) fn from_parts(handles: Vec<OwnedFd>, _: u64) -> io::Result<SysWaker> {
        if !handles.is_empty() {
            return Err(invalid("a waker has no handles here"));
        }
        SysWaker::new()
    }
}
