//! [`Event`]: a flag processes can wait for.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::wire::{self, ObjectWire, Tag};
use crate::error::{Error, Result};
use crate::sys;

/// A flag that processes set, clear and wait for (Python's
/// `multiprocessing.Event`): [`set`](Event::set) wakes every process and
/// thread waiting in [`wait`](Event::wait), and later waits return at
/// once until [`clear`](Event::clear).
///
/// ```
/// let ev = multiproc::Event::new()?;
/// assert!(!ev.wait_timeout(std::time::Duration::ZERO)?);
/// ev.set()?;
/// ev.wait()?;
/// assert!(ev.is_set()?);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug)]
pub struct Event {
    sys: sys::SysEvent,
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(what, e)
}

impl Event {
    /// A new event, not set.
    pub fn new() -> Result<Event> {
        Ok(Event {
            sys: sys::SysEvent::new().map_err(io("cannot create an event"))?,
        })
    }

    /// Sets the flag, waking every waiter.
    pub fn set(&self) -> Result<()> {
        self.sys.set().map_err(io("cannot set an event"))
    }

    /// Clears the flag.
    pub fn clear(&self) -> Result<()> {
        self.sys.clear().map_err(io("cannot clear an event"))
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> Result<bool> {
        self.sys.is_set().map_err(io("cannot read an event"))
    }

    /// Waits until the flag is set.
    pub fn wait(&self) -> Result<()> {
        self.sys
            .wait(None)
            .map(drop)
            .map_err(io("cannot wait for an event"))
    }

    /// Waits at most `timeout` for the flag; whether it is set. Any
    /// `Duration` is valid (`Duration::MAX`: no limit).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.sys
            .wait(super::until(timeout))
            .map_err(io("cannot wait for an event"))
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (Tag::Event, wire::ser::<S::Error>(self.sys.parts())?).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (tag, w) = <(Tag, ObjectWire)>::deserialize(d)?;
        wire::check_tag(tag, Tag::Event)?;
        let sys = wire::de(w, sys::SysEvent::HANDLES, sys::SysEvent::from_parts)?;
        Ok(Event { sys })
    }
}
