//! The records a locked `get` copied out of the ring after the item it
//! took ([`Copied`], one per `Core`), for this process's next `get`s to
//! take without the lock (queue module docs, "Taking items without the
//! lock"): how many and how large, copying them out (`Core::copy_out`),
//! and taking the oldest (`Core::get_copied`).

use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};

use super::{ring, Core, Ring};
use crate::sys;

/// The most records a `get` copies out after the one it takes (queue
/// module docs, "Taking items without the lock").
const COPY_MAX: usize = 64;
/// The largest payload copied out; larger ones are taken under the lock.
const COPY_ITEM_MAX: usize = 256;
/// The most payload bytes copied out at once.
const COPY_BYTES: usize = 4096;
/// How long copied-out records may wait to be taken without the lock, in
/// milliseconds of `sys::coarse_millis` (read at every `get`: cheap, and
/// coarse — 16 ms at worst — which this doesn't mind); older ones are
/// dropped (the next `get` takes the lock). Far shorter than the time 2³²
/// takes would need, so that the head word can't have come back to the
/// value a copy expects (its item count wraps at 2³²).
const COPY_AGE_MS: u64 = 1000;

/// The records a `get` copied out of the ring after the item it took,
/// still in the ring: each `get` in this process takes the next one
/// with [`ring::take_unlocked`], without the lock, or, if that fails
/// (another consumer took one, a producer sleeps for room), drops them
/// all and takes the lock.
#[derive(Debug)]
pub(super) struct Copied {
    /// The payloads, back to back.
    bytes: Vec<u8>,
    /// Each record's payload end in `bytes` and the head word that takes
    /// it, oldest first.
    records: VecDeque<(usize, u64)>,
    /// Where the oldest record's payload starts in `bytes`.
    start: usize,
    /// The head word the oldest record's take expects.
    from: u64,
    /// Until when they may be taken ([`COPY_AGE_MS`] after they were
    /// copied out, on `sys::coarse_millis`).
    until: u64,
    /// How many records to copy out next time: halved (to 1 at least)
    /// when a take fails, doubled (to [`COPY_MAX`] at most) when all
    /// were taken; so consumers that take each other's copies soon copy
    /// little.
    want: usize,
}

impl Copied {
    pub(super) fn new() -> Copied {
        Copied {
            bytes: Vec::new(),
            records: VecDeque::new(),
            start: 0,
            from: 0,
            until: 0,
            want: COPY_MAX,
        }
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.records.clear();
        self.start = 0;
    }
}

impl Core {
    /// Copies out the records after `first` (just taken under the lock)
    /// that are items in the ring of at most [`COPY_ITEM_MAX`] bytes, as
    /// many as `Copied::want` says, for this process's next `get`s to
    /// take without the lock. They stay in the ring, for any consumer,
    /// until taken: a process killed with copies took nothing.
    pub(super) fn copy_out(&self, ring: &Ring<'_>, first: &ring::Taking) {
        let Some(mut copied) = self.copied() else {
            return;
        };
        copied.clear();
        let Copied {
            bytes,
            records,
            want,
            ..
        } = &mut *copied;
        let mut prev = *first;
        while records.len() < *want && bytes.len() < COPY_BYTES {
            match ring.peek_next(&prev, COPY_ITEM_MAX, |p| bytes.extend_from_slice(p)) {
                Some((next, ())) => {
                    records.push_back((bytes.len(), next.head_word()));
                    prev = next;
                }
                None => break,
            }
        }
        if !copied.records.is_empty() {
            copied.from = first.head_word();
            copied.until = sys::coarse_millis().saturating_add(COPY_AGE_MS);
        }
    }

    /// The oldest record an earlier `get` in this process copied out,
    /// decoded and then taken without the lock ([`ring::take_unlocked`]:
    /// the commit, after the decode as under the lock), if it is still
    /// first in line and the copies are younger than [`COPY_AGE_MS`].
    /// `None` (and the copies dropped) otherwise: the caller takes the
    /// lock. A `decode` that panics consumes the item, as under the lock.
    ///
    /// No wakeups are owed: a producer asleep for room keeps the head
    /// word's room-wait flag set, so the take fails and the locked `get`
    /// wakes it; consumers were woken for these items (if any sleep) by
    /// the `get` that copied them out.
    pub(super) fn get_copied<R>(&self, decode: &mut impl FnMut(&[u8]) -> R) -> Option<R> {
        let mut copied = self.copied()?;
        let &(end, to) = copied.records.front()?;
        if sys::coarse_millis() >= copied.until {
            copied.clear();
            return None;
        }
        let out = panic::catch_unwind(AssertUnwindSafe(|| {
            decode(&copied.bytes[copied.start..end])
        }));
        if !ring::take_unlocked(self.head(), copied.from, to) {
            copied.clear();
            copied.want = (copied.want / 2).max(1);
            return None;
        }
        copied.records.pop_front();
        copied.start = end;
        copied.from = to;
        if copied.records.is_empty() {
            copied.clear();
            copied.want = (copied.want * 2).min(COPY_MAX);
        }
        drop(copied);
        match out {
            Ok(r) => Some(r),
            Err(p) => panic::resume_unwind(p),
        }
    }

    /// The copies, unless another thread (or this one, further up its
    /// stack: a `Deserialize` that uses the queue) has them: then that
    /// `get` goes without copies.
    fn copied(&self) -> Option<std::sync::MutexGuard<'_, Copied>> {
        match self.copied.try_lock() {
            Ok(c) => Some(c),
            // Nothing in them is left half-changed by a panic (decode's
            // is caught).
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// See `test_hooks::queue_copied`.
    #[cfg(feature = "test-hooks")]
    pub(crate) fn copied_len(&self) -> usize {
        self.copied().map_or(0, |c| c.records.len())
    }
}
