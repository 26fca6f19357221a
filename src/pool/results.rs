//! Results: why a task failed, a chunk's results handed out one task at
//! a time, the results of an `imap` waiting to be handed out, and
//! [`AsyncResult`].

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::protocol::take_frame;
use super::workers::{lock, Shared};
use crate::codec::handles::{self, Carried};
use crate::deadline;
use crate::encode::EncodeError;
use crate::error::{Error, Kind, Result};
use crate::status::{ExitStatus, PanicReport};

/// Why the pool is broken: what happened, and the error behind it where
/// there is one (the spawn error of a worker that could not be replaced),
/// kept whole so that the pool-broken error's `source()` and `io_error()`
/// reach it.
#[derive(Clone, Debug)]
pub(super) struct Broken {
    pub(super) why: String,
    pub(super) cause: Option<Arc<Error>>,
}

impl Broken {
    /// Broken for a reason that has no error behind it.
    pub(super) fn new(why: String) -> Self {
        Broken { why, cause: None }
    }

    /// The error the pool fails with.
    pub(super) fn to_error(&self) -> Error {
        Failure::Broken(self.clone()).into_error()
    }
}

/// Why a task produced no value.
#[derive(Clone, Debug)]
pub(super) enum Failure {
    Panic(PanicReport),
    BadArgs(String),
    /// The task ran; its result could not be serialized.
    BadResult(String),
    Died {
        pid: u32,
        /// Where it ran, for a launched worker.
        host: Option<Arc<str>>,
        /// A launched worker's own pid, as it said.
        own_pid: Option<u32>,
        status: Option<ExitStatus>,
        /// Why the pool gave a launched worker up, when it did.
        cause: Option<String>,
    },
    Timeout {
        pid: u32,
        timeout: Duration,
    },
    /// The worker sent something that is not a pool message; we killed it.
    Protocol {
        pid: u32,
        why: String,
    },
    /// The input could not be serialized here.
    Encode {
        entry: &'static str,
        source: EncodeError,
    },
    Broken(Broken),
    Terminated,
    Closed,
    /// [`AsyncResult::cancel`].
    Cancelled,
}

impl Failure {
    pub(super) fn into_error(self) -> Error {
        Error::new(match self {
            Failure::Panic(report) => Kind::TaskPanicked { report },
            Failure::BadArgs(why) => Kind::TaskBadArgs(why),
            Failure::BadResult(why) => Kind::ResultEncode {
                pid: None,
                status: None,
                why,
            },
            Failure::Died {
                pid,
                host,
                own_pid,
                status,
                cause,
            } => Kind::WorkerDied {
                pid,
                host,
                own_pid,
                status,
                cause,
            },
            Failure::Timeout { pid, timeout } => Kind::TaskTimeout { pid, timeout },
            Failure::Protocol { pid, why } => Kind::WorkerProtocol { pid, why },
            Failure::Encode { entry, source } => Kind::Encode {
                entry: entry.to_string(),
                source,
            },
            Failure::Broken(Broken { why, cause }) => Kind::PoolBroken { why, cause },
            Failure::Terminated => Kind::PoolClosed("the pool was terminated"),
            Failure::Closed => Kind::PoolClosed("the pool is closed"),
            Failure::Cancelled => Kind::Cancelled,
        })
    }
}

/// A chunk's results, handed out one task at a time.
pub(super) struct ChunkResults {
    pub(super) first: u64,
    pub(super) n: u32,
    pub(super) next: u32,
    /// The length-prefixed results of the tasks that succeeded, in order.
    pub(super) values: Vec<u8>,
    pub(super) pos: usize,
    /// The tasks that failed, by index, in order.
    pub(super) fails: VecDeque<(u32, Failure)>,
    /// Every task of the chunk failed this way.
    pub(super) all: Option<Failure>,
    /// The handles that came with the results.
    pub(super) handles: ResultHandles,
}

/// The handles that came with a chunk's results, taken by its tasks'
/// results one task at a time (each result's tokens index its own only);
/// those not taken are closed as each result is decoded, the rest when
/// the chunk's results are dropped.
#[derive(Debug, Default)]
pub(super) struct ResultHandles {
    carried: Carried,
    /// How many each task's result has, in task order (empty: none).
    counts: Vec<u32>,
    /// Why they could not be taken: the results that have some fail.
    error: Option<String>,
}

impl ResultHandles {
    /// What came for a chunk of `n` tasks whose answer says `counts`:
    /// `carried`, or why they could not be taken. Checked: a count for
    /// each task at most, and as many handles as the counts add up to.
    pub(super) fn new(n: u32, counts: Vec<u32>, carried: Result<Carried>) -> Self {
        let total: u64 = counts.iter().map(|&k| u64::from(k)).sum();
        let error = match &carried {
            Err(e) => Some(e.to_string()),
            Ok(c) if counts.len() > n as usize || total != c.len() as u64 => Some(format!(
                "the worker's answer names {total} handles for {} of {n} tasks, and {} came",
                counts.len(),
                c.len()
            )),
            Ok(_) => None,
        };
        match (error, carried) {
            (None, Ok(carried)) => ResultHandles {
                carried,
                counts,
                error: None,
            },
            (error, _) => ResultHandles {
                carried: Carried::default(),
                counts,
                error,
            },
        }
    }

    /// The handles of task `i`'s result (tasks are taken in order).
    fn take(&mut self, i: u32) -> std::result::Result<Carried, String> {
        let n = self.counts.get(i as usize).map_or(0, |&k| k as usize);
        if n == 0 {
            return Ok(Carried::default());
        }
        match &self.error {
            Some(why) => Err(why.clone()),
            None => Ok(self.carried.take_front(n)),
        }
    }
}

impl ChunkResults {
    pub(super) fn failed(first: u64, n: u32, why: Failure) -> Self {
        ChunkResults {
            first,
            n,
            next: 0,
            values: Vec::new(),
            pos: 0,
            fails: VecDeque::new(),
            all: Some(why),
            handles: ResultHandles::default(),
        }
    }

    pub(super) fn has_next(&self) -> bool {
        self.next < self.n
    }

    pub(super) fn next_result<R: DeserializeOwned>(&mut self) -> Option<Result<R>> {
        if self.next >= self.n {
            return None;
        }
        let i = self.next;
        self.next += 1;
        if let Some(why) = &self.all {
            return Some(Err(why.clone().into_error()));
        }
        let mine = self.handles.take(i);
        if self.fails.front().is_some_and(|(j, _)| *j == i) {
            let (_, why) = self.fails.pop_front()?;
            return Some(Err(why.into_error()));
        }
        let Some((item, rest)) = take_frame(&self.values[self.pos..]) else {
            return Some(Err(Error::new(Kind::PoolBroken {
                why: "a worker sent fewer results than tasks".into(),
                cause: None,
            })));
        };
        self.pos = self.values.len() - rest.len();
        Some(match mine {
            Ok(mine) if mine.is_empty() => decode(item),
            Ok(mine) => handles::receiving_message(mine, || decode(item)),
            Err(why) => Err(Error::new(Kind::Decode {
                what: "a task's result",
                source: postcard::Error::SerdeDeCustom,
                why: Some(format!("its handles could not be taken: {why}")),
            })),
        })
    }
}

/// A task submitted with [`Pool::submit`](super::Pool::submit) or
/// [`Task::submit`](super::Task::submit): wait for its result with
/// [`get`](Self::get), or `.await` it; [`cancel`](Self::cancel) it.
///
/// # As a future
///
/// `AsyncResult<R>` is a [`Future`] with `Output = Result<R>`, for any
/// executor: the pool's own reader thread, the one that receives the
/// result from the worker, wakes the task that awaits it. Awaiting costs
/// no thread (neither per call nor per future) and no timer. Once it
/// returned `Ready`, polling it again gives an error
/// ([`ErrorKind::Usage`](crate::ErrorKind::Usage), "already taken"), as
/// [`get_timeout`](Self::get_timeout) does.
///
/// Time limits ([`task_timeout`](super::PoolBuilder::task_timeout),
/// [`Task::timeout`](super::Task::timeout)) are the pool's own timer's:
/// an awaited task past its limit is killed on time, polled or not.
///
/// # Drop
///
/// Dropping an `AsyncResult` (awaited or not, a future dropped by
/// `select!` or a timeout included) detaches the task: it still runs on
/// a worker, and its result is discarded when it arrives. Nothing is
/// cancelled ([`cancel`](Self::cancel) does that).
pub struct AsyncResult<R> {
    pub(super) shared: Arc<Shared>,
    /// The scheduler's job (0 for a task that failed before it was
    /// queued).
    pub(super) job: u64,
    pub(super) slot: Arc<Slot>,
    /// The task's chunk (0: never queued, `done` holds why).
    pub(super) chunk: u64,
    pub(super) done: Option<Result<R>>,
    pub(super) _r: PhantomData<fn() -> R>,
}

/// Where a submitted task's result goes: the scheduler puts it there
/// (under the pool's lock, then wakes the waker it hands back), the
/// [`AsyncResult`] takes it under the slot's own lock, so that polling a
/// future never contends with the pool's threads for the pool's lock.
#[derive(Default)]
pub(super) struct Slot(Mutex<SlotState>);

#[derive(Default)]
struct SlotState {
    result: Option<ChunkResults>,
    waker: Option<Waker>,
}

impl Slot {
    fn state(&self) -> MutexGuard<'_, SlotState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The result arrived; the waker to wake (outside the pool's lock).
    pub(super) fn put(&self, c: ChunkResults) -> Option<Waker> {
        let mut st = self.state();
        st.result = Some(c);
        st.waker.take()
    }

    fn take(&self) -> Option<ChunkResults> {
        self.state().result.take()
    }

    /// The result, or `waker` registered to be woken when it arrives.
    pub(super) fn take_or_register(&self, waker: &Waker) -> Option<ChunkResults> {
        let mut st = self.state();
        if let Some(c) = st.result.take() {
            return Some(c);
        }
        match &mut st.waker {
            Some(w) if w.will_wake(waker) => {}
            slot => *slot = Some(waker.clone()),
        }
        None
    }
}

impl<R> fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("job", &self.job)
            .finish()
    }
}

fn decode<R: DeserializeOwned>(bytes: &[u8]) -> Result<R> {
    crate::encode::from_bytes(bytes).map_err(|e| e.into_error("a task's result"))
}

/// The one result of a submitted task's chunk.
fn first_result<R: DeserializeOwned>(mut c: ChunkResults) -> Result<R> {
    // Not `None`: a submitted task's chunk is of one task.
    c.next_result().unwrap_or_else(|| {
        Err(Error::new(Kind::PoolBroken {
            why: "a worker sent fewer results than tasks".into(),
            cause: None,
        }))
    })
}

impl<R: DeserializeOwned> AsyncResult<R> {
    /// Whether the result is there.
    pub fn is_ready(&mut self) -> bool {
        if self.done.is_none() {
            self.done = self.slot.take().map(first_result);
        }
        self.done.is_some()
    }

    /// Waits for the result.
    pub fn get(mut self) -> Result<R> {
        match self.wait_until(None) {
            true => self.done.take().expect("set when ready"),
            false => unreachable!("no deadline"),
        }
    }

    /// Waits at most `timeout` (forever if it is too long to be a
    /// deadline, such as `Duration::MAX`): `None` if the result isn't
    /// there yet. Once
    /// it returned `Some`, the result is gone; later calls give an error.
    pub fn get_timeout(&mut self, timeout: Duration) -> Option<Result<R>> {
        if self.wait_until(deadline::deadline(timeout)) {
            let r = self.done.take();
            self.done = Some(Err(Error::new(Kind::AlreadyJoined)));
            r
        } else {
            None
        }
    }

    /// Cancels the task, unless its result is in already: a task not yet
    /// sent to a worker leaves the queue; a task running is stopped by
    /// killing its worker, which the pool replaces (the tasks sent to
    /// that worker behind it go to other workers, and run once). A task
    /// sent to a worker and not yet started there never starts: the
    /// worker is killed if it reaches it.
    ///
    /// Whether the task was cancelled: then its result ([`get`](Self::get),
    /// [`get_timeout`](Self::get_timeout)) is an error with
    /// [`Error::is_cancelled`], at once. False when its result (a value
    /// or an error) was in before the call; that result stays.
    ///
    /// The kill is sent at once, but the worker may have finished the
    /// task and started the next one in its queue before it dies: that
    /// task then fails with [`Error::is_worker_died`] (it is not run a
    /// second time).
    ///
    /// ```
    /// fn sleep_ms(ms: u64) { std::thread::sleep(std::time::Duration::from_millis(ms)) }
    /// multiproc::entry!(sleep_ms);
    ///
    /// # fn main() -> Result<(), multiproc::Error> {
    /// # multiproc::init();
    /// let pool = multiproc::Pool::new(1)?;
    /// let mut slow = pool.submit(sleep_ms, 60_000);
    /// assert!(slow.cancel());
    /// assert!(slow.get().unwrap_err().is_cancelled());
    /// assert_eq!(pool.stats().tasks_cancelled, 1);
    /// # Ok(()) }
    /// ```
    pub fn cancel(&mut self) -> bool {
        if self.done.is_none() {
            self.done = self.slot.take().map(first_result);
        }
        if self.done.is_some() {
            return false;
        }
        // The result is put in the slot under the pool's lock: checked
        // again under it, it is either there or not yet on its way.
        let mut st = lock(&self.shared.state);
        let cancelled = match self.slot.take() {
            Some(c) => {
                self.done = Some(first_result(c));
                false
            }
            None => {
                let cancelled = self.shared.cancel_chunk(&mut st, self.chunk);
                self.done = self.slot.take().map(first_result);
                cancelled
            }
        };
        // The cancel put the result in the slot, taking the waker a poll
        // left there: woken outside the lock, as every waker.
        self.shared.unlock_and_wake(st);
        cancelled
    }

    fn wait_until(&mut self, until: Option<Instant>) -> bool {
        if self.done.is_some() {
            return true;
        }
        // The result is put in the slot under the pool's lock, and the
        // pool's condition variable notified after: checked under that
        // lock, no notification is missed.
        let mut st = lock(&self.shared.state);
        loop {
            if let Some(c) = self.slot.take() {
                self.done = Some(first_result(c));
                return true;
            }
            if until.is_some_and(|u| Instant::now() >= u) {
                return false;
            }
            st = self.shared.wait(st, until);
        }
    }
}

// Nothing in an `AsyncResult` is pinned (its result is moved out of it,
// never borrowed across polls), so it may move between polls whatever `R`
// is.
impl<R> Unpin for AsyncResult<R> {}

impl<R: DeserializeOwned> Future for AsyncResult<R> {
    type Output = Result<R>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<R>> {
        let this = self.get_mut();
        let r = match this.done.take() {
            Some(r) => r,
            None => match this.slot.take_or_register(cx.waker()) {
                Some(c) => first_result(c),
                None => return Poll::Pending,
            },
        };
        this.done = Some(Err(Error::new(Kind::AlreadyJoined)));
        Poll::Ready(r)
    }
}

/// Results that arrived and wait to be handed out, a chunk at a time: in
/// input order (the chunk that starts where the last one ended) or as
/// they came.
pub(super) struct Ready {
    pub(super) ordered: bool,
    /// Ordered: the sequence number of the next task to hand out.
    next_seq: u64,
    pub(super) current: Option<ChunkResults>,
    pub(super) waiting: HashMap<u64, ChunkResults>,
    pub(super) arrived: VecDeque<ChunkResults>,
}

impl Ready {
    pub(super) fn new(ordered: bool) -> Self {
        Ready {
            ordered,
            next_seq: 0,
            current: None,
            waiting: HashMap::new(),
            arrived: VecDeque::new(),
        }
    }

    pub(super) fn insert(&mut self, c: ChunkResults) {
        if c.n == 0 {
            return;
        }
        if self.ordered {
            self.waiting.insert(c.first, c);
        } else {
            self.arrived.push_back(c);
        }
    }

    pub(super) fn has_next(&self) -> bool {
        self.current.as_ref().is_some_and(ChunkResults::has_next)
            || if self.ordered {
                self.waiting.contains_key(&self.next_seq)
            } else {
                !self.arrived.is_empty()
            }
    }

    pub(super) fn next_result<R: DeserializeOwned>(&mut self) -> Option<Result<R>> {
        loop {
            if let Some(r) = self.current.as_mut().and_then(ChunkResults::next_result) {
                self.next_seq += 1;
                return Some(r);
            }
            self.current = Some(if self.ordered {
                self.waiting.remove(&self.next_seq)?
            } else {
                self.arrived.pop_front()?
            });
        }
    }
}
