//! [`Condition`]: a lock and a way to wait, under it, for another process
//! to say something changed.

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::lock::{mark_lock, settle, some, Lock, LockGuard, LockResult, TryLockResult};
use super::semaphore::Semaphore;
use super::wire::{self, ObjectWire, Tag};
use crate::error::{Error, Kind, Result};
use crate::sys::{self, LockStatus};

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
/// [`Semaphore`], the file system).
///
/// It is CPython's algorithm: three semaphores count the sleepers, wake
/// them one by one, and let the notifier wait until each woken sleeper has
/// left its wait, so `notify(n)` wakes at most `n` sleepers that were
/// waiting when it was called, never a later one. The price (as in
/// CPython): a process killed inside `wait` is counted as a sleeper, and
/// the `notify` that picks it waits for it for good. A holder of the lock
/// that dies is reported as for a [`Lock`].
#[derive(Debug)]
pub struct Condition {
    lock: Lock,
    sleeping: Semaphore,
    woken: Semaphore,
    wake: Semaphore,
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

impl Condition {
    /// A new condition variable with a new lock.
    pub fn new() -> Result<Condition> {
        Ok(Condition {
            lock: Lock::new()?,
            sleeping: Semaphore::new(0)?,
            woken: Semaphore::new(0)?,
            wake: Semaphore::new(0)?,
        })
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
        // Count ourselves as a sleeper, then let go of the lock.
        c.sleeping
            .sys
            .release(1)
            .map_err(io_err("cannot wait on a condition"))?;
        c.lock
            .sys
            .unlock()
            .map_err(io_err("cannot release a condition's lock"))?;
        let woke = c.wake.sys.acquire(deadline);
        // Tell the notifier we are out (also after a timeout: it subtracts
        // those), then take the lock again.
        let left = c.woken.sys.release(1);
        let relock = c.lock.sys.lock(None);
        let woke = woke.map_err(io_err("cannot wait on a condition"))?;
        left.map_err(io_err("cannot wait on a condition"))?;
        match relock.map_err(io_err("cannot take a condition's lock again"))? {
            LockStatus::Acquired => Ok(woke),
            LockStatus::OwnerDied => Err(Error::new(Kind::OwnerDied { what: "Condition" })),
            s => Err(Error::io(
                "cannot take a condition's lock again",
                io::Error::other(format!("{s:?}")),
            )),
        }
    }

    /// Wakes at most `n` of the processes and threads waiting now; returns
    /// once each of them has left its wait (it then waits for the lock,
    /// which this guard holds).
    pub fn notify(&self, n: usize) -> Result<()> {
        let c = self.cond;
        let now = || Some(Instant::now());
        // Sleepers that timed out since the last notify left without being
        // woken: take them off the count.
        while c
            .woken
            .sys
            .acquire(now())
            .map_err(io_err("cannot notify a condition"))?
        {
            c.sleeping
                .sys
                .acquire(now())
                .map_err(io_err("cannot notify a condition"))?;
        }
        let mut woken = 0;
        while woken < n
            && c.sleeping
                .sys
                .acquire(now())
                .map_err(io_err("cannot notify a condition"))?
        {
            c.wake
                .sys
                .release(1)
                .map_err(io_err("cannot notify a condition"))?;
            woken += 1;
        }
        for _ in 0..woken {
            c.woken
                .sys
                .acquire(None)
                .map_err(io_err("cannot notify a condition"))?;
        }
        // A sleeper that timed out just as it was picked left its wake-up
        // behind: take it back.
        while c
            .wake
            .sys
            .acquire(now())
            .map_err(io_err("cannot notify a condition"))?
        {}
        Ok(())
    }

    /// Wakes every process and thread waiting now (as
    /// [`notify`](ConditionGuard::notify)).
    pub fn notify_all(&self) -> Result<()> {
        self.notify(usize::MAX)
    }
}

impl Serialize for Condition {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (
            Tag::Condition,
            wire::ser::<S::Error>(self.lock.sys.parts())?,
            wire::ser::<S::Error>(self.sleeping.sys.parts())?,
            wire::ser::<S::Error>(self.woken.sys.parts())?,
            wire::ser::<S::Error>(self.wake.sys.parts())?,
        )
            .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (tag, l, a, b, c) =
            <(Tag, ObjectWire, ObjectWire, ObjectWire, ObjectWire)>::deserialize(d)?;
        wire::check_tag(tag, Tag::Condition)?;
        let sem = |w| -> std::result::Result<Semaphore, D::Error> {
            let sys = wire::de(w, sys::SysSemaphore::HANDLES, sys::SysSemaphore::from_parts)?;
            Ok(Semaphore::from_sys(sys))
        };
        let lock = wire::de(l, sys::SysMutex::HANDLES, |h, word| {
            sys::SysMutex::from_parts(h, word, false)
        })?;
        Ok(Condition {
            lock: Lock { sys: lock },
            sleeping: sem(a)?,
            woken: sem(b)?,
            wake: sem(c)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

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
}
