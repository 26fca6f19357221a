//! [`Queue`] and [`QueueBuilder`]: the typed queue over [`Core`].

use std::borrow::Borrow;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ring;
use super::untyped::{with_scratch, Core, Wait};
use crate::encode;
use crate::error::{Error, Kind, Result};

/// A first-in first-out queue between processes (Python's
/// `multiprocessing.Queue`): any number of processes and threads put
/// items and take them, each item taken exactly once.
///
/// Items are any `Serialize + DeserializeOwned` type, serialized with
/// postcard into a ring in shared memory. Pass a `Queue` to a child in
/// its arguments (a spawn's, a pool initializer's) as a
/// [`Connection`](crate::Connection) is passed; share it between threads
/// by reference or by cloning it (it is `Send + Sync`; a clone is another
/// handle on the same queue).
///
/// - **Bounded**: by bytes (the ring, [`Queue::DEFAULT_MAX_BYTES`] unless
///   [`QueueBuilder::max_bytes`] says otherwise) and optionally by items
///   ([`Queue::with_capacity`], [`QueueBuilder::max_items`]). `put` waits
///   for room; [`try_put`](Queue::try_put) and
///   [`put_timeout`](Queue::put_timeout) fail with
///   [`ErrorKind::Full`](crate::ErrorKind::Full) instead.
/// - **Large items**: an item larger than the whole ring waits in a block
///   of shared memory of its own, in its place in line, with the same
///   guarantees (below); at most
///   [`QueueBuilder::max_large_bytes`] of them wait at once (1 GiB by
///   default), and one larger than that is an error of kind
///   [`MessageTooLarge`](crate::ErrorKind::MessageTooLarge) at once.
///   **Windows**: such an item is kept by one of the processes holding
///   the queue, and handed on when that one drops the queue; one killed
///   (or ending with `process::exit`) takes the items it keeps with it
///   (see the crate docs' Queues section).
///   **macOS** (and Unixes other than Linux): no such blocks; an item
///   larger than the ring is an error of kind `MessageTooLarge`.
/// - **No feeder thread**: when `put` returns, the item is in shared
///   memory. The process may exit at once (return from its entry, be
///   killed): its items stay in the queue, and joining it never waits for
///   anyone to read them (CPython's #73983 deadlock can't happen).
/// - **Crash safe** (Linux and Windows): an item is wholly in the queue
///   or not at all. A producer killed inside `put` put nothing or the
///   whole item; a consumer killed inside `get`, even with the item
///   copied out and decoded, leaves it, first in line, for the next `get`
///   (the item leaves the queue with the last store `get` makes before it
///   returns); so do the items after it that a `get` copied out ahead for
///   this process's next `get`s. Either way the queue stays usable by
///   everyone else.
/// - **macOS: a crash can leave the queue locked.** macOS has no robust
///   mutexes: a process killed inside any call on the queue leaves it
///   locked for good, and every later call on it, in every process,
///   blocks forever (timeouts bound the wait for room or items, not for
///   the lock).
/// - [`close`](Queue::close) ends the queue for every process: puts fail
///   with [`QueueClosed`](crate::ErrorKind::QueueClosed), gets drain what
///   is left and then fail with it (end of data), blocked callers wake.
///
/// Order is first in, first out as the ring sees the puts; between
/// producers there is no order (a producer waiting for room for a large
/// item doesn't hold back others whose items fit).
///
/// ```
/// use multiproc::{Process, Queue};
///
/// fn produce(q: Queue<u64>) {
///     for i in 0..1000 {
///         q.put(i).unwrap();
///     }
///     // Returns at once: the items are in the queue.
/// }
/// multiproc::entry!(produce);
///
/// # fn main() -> Result<(), multiproc::Error> {
/// # multiproc::init();
/// let q = Queue::<u64>::new()?;
/// let mut child = Process::spawn(produce, &q)?;
/// child.join()?; // no need to drain first
/// let sum: u64 = (0..1000).map(|_| q.get()).sum::<multiproc::Result<u64>>()?;
/// assert_eq!(sum, 499_500);
/// assert!(q.try_get().unwrap_err().is_empty());
/// # Ok(()) }
/// ```
pub struct Queue<T> {
    pub(crate) core: Arc<Core>,
    _t: PhantomData<fn(T) -> T>,
}

/// Another handle on the same queue, in this process (cheap: the OS
/// objects are shared, not duplicated).
impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            core: Arc::clone(&self.core),
            _t: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue").finish_non_exhaustive()
    }
}

/// Builds a [`Queue`] with its bounds: [`Queue::builder`].
pub struct QueueBuilder<T> {
    max_items: Option<usize>,
    max_bytes: usize,
    max_large: usize,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> fmt::Debug for QueueBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueBuilder")
            .field("max_items", &self.max_items)
            .field("max_bytes", &self.max_bytes)
            .field("max_large_bytes", &self.max_large)
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned> QueueBuilder<T> {
    /// At most `n` items in the queue (at least 1); without it, only
    /// bytes bound the queue.
    pub fn max_items(&mut self, n: usize) -> &mut Self {
        self.max_items = Some(n);
        self
    }

    /// The ring's size in bytes (default [`Queue::DEFAULT_MAX_BYTES`],
    /// at most [`Queue::MAX_BYTES`], rounded up to a multiple of 8). An
    /// item takes its serialized length plus 8 to 15 bytes, so the
    /// largest item is `max_bytes - 8` bytes serialized. The ring's pages
    /// are shared memory that the OS commits as they are first written.
    pub fn max_bytes(&mut self, n: usize) -> &mut Self {
        self.max_bytes = n;
        self
    }

    /// The most bytes of items too large for the ring that may wait in
    /// the queue at once (default [`Queue::DEFAULT_MAX_LARGE_BYTES`]):
    /// such an item waits in a block of shared memory of its own (see
    /// [`Queue`], "Large items"), and a `put` of one waits while this
    /// many bytes of them are queued. It is also the largest item; 0 lets
    /// no item larger than the ring in (as on macOS, whatever is set
    /// here: see [`Queue`]).
    pub fn max_large_bytes(&mut self, n: usize) -> &mut Self {
        self.max_large = n;
        self
    }

    fn core(&self) -> Result<Core> {
        let usage = |m: String| Err(Error::new(Kind::Usage(m)));
        if self.max_items == Some(0) {
            return usage("a queue's max_items must be at least 1".into());
        }
        let bytes = self.max_bytes.div_ceil(8).saturating_mul(8);
        if !(ring::MIN_CAP..=ring::MAX_CAP).contains(&bytes) {
            return usage(format!(
                "a queue's max_bytes must be {}..={} bytes, not {}",
                ring::MIN_CAP,
                ring::MAX_CAP,
                self.max_bytes
            ));
        }
        let items = self.max_items.map_or(u64::MAX, |n| n as u64);
        Core::new(items, bytes, self.max_large as u64)
    }

    /// A new, empty queue.
    pub fn build(&self) -> Result<Queue<T>> {
        Ok(Queue {
            core: Arc::new(self.core()?),
            _t: PhantomData,
        })
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// The ring's size unless [`QueueBuilder::max_bytes`] says otherwise:
    /// 4 MiB.
    pub const DEFAULT_MAX_BYTES: usize = 4 << 20;
    /// The largest ring: 1 GiB.
    pub const MAX_BYTES: usize = ring::MAX_CAP;
    /// The bytes of items too large for the ring that may wait at once
    /// unless [`QueueBuilder::max_large_bytes`] says otherwise: 1 GiB.
    pub const DEFAULT_MAX_LARGE_BYTES: usize = 1 << 30;

    /// A new, empty queue bounded only by [`Queue::DEFAULT_MAX_BYTES`].
    pub fn new() -> Result<Queue<T>> {
        Self::builder().build()
    }

    /// A new, empty queue of at most `max_items` items (Python's
    /// `Queue(maxsize)`; at least 1).
    pub fn with_capacity(max_items: usize) -> Result<Queue<T>> {
        Self::builder().max_items(max_items).build()
    }

    /// A builder, to set both bounds.
    pub fn builder() -> QueueBuilder<T> {
        QueueBuilder {
            max_items: None,
            max_bytes: Self::DEFAULT_MAX_BYTES,
            max_large: Self::DEFAULT_MAX_LARGE_BYTES,
            _t: PhantomData,
        }
    }

    fn put_wait(&self, item: &T, wait: Wait) -> Result<()> {
        with_scratch(|buf| {
            encode::append(item, buf).map_err(|source| {
                Error::new(Kind::Encode {
                    entry: "a queue item".into(),
                    source,
                })
            })?;
            self.core.put_bytes(buf, wait)
        })
    }

    fn decode(bytes: &[u8]) -> Result<T> {
        encode::from_bytes(bytes).map_err(|e| e.into_error("a queue item"))
    }

    /// Puts `item` (the value or a reference), waiting while the queue
    /// is full. When it returns `Ok`, the item is in the queue, whatever
    /// happens to this process next.
    ///
    /// Errors: [`QueueClosed`](crate::ErrorKind::QueueClosed),
    /// [`MessageTooLarge`](crate::ErrorKind::MessageTooLarge) (the item
    /// can never fit), [`Encode`](crate::ErrorKind::Encode).
    pub fn put(&self, item: impl Borrow<T>) -> Result<()> {
        self.put_wait(item.borrow(), Wait::Forever)
    }

    /// Puts `item`, waiting at most `timeout` for room; then an error of
    /// kind [`Full`](crate::ErrorKind::Full). Other errors as
    /// [`put`](Queue::put).
    pub fn put_timeout(&self, item: impl Borrow<T>, timeout: Duration) -> Result<()> {
        self.put_wait(item.borrow(), Wait::timeout(timeout))
    }

    /// Puts `item` if there is room now; else an error of kind
    /// [`Full`](crate::ErrorKind::Full). Other errors as
    /// [`put`](Queue::put).
    pub fn try_put(&self, item: impl Borrow<T>) -> Result<()> {
        self.put_wait(item.borrow(), Wait::No)
    }

    /// Takes the oldest item, waiting while the queue is empty.
    ///
    /// Errors: [`QueueClosed`](crate::ErrorKind::QueueClosed) once the
    /// queue is closed and drained; [`Decode`](crate::ErrorKind::Decode)
    /// if the item is not a `T` (it is taken) or the queue's shared memory
    /// was written by something else than a queue (the queue is emptied,
    /// and usable again).
    pub fn get(&self) -> Result<T> {
        self.get_wait(Wait::Forever)
    }

    /// Takes the oldest item, waiting at most `timeout` for one; then an
    /// error of kind [`Empty`](crate::ErrorKind::Empty). Other errors as
    /// [`get`](Queue::get).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.get_wait(Wait::timeout(timeout))
    }

    /// Takes the oldest item if there is one now; else an error of kind
    /// [`Empty`](crate::ErrorKind::Empty). Other errors as
    /// [`get`](Queue::get).
    pub fn try_get(&self) -> Result<T> {
        self.get_wait(Wait::No)
    }

    fn get_wait(&self, wait: Wait) -> Result<T> {
        self.core.get_with(wait, Self::decode)?
    }

    /// `get` with a test hook: `note` sees the item before it is taken
    /// (under the lock, before the commit).
    #[cfg(feature = "test-hooks")]
    pub(crate) fn get_noting(&self, mut note: impl FnMut(&T)) -> Result<T> {
        let decode = |bytes: &[u8]| {
            let r = Self::decode(bytes);
            if let Ok(x) = &r {
                note(x);
            }
            r
        };
        self.core.get_with(Wait::Forever, decode)?
    }

    /// The number of items in the queue now: an estimate, since other
    /// processes put and take at the same time.
    pub fn len(&self) -> Result<usize> {
        self.core.len()
    }

    /// Whether the queue is empty now (an estimate, as [`len`](Queue::len)).
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Closes the queue, for every process that has it: later puts fail
    /// with [`QueueClosed`](crate::ErrorKind::QueueClosed); gets take what
    /// is left, then fail with it; blocked puts and gets wake and fail
    /// (gets only once nothing is left). For good: a queue is not
    /// reopened. (Python's `close` only stops this process's puts.)
    pub fn close(&self) -> Result<()> {
        self.core.close()
    }

    /// Whether the queue was closed, by any process.
    pub fn is_closed(&self) -> Result<bool> {
        self.core.is_closed()
    }

    /// The largest item that fits, in serialized bytes.
    pub fn max_item_len(&self) -> Result<usize> {
        self.core.max_item_len()
    }
}

impl<T> Serialize for Queue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.core.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(Queue {
            core: Arc::new(Core::deserialize(d)?),
            _t: PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use std::sync::Arc;

    #[test]
    fn items_go_through_in_order() {
        let q = Queue::<String>::new().unwrap();
        q.put("a".to_string()).unwrap();
        let b = "b".to_string();
        q.put(&b).unwrap(); // by reference
        assert_eq!(b, "b");
        assert_eq!(q.len().unwrap(), 2);
        assert_eq!(q.get().unwrap(), "a");
        assert_eq!(q.try_get().unwrap(), "b");
        assert!(q.is_empty().unwrap());
    }

    #[test]
    fn try_forms_say_full_and_empty() {
        let q = Queue::<u32>::with_capacity(2).unwrap();
        assert_eq!(q.try_get().unwrap_err().kind(), ErrorKind::Empty);
        q.try_put(1).unwrap();
        q.try_put(2).unwrap();
        let e = q.try_put(3).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Full, "{e}");
        let e = q.put_timeout(3, Duration::from_millis(20)).unwrap_err();
        assert!(e.is_full());
        assert_eq!(q.get().unwrap(), 1);
        q.put_timeout(3, Duration::from_millis(20)).unwrap();
        assert_eq!((q.get().unwrap(), q.get().unwrap()), (2, 3));
        assert!(q
            .get_timeout(Duration::from_millis(20))
            .unwrap_err()
            .is_empty());
    }

    #[test]
    fn an_item_larger_than_the_ring_takes_the_lane_in_its_place_in_line() {
        let q = Queue::<Vec<u8>>::builder()
            .max_bytes(1024)
            .max_large_bytes(1 << 20)
            .build()
            .unwrap();
        assert_eq!(q.max_item_len().unwrap(), 1 << 20);
        q.put(vec![1u8; 10]).unwrap();
        let big: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        q.put(&big).unwrap();
        q.put(vec![2u8; 500]).unwrap();
        assert_eq!(q.len().unwrap(), 3);
        assert_eq!(q.get().unwrap(), vec![1u8; 10]);
        assert_eq!(q.get().unwrap(), big);
        assert_eq!(q.get().unwrap(), vec![2u8; 500]);
        assert!(q.try_get().unwrap_err().is_empty());
    }

    #[test]
    fn an_item_over_the_lanes_bound_fails_at_once_and_a_full_lane_is_full() {
        let q = Queue::<Vec<u8>>::builder()
            .max_bytes(1024)
            .max_large_bytes(10_000)
            .build()
            .unwrap();
        let e = q.put(vec![0u8; 20_000]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
        q.put(vec![3u8; 6000]).unwrap();
        // 6000 + 6000 serialized bytes are over the bound: full until
        // the first is taken.
        let e = q.try_put(vec![4u8; 6000]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Full, "{e}");
        assert!(q
            .put_timeout(vec![4u8; 6000], Duration::from_millis(20))
            .unwrap_err()
            .is_full());
        assert_eq!(q.get().unwrap(), vec![3u8; 6000]);
        q.try_put(vec![4u8; 6000]).unwrap();
        assert_eq!(q.get().unwrap(), vec![4u8; 6000]);
        // No lane: the ring's bound is the only one.
        let q = Queue::<Vec<u8>>::builder()
            .max_bytes(1024)
            .max_large_bytes(0)
            .build()
            .unwrap();
        assert_eq!(q.max_item_len().unwrap(), 1016);
        let e = q.put(vec![0u8; 2000]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
        q.put(vec![7u8; 1000]).unwrap();
        assert_eq!(q.get().unwrap(), vec![7u8; 1000]);
    }

    #[test]
    fn a_large_item_that_does_not_decode_is_consumed_and_the_next_comes() {
        let q = Queue::<Vec<u8>>::builder().max_bytes(256).build().unwrap();
        q.put(vec![0xffu8; 5000]).unwrap(); // not UTF-8
        q.put(vec![8u8; 3]).unwrap();
        let as_string = Queue::<String> {
            core: Arc::clone(&q.core),
            _t: PhantomData,
        };
        let e = as_string.get().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Decode, "{e}");
        assert_eq!(q.get().unwrap(), vec![8u8; 3]);
    }

    #[test]
    fn bad_bounds_are_usage_errors() {
        assert!(Queue::<u8>::with_capacity(0).unwrap_err().is_usage());
        assert!(Queue::<u8>::builder()
            .max_bytes(8)
            .build()
            .unwrap_err()
            .is_usage());
        let e = Queue::<u8>::builder()
            .max_bytes(Queue::<u8>::MAX_BYTES + 1)
            .build()
            .unwrap_err();
        assert!(e.is_usage());
    }

    #[test]
    fn close_wakes_a_blocked_get_and_refuses_puts() {
        let q = Arc::new(Queue::<u8>::new().unwrap());
        q.put(1).unwrap();
        let q2 = q.clone();
        let t = std::thread::spawn(move || (q2.get(), q2.get()));
        // The thread takes the item and then blocks (or sees the close).
        while q.len().unwrap() > 0 {
            std::thread::yield_now();
        }
        q.close().unwrap();
        let (a, b) = t.join().unwrap();
        assert_eq!(a.unwrap(), 1);
        assert_eq!(b.unwrap_err().kind(), ErrorKind::QueueClosed);
        assert!(q.put(2).unwrap_err().is_queue_closed());
        assert!(q.is_closed().unwrap());
    }

    #[test]
    fn a_blocked_put_wakes_when_room_is_made() {
        let q = Arc::new(Queue::<u32>::with_capacity(1).unwrap());
        q.put(1).unwrap();
        let q2 = q.clone();
        let t = std::thread::spawn(move || q2.put(2));
        assert_eq!(q.get().unwrap(), 1);
        t.join().unwrap().unwrap();
        assert_eq!(q.get().unwrap(), 2);
    }

    #[test]
    fn threads_move_every_item_once() {
        let q = Arc::new(Queue::<u64>::builder().max_bytes(256).build().unwrap());
        let producers: Vec<_> = (0..3u64)
            .map(|p| {
                let q = q.clone();
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        q.put(p * 1_000_000 + i).unwrap();
                    }
                })
            })
            .collect();
        let consumers: Vec<_> = (0..3)
            .map(|_| {
                let q = q.clone();
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    for _ in 0..2000 {
                        got.push(q.get().unwrap());
                    }
                    got
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        let mut all: Vec<u64> = consumers
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect();
        all.sort();
        let want: Vec<u64> = (0..3u64)
            .flat_map(|p| (0..2000).map(move |i| p * 1_000_000 + i))
            .collect();
        assert_eq!(all, want);
    }
}
