//! A pool chunk's handles, task by task: the sending side encodes a run
//! of tasks in one transfer ([`TaskTransfer`]), the worker opens each
//! task's window onto the chunk's handles while that task is decoded
//! ([`receiving_batch`], [`next_task`], [`task_decoded`]). Both run once
//! per task, so a task without handles costs a thread-local load and
//! nothing more.

use std::cell::Cell;
use std::marker::PhantomData;

use super::{with_incoming, Carried, Incoming, Outgoing, MESSAGE_IN, OUTGOING};

thread_local! {
    /// How many handles were ever added to a message transfer on this
    /// thread (only grows): [`TaskTransfer::take`] compares it with what
    /// it saw, so a task that passed none costs one load. A `Cell` of an
    /// integer, without a destructor: reading it is a plain load.
    pub(super) static PASSED: Cell<u64> = const { Cell::new(0) };

    /// A chunk with handles is being run on this thread
    /// ([`receiving_batch`]): [`next_task`] and [`task_decoded`] have work
    /// to do. A plain load for the chunks without.
    pub(super) static IN_BATCH: Cell<bool> = const { Cell::new(false) };
}

/// A message transfer held open on this thread while a run of pool tasks
/// is encoded one after another (an `imap` chunk): opened once, and after
/// each task [`take`](Self::take) hands over the handles that task passed.
/// The transfer is empty again after each take, so a task's tokens index
/// its own handles, as with [`collecting`](super::collecting) per task. A
/// task that passed none costs one thread-local load: no borrow, no move
/// of the thread's transfer, no allocation. (A `collecting` per task swaps
/// the transfer in and out for every task; with the worker's per-task
/// windows, that was the fifth of `map`'s tiny-task throughput lost when
/// handles came to pool tasks.) Dropping it puts back the transfer it
/// replaced and closes the handles no `take` took (those of a task whose
/// encoding panicked).
pub(crate) struct TaskTransfer {
    outer: Option<Outgoing>,
    /// [`PASSED`] when the last take (or the open) looked.
    seen: u64,
    /// Tied to this thread's transfer.
    _thread: PhantomData<*const ()>,
}

impl TaskTransfer {
    /// Opens a message transfer on this thread.
    pub(crate) fn open() -> Self {
        #[cfg(any(test, feature = "test-hooks"))]
        count(&TRANSFERS_OPENED);
        let outer = OUTGOING.with(|s| s.borrow_mut().replace(Outgoing::Message(Vec::new())));
        TaskTransfer {
            outer,
            seen: PASSED.get(),
            _thread: PhantomData,
        }
    }

    /// The handles passed since the last take (or the open): those of the
    /// task encoded since.
    #[inline]
    pub(crate) fn take(&mut self) -> Carried {
        let passed = PASSED.get();
        if passed == self.seen {
            return Carried::default();
        }
        self.seen = passed;
        self.take_slow()
    }

    #[cold]
    fn take_slow(&mut self) -> Carried {
        #[cfg(test)]
        count(&TAKES_SLOW);
        OUTGOING.with(|s| match s.borrow_mut().as_mut() {
            Some(Outgoing::Message(v)) => Carried(std::mem::take(v)),
            _ => Carried::default(),
        })
    }
}

impl Drop for TaskTransfer {
    fn drop(&mut self) {
        let outer = self.outer.take();
        let mine = OUTGOING.with(|s| std::mem::replace(&mut *s.borrow_mut(), outer));
        drop(mine);
    }
}

#[cfg(test)]
thread_local! {
    /// How many [`TaskTransfer::take`]s looked at the transfer (the tests
    /// check that tasks without handles never do).
    pub(super) static TAKES_SLOW: Cell<u64> = const { Cell::new(0) };
}

#[cfg(any(test, feature = "test-hooks"))]
thread_local! {
    /// How many message transfers ([`collecting`](super::collecting),
    /// [`TaskTransfer::open`])
    /// this thread opened: the tests check one per chunk, not per task.
    pub(super) static TRANSFERS_OPENED: Cell<u64> = const { Cell::new(0) };

    /// How many task windows [`next_task`] opened on this thread: the
    /// tests check that a chunk without handles opens none.
    static WINDOWS_OPENED: Cell<u64> = const { Cell::new(0) };
}

/// The counters behind the tests' checks that tasks without handles pay
/// for no transfer or window of their own.
#[cfg(any(test, feature = "test-hooks"))]
pub(crate) mod hooks {
    /// Message transfers this thread opened so far.
    pub(crate) fn transfers_opened() -> u64 {
        super::TRANSFERS_OPENED.with(std::cell::Cell::get)
    }

    /// Pool task windows this thread opened so far.
    pub(crate) fn windows_opened() -> u64 {
        super::WINDOWS_OPENED.with(std::cell::Cell::get)
    }
}

/// Counts one more of `counter` (tests and test hooks only).
#[cfg(any(test, feature = "test-hooks"))]
pub(super) fn count(counter: &'static std::thread::LocalKey<Cell<u64>>) {
    counter.with(|n| n.set(n.get() + 1));
}

/// Runs `f` (which runs a pool chunk's tasks) with `handles` (those of the
/// chunk, in task order) as the ones its tasks take from: task `i` has
/// `counts[i]` of them, and its tokens index those only, once
/// [`next_task`] opened its window. Not taken: closed when it returns.
pub(crate) fn receiving_batch<R>(handles: Carried, counts: Vec<u32>, f: impl FnOnce() -> R) -> R {
    let incoming = Incoming {
        handles: handles.0.into_iter().map(Some).collect(),
        counts,
        task: 0,
        base: 0,
        len: 0,
    };
    with_incoming(incoming, f)
}

/// In a pool chunk started with [`receiving_batch`]: the next task is
/// about to be decoded; its handles (only) can be taken now. Without
/// handles (no [`receiving_batch`]) it does nothing, at the cost of one
/// thread-local load (it runs once per task).
#[inline]
pub(crate) fn next_task() {
    if IN_BATCH.get() {
        open_task_window();
    }
}

#[cold]
fn open_task_window() {
    #[cfg(any(test, feature = "test-hooks"))]
    count(&WINDOWS_OPENED);
    MESSAGE_IN.with(|m| {
        if let Some(inc) = m.borrow_mut().as_mut() {
            if inc.counts.is_empty() {
                return;
            }
            inc.len = inc.counts.get(inc.task).map_or(0, |&c| c as usize);
            inc.task += 1;
        }
    })
}

/// In a pool chunk: the task [`next_task`] opened was decoded; the handles
/// of it that it did not take are closed now, and none can be taken until
/// the next task (so a message the task receives without handles of its
/// own can't name them). Without handles: one thread-local load.
#[inline]
pub(crate) fn task_decoded() {
    if IN_BATCH.get() {
        close_task_window();
    }
}

#[cold]
fn close_task_window() {
    MESSAGE_IN.with(|m| {
        if let Some(inc) = m.borrow_mut().as_mut() {
            if inc.counts.is_empty() {
                return;
            }
            for h in inc.handles.iter_mut().skip(inc.base).take(inc.len) {
                *h = None;
            }
            inc.base += inc.len;
            inc.len = 0;
        }
    })
}
