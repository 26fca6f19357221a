//! [`JoinableQueue`]: a [`Queue`] that also counts the items not yet
//! marked done, so that a producer can wait until every item was handled.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::untyped::{Core, Wait};
use super::{Queue, QueueBuilder};
use crate::error::{Error, Kind, Result};
use crate::sync::wire::{self, ObjectWire};
use crate::sys;

/// A [`Queue`] with Python's `JoinableQueue` accounting: every item put
/// is *unfinished* until a consumer calls
/// [`task_done`](JoinableQueue::task_done) for it, and
/// [`join`](JoinableQueue::join) waits until none is.
///
/// It dereferences to its [`Queue`], so `put`, `get` and the rest work
/// as there. The count lives in the queue's shared memory next to the
/// count of items put, and `task_done` changes it with one store under
/// the queue's lock: a process killed inside it marked the item done or
/// not, never half. A consumer killed after taking an item and before
/// `task_done` leaves that item unfinished for good (as in Python):
/// `join` then waits until its timeout ([`join_timeout`](JoinableQueue::join_timeout)).
///
/// ```
/// let q = multiproc::JoinableQueue::<u32>::new()?;
/// q.put(1)?;
/// q.put(2)?;
/// assert_eq!(q.get()? + q.get()?, 3);
/// assert!(!q.join_timeout(std::time::Duration::ZERO)?, "taken is not done");
/// q.task_done()?;
/// q.task_done()?;
/// q.join()?; // returns at once: every item is done
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct JoinableQueue<T> {
    queue: Queue<T>,
    /// `join`ers sleep on it.
    done: Arc<sys::SysSemaphore>,
}

/// Another handle on the same queue (as [`Queue`]'s clone).
impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue {
            queue: self.queue.clone(),
            done: Arc::clone(&self.done),
        }
    }
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinableQueue").finish_non_exhaustive()
    }
}

impl<T> Deref for JoinableQueue<T> {
    type Target = Queue<T>;

    fn deref(&self) -> &Queue<T> {
        &self.queue
    }
}

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    /// A new, empty queue bounded as [`Queue::new`].
    pub fn new() -> Result<JoinableQueue<T>> {
        Queue::builder().build_joinable()
    }

    /// A new, empty queue of at most `max_items` items (as
    /// [`Queue::with_capacity`]).
    pub fn with_capacity(max_items: usize) -> Result<JoinableQueue<T>> {
        Queue::builder().max_items(max_items).build_joinable()
    }

    pub(super) fn from_queue(queue: Queue<T>) -> Result<JoinableQueue<T>> {
        Ok(JoinableQueue {
            queue,
            done: Arc::new(Core::semaphore()?),
        })
    }

    /// Marks one item taken from the queue as handled. An error of kind
    /// [`Usage`](crate::ErrorKind::Usage) if every item put is already
    /// done (Python's `ValueError`).
    pub fn task_done(&self) -> Result<()> {
        let joiners = self.queue.core.locked(|ring| {
            if !ring.task_done() {
                return None;
            }
            Some(match ring.unfinished() {
                0 => ring.join_sleepers(),
                _ => 0,
            })
        })?;
        match joiners {
            Some(n) => {
                Core::wake_many(&self.done, n);
                Ok(())
            }
            None => Err(Error::new(Kind::Usage(
                "task_done was called more times than items were put".into(),
            ))),
        }
    }

    /// The number of items put and not yet marked done (an estimate, as
    /// [`Queue::len`]).
    pub fn unfinished(&self) -> Result<usize> {
        self.queue.core.locked(|ring| ring.unfinished() as usize)
    }

    /// Waits until every item put was marked done.
    pub fn join(&self) -> Result<()> {
        self.join_wait(Wait::Forever).map(drop)
    }

    /// Waits at most `timeout` until every item put was marked done;
    /// `false` if some still were not.
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool> {
        self.join_wait(Wait::timeout(timeout))
    }

    fn join_wait(&self, wait: Wait) -> Result<bool> {
        let mut counted = false;
        loop {
            let next = self.queue.core.locked(|ring| {
                if counted {
                    ring.add_join_sleepers(-1);
                }
                if ring.unfinished() == 0 {
                    return Ok(None);
                }
                match wait.next_wake() {
                    Some(until) => {
                        ring.add_join_sleepers(1);
                        Ok(Some(until))
                    }
                    None => Err(()),
                }
            })?;
            match next {
                Ok(None) => return Ok(true),
                Err(()) => return Ok(false),
                Ok(Some(until)) => {
                    counted = true;
                    Core::sleep(&self.done, until)?;
                }
            }
        }
    }
}

impl<T: Serialize + DeserializeOwned> QueueBuilder<T> {
    /// A new, empty [`JoinableQueue`] with these bounds.
    pub fn build_joinable(&self) -> Result<JoinableQueue<T>> {
        JoinableQueue::from_queue(self.build()?)
    }
}

impl<T> Serialize for JoinableQueue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (&self.queue, wire::ser::<S::Error>(self.done.parts())?).serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for JoinableQueue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (queue, done) = <(Queue<T>, ObjectWire)>::deserialize(d)?;
        Ok(JoinableQueue {
            queue,
            done: Arc::new(Core::semaphore_from_wire(done)?),
        })
    }
}
