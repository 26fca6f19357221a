//! [`RLock`]: a recursive lock shared between processes.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::lock::{settle, some, LockResult, TryLockResult};
use super::wire::{self, ObjectWire, Tag};
use crate::error::{Error, Result};
use crate::sys;

/// A recursive lock that works across processes (Python's
/// `multiprocessing.RLock`): the thread that holds it may acquire it
/// again; it is free once every guard is dropped.
///
/// Everything else is as for [`Lock`](crate::Lock): a holder that dies
/// makes the next acquirers get [`ErrorKind::OwnerDied`](crate::ErrorKind::OwnerDied)
/// with the guard, until [`LockError::into_guard`](crate::LockError::into_guard).
///
/// ```
/// let lock = multiproc::RLock::new()?;
/// let outer = lock.acquire()?;
/// let inner = lock.acquire()?; // the holder may take it again
/// drop(inner);
/// drop(outer);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug)]
pub struct RLock {
    sys: sys::SysMutex,
}

/// A held [`RLock`] (one level of it); releases that level when dropped.
#[must_use = "the lock is released when the guard is dropped"]
pub struct RLockGuard<'a> {
    lock: &'a RLock,
    _not_send: PhantomData<*const ()>,
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLockGuard").finish_non_exhaustive()
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        let _ = self.lock.sys.unlock();
    }
}

fn mark(g: &RLockGuard<'_>) {
    g.lock.sys.mark_consistent();
}

impl RLock {
    /// A new unlocked lock.
    pub fn new() -> Result<RLock> {
        Ok(RLock {
            sys: sys::SysMutex::new(true).map_err(|e| Error::io("cannot create an RLock", e))?,
        })
    }

    fn guard(&self) -> RLockGuard<'_> {
        RLockGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }

    /// Waits until the lock is free (or held by this thread) and takes it.
    ///
    /// Errors: [`ErrorKind::OwnerDied`](crate::ErrorKind::OwnerDied) (the
    /// lock is held, the error carries the guard),
    /// [`ErrorKind::Io`](crate::ErrorKind::Io).
    pub fn acquire(&self) -> LockResult<RLockGuard<'_>> {
        some(settle(self.sys.lock(None), || self.guard(), mark, "RLock"))
    }

    /// Takes the lock if that needs no waiting; `None` if another thread
    /// holds it.
    pub fn try_acquire(&self) -> TryLockResult<RLockGuard<'_>> {
        settle(self.sys.try_lock(), || self.guard(), mark, "RLock")
    }

    /// Waits at most `timeout` for the lock; `None` if it stayed held.
    /// Any `Duration` is valid (`Duration::MAX`: no limit).
    pub fn acquire_timeout(&self, timeout: Duration) -> TryLockResult<RLockGuard<'_>> {
        let s = self.sys.lock(super::until(timeout));
        settle(s, || self.guard(), mark, "RLock")
    }
}

impl Serialize for RLock {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (Tag::RLock, wire::ser::<S::Error>(self.sys.parts())?).serialize(s)
    }
}

impl<'de> Deserialize<'de> for RLock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (tag, w) = <(Tag, ObjectWire)>::deserialize(d)?;
        wire::check_tag(tag, Tag::RLock)?;
        let sys = wire::de(w, sys::SysMutex::HANDLES, |h, word| {
            sys::SysMutex::from_parts(h, word, true)
        })?;
        Ok(RLock { sys })
    }
}
