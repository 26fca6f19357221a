//! [`Value`]: a plain value in shared memory, under a lock.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use bytemuck::Pod;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::lock::{settle, some, LockResult, TryLockResult};
use super::wire::{self, ObjectWire, Tag};
use crate::error::{Error, Kind, Result};
use crate::sys;

/// A value of a plain type in shared memory, guarded by its own
/// cross-process [`Lock`](crate::Lock) (Python's
/// `multiprocessing.Value`).
///
/// [`lock`](Value::lock) returns a [`ValueGuard`] that dereferences to
/// the value, mutably: the value is only reachable under the lock, so the
/// `&mut T` is as exclusive as Rust needs, across processes. Pass a
/// `Value` to child processes in their arguments; all of them see and
/// change the same value. `T` is any [`bytemuck::Pod`] type (integers,
/// floats, arrays and `#[repr(C)]` structs of them), whose every bit
/// pattern is a valid value — another process may have written any.
///
/// A holder that dies leaves the value as it was at that moment, possibly
/// half updated; the next `lock` reports it as a [`Lock`](crate::Lock)
/// does ([`ErrorKind::OwnerDied`](crate::ErrorKind::OwnerDied), with the
/// guard to repair it through).
///
/// ```
/// let counter = multiproc::Value::new(0u64)?;
/// *counter.lock()? += 1;
/// assert_eq!(counter.get()?, 1);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Value<T> {
    guarded: sys::Guarded,
    _t: PhantomData<T>,
}

impl<T> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value").finish_non_exhaustive()
    }
}

/// The value of a locked [`Value`]; releases the lock when dropped.
#[must_use = "the lock is released when the guard is dropped"]
pub struct ValueGuard<'a, T> {
    bytes: sys::GuardedBytes<'a>,
    _t: PhantomData<&'a mut T>,
}

impl<T: Pod + fmt::Debug> fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: Pod> Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // The block is page-aligned (checked against T's alignment in
        // `Value::new`) and exactly `size_of::<T>()` bytes.
        bytemuck::from_bytes(self.bytes.bytes())
    }
}

impl<T: Pod> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        bytemuck::from_bytes_mut(self.bytes.bytes_mut())
    }
}

fn mark<T>(g: &ValueGuard<'_, T>) {
    g.bytes.mark_consistent();
}

/// Blocks are aligned to at least a page.
const PAGE: usize = 4096;

impl<T: Pod> Value<T> {
    /// A new value in a new shared block, with a new lock. Types aligned
    /// to more than 4 KiB are refused ([`Usage`](crate::ErrorKind::Usage)).
    pub fn new(value: T) -> Result<Value<T>> {
        if std::mem::align_of::<T>() > PAGE {
            return Err(Error::new(Kind::Usage(format!(
                "a Value's type may be aligned to at most {PAGE} bytes, not {}",
                std::mem::align_of::<T>()
            ))));
        }
        let guarded = sys::Guarded::new(bytemuck::bytes_of(&value))
            .map_err(|e| Error::io("cannot create a shared value", e))?;
        Ok(Value {
            guarded,
            _t: PhantomData,
        })
    }

    fn guard<'a>(bytes: Option<sys::GuardedBytes<'a>>) -> impl FnOnce() -> ValueGuard<'a, T> {
        move || ValueGuard {
            bytes: bytes.expect("the OS said the lock is held"),
            _t: PhantomData,
        }
    }

    fn locked(
        &self,
        deadline: Option<std::time::Instant>,
        try_only: bool,
    ) -> TryLockResult<ValueGuard<'_, T>> {
        match self.guarded.lock(deadline, try_only) {
            Ok((status, bytes)) => settle(Ok(status), Self::guard(bytes), mark, "Value"),
            Err(e) => settle(Err(e), || unreachable!(), mark, "Value"),
        }
    }

    /// Waits for the lock and takes it (as [`Lock::acquire`](crate::Lock::acquire)).
    pub fn lock(&self) -> LockResult<ValueGuard<'_, T>> {
        some(self.locked(None, false))
    }

    /// Takes the lock if it is free now (as
    /// [`Lock::try_acquire`](crate::Lock::try_acquire)).
    pub fn try_lock(&self) -> TryLockResult<ValueGuard<'_, T>> {
        self.locked(None, true)
    }

    /// Waits at most `timeout` for the lock (as
    /// [`Lock::acquire_timeout`](crate::Lock::acquire_timeout)).
    pub fn lock_timeout(&self, timeout: Duration) -> TryLockResult<ValueGuard<'_, T>> {
        self.locked(super::until(timeout), false)
    }

    /// A copy of the value, read under the lock. A dead holder's
    /// [`ErrorKind::OwnerDied`](crate::ErrorKind::OwnerDied) is an error
    /// here; [`lock`](Value::lock) to repair.
    pub fn get(&self) -> Result<T> {
        Ok(*self.lock()?)
    }

    /// Replaces the value, under the lock (errors as [`get`](Value::get)).
    pub fn set(&self, value: T) -> Result<()> {
        *self.lock()? = value;
        Ok(())
    }
}

impl<T: Pod> Serialize for Value<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let (mutex, block) = self.guarded.parts();
        (
            Tag::Value,
            wire::ser::<S::Error>(mutex)?,
            wire::ser::<S::Error>(block)?,
        )
            .serialize(s)
    }
}

impl<'de, T: Pod> Deserialize<'de> for Value<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (tag, m, b) = <(Tag, ObjectWire, ObjectWire)>::deserialize(d)?;
        wire::check_tag(tag, Tag::Value)?;
        let want = std::mem::size_of::<T>();
        if b.word != want as u64 {
            return Err(wire::refuse(format!(
                "a Value of {} bytes arrived where its type has {want}",
                b.word
            )));
        }
        let mutex = wire::de(m, sys::SysMutex::HANDLES, |h, word| {
            sys::SysMutex::from_parts(h, word, false)
        })?;
        let guarded = wire::de(b, 1, |mut h, _| {
            let handle = h.pop().expect("one handle, counted");
            sys::Guarded::open(mutex, handle, want, 0)
        })?;
        Ok(Value {
            guarded,
            _t: PhantomData,
        })
    }
}
