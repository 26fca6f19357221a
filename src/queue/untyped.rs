//! [`Core`], the untyped queue under every queue type: the ring's block
//! under a robust mutex (`sys::Guarded`, its atomic prefix holding the
//! head word), two semaphores to sleep on, the lane of items too large
//! for the ring (`sys::SysLane`; their `put` is in `large.rs`), waiting
//! and waking as the module docs of `queue` say: a put, a get under the
//! lock. The records a `get` copied out to take later without the lock
//! ([`Copied`]) are in `untyped/copied.rs`, the wire form (checked before
//! mapping) in `untyped/wire_form.rs`.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::large;
use super::ring::{self, Peeked, Prepared, Ring};
use crate::deadline;
use crate::error::{Error, Kind, Result};
use crate::sync::wire::{self, ObjectWire};
use crate::sys::{self, LockStatus};

mod copied;
mod wire_form;

use copied::Copied;

/// The most wakeups a semaphore holds before releases are dropped: what
/// sleepers killed while counted can inflate it to (each wasted wakeup is
/// one look at the ring).
const MAX_WAKEUPS: u32 = 1024;

/// A thread's buffer for serialized items, kept between calls so that
/// items don't cost an allocation each.
pub(super) fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    /// Larger buffers are not kept.
    const KEEP: usize = 8 << 20;
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            let r = f(&mut buf);
            if buf.capacity() > KEEP {
                *buf = Vec::new();
            }
            r
        }
        // In use further up this thread's stack (an item whose
        // `Serialize` uses a queue): a fresh one.
        Err(_) => f(&mut Vec::new()),
    })
}

/// How long a blocking call may wait.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wait {
    /// Not at all.
    No,
    /// Until then.
    Until(Instant),
    /// As long as it takes.
    Forever,
}

impl Wait {
    pub(crate) fn timeout(timeout: Duration) -> Wait {
        if timeout.is_zero() {
            return Wait::No;
        }
        match deadline::deadline(timeout) {
            Some(d) => Wait::Until(d),
            None => Wait::Forever,
        }
    }

    /// The end of the next sleep (at most [`RECHECK`](super::RECHECK) from now), or
    /// `None` if the time is up.
    pub(super) fn next_wake(self) -> Option<Instant> {
        let now = Instant::now();
        let tick = now + super::recheck();
        match self {
            Wait::No => None,
            Wait::Until(d) if d <= now => None,
            Wait::Until(d) => Some(d.min(tick)),
            Wait::Forever => Some(tick),
        }
    }
}

/// What an operation under the lock came to.
pub(super) enum Step<R> {
    Done(R),
    Sleep,
    Fail(Refused),
    /// Look again at once (a large record whose item was gone).
    Again,
}

/// Why an operation under the lock failed: small, so that the hot path
/// does not carry an error's `Kind` out of the lock (made after it).
pub(super) enum Refused {
    Full,
    Empty,
    Closed,
    TooLarge {
        len: usize,
        max: usize,
    },
    Corrupt(ring::Corrupt),
    /// Anything else (the large items' path).
    Other(Kind),
}

impl Refused {
    #[cold]
    pub(super) fn error(self) -> Error {
        Error::new(match self {
            Refused::Full => Kind::QueueFull,
            Refused::Empty => Kind::QueueEmpty,
            Refused::Closed => Kind::QueueClosed,
            Refused::TooLarge { len, max } => Kind::ItemTooLarge {
                len: len as u64,
                max: max as u64,
            },
            Refused::Corrupt(c) => corrupt(c),
            Refused::Other(k) => k,
        })
    }
}

/// An untyped queue of byte strings (see the module docs of `queue`).
#[derive(Debug)]
pub(crate) struct Core {
    /// The ring's block and the queue's lock.
    pub(super) guarded: sys::Guarded,
    /// Consumers sleep on it.
    pub(super) items: sys::SysSemaphore,
    /// Producers (and `join`ers) sleep on it.
    pub(super) room: sys::SysSemaphore,
    /// Where the blocks of items too large for the ring wait.
    pub(super) lane: sys::SysLane,
    /// The most bytes of such items waiting at once (the lane's bound,
    /// also the largest one).
    pub(super) max_large: u64,
    /// The largest item the ring takes (larger ones take the lane).
    pub(super) ring_max: usize,
    /// Records the last locked `get` in this process copied out.
    copied: Mutex<Copied>,
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(what, e)
}

fn corrupt(c: ring::Corrupt) -> Kind {
    Kind::QueueCorrupt(c.to_string())
}

impl Core {
    /// A new empty queue with a data area of `max_bytes` (a multiple of 8
    /// in `MIN_CAP..=MAX_CAP`, checked by the caller), at most
    /// `max_items` items, and at most `max_large` bytes of items too large
    /// for the ring waiting at once.
    pub(crate) fn new(max_items: u64, max_bytes: usize, max_large: u64) -> Result<Core> {
        let head = ring::new_header(max_bytes, max_items);
        let guarded = sys::Guarded::with_head(ring::block_len(max_bytes), ring::PREFIX, &head)
            .map_err(io("cannot create a queue"))?;
        let core = Core {
            guarded,
            items: Self::semaphore()?,
            room: Self::semaphore()?,
            lane: sys::SysLane::new().map_err(io("cannot create a queue's lane"))?,
            max_large: lane_bound(max_large),
            ring_max: ring_max(max_bytes),
            copied: Mutex::new(Copied::new()),
        };
        core.locked(|_| core.lane.join())?
            .map_err(io("cannot join a queue's lane"))?;
        Ok(core)
    }

    /// A new semaphore to sleep on.
    pub(super) fn semaphore() -> Result<sys::SysSemaphore> {
        sys::SysSemaphore::new(0, MAX_WAKEUPS).map_err(io("cannot create a queue's semaphore"))
    }

    /// A received semaphore (in a `Deserialize` impl).
    pub(super) fn semaphore_from_wire<E: serde::de::Error>(
        w: ObjectWire,
    ) -> std::result::Result<sys::SysSemaphore, E> {
        wire::de(w, sys::SysSemaphore::HANDLES, sys::SysSemaphore::from_parts)
    }

    /// The oldest item's block, for a large record: `None` if it is gone
    /// (its record is then dropped).
    fn open_large(
        &self,
        r: &ring::LargeRef,
    ) -> std::result::Result<Option<crate::shared::region::Region>, Kind> {
        let found = match self.lane.open(r.tag, r.loc) {
            Ok(Some(handle)) => large::open_block(handle, r),
            other => other.map(|_| None),
        };
        found.map_err(|source| Kind::Io {
            what: "cannot take a queue's large item",
            source,
        })
    }

    /// Wakes up to `n` sleepers on `sem`.
    pub(super) fn wake_many(sem: &sys::SysSemaphore, n: u32) {
        for _ in 0..n.min(MAX_WAKEUPS) {
            if !sem.release(1).unwrap_or(false) {
                break;
            }
        }
    }

    /// Runs `f` on the ring under the lock. A holder that died is no
    /// news: each operation commits with one store (module docs), so the
    /// ring is checked and the lock marked consistent.
    pub(super) fn locked<R>(&self, f: impl FnOnce(&mut Ring<'_>) -> R) -> Result<R> {
        let (status, bytes) = self
            .guarded
            .lock(None, false)
            .map_err(io("cannot lock a queue"))?;
        let mut bytes = match (status, bytes) {
            (LockStatus::Acquired | LockStatus::OwnerDied, Some(b)) => b,
            (s, _) => {
                return Err(Error::io(
                    "cannot lock a queue",
                    std::io::Error::other(format!("the lock said {s:?}")),
                ))
            }
        };
        if status == LockStatus::OwnerDied {
            // Nothing to repair (one-store commits); every operation
            // checks what it reads, so the news is not kept.
            bytes.mark_consistent();
        }
        let mut ring =
            Ring::open(self.head(), bytes.bytes_mut()).map_err(|c| Error::new(corrupt(c)))?;
        Ok(f(&mut ring))
    }

    /// The ring's head word, in the block's atomic prefix.
    fn head(&self) -> &std::sync::atomic::AtomicU64 {
        &self.guarded.atomics()[0]
    }

    /// Wakes one of `sleepers` (the header's count of those asleep on
    /// `sem`): releases `sem` once, unless a release is still pending
    /// (Linux: the semaphore's count is not 0; on Windows the count can't
    /// be read, so always). A pending release wakes a sleeper, who takes
    /// the lock after this holder and so sees what it did, and passes
    /// the wakeup on; without this check every put or get made while a
    /// woken sleeper had not run yet released once more — a `FUTEX_WAKE`
    /// syscall each until it ran, spurious wakeups (a look at the ring
    /// under the lock each) after. Past `MAX_WAKEUPS` (false) enough
    /// sleepers are due to wake anyway; an error leaves them to their
    /// recheck.
    pub(super) fn wake(sem: &sys::SysSemaphore, sleepers: u32) {
        if sleepers > 0 && sem.value().is_none_or(|pending| pending == 0) {
            let _ = sem.release(1);
        }
    }

    /// Sleeps on `sem` until woken or `until`.
    pub(super) fn sleep(sem: &sys::SysSemaphore, until: Instant) -> Result<()> {
        sem.acquire(Some(until))
            .map_err(io("cannot wait on a queue"))
            .map(drop)
    }

    /// Puts `item`, waiting for room as `wait` says.
    ///
    /// Under the lock: the record is written past the tail, sleepers are
    /// woken, and then the tail word is stored (the commit) — so that a
    /// process killed after the commit has already woken the consumers
    /// the item is for (module docs, "Waiting and waking").
    pub(crate) fn put_bytes(&self, item: &[u8], wait: Wait) -> Result<()> {
        if item.len() > self.ring_max {
            return self.put_large(item, wait);
        }
        self.put_with(wait, |ring| match ring.prepare(item) {
            Ok(Prepared::Ready(p)) => self.commit_put(ring, p),
            Ok(Prepared::Full) => Self::no_room(ring, wait),
            Ok(Prepared::Closed) => Step::Fail(Refused::Closed),
            Ok(Prepared::TooLarge) => Step::Fail(Refused::TooLarge {
                len: item.len(),
                max: ring.max_item_len(),
            }),
            Err(c) => Step::Fail(Refused::Corrupt(c)),
        })
    }

    /// Runs a put's `attempt` under the lock until it is done or refused,
    /// sleeping on `room` between attempts as `wait` says (an attempt that
    /// found no room counted this producer as a sleeper: [`Core::no_room`];
    /// the next attempt takes it off again).
    pub(super) fn put_with(
        &self,
        wait: Wait,
        mut attempt: impl FnMut(&mut Ring<'_>) -> Step<()>,
    ) -> Result<()> {
        let mut counted = false;
        loop {
            let step = self.locked(|ring| {
                if counted {
                    ring.add_put_sleepers(-1);
                }
                attempt(ring)
            })?;
            match step {
                Step::Done(()) => return Ok(()),
                Step::Fail(r) => return Err(r.error()),
                Step::Again => counted = false,
                Step::Sleep => {
                    counted = true;
                    if let Some(until) = wait.next_wake() {
                        Self::sleep(&self.room, until)?;
                    }
                }
            }
        }
    }

    /// A put's step when there is no room: sleep, counted as a sleeping
    /// producer, or `Full` when `wait` allows no waiting. Counted, the
    /// head word's room-wait flag is set, so that no item is taken
    /// without the lock (whose `get` would not wake this producer) until
    /// the count is 0 again; if one was taken since this view read the
    /// head (the room this producer found missing may be there now), it
    /// looks again instead of sleeping.
    pub(super) fn no_room(ring: &mut Ring<'_>, wait: Wait) -> Step<()> {
        match wait.next_wake() {
            Some(_) => {
                if ring.add_put_sleepers(1) {
                    ring.add_put_sleepers(-1);
                    return Step::Again;
                }
                Step::Sleep
            }
            None => Step::Fail(Refused::Full),
        }
    }

    /// A put's commit, its record written: one consumer woken per item,
    /// one more producer if room is left (it passes the wakeup on in
    /// turn), then the tail word stored.
    pub(super) fn commit_put(&self, ring: &mut Ring<'_>, p: ring::Putting) -> Step<()> {
        Self::wake(&self.items, ring.get_sleepers());
        if p.used_after() < ring.cap() {
            Self::wake(&self.room, ring.put_sleepers());
        }
        ring.commit(p);
        Step::Done(())
    }

    /// Takes the oldest item, waiting for one as `wait` says: `decode`
    /// turns its bytes into what this returns.
    ///
    /// Everything happens under the lock, and the commit (the head
    /// word's store) comes last: the record is decoded (from the ring's
    /// bytes, or a copy if the record wraps around the end), sleepers are woken, the head word is stored, the lock is
    /// released, and `get` returns. A process killed at any point before
    /// that store took nothing: the item stays in the queue, first in
    /// line (module docs). A `decode` that panics consumes the item (so
    /// that it can't stop the queue for good); the panic goes on once the
    /// lock is released.
    ///
    /// A record copied out by an earlier `get` in this process comes
    /// first, taken without the lock if it is still first in line
    /// ([`Core::get_copied`]); a `get` under the lock copies out the
    /// records after its own ([`Core::copy_out`]).
    pub(crate) fn get_with<R>(&self, wait: Wait, mut decode: impl FnMut(&[u8]) -> R) -> Result<R> {
        if let Some(r) = self.get_copied(&mut decode) {
            return Ok(r);
        }
        let mut counted = false;
        loop {
            let step = self.locked(|ring| {
                if counted {
                    ring.add_get_sleepers(-1);
                }
                let peeked =
                    ring.peek_with(|bytes| panic::catch_unwind(AssertUnwindSafe(|| decode(bytes))));
                match peeked {
                    Ok(Peeked::Item(t, r)) => {
                        // One producer for the room it leaves; one more
                        // consumer if items are left and some sleep.
                        Self::wake(&self.room, ring.put_sleepers());
                        if t.left() > 0 {
                            Self::wake(&self.items, ring.get_sleepers());
                        }
                        if !ring.take(t) {
                            // Taken without the lock by a consumer
                            // that had copied it out: the next one.
                            return Step::Again;
                        }
                        self.copy_out(ring, &t);
                        Step::Done(r)
                    }
                    Ok(Peeked::Large(t, r)) => {
                        let block = match self.open_large(&r) {
                            Ok(b) => b,
                            Err(k) => return Step::Fail(Refused::Other(k)),
                        };
                        // As for an item in the ring: decoded, woken for
                        // and then taken; the lane lets go of the block
                        // only after the commit (module docs).
                        let out = block.as_ref().map(|b| {
                            panic::catch_unwind(AssertUnwindSafe(|| decode(large::payload(b))))
                        });
                        Self::wake(&self.room, ring.put_sleepers());
                        if t.left() > 0 {
                            Self::wake(&self.items, ring.get_sleepers());
                        }
                        if !ring.take(t) {
                            // The head moved under a take without the
                            // lock (not of this record: copies stop
                            // before a large one): look again.
                            return Step::Again;
                        }
                        let Some(out) = out else {
                            // Its block is gone: the item was never
                            // wholly in (module docs); the next one.
                            return Step::Again;
                        };
                        #[cfg(feature = "test-hooks")]
                        large::hooks::reached(large::LargeStop::AfterTakeCommit);
                        self.lane.taken(r.tag, r.loc);
                        Step::Done(out)
                    }
                    Ok(Peeked::Empty) => match wait.next_wake() {
                        Some(_) => {
                            ring.add_get_sleepers(1);
                            Step::Sleep
                        }
                        None => Step::Fail(Refused::Empty),
                    },
                    Ok(Peeked::Closed) => Step::Fail(Refused::Closed),
                    Err(c) => Step::Fail(Refused::Corrupt(c)),
                }
            })?;
            match step {
                Step::Done(Ok(r)) => return Ok(r),
                Step::Done(Err(p)) => panic::resume_unwind(p),
                Step::Fail(r) => return Err(r.error()),
                Step::Again => counted = false,
                Step::Sleep => {
                    counted = true;
                    if let Some(until) = wait.next_wake() {
                        Self::sleep(&self.items, until)?;
                    }
                }
            }
        }
    }

    /// Items in the queue now.
    pub(crate) fn len(&self) -> Result<usize> {
        self.locked(|r| r.len())
    }

    /// Closes the queue for every process and wakes every sleeper.
    pub(crate) fn close(&self) -> Result<()> {
        let (getters, putters) = self.locked(|r| {
            r.close();
            (r.get_sleepers(), r.put_sleepers())
        })?;
        Self::wake_many(&self.items, getters);
        Self::wake_many(&self.room, putters);
        Ok(())
    }

    /// Closed, by any process.
    pub(crate) fn is_closed(&self) -> Result<bool> {
        self.locked(|r| r.is_closed())
    }

    /// See `test_hooks::with_queue_locked`.
    #[cfg(feature = "test-hooks")]
    pub(crate) fn with_lock_held<R>(&self, f: impl FnOnce() -> R) -> Result<R> {
        self.locked(|_| f())
    }

    /// See `test_hooks::queue_sleepers`.
    #[cfg(feature = "test-hooks")]
    pub(crate) fn sleepers(&self) -> Result<(u32, u32)> {
        self.locked(|r| (r.get_sleepers(), r.put_sleepers()))
    }

    /// See `test_hooks::queue_lane_blocks`.
    #[cfg(feature = "test-hooks")]
    pub(crate) fn lane_blocks(&self) -> Result<std::io::Result<usize>> {
        self.locked(|_| self.lane.blocks())
    }

    /// See `test_hooks::scribble_over_oldest`.
    #[cfg(feature = "test-hooks")]
    pub(crate) fn scribble_over_oldest(&self, bytes: &[u8]) -> Result<bool> {
        self.locked(|r| r.scribble_over_oldest(bytes))
    }

    /// The largest item, in serialized bytes: the ring's largest, or the
    /// lane's if larger and the ring can hold a large record.
    pub(crate) fn max_item_len(&self) -> Result<usize> {
        let lane = usize::try_from(self.max_large).unwrap_or(usize::MAX);
        self.locked(|r| match r.max_item_len() {
            m if m >= ring::LARGE_REF_LEN => m.max(lane),
            m => m,
        })
    }
}

impl Drop for Core {
    /// Leaves the lane (Windows: hands on the large items this process
    /// keeps, if this was its last copy of the queue); nothing on Unix.
    /// Takes the queue's lock for it; an error is ignored.
    fn drop(&mut self) {
        if sys::SysLane::MEMBERSHIP {
            let _ = self.locked(|_| self.lane.leave());
        }
    }
}

/// The lane's bound: `max_large`, or 0 where the OS has no lane (every
/// item larger than the ring is then refused as too large).
fn lane_bound(max_large: u64) -> u64 {
    if sys::SysLane::ENABLED {
        max_large
    } else {
        0
    }
}

/// The largest item a ring of `cap` data bytes takes (`Ring::max_item_len`).
fn ring_max(cap: usize) -> usize {
    cap.saturating_sub(ring::FRAME).min(u32::MAX as usize)
}
