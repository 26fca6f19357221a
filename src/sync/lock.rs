//! [`Lock`]: a non-recursive lock shared between processes, robust to
//! its holder's death; [`LockError`], what acquiring any of the locks can
//! fail with, carrying the guard when the holder died.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::wire::{self, ObjectWire, Tag};
use crate::error::{Error, ErrorKind, Kind, Result};
use crate::sys::{self, LockStatus};

/// A lock that works across processes (Python's `multiprocessing.Lock`),
/// and does not stay locked for good when its holder dies.
///
/// [`acquire`](Lock::acquire) returns a [`LockGuard`]; dropping the guard
/// releases the lock. Share a `Lock` between threads with an `Arc`, and
/// with child processes by putting it in their arguments: each process
/// gets its own handle on the same lock.
///
/// **Not recursive.** A thread that holds the lock and acquires it again
/// gets an error of kind [`ErrorKind::Usage`] at once instead of a
/// deadlock (and [`try_acquire`](Lock::try_acquire) `None`); use an
/// [`RLock`](crate::RLock) for a lock its holder may take again.
///
/// **A holder that dies** (its process killed, or its thread ended with
/// the guard alive) releases the lock; the next acquirer gets it with an
/// error of kind [`ErrorKind::OwnerDied`] that carries the guard
/// ([`LockError::into_guard`]), so that it can repair what the dead
/// holder left half done. Until someone calls `into_guard`, every
/// acquirer gets that error. See the crate docs' "Sharing state" for the
/// platform details (macOS can't detect a dead holder).
///
/// A guard must be dropped on the thread that acquired it (it is not
/// `Send`): locks are owned by threads on every platform.
///
/// ```
/// use std::sync::Arc;
/// let lock = Arc::new(multiproc::Lock::new()?);
/// {
///     let _guard = lock.acquire()?;
///     assert!(lock.try_acquire()?.is_none()); // held (by this thread)
/// }
/// assert!(lock.try_acquire()?.is_some());
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug)]
pub struct Lock {
    pub(super) sys: sys::SysMutex,
}

/// What [`Lock::acquire`] and the other blocking acquires return.
pub type LockResult<G> = std::result::Result<G, LockError<G>>;

/// A held [`Lock`]; releases it when dropped.
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
    _not_send: PhantomData<*const ()>,
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard").finish_non_exhaustive()
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        // Only fails for a thread that does not hold it, which the guard
        // (not `Send`) rules out.
        let _ = self.lock.sys.unlock();
    }
}

impl Lock {
    /// See `test_hooks::swallow_a_lock_wakeup`.
    #[cfg(feature = "test-hooks")]
    pub(crate) fn swallow_a_wakeup(&self) -> std::io::Result<bool> {
        self.sys.swallow_a_wakeup()
    }

    /// A new unlocked lock.
    pub fn new() -> Result<Lock> {
        Ok(Lock {
            sys: sys::SysMutex::new(false).map_err(|e| Error::io("cannot create a lock", e))?,
        })
    }

    pub(super) fn guard(&self) -> LockGuard<'_> {
        LockGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }

    /// Waits until the lock is free and takes it.
    ///
    /// Errors: [`ErrorKind::OwnerDied`] (the lock is held, the error
    /// carries the guard), [`ErrorKind::Usage`] if this thread already
    /// holds it, [`ErrorKind::Io`].
    pub fn acquire(&self) -> LockResult<LockGuard<'_>> {
        let s = self.sys.lock(None);
        some(settle(s, || self.guard(), mark_lock, "Lock"))
    }

    /// Takes the lock if it is free now; `None` if it is held (also by
    /// this thread).
    pub fn try_acquire(&self) -> TryLockResult<LockGuard<'_>> {
        settle(self.sys.try_lock(), || self.guard(), mark_lock, "Lock")
    }

    /// Waits at most `timeout` for the lock; `None` if it stayed held.
    /// Any `Duration` is valid (`Duration::MAX`: no limit).
    pub fn acquire_timeout(&self, timeout: Duration) -> TryLockResult<LockGuard<'_>> {
        let s = self.sys.lock(super::until(timeout));
        settle(s, || self.guard(), mark_lock, "Lock")
    }
}

pub(super) fn mark_lock(g: &LockGuard<'_>) {
    g.lock.sys.mark_consistent();
}

/// What the try and timeout forms of acquiring return: `Ok(None)` when
/// the lock stayed held.
pub type TryLockResult<G> = std::result::Result<Option<G>, LockError<G>>;

/// Turns what the OS said into a guard or an error.
pub(super) fn settle<G>(
    status: io::Result<LockStatus>,
    guard: impl FnOnce() -> G,
    mark: fn(&G),
    what: &'static str,
) -> TryLockResult<G> {
    match status {
        Ok(LockStatus::Acquired) => Ok(Some(guard())),
        Ok(LockStatus::OwnerDied) => Err(LockError {
            error: Error::new(Kind::OwnerDied { what }),
            guard: Some((guard(), mark)),
        }),
        Ok(LockStatus::TimedOut) => Ok(None),
        Ok(LockStatus::WouldDeadlock) => Err(LockError::from(Error::new(Kind::Usage(format!(
            "this thread already holds this {what}: acquiring it again would deadlock \
             (an RLock may be acquired again by its holder)"
        ))))),
        Err(e) => Err(LockError::from(Error::io("cannot acquire a lock", e))),
    }
}

/// A blocking acquire's result: it never times out.
pub(super) fn some<G>(r: TryLockResult<G>) -> LockResult<G> {
    match r {
        Ok(Some(g)) => Ok(g),
        Ok(None) => Err(LockError::from(Error::io(
            "cannot acquire a lock",
            io::Error::other("a wait without a deadline timed out"),
        ))),
        Err(e) => Err(e),
    }
}

/// The guard an owner-died error carries, and how to mark its lock consistent.
type Held<G> = (G, fn(&G));

/// Why acquiring a lock failed: an [`Error`], and, when the lock's last
/// holder died holding it ([`ErrorKind::OwnerDied`]), the guard — the
/// lock *is* held by the caller then, as with std's
/// [`PoisonError`](std::sync::PoisonError).
///
/// ```no_run
/// # fn repair(_: &multiproc::LockGuard<'_>) {}
/// # fn main() -> Result<(), multiproc::Error> {
/// let lock = multiproc::Lock::new()?;
/// let guard = match lock.acquire() {
///     Ok(g) => g,
///     Err(e) if e.is_owner_died() => {
///         let g = e.into_guard()?; // marks the lock consistent
///         repair(&g);               // what the dead holder left half done
///         g
///     }
///     Err(e) => return Err(e.into()),
/// };
/// # drop(guard); Ok(()) }
/// ```
///
/// Converts into [`Error`] (so `?` works in functions returning
/// [`multiproc::Result`](crate::Result)), dropping the guard: the lock is
/// released and still reports the dead holder to the next acquirer.
pub struct LockError<G> {
    error: Error,
    guard: Option<Held<G>>,
}

impl<G> LockError<G> {
    /// What went wrong; [`ErrorKind::OwnerDied`] when the error carries
    /// the guard.
    pub fn kind(&self) -> ErrorKind {
        self.error.kind()
    }

    /// The lock's last holder died holding it: the caller holds the lock
    /// now ([`into_guard`](LockError::into_guard)).
    pub fn is_owner_died(&self) -> bool {
        self.guard.is_some()
    }

    /// The error.
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// The guard, if the error carries one (to look at the data before
    /// deciding).
    pub fn get_ref(&self) -> Option<&G> {
        self.guard.as_ref().map(|(g, _)| g)
    }

    /// After [`ErrorKind::OwnerDied`]: marks the lock consistent (later
    /// acquirers get it without an error) and returns the guard, through
    /// which the caller repairs what the dead holder left half done. A
    /// caller that dies before releasing it leaves the lock dead-holder
    /// again, so marking first is safe. Any other error: returned.
    pub fn into_guard(self) -> Result<G> {
        match self.guard {
            Some((g, mark)) => {
                mark(&g);
                Ok(g)
            }
            None => Err(self.error),
        }
    }

    /// The error; a guard it carried is dropped (the lock released, still
    /// reporting its dead holder).
    pub fn into_error(self) -> Error {
        self.error
    }
}

impl<G> From<Error> for LockError<G> {
    fn from(error: Error) -> Self {
        LockError { error, guard: None }
    }
}

impl<G> From<LockError<G>> for Error {
    fn from(e: LockError<G>) -> Error {
        e.error
    }
}

impl<G> fmt::Debug for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockError")
            .field("error", &self.error)
            .field("holds_lock", &self.guard.is_some())
            .finish()
    }
}

impl<G> fmt::Display for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl<G> std::error::Error for LockError<G> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.error)
    }
}

impl Serialize for Lock {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (Tag::Lock, wire::ser::<S::Error>(self.sys.parts())?).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Lock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (tag, w) = <(Tag, ObjectWire)>::deserialize(d)?;
        wire::check_tag(tag, Tag::Lock)?;
        let sys = wire::de(w, sys::SysMutex::HANDLES, |h, word| {
            sys::SysMutex::from_parts(h, word, false)
        })?;
        Ok(Lock { sys })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_acquire_by_the_holder_is_a_usage_error() {
        let lock = Lock::new().unwrap();
        let g = lock.acquire().unwrap();
        let e = lock.acquire().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
        assert!(!e.is_owner_died());
        assert!(lock.try_acquire().unwrap().is_none());
        assert!(lock.acquire_timeout(Duration::ZERO).unwrap().is_none());
        drop(g);
        assert!(lock.acquire_timeout(Duration::MAX).unwrap().is_some());
    }
}
