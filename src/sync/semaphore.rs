//! [`Semaphore`] and [`BoundedSemaphore`]: counters processes take from
//! and give back to.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::wire::{self, ObjectWire, Tag};
use crate::error::{Error, Kind, Result};
use crate::sys;

/// A counting semaphore shared between processes (Python's
/// `multiprocessing.Semaphore`): [`acquire`](Semaphore::acquire) takes
/// one from the count, waiting while it is zero; dropping the
/// [`SemaphoreGuard`] (or [`release`](Semaphore::release)) gives one back.
///
/// **Dead holders.** A semaphore does not know who took from it, so
/// nothing is given back for a process that dies holding a guard: the
/// count stays lower by what it held, on every platform (as in CPython).
/// Where that matters, give each holder a [`Lock`](crate::Lock), which
/// reports a dead holder.
///
/// The count is at most [`Semaphore::MAX`].
///
/// ```
/// let sem = multiproc::Semaphore::new(2)?;
/// let a = sem.acquire()?;
/// let b = sem.acquire()?;
/// assert!(sem.try_acquire()?.is_none());
/// drop(a);
/// assert!(sem.try_acquire()?.is_some());
/// # drop(b); Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug)]
pub struct Semaphore {
    sys: sys::SysSemaphore,
    bounded: bool,
}

/// One unit taken from a [`Semaphore`] or [`BoundedSemaphore`]; given
/// back when dropped.
#[must_use = "the unit is given back when the guard is dropped"]
pub struct SemaphoreGuard<'a> {
    sem: &'a Semaphore,
}

impl fmt::Debug for SemaphoreGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphoreGuard").finish_non_exhaustive()
    }
}

impl SemaphoreGuard<'_> {
    /// Keeps the unit taken: nothing is given back (give it back later
    /// with [`Semaphore::release`]).
    pub fn forget(self) {
        std::mem::forget(self)
    }
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        // Giving back what was taken can't pass the maximum.
        let _ = self.sem.sys.release(1);
    }
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(what, e)
}

impl Semaphore {
    /// The largest count (`i32::MAX`, the Windows limit, on every
    /// platform).
    pub const MAX: u32 = i32::MAX as u32;

    /// A semaphore whose count starts at `value` (at most [`Semaphore::MAX`]).
    pub fn new(value: u32) -> Result<Semaphore> {
        Self::with_max(value, Self::MAX, false)
    }

    fn with_max(value: u32, max: u32, bounded: bool) -> Result<Semaphore> {
        if value > max {
            return Err(Error::new(Kind::Usage(format!(
                "a semaphore's count of {value} is over its maximum of {max}"
            ))));
        }
        Ok(Semaphore {
            sys: sys::SysSemaphore::new(value, max).map_err(io("cannot create a semaphore"))?,
            bounded,
        })
    }

    fn guard(&self, got: bool) -> Option<SemaphoreGuard<'_>> {
        got.then(|| SemaphoreGuard { sem: self })
    }

    /// Takes one, waiting while the count is zero.
    pub fn acquire(&self) -> Result<SemaphoreGuard<'_>> {
        match self.acquire_timeout(Duration::MAX)? {
            Some(g) => Ok(g),
            None => Err(Error::io(
                "cannot acquire a semaphore",
                std::io::Error::other("a wait without a deadline timed out"),
            )),
        }
    }

    /// Takes one if the count is not zero now.
    pub fn try_acquire(&self) -> Result<Option<SemaphoreGuard<'_>>> {
        self.acquire_timeout(Duration::ZERO)
    }

    /// Waits at most `timeout` to take one; `None` if the count stayed
    /// zero. Any `Duration` is valid (`Duration::MAX`: no limit).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<Option<SemaphoreGuard<'_>>> {
        let got = self
            .sys
            .acquire(super::until(timeout))
            .map_err(io("cannot acquire a semaphore"))?;
        Ok(self.guard(got))
    }

    /// Adds one to the count without a guard (Python's `release`). An
    /// error of kind [`Usage`](crate::ErrorKind::Usage) if that would pass
    /// the maximum (for a [`BoundedSemaphore`], its initial value).
    pub fn release(&self) -> Result<()> {
        if self
            .sys
            .release(1)
            .map_err(io("cannot release a semaphore"))?
        {
            return Ok(());
        }
        Err(Error::new(Kind::Usage(if self.bounded {
            "a BoundedSemaphore released more often than it was acquired".into()
        } else {
            format!("a semaphore's count can't pass {}", Self::MAX)
        })))
    }

    /// The count now, where the OS tells it (Linux, macOS; not Windows).
    /// Other processes may change it at any time.
    pub fn value(&self) -> Option<u32> {
        self.sys.value()
    }
}

/// A [`Semaphore`] whose count may not pass its initial value (Python's
/// `multiprocessing.BoundedSemaphore`): a [`release`](Semaphore::release)
/// that would is an error of kind [`Usage`](crate::ErrorKind::Usage), and
/// changes nothing. Dereferences to [`Semaphore`] for everything else.
///
/// ```
/// let sem = multiproc::BoundedSemaphore::new(1)?;
/// let e = sem.release().unwrap_err();
/// assert!(e.is_usage());
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug)]
pub struct BoundedSemaphore {
    inner: Semaphore,
}

impl BoundedSemaphore {
    /// A semaphore whose count starts at, and may not pass, `value` (at
    /// most [`Semaphore::MAX`]).
    pub fn new(value: u32) -> Result<BoundedSemaphore> {
        if value > Semaphore::MAX {
            return Err(Error::new(Kind::Usage(format!(
                "a semaphore's count of {value} is over its maximum of {}",
                Semaphore::MAX
            ))));
        }
        Ok(BoundedSemaphore {
            inner: Semaphore::with_max(value, value, true)?,
        })
    }
}

impl std::ops::Deref for BoundedSemaphore {
    type Target = Semaphore;
    fn deref(&self) -> &Semaphore {
        &self.inner
    }
}

impl Serialize for Semaphore {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let tag = match self.bounded {
            true => Tag::BoundedSemaphore,
            false => Tag::Semaphore,
        };
        (tag, wire::ser::<S::Error>(self.sys.parts())?).serialize(s)
    }
}

fn read<'de, D: Deserializer<'de>>(d: D, want: Tag) -> std::result::Result<Semaphore, D::Error> {
    let (tag, w) = <(Tag, ObjectWire)>::deserialize(d)?;
    wire::check_tag(tag, want)?;
    let sys = wire::de(w, sys::SysSemaphore::HANDLES, sys::SysSemaphore::from_parts)?;
    Ok(Semaphore {
        sys,
        bounded: want == Tag::BoundedSemaphore,
    })
}

impl<'de> Deserialize<'de> for Semaphore {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        read(d, Tag::Semaphore)
    }
}

impl Serialize for BoundedSemaphore {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.inner.serialize(s)
    }
}

impl<'de> Deserialize<'de> for BoundedSemaphore {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(BoundedSemaphore {
            inner: read(d, Tag::BoundedSemaphore)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounded_semaphore_refuses_a_release_past_its_start() {
        let s = BoundedSemaphore::new(2).unwrap();
        assert!(s.release().unwrap_err().is_usage());
        let g = s.acquire().unwrap();
        g.forget();
        s.release().unwrap();
        assert!(s.release().unwrap_err().is_usage());
        assert!(Semaphore::new(Semaphore::MAX + 1).unwrap_err().is_usage());
        let u = Semaphore::new(Semaphore::MAX).unwrap();
        assert!(u.release().unwrap_err().is_usage());
    }

    #[test]
    fn timeouts_of_any_length_are_valid() {
        let s = Semaphore::new(0).unwrap();
        assert!(s.try_acquire().unwrap().is_none());
        assert!(s
            .acquire_timeout(Duration::from_millis(1))
            .unwrap()
            .is_none());
        s.release().unwrap();
        assert!(s.acquire_timeout(Duration::MAX).unwrap().is_some());
    }
}
