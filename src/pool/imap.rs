//! [`Imap`], the lazy stream of results of `imap`/`map`, and its
//! [`Progress`] bar.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::protocol::{put_frame, HandlesBuilder, TaskHandles};
use super::results::{ChunkResults, Failure, Ready};
use super::scheduler::Scheduler;
use super::workers::{lock, Shared};
use super::{Pool, FRAME_TARGET, MAX_AUTO_CHUNK};
use crate::codec::handles::{TaskTransfer, MAX_HANDLES};
use crate::encode;
use crate::error::{Error, Kind, Result};
use crate::spawn;

/// The stream of results of [`Pool::imap`] / [`Pool::imap_unordered`].
///
/// Dropping it cancels the tasks that haven't been sent to a worker yet.
///
/// # Panics
///
/// Inputs are pulled from the caller's iterator ahead of the results, so
/// a panic in that iterator (or in an input's `Serialize` impl) happens
/// before the results of the inputs that came before it are in. It is
/// caught and held: those results are handed out first (in input order
/// for `imap`; all of them, as they complete, for `imap_unordered`), and
/// the `next()` call that would have produced the panicking input's result
/// resumes the panic instead, with its original payload
/// ([`std::panic::resume_unwind`]). Nothing after it is pulled. That is
/// where a sequential `inputs.map(f)` would have panicked (CPython's
/// `imap` raises the iterator's exception at the same point). The panic
/// hook runs when the panic happens, so its message may be printed before
/// the earlier results are handed out; an `Imap` dropped before reaching
/// that position drops the panic. [`Pool::map`] and
/// [`Pool::map_results`] collect an `Imap`, so they panic the same way
/// once they reach it.
pub struct Imap<I, R> {
    pool: Arc<Shared>,
    job: u64,
    entry: &'static str,
    inputs: std::iter::Fuse<I>,
    chunksize: Option<usize>,
    pulled: u64,
    yielded: u64,
    exhausted: bool,
    ready: Ready,
    /// Reused to encode each input.
    scratch: Vec<u8>,
    failed: Option<Error>,
    /// The panic of the caller's iterator (or `Serialize` impl), resumed
    /// after the results of the inputs before it. In a `Mutex` only so that
    /// `Imap` stays `Sync`; never contended.
    input_panic: Mutex<Option<Box<dyn Any + Send>>>,
    _r: PhantomData<fn() -> R>,
}

impl<I: Iterator, R> fmt::Debug for Imap<I, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Imap")
            .field("pulled", &self.pulled)
            .field("yielded", &self.yielded)
            .finish()
    }
}

impl<I, R> Imap<I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    pub(super) fn new(pool: &Pool, entry: &'static str, inputs: I, ordered: bool) -> Self {
        let failed = spawn::find_entry(entry)
            .is_none()
            .then(|| Error::new(Kind::UnknownEntry(entry.to_string())));
        let job = { lock(&pool.shared.state).sched.new_job() };
        Imap {
            pool: Arc::clone(&pool.shared),
            job,
            entry,
            inputs: inputs.fuse(),
            chunksize: None,
            pulled: 0,
            yielded: 0,
            exhausted: false,
            ready: Ready::new(ordered),
            scratch: Vec::new(),
            failed,
            input_panic: Mutex::new(None),
            _r: PhantomData,
        }
    }

    /// Sends the tasks in chunks of `n` (a chunk fails or succeeds on one
    /// worker; larger chunks cost less per task). Default: automatic, from
    /// the measured time per task.
    pub fn chunksize(mut self, n: usize) -> Self {
        self.chunksize = Some(n.max(1));
        self
    }

    fn auto_chunk(&self, st: &Scheduler) -> usize {
        if let Some(n) = self.chunksize {
            return n;
        }
        if self.pool.limits.task_timeout.is_some() {
            return 1;
        }
        match st.per_task(self.entry) {
            None => 1,
            Some(per_task) => {
                let per = per_task.as_nanos().max(1);
                ((FRAME_TARGET.as_nanos() / 2 / per) as usize).clamp(1, MAX_AUTO_CHUNK)
            }
        }
    }

    /// Pulls and queues more inputs while the pool has room for them,
    /// then hands them to the workers in one go (so frames fill up).
    fn feed(&mut self) {
        self.feed_queue();
        let mut st = lock(&self.pool.state);
        self.pool.dispatch(&mut st);
    }

    fn feed_queue(&mut self) {
        loop {
            if self.exhausted || self.pulled - self.yielded >= Pool::WINDOW {
                return;
            }
            let (chunk, room) = {
                let st = lock(&self.pool.state);
                let st = &st.sched;
                let workers = st.worker_count().max(1);
                let (per_frame, _) = st.pacing(self.entry);
                // Keep about two frames per worker queued ahead.
                let target = 2 * workers * per_frame;
                (self.auto_chunk(st), st.queued() < target)
            };
            if !room {
                return;
            }
            // The caller's iterator may panic: keep the items it gave
            // before that, and hand the panic back at its position, after
            // their results (see `Imap`).
            let mut items: Vec<I::Item> = Vec::new();
            let inputs = &mut self.inputs;
            let pulling = std::panic::catch_unwind(AssertUnwindSafe(|| {
                for item in inputs.by_ref().take(chunk) {
                    items.push(item);
                }
            }));
            match pulling {
                Ok(()) if items.len() < chunk => self.exhausted = true,
                Ok(()) => {}
                Err(payload) => self.stop_at_panic(payload),
            }
            if items.is_empty() {
                continue;
            }
            // Each argument length-prefixed, back to back, in one buffer.
            let mut tasks = Vec::new();
            let mut n = 0u32;
            // The handles the chunk's tasks carry (none: nothing allocated).
            let mut handles = HandlesBuilder::default();
            let mut scratch = std::mem::take(&mut self.scratch);
            // One transfer for the whole chunk; each task's handles are
            // taken after it is encoded (free when it passed none).
            let mut transfer = TaskTransfer::open();
            for item in items {
                scratch.clear();
                // A `Serialize` impl is the caller's code too.
                let encoded = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    encode::append(&item, &mut scratch)
                }));
                // Handles can't reach launched workers: refused here, as
                // a task that can't be encoded.
                let encoded = match encoded {
                    Ok(Ok(())) => match transfer.take() {
                        c if !c.is_empty() && self.pool.spawner.over_network() => {
                            Ok(Err(super::launcher::handles_refused()))
                        }
                        c => Ok(Ok(c)),
                    },
                    Ok(Err(e)) => Ok(Err(e)),
                    Err(p) => Err(p),
                };
                match encoded {
                    Ok(Ok(carried)) => {
                        if n > 0 && handles.len() + carried.len() > MAX_HANDLES {
                            // A frame carries at most MAX_HANDLES: this
                            // task starts the next chunk.
                            let at = self.pulled;
                            self.pulled += u64::from(n);
                            let h = handles.finish(n);
                            self.submit_chunk(at, (n, std::mem::take(&mut tasks)), h);
                            n = 0;
                        }
                        handles.add(n, carried);
                        put_frame(&mut tasks, &scratch);
                        n += 1;
                    }
                    Ok(Err(source)) => {
                        // Handles it passed before failing: closed.
                        drop(transfer.take());
                        // This task can't be sent: its own error, now (the
                        // same error `submit` gives).
                        if n > 0 {
                            let at = self.pulled;
                            self.pulled += u64::from(n);
                            let h = handles.finish(n);
                            self.submit_chunk(at, (n, std::mem::take(&mut tasks)), h);
                            n = 0;
                        }
                        let why = Failure::Encode {
                            entry: self.entry,
                            source,
                        };
                        self.ready.insert(ChunkResults::failed(self.pulled, 1, why));
                        self.pulled += 1;
                    }
                    Err(payload) => {
                        // At an earlier position than an iterator panic of
                        // this chunk, so it replaces that one.
                        self.stop_at_panic(payload);
                        break;
                    }
                }
            }
            drop(transfer);
            self.scratch = scratch;
            if n > 0 {
                let at = self.pulled;
                self.pulled += u64::from(n);
                let h = handles.finish(n);
                self.submit_chunk(at, (n, tasks), h);
            }
        }
    }

    /// The caller's code panicked while the next input was pulled or
    /// encoded: nothing more is pulled, and the panic resumes once every
    /// earlier task's result was handed out.
    fn stop_at_panic(&mut self, payload: Box<dyn Any + Send>) {
        self.exhausted = true;
        *self
            .input_panic
            .get_mut()
            .unwrap_or_else(|e| e.into_inner()) = Some(payload);
    }

    /// At the end of the results: resumes a panic of the caller's input
    /// (see [`stop_at_panic`](Self::stop_at_panic)), else the end.
    fn end(&mut self) -> Option<Result<R>> {
        let payload = self
            .input_panic
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(payload) = payload {
            std::panic::resume_unwind(payload);
        }
        None
    }

    fn submit_chunk(&mut self, first: u64, (n, tasks): (u32, Vec<u8>), handles: TaskHandles) {
        let res = {
            let mut st = lock(&self.pool.state);
            st.sched
                .enqueue_with(self.job, self.entry, first, (n, tasks), handles)
        };
        if let Err(why) = res {
            self.ready.insert(ChunkResults::failed(first, n, why));
        }
    }
}

impl<I, R> Imap<I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    /// The next result: waits for it on the pool's condition variable
    /// (`cx` is `None`, the iterator), or registers `cx`'s waker for the
    /// job's next result and returns `Pending` (the stream).
    fn next_or_register(&mut self, cx: Option<&mut Context<'_>>) -> Poll<Option<Result<R>>> {
        if let Some(e) = self.failed.take() {
            self.exhausted = true;
            self.yielded = self.pulled;
            return Poll::Ready(Some(Err(e)));
        }
        loop {
            // Something to hand out?
            if let Some(r) = self.ready.next_result() {
                self.yielded += 1;
                return Poll::Ready(Some(r));
            }
            if self.exhausted && self.yielded == self.pulled {
                return Poll::Ready(self.end());
            }
            self.feed();
            if self.exhausted && self.yielded == self.pulled {
                return Poll::Ready(self.end());
            }
            // Collect what arrived, or wait for it.
            let mut st = lock(&self.pool.state);
            loop {
                let got = st.sched.take_results(self.job);
                if !got.is_empty() {
                    for c in got {
                        self.ready.insert(c);
                    }
                    break;
                }
                if self.ready.has_next() {
                    break;
                }
                // Room to feed more before sleeping?
                let workers = st.sched.worker_count().max(1);
                let (per_frame, _) = st.sched.pacing(self.entry);
                if !self.exhausted
                    && self.pulled - self.yielded < Pool::WINDOW
                    && st.sched.queued() < 2 * workers * per_frame
                {
                    break;
                }
                match &cx {
                    None => st = self.pool.wait(st, None),
                    Some(cx) => {
                        // Registered under the lock the results arrive
                        // under: none can slip in between.
                        self.pool.register(&mut st, self.job, cx.waker());
                        return Poll::Pending;
                    }
                }
            }
        }
    }
}

impl<I, R> Iterator for Imap<I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        match self.next_or_register(None) {
            Poll::Ready(r) => r,
            Poll::Pending => unreachable!("waits without a context"),
        }
    }
}

// Nothing in an `Imap` is pinned (`Stream::poll_next` works on it through
// `&mut`, as `next` does), so it may move between polls whatever `I` is.
impl<I, R> Unpin for Imap<I, R> {}

/// The results as a [`Stream`](futures_core::Stream), for async code: in
/// input order from [`Pool::imap`], as they complete from
/// [`Pool::imap_unordered`], the same items as the iterator gives. The
/// pool's reader threads wake the task that polls it when results arrive
/// (no thread or timer of its own).
///
/// An `Imap` is also an [`Iterator`], so with a `StreamExt` trait in
/// scope its shared method names (`next`, `map`, `collect`, …) are
/// ambiguous: call [`into_stream`](Imap::into_stream) first, which gives
/// the same stream as a type that is only a `Stream`.
///
/// Inputs are pulled from the caller's iterator inside `poll_next`, as
/// `next` pulls them, so an input iterator that blocks blocks the
/// executor's thread. Panics of that iterator are resumed at their
/// position, as by `next` (see [`Imap`]).
impl<I, R> futures_core::Stream for Imap<I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    type Item = Result<R>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<R>>> {
        self.get_mut().next_or_register(Some(cx))
    }
}

impl<I, R> Imap<I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    /// This `Imap` as a type that is only a
    /// [`Stream`](futures_core::Stream) (not also an `Iterator`), so that
    /// `StreamExt` methods need no disambiguation.
    ///
    /// ```
    /// use futures_util::StreamExt;
    ///
    /// fn square(x: u64) -> u64 { x * x }
    /// multiproc::entry!(square);
    ///
    /// # fn main() -> Result<(), multiproc::Error> {
    /// # multiproc::init();
    /// let pool = multiproc::Pool::new(2)?;
    /// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// let sum = rt.block_on(async {
    ///     let mut results = pool.imap_unordered(square, 0..100).into_stream();
    ///     let mut sum = 0;
    ///     while let Some(r) = results.next().await {
    ///         sum += r?;
    ///     }
    ///     Ok::<u64, multiproc::Error>(sum)
    /// })?;
    /// assert_eq!(sum, 328350);
    /// # Ok(()) }
    /// ```
    pub fn into_stream(self) -> ImapStream<I, R> {
        ImapStream(self)
    }
}

/// An [`Imap`] as only a [`Stream`](futures_core::Stream); from
/// [`Imap::into_stream`]. Dropping it drops the `Imap` (the tasks not yet
/// sent to a worker are cancelled).
pub struct ImapStream<I, R>(Imap<I, R>);

impl<I: Iterator, R> fmt::Debug for ImapStream<I, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ImapStream").field(&self.0).finish()
    }
}

impl<I, R> futures_core::Stream for ImapStream<I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    type Item = Result<R>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<R>>> {
        self.get_mut().0.next_or_register(Some(cx))
    }
}

impl<I, R> Drop for Imap<I, R> {
    fn drop(&mut self) {
        lock(&self.pool.state).sched.cancel_job(self.job);
    }
}

/// An [`Imap`] that draws a progress bar (count, rate, ETA) on stderr while
/// it is iterated; from [`Imap::progress`]. Nothing is drawn when stderr is
/// not a terminal.
#[cfg(feature = "progress")]
pub struct Progress<I: Iterator> {
    inner: I,
    bar: indicatif::ProgressBar,
}

#[cfg(feature = "progress")]
impl<I, R> Imap<I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    /// Shows a progress bar while iterating (feature `progress`, on by
    /// default). The total is known when the input iterator knows its
    /// exact length; otherwise the bar shows a count and rate.
    pub fn progress(self) -> Progress<Self> {
        let (lo, hi) = self.inputs.size_hint();
        let bar = match hi {
            Some(hi) if hi == lo => indicatif::ProgressBar::new(lo as u64 + self.pulled),
            _ => indicatif::ProgressBar::no_length(),
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} tasks  {per_sec}  ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Progress { inner: self, bar }
    }
}

#[cfg(feature = "progress")]
impl<I: Iterator> Iterator for Progress<I> {
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        let item = self.inner.next();
        match item {
            Some(_) => self.bar.inc(1),
            None => self.bar.finish_and_clear(),
        }
        item
    }
}

#[cfg(feature = "progress")]
impl<I: Iterator> fmt::Debug for Progress<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Progress")
            .field("pos", &self.bar.position())
            .finish()
    }
}
