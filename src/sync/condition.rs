//! [`Condition`]: a lock and a way to wait, under it, for another process
//! to say something changed.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::lock::{mark_lock, settle, some, Lock, LockGuard, LockResult, TryLockResult};
use super::wire::{self, ObjectWire, Tag};
use crate::deadline;
use crate::error::{Error, Kind, Result};
use crate::sys::{self, LockStatus};

/// The state words, in the shared block; all but `SEQ` are read and
/// written only under the condition's lock.
///
/// `SEQ` counts the notifications that woke someone; sleepers sleep on it
/// (`sys::SysWaker`) until it moves on.
const SEQ: usize = 0;
/// The waiters inside `wait` (a waiter killed there stays counted).
const WAITING: usize = 1;
/// How many wake-up buckets are in use.
const BUCKETS: usize = 2;
/// The buckets, oldest first: `(epoch, count)` pairs. Bucket `(e, c)`
/// holds `c` wake-ups of the notification that moved `SEQ` to `e`, for
/// waiters that arrived before it (at a `SEQ` before `e`).
const FIRST: usize = 3;
/// The most buckets; when one more is needed, the two oldest merge.
const MAX_BUCKETS: usize = 16;
const WORDS: usize = FIRST + 2 * MAX_BUCKETS;

/// A condition variable shared between processes, with its own
/// [`Lock`] (Python's `multiprocessing.Condition`).
///
/// [`acquire`](Condition::acquire) takes the lock and returns a
/// [`ConditionGuard`]; under it, [`wait`](ConditionGuard::wait) releases
/// the lock, sleeps until another process or thread calls
/// [`notify`](ConditionGuard::notify) or
/// [`notify_all`](ConditionGuard::notify_all), and takes the lock again.
/// As with every condition variable, check the condition in a loop around
/// `wait` (the state lives elsewhere: a [`Value`](crate::Value), a
/// [`Semaphore`](crate::Semaphore), the file system).
///
/// **What `notify(n)` promises.** It wakes at most `n` of the waiters
/// that were waiting when it was called, never a later one, and as many
/// as it can: it hands out `n` wake-ups, but no more than there are
/// waiters not yet handed one, each marked with the moment it was made,
/// and wakes every sleeper to look; a sleeper that finds a wake-up made
/// after it began to wait takes it and returns, the others sleep on. It
/// never waits for the woken ones. Each notification costs every
/// sleeping waiter a look (under the lock): fine for the handful of
/// waiters a condition usually has.
///
/// **A waiter that dies** inside `wait` (its process killed) can't be
/// told apart from a slow one, so it stays counted as a waiter for good,
/// and one later notification hands it a wake-up it never takes. That
/// costs no live waiter anything: wake-ups go to whoever comes to take
/// them, so a live waiter that was waiting takes it, and the one left
/// over goes to nobody (a waiter that arrived later can't take it).
/// CPython's algorithm (a notifier that waits until each woken sleeper
/// has left its wait) waits for good for a dead one; this crate used it
/// until that was fixed. A holder of the lock that dies is reported as
/// for a [`Lock`].
#[derive(Debug)]
pub struct Condition {
    lock: Lock,
    state: sys::Shm,
    waker: sys::SysWaker,
}

/// The held lock of a [`Condition`]; releases it when dropped.
#[must_use = "the lock is released when the guard is dropped"]
pub struct ConditionGuard<'a> {
    cond: &'a Condition,
    _lock: LockGuard<'a>,
}

impl fmt::Debug for ConditionGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConditionGuard").finish_non_exhaustive()
    }
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> Error {
    move |e| Error::io(what, e)
}

fn mark(g: &ConditionGuard<'_>) {
    mark_lock(&g._lock)
}

/// Whether `epoch` comes after `seq` (the counters wrap).
fn after(epoch: u32, seq: u32) -> bool {
    (epoch.wrapping_sub(seq) as i32) > 0
}

/// The wake-up buckets in the state words, read and written under the
/// condition's lock. Another process may have written anything there:
/// every index is bounded, no value is trusted to be in range.
struct Buckets<'a>(&'a [AtomicU32]);

impl Buckets<'_> {
    fn len(&self) -> usize {
        (self.0[BUCKETS].load(Ordering::Relaxed) as usize).min(MAX_BUCKETS)
    }

    fn get(&self, i: usize) -> (u32, u32) {
        let at = FIRST + 2 * i;
        (
            self.0[at].load(Ordering::Relaxed),
            self.0[at + 1].load(Ordering::Relaxed),
        )
    }

    fn set(&self, i: usize, (epoch, count): (u32, u32)) {
        let at = FIRST + 2 * i;
        self.0[at].store(epoch, Ordering::Relaxed);
        self.0[at + 1].store(count, Ordering::Relaxed);
    }

    /// Removes bucket `i`, moving the later ones down.
    fn remove(&self, i: usize) {
        let n = self.len();
        for j in i + 1..n {
            self.set(j - 1, self.get(j));
        }
        self.0[BUCKETS].store(n.saturating_sub(1) as u32, Ordering::Relaxed);
    }

    /// The wake-ups not yet taken.
    fn total(&self) -> u64 {
        (0..self.len()).map(|i| u64::from(self.get(i).1)).sum()
    }

    /// Takes a wake-up made after `since`, if there is one: the oldest,
    /// which fewer waiters can take than a newer one.
    fn take(&self, since: u32) -> bool {
        let found = (0..self.len()).find(|&i| {
            let (epoch, count) = self.get(i);
            count > 0 && after(epoch, since)
        });
        let Some(i) = found else { return false };
        let (epoch, count) = self.get(i);
        match count - 1 {
            0 => self.remove(i),
            left => self.set(i, (epoch, left)),
        }
        true
    }

    /// Adds `n` wake-ups of the notification that moves `SEQ` to `epoch`.
    fn add(&self, epoch: u32, n: u32) {
        let len = self.len();
        if let Some(last) = len.checked_sub(1) {
            let (e, c) = self.get(last);
            if e == epoch {
                // A notifier died between its wake-ups and its bump.
                self.set(last, (e, c.saturating_add(n)));
                return;
            }
        }
        let len = if len == MAX_BUCKETS {
            // Full: the oldest wake-ups may go to waiters that arrived
            // before the second oldest notification.
            let (_, c0) = self.get(0);
            let (e1, c1) = self.get(1);
            self.set(1, (e1, c1.saturating_add(c0)));
            self.remove(0);
            len - 1
        } else {
            len
        };
        self.set(len, (epoch, n));
        self.0[BUCKETS].store(len as u32 + 1, Ordering::Relaxed);
    }
}

impl Condition {
    /// A new condition variable with a new lock.
    pub fn new() -> Result<Condition> {
        let err = "cannot create a condition";
        let mut state =
            sys::Shm::create(WORDS * std::mem::size_of::<u32>()).map_err(io_err(err))?;
        state.share();
        Ok(Condition {
            lock: Lock::new()?,
            state,
            waker: sys::SysWaker::new().map_err(io_err(err))?,
        })
    }

    fn words(&self) -> Result<&[AtomicU32]> {
        super::state_words(&self.state, WORDS, "cannot use a condition")
    }

    fn guard(&self) -> ConditionGuard<'_> {
        ConditionGuard {
            cond: self,
            _lock: self.lock.guard(),
        }
    }

    /// Takes the lock (as [`Lock::acquire`]).
    pub fn acquire(&self) -> LockResult<ConditionGuard<'_>> {
        let s = self.lock.sys.lock(None);
        some(settle(s, || self.guard(), mark, "Condition"))
    }

    /// Takes the lock if it is free now (as [`Lock::try_acquire`]).
    pub fn try_acquire(&self) -> TryLockResult<ConditionGuard<'_>> {
        settle(self.lock.sys.try_lock(), || self.guard(), mark, "Condition")
    }

    /// Waits at most `timeout` for the lock (as [`Lock::acquire_timeout`]).
    pub fn acquire_timeout(&self, timeout: Duration) -> TryLockResult<ConditionGuard<'_>> {
        let s = self.lock.sys.lock(super::until(timeout));
        settle(s, || self.guard(), mark, "Condition")
    }
}

impl ConditionGuard<'_> {
    /// Releases the lock, waits until notified, and takes the lock again.
    ///
    /// Errors: [`ErrorKind::OwnerDied`](crate::ErrorKind::OwnerDied) if a
    /// holder of the lock died meanwhile — the guard holds the lock again
    /// all the same; drop it and acquire anew to get the
    /// [`LockError`](crate::LockError) that repairs —;
    /// [`ErrorKind::Io`](crate::ErrorKind::Io).
    pub fn wait(&mut self) -> Result<()> {
        self.wait_until(None).map(drop)
    }

    /// As [`wait`](ConditionGuard::wait), for at most `timeout` (any
    /// `Duration`; `Duration::MAX`: no limit): whether it was notified
    /// (false: timed out). The lock is held again either way.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<bool> {
        self.wait_until(super::until(timeout))
    }

    fn wait_until(&mut self, deadline: Option<Instant>) -> Result<bool> {
        let c = self.cond;
        let w = c.words()?;
        // Under the lock: count ourselves in, note when we arrived.
        let since = w[SEQ].load(Ordering::Relaxed);
        let waiting = &w[WAITING];
        waiting.store(
            waiting.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        );
        let mut seen = since;
        let mut died = false;
        let outcome = loop {
            if let Err(e) = c.lock.sys.unlock() {
                break Err(Error::io("cannot release a condition's lock", e));
            }
            // Sleep until a notification moves SEQ on (or the deadline).
            let slept = loop {
                if w[SEQ].load(Ordering::Acquire) != seen || deadline::passed(deadline) {
                    break Ok(());
                }
                if let Err(e) = c.waker.wait(&w[SEQ], seen, deadline) {
                    break Err(e);
                }
            };
            match c.lock.sys.lock(None) {
                Ok(LockStatus::Acquired) => {}
                Ok(LockStatus::OwnerDied) => died = true,
                Ok(s) => {
                    // Not held: nothing more to do under it.
                    return Err(Error::io(
                        "cannot take a condition's lock again",
                        io::Error::other(format!("{s:?}")),
                    ));
                }
                Err(e) => return Err(Error::io("cannot take a condition's lock again", e)),
            }
            if let Err(e) = slept {
                break Err(Error::io("cannot wait on a condition", e));
            }
            // Held again: a wake-up for us? (Also after a timeout: one
            // that was handed out for us counts.)
            if Buckets(w).take(since) {
                break Ok(true);
            }
            if deadline::passed(deadline) {
                break Ok(false);
            }
            // Woken, but the wake-ups went to others: sleep until the next.
            seen = w[SEQ].load(Ordering::Relaxed);
        };
        // Held: count ourselves out.
        waiting.store(
            waiting.load(Ordering::Relaxed).saturating_sub(1),
            Ordering::Relaxed,
        );
        match outcome {
            Ok(_) if died => Err(Error::new(Kind::OwnerDied { what: "Condition" })),
            o => o,
        }
    }

    /// Wakes at most `n` of the processes and threads waiting now, and
    /// returns without waiting for them (each takes the lock, which this
    /// guard holds, before its `wait` returns). See the type's docs.
    pub fn notify(&self, n: usize) -> Result<()> {
        let c = self.cond;
        let w = c.words()?;
        let buckets = Buckets(w);
        // Waiters not yet handed a wake-up.
        let bare = u64::from(w[WAITING].load(Ordering::Relaxed)).saturating_sub(buckets.total());
        let k = (n as u64).min(bare) as u32;
        if k == 0 {
            return Ok(());
        }
        let seq = &w[SEQ];
        buckets.add(seq.load(Ordering::Relaxed).wrapping_add(1), k);
        c.waker
            .bump(seq)
            .map_err(io_err("cannot notify a condition"))
    }

    /// Wakes every process and thread waiting now (as
    /// [`notify`](ConditionGuard::notify)).
    pub fn notify_all(&self) -> Result<()> {
        self.notify(usize::MAX)
    }
}

impl Serialize for Condition {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let state = (
            self.state.handle_to_pass().into_iter().collect(),
            self.state.len() as u64,
        );
        (
            Tag::Condition,
            wire::ser::<S::Error>(self.lock.sys.parts())?,
            wire::ser::<S::Error>(state)?,
            wire::ser::<S::Error>(self.waker.parts())?,
        )
            .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (tag, l, state, waker) = <(Tag, ObjectWire, ObjectWire, ObjectWire)>::deserialize(d)?;
        wire::check_tag(tag, Tag::Condition)?;
        let len = WORDS * std::mem::size_of::<u32>();
        if state.word != len as u64 {
            return Err(wire::refuse(format!(
                "a condition's state of {} bytes where it has {len}",
                state.word
            )));
        }
        let lock = wire::de(l, sys::SysMutex::HANDLES, |h, word| {
            sys::SysMutex::from_parts(h, word, false)
        })?;
        let state = wire::de(state, 1, |mut h, _| {
            let handle = h.pop().expect("one handle, counted");
            sys::Shm::open(handle, len, sys::ShmAccess::ReadWrite)
        })?;
        let waker = wire::de(waker, sys::SysWaker::HANDLES, sys::SysWaker::from_parts)?;
        Ok(Condition {
            lock: Lock { sys: lock },
            state,
            waker,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Semaphore;
    use std::sync::Arc;

    const LONG: Duration = Duration::from_secs(30);

    #[test]
    fn notify_wakes_a_waiting_thread_and_a_timeout_is_not_a_notification() {
        let c = Arc::new(Condition::new().unwrap());
        {
            let mut g = c.acquire().unwrap();
            assert!(!g.wait_timeout(Duration::from_millis(1)).unwrap());
            // Nobody waits: notify returns at once.
            g.notify_all().unwrap();
        }
        let c2 = Arc::clone(&c);
        let g = c.acquire().unwrap();
        let t = std::thread::spawn(move || {
            let g = c2.acquire().unwrap();
            g.notify(1).unwrap();
        });
        let mut g = g;
        g.wait().unwrap();
        drop(g);
        t.join().unwrap();
    }

    /// Threads that each wait once (saying they arrived under the lock,
    /// and that they woke); whether each was notified.
    fn waiters(
        c: &Arc<Condition>,
        n: usize,
    ) -> (
        Vec<std::thread::JoinHandle<bool>>,
        Arc<Semaphore>,
        Arc<Semaphore>,
    ) {
        let arrived = Arc::new(Semaphore::new(0).unwrap());
        let woken = Arc::new(Semaphore::new(0).unwrap());
        let hs = (0..n)
            .map(|_| {
                let (c, arrived, woken) = (Arc::clone(c), Arc::clone(&arrived), Arc::clone(&woken));
                std::thread::spawn(move || {
                    let mut g = c.acquire().unwrap();
                    arrived.release().unwrap();
                    let notified = g.wait_timeout(LONG).unwrap();
                    woken.release().unwrap();
                    notified
                })
            })
            .collect();
        for _ in 0..n {
            arrived.acquire_timeout(LONG).unwrap().unwrap().forget();
        }
        // They said so under the lock: once we hold it, all of them wait.
        drop(c.acquire().unwrap());
        (hs, arrived, woken)
    }

    #[test]
    fn notify_one_wakes_exactly_one_and_notify_all_the_rest() {
        let c = Arc::new(Condition::new().unwrap());
        let (hs, _, woken) = waiters(&c, 3);
        c.acquire().unwrap().notify(1).unwrap();
        woken.acquire_timeout(LONG).unwrap().unwrap().forget();
        assert!(woken.try_acquire().unwrap().is_none(), "notify(1) woke two");
        c.acquire().unwrap().notify(2).unwrap();
        for _ in 0..2 {
            woken.acquire_timeout(LONG).unwrap().unwrap().forget();
        }
        for h in hs {
            assert!(h.join().unwrap(), "a waiter timed out");
        }
        // Nobody is left: the count is back to zero, no wake-up is left.
        let w = c.words().unwrap();
        assert_eq!(w[WAITING].load(Ordering::Relaxed), 0);
        assert_eq!(Buckets(w).total(), 0);
    }

    #[test]
    fn a_waiter_that_arrives_after_a_notify_does_not_take_its_wake_up() {
        let c = Arc::new(Condition::new().unwrap());
        let (hs, _, _) = waiters(&c, 1);
        let mut g = c.acquire().unwrap();
        g.notify(1).unwrap();
        // We wait too, after the notification: its wake-up is not ours,
        // however the thread and we are scheduled.
        assert!(!g.wait_timeout(Duration::from_millis(20)).unwrap());
        drop(g);
        for h in hs {
            assert!(h.join().unwrap(), "the earlier waiter lost its wake-up");
        }
    }

    #[test]
    fn a_notify_with_nobody_counted_hands_out_nothing() {
        let c = Condition::new().unwrap();
        let g = c.acquire().unwrap();
        g.notify(5).unwrap();
        g.notify_all().unwrap();
        let w = c.words().unwrap();
        assert_eq!(w[SEQ].load(Ordering::Relaxed), 0, "nothing to wake");
        assert_eq!(Buckets(w).total(), 0);
    }

    #[test]
    fn the_fuzz_seed_is_well_formed_up_to_the_handles_and_a_wrong_size_is_refused() {
        let seed = include_bytes!("../../fuzz/seeds/sync/condition");
        let e = crate::encode::from_bytes::<Condition>(seed).unwrap_err();
        let why = e.why.unwrap();
        assert!(
            why.contains("cannot take") || why.contains("handles where"),
            "{why}"
        );
        // The same with a state of another size: refused before any handle.
        let mut forged = seed.to_vec();
        forged[6] = 0x8d;
        let e = crate::encode::from_bytes::<Condition>(&forged).unwrap_err();
        assert!(e.why.unwrap().contains("state of 141 bytes"));
    }

    fn words() -> Vec<AtomicU32> {
        (0..WORDS).map(|_| AtomicU32::new(0)).collect()
    }

    #[test]
    fn wake_ups_go_to_waiters_that_arrived_before_them_oldest_first() {
        let w = words();
        let b = Buckets(&w);
        b.add(1, 2); // for waiters that arrived at 0
        b.add(2, 1); // for those that arrived at 0 or 1
        assert_eq!(b.total(), 3);
        // Arrived at 1: only the second notification's.
        assert!(b.take(1));
        assert!(!b.take(1));
        // Arrived at 0: the first's two.
        assert!(b.take(0));
        assert!(b.take(0));
        assert!(!b.take(0));
        assert_eq!(b.len(), 0);
        // Arrived at 2: nothing made after it.
        b.add(2, 1);
        assert!(!b.take(2));
        // The counters wrap.
        let w = words();
        let b = Buckets(&w);
        b.add(0, 1); // the notification that wrapped u32::MAX to 0
        assert!(b.take(u32::MAX));
        assert!(!after(0, 0) && after(1, u32::MAX) && !after(u32::MAX, 1));
    }

    #[test]
    fn when_the_buckets_are_full_the_two_oldest_merge() {
        let w = words();
        let b = Buckets(&w);
        for e in 1..=MAX_BUCKETS as u32 {
            b.add(e, 1);
        }
        b.add(MAX_BUCKETS as u32 + 1, 1);
        assert_eq!(b.len(), MAX_BUCKETS);
        assert_eq!(b.total(), MAX_BUCKETS as u64 + 1);
        assert_eq!(b.get(0), (2, 2));
        // A notifier that died before its bump: the next adds to its bucket.
        b.add(MAX_BUCKETS as u32 + 1, 3);
        assert_eq!(b.get(MAX_BUCKETS - 1), (MAX_BUCKETS as u32 + 1, 4));
    }

    #[test]
    fn state_words_left_garbled_by_another_process_are_no_panic() {
        let w = words();
        w[BUCKETS].store(u32::MAX, Ordering::Relaxed);
        for x in &w[FIRST..] {
            x.store(u32::MAX, Ordering::Relaxed);
        }
        let b = Buckets(&w);
        assert_eq!(b.len(), MAX_BUCKETS);
        assert_eq!(b.total(), MAX_BUCKETS as u64 * u64::from(u32::MAX));
        b.add(7, 1);
        let _ = b.take(3);
        let _ = b.take(0);
        assert!(b.len() <= MAX_BUCKETS);
    }
}
