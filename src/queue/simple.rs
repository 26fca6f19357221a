//! [`SimpleQueue`]: Python's `multiprocessing.SimpleQueue`, a [`Queue`]
//! with the few methods it has and a large byte bound instead of none.

use std::borrow::Borrow;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Queue;
use crate::error::Result;

/// A simple queue between processes (Python's
/// `multiprocessing.SimpleQueue`): [`put`](SimpleQueue::put),
/// [`get`](SimpleQueue::get), [`is_empty`](SimpleQueue::is_empty),
/// [`close`](SimpleQueue::close), with the delivery and crash guarantees
/// of [`Queue`], which it wraps.
///
/// **Bounded all the same.** Python's `SimpleQueue` is a pipe: its `put`
/// blocks once the pipe's buffer (64 KiB on Linux) is full. Ours holds up
/// to [`SimpleQueue::MAX_BYTES`] of serialized items in shared memory
/// (plus up to [`Queue::DEFAULT_MAX_LARGE_BYTES`] of items larger than
/// that, each in a block of its own) and `put` blocks while that much is
/// queued, so memory never grows without bound; the pages are committed
/// by the OS as they are first written.
///
/// ```
/// let q = multiproc::SimpleQueue::<String>::new()?;
/// q.put("hello".to_string())?;
/// assert_eq!(q.get()?, "hello");
/// assert!(q.is_empty()?);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct SimpleQueue<T> {
    queue: Queue<T>,
}

/// Another handle on the same queue (as [`Queue`]'s clone).
impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        SimpleQueue {
            queue: self.queue.clone(),
        }
    }
}

impl<T> fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimpleQueue").finish_non_exhaustive()
    }
}

impl<T: Serialize + DeserializeOwned> SimpleQueue<T> {
    /// The bytes of serialized items (plus 8 to 15 each) a `SimpleQueue`
    /// holds before `put` blocks: 64 MiB.
    pub const MAX_BYTES: usize = 64 << 20;

    /// A new, empty queue.
    pub fn new() -> Result<SimpleQueue<T>> {
        Ok(SimpleQueue {
            queue: Queue::builder().max_bytes(Self::MAX_BYTES).build()?,
        })
    }

    /// Puts `item`, waiting while [`SimpleQueue::MAX_BYTES`] are queued
    /// (errors as [`Queue::put`]).
    pub fn put(&self, item: impl Borrow<T>) -> Result<()> {
        self.queue.put(item)
    }

    /// Takes the oldest item, waiting for one (errors as [`Queue::get`]).
    pub fn get(&self) -> Result<T> {
        self.queue.get()
    }

    /// Whether the queue is empty now (an estimate).
    pub fn is_empty(&self) -> Result<bool> {
        self.queue.is_empty()
    }

    /// Closes the queue for every process (as [`Queue::close`]).
    pub fn close(&self) -> Result<()> {
        self.queue.close()
    }
}

impl<T> Serialize for SimpleQueue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.queue.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for SimpleQueue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(SimpleQueue {
            queue: Queue::deserialize(d)?,
        })
    }
}
