//! `Pool`: long-lived workers that run many tasks, with pipelining,
//! automatic chunking, crash recovery and timeouts.
//!
//! # How it works
//!
//! Each worker is a [`Popen`](crate::Popen) running an internal loop over a duplex
//! [`Connection`](crate::Connection). The parent keeps several chunks of tasks in flight per
//! worker and packs many chunks into one write; the worker answers each
//! chunk with one message as soon as that chunk is done. Because a worker
//! runs its chunks in order and reports each before starting the next, the
//! parent always knows which chunk a worker was running when it died: that
//! chunk's tasks fail ([`Error::is_worker_died`]), the chunks queued behind
//! it are handed to other workers, and the dead worker is replaced.
//!
//! Per worker, one thread reads results and one writes frames, so neither
//! side can block the other. Callers only wait for their own results.
//!
//! The reader learns that its worker died from the worker's pidfd (Linux
//! 5.3+) or process handle (Windows), not only from the end of its pipe:
//! a task that started a child holding the worker's end of the channel (a
//! forked child inherits it) can't delay the failure until that child
//! exits. (Without a pidfd, on macOS and older Linux, the end of the pipe
//! is all there is.)
//!
//! A queued task holds no OS resource (unless its arguments carry handles,
//! below): inputs are pulled from the caller's iterator only as the workers
//! catch up (at most [`Pool::WINDOW`] tasks of one `imap` are pulled and not
//! yet yielded), so a million-task iterator runs in bounded memory.
//!
//! # Handles in task arguments and results
//!
//! A task's arguments may carry OS handles — a [`Connection`](crate::Connection) end, a
//! [`PassedHandle`](crate::PassedHandle) of a pipe or file, a
//! [`Frozen`](crate::Frozen) block, a [`Lock`](crate::Lock), or any type
//! whose `Serialize` impl calls [`pass_handle`](crate::pass_handle) — with
//! [`submit`](Pool::submit), [`map`](Pool::map), [`imap`](Pool::imap) and
//! the rest alike. When the task is queued, the pool makes its own copy of
//! each (the caller keeps, and may drop, its own); the copies go with the
//! task's frame to whichever worker runs it (Unix: `SCM_RIGHTS` on the
//! channel's socket; Windows: `DuplicateHandle` into the worker), and are
//! closed once the task is done (kept until then, to go again to another
//! worker if the first dies before starting it). The task gets its own
//! copies; those its arguments leave are closed before it runs. Tasks
//! without handles pay nothing for this. A chunk of tasks carries at most
//! 4096 handles (chunks are cut shorter to keep to that). If a chunk's
//! handles can't be sent (the OS's limit on fds in flight, Windows out of
//! handles), its tasks fail with [`Error::is_encode`] and are not sent
//! again; the worker goes on (it is killed only if the handles went out
//! in part, leaving its stream out of step).
//!
//! A task's *result* may carry handles the same way. The worker makes a
//! copy of each as it serializes the result, and closes its own with the
//! value; the copies go back with the chunk's answer (Unix: `SCM_RIGHTS`
//! on the worker's channel; Windows: the worker leaves its copy open and
//! the parent takes it out of the worker with `DuplicateHandle(..,
//! DUPLICATE_CLOSE_SOURCE)`, so each handle has exactly one owner at every
//! moment, and a worker that dies takes its copies with it). The parent
//! owns them from the moment the answer is read; each result's are checked
//! as it is decoded (kind, size: as for any handle received), those it
//! leaves are closed then, and those of results never taken are closed
//! with them. The results of one chunk carry at most 4096 handles: a
//! result past that fails with [`Error::is_result_encode`], as does one
//! whose handles the worker could not send. Handles that came wrong (a
//! worker that sent another number than it said, or on Windows a value
//! that is not a handle in it) fail the results that have some with
//! [`Error::is_decode`].
//!
//! Workers started by a [`Launcher::command`](crate::Launcher::command)
//! connect back over TCP, which carries no handles (no process of this
//! one's at its other end, no socket for fds): a task with handles in its
//! arguments fails with [`Error::is_encode`], one with handles in its
//! result with [`Error::is_result_encode`], and the worker goes on.
//!
//! This file: [`Pool`], the API; its options and its start,
//! [`PoolBuilder`], in `builder.rs`.

mod address;
mod builder;
mod imap;
mod launcher;
#[cfg(feature = "test-hooks")]
pub(crate) use launcher::hooks as launcher_hooks;
mod protocol;
mod results;
mod scheduler;
mod spmd;
mod task;
mod workers;

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Kind, Result};
use crate::spawn;

pub use builder::PoolBuilder;
#[cfg(feature = "progress")]
pub use imap::Progress;
pub use imap::{Imap, ImapStream};
pub use launcher::Launcher;
pub use protocol::run_batch;
#[cfg(feature = "test-hooks")]
pub(crate) use protocol::{decode_messages, forge_answer, worker_connection};
pub use results::AsyncResult;
pub use task::{PoolStats, Task};
use workers::{lock, Shared};

/// A pool whose workers die this many times in a row before they are
/// ready gives up instead of respawning forever.
const MAX_FAILED_STARTS: u32 = 5;

/// The largest automatic chunk.
const MAX_AUTO_CHUNK: usize = 4096;
/// The most chunks packed into one frame.
const MAX_FRAME_CHUNKS: usize = 256;
/// Aim for frames that keep a worker busy this long.
const FRAME_TARGET: Duration = Duration::from_millis(2);

// ---------------------------------------------------------------- API

/// A pool of worker processes (Python's `multiprocessing.Pool`).
///
/// ```
/// fn square(x: u64) -> u64 { x * x }
/// multiproc::entry!(square);
///
/// # fn main() -> Result<(), multiproc::Error> {
/// # multiproc::init();
/// let pool = multiproc::Pool::new(2)?;
/// assert_eq!(pool.map(square, 1..=4)?, vec![1, 4, 9, 16]);
/// let mut sum = 0;
/// for r in pool.imap_unordered(square, 0..100) {
///     sum += r?;
/// }
/// assert_eq!(sum, 328350);
/// # Ok(()) }
/// ```
///
/// # Faults
///
/// - A worker that dies (killed from outside, `abort`, `process::exit`,
///   stack overflow) fails only the chunk it was running
///   ([`Error::is_worker_died`], naming the worker and how it ended); the
///   chunks queued behind it run elsewhere and the worker is replaced.
/// - A task that panics fails with [`Error::is_panic`]; the worker
///   survives and goes on.
/// - A task past its time limit ([`PoolBuilder::task_timeout`], or its
///   own: [`Task::timeout`]) fails with [`Error::is_timeout`]; its worker
///   is killed and replaced. The pool's timer does this whether or not
///   anyone waits.
/// - A task cancelled with [`AsyncResult::cancel`] fails with
///   [`Error::is_cancelled`]; if it was running, its worker is killed and
///   replaced, and the tasks queued behind it on that worker run on
///   others.
/// - A worker that sends something that is not a pool message (an
///   undecodable frame, a frame over the connection's size cap) is killed
///   at once; the task it was running fails with
///   [`Error::is_protocol_violation`], naming the worker and what it sent.
/// - A worker that can't be replaced (the executable is gone, no
///   resources) breaks the pool: every queued task and every later call
///   fails at once with [`Error::is_pool_broken`], whose message says why
///   (and whose [`source`](std::error::Error::source) is the spawn error);
///   tasks already running on other workers finish. So do workers that
///   keep dying before they are ready (5 in a row).
/// - Misuse is [`Error::is_usage`]: 0 workers, `max_tasks_per_child(0)`,
///   `max_memory_per_child(0)`, [`Stdio::Capture`](crate::Stdio::Capture),
///   [`join`](Pool::join) before [`close`](Pool::close).
///
/// # Worker lifecycle
///
/// A worker starts, runs the [initializer](PoolBuilder::initializer) if
/// there is one, and takes tasks until it is replaced or the pool ends.
/// The pool replaces it when it
///
/// - dies (crashes, or is killed from outside);
/// - runs a task past its time limit ([`PoolBuilder::task_timeout`],
///   [`Task::timeout`]) or a task that is cancelled while it runs
///   ([`AsyncResult::cancel`]): the pool kills it;
/// - has run [`max_tasks_per_child`](PoolBuilder::max_tasks_per_child)
///   tasks, or is over [`max_memory_per_child`](PoolBuilder::max_memory_per_child)
///   after a task: it is asked to exit, and does once it is done with
///   what it started.
///
/// [`Pool::stats`] counts what happened (tasks done, failed, cancelled,
/// timed out; workers started, died, replaced), and each event goes to
/// the [`log`](https://docs.rs/log) facade: a worker spawned and ready
/// (`debug`), died and why (`warn`), replaced (`info`), a task timed out
/// or cancelled (`info`); nothing per task.
///
/// # Drop
///
/// Dropping the pool terminates it: workers are killed (even ones stuck in
/// an endless loop) and reaped, and its threads are joined. Use
/// [`close`](Pool::close) and [`join`](Pool::join) to let work finish first.
pub struct Pool {
    shared: Arc<Shared>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("workers", &self.shared.limits.workers)
            .finish()
    }
}

impl Pool {
    /// At most this many tasks of one `imap`/`map` are pulled from its
    /// input and not yet handed back to the caller.
    pub const WINDOW: u64 = 16 * 1024;

    /// A pool of `n` workers with default options; `n == 0` is an error
    /// ([`Error::is_usage`]).
    pub fn new(n: usize) -> Result<Pool> {
        PoolBuilder::new().workers(n).build()
    }

    /// A builder for more options.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::new()
    }

    /// The process ids of the workers that are ready for tasks (changes
    /// as workers are replaced). For workers started by a
    /// [`Launcher::command`], the command's pid (the worker's own for
    /// `["{exe}"]`); for [`Launcher::spmd`], the pid each rank said it
    /// has, on its own host.
    pub fn pids(&self) -> Vec<u32> {
        lock(&self.shared.state).sched.ready_pids()
    }

    /// `entry` over every input, results in input order; fails on the
    /// first task that fails (the remaining tasks are cancelled). Chunks
    /// are sized automatically.
    pub fn map<F, A, R, I>(&self, entry: F, inputs: I) -> Result<Vec<R>>
    where
        F: Fn(A) -> R + Copy + 'static,
        I: IntoIterator<Item = A>,
        A: Serialize,
        R: DeserializeOwned,
    {
        self.imap(entry, inputs).collect()
    }

    /// Like [`map`](Pool::map) with an explicit chunk size.
    pub fn map_chunked<F, A, R, I>(&self, entry: F, inputs: I, chunksize: usize) -> Result<Vec<R>>
    where
        F: Fn(A) -> R + Copy + 'static,
        I: IntoIterator<Item = A>,
        A: Serialize,
        R: DeserializeOwned,
    {
        self.imap(entry, inputs).chunksize(chunksize).collect()
    }

    /// `entry` over every input, every task's own result in input order:
    /// failures don't stop the others.
    pub fn map_results<F, A, R, I>(&self, entry: F, inputs: I) -> Vec<Result<R>>
    where
        F: Fn(A) -> R + Copy + 'static,
        I: IntoIterator<Item = A>,
        A: Serialize,
        R: DeserializeOwned,
    {
        self.imap(entry, inputs).collect()
    }

    /// A lazy, ordered stream of results; inputs are pulled as workers
    /// catch up. Set [`Imap::chunksize`] before iterating to fix the chunk
    /// size.
    pub fn imap<F, A, R, I>(&self, entry: F, inputs: I) -> Imap<I::IntoIter, R>
    where
        F: Fn(A) -> R + Copy + 'static,
        I: IntoIterator<Item = A>,
        A: Serialize,
        R: DeserializeOwned,
    {
        Imap::new(self, spawn::entry_id(&entry), inputs.into_iter(), true)
    }

    /// Like [`imap`](Pool::imap), results in the order they complete.
    pub fn imap_unordered<F, A, R, I>(&self, entry: F, inputs: I) -> Imap<I::IntoIter, R>
    where
        F: Fn(A) -> R + Copy + 'static,
        I: IntoIterator<Item = A>,
        A: Serialize,
        R: DeserializeOwned,
    {
        Imap::new(self, spawn::entry_id(&entry), inputs.into_iter(), false)
    }

    /// Runs `entry(arg)` on some worker; returns at once. The same as
    /// `pool.task(entry, arg).submit()` ([`task`](Pool::task) has
    /// options for one task).
    pub fn submit<F, A, R>(&self, entry: F, arg: A) -> AsyncResult<R>
    where
        F: Fn(A) -> R + Copy + 'static,
        A: Serialize,
        R: DeserializeOwned,
    {
        self.task(entry, arg).submit()
    }

    /// One task, `entry(arg)`, with options of its own; nothing runs until
    /// [`Task::submit`].
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// fn sleep_ms(ms: u64) -> u64 {
    ///     std::thread::sleep(Duration::from_millis(ms));
    ///     ms
    /// }
    /// multiproc::entry!(sleep_ms);
    ///
    /// # fn main() -> Result<(), multiproc::Error> {
    /// # multiproc::init();
    /// let pool = multiproc::Pool::new(2)?;
    /// let quick = pool.task(sleep_ms, 1).timeout(Duration::from_secs(60)).submit();
    /// let stuck = pool.task(sleep_ms, 600_000).timeout(Duration::from_millis(100)).submit();
    /// assert_eq!(quick.get()?, 1);
    /// assert!(stuck.get().unwrap_err().is_timeout());
    /// # Ok(()) }
    /// ```
    pub fn task<F, A, R>(&self, entry: F, arg: A) -> Task<'_, A, R>
    where
        F: Fn(A) -> R + Copy + 'static,
        A: Serialize,
        R: DeserializeOwned,
    {
        Task {
            pool: self,
            entry: spawn::entry_id(&entry),
            arg,
            timeout: None,
            _r: PhantomData,
        }
    }

    /// What the pool did so far: tasks done, failed, cancelled and timed
    /// out; workers started, died and replaced (see [`PoolStats`]).
    pub fn stats(&self) -> PoolStats {
        let c = lock(&self.shared.state).sched.counts();
        PoolStats {
            tasks_done: c.tasks_done,
            tasks_failed: c.tasks_failed,
            tasks_cancelled: c.tasks_cancelled,
            tasks_timed_out: c.tasks_timed_out,
            workers_started: c.workers_started,
            workers_died: c.workers_died,
            workers_replaced: c.workers_replaced,
        }
    }

    /// No more work will be submitted; workers exit once the queued work is
    /// done ([`join`](Pool::join) waits for that).
    pub fn close(&self) {
        lock(&self.shared.state).sched.close();
    }

    /// Waits for the queued work to finish and the workers to exit. Call
    /// [`close`](Pool::close) (or [`terminate`](Pool::terminate)) first;
    /// called on an open pool it fails at once with [`Error::is_usage`]
    /// (as Python's `Pool.join` raises `ValueError`).
    pub fn join(&self) -> Result<()> {
        let mut st = lock(&self.shared.state);
        if !st.sched.is_closed() {
            return Err(Error::new(Kind::Usage(
                "Pool::join() was called before close() or terminate(): \
                 the pool is still open, so its work would never end"
                    .into(),
            )));
        }
        while !st.sched.idle() {
            st = self.shared.wait(st, None);
        }
        self.shared.join_workers(st);
        Ok(())
    }

    /// Kills the workers now; unfinished tasks fail.
    pub fn terminate(&self) {
        self.shared.terminate();
    }
}

/// Test hooks (feature `test-hooks`, off by default; the crate's own
/// tests turn it on): what the fault tests need to kill a worker mid-task.
#[cfg(feature = "test-hooks")]
impl Pool {
    /// Waits until some worker is running a task (it said it started the
    /// frame that holds its oldest chunk), at most `timeout`; returns
    /// those workers' pids (none if the time ran out).
    #[doc(hidden)]
    pub fn wait_busy(&self, timeout: Duration) -> Vec<u32> {
        let until = crate::deadline::deadline(timeout);
        let mut st = lock(&self.shared.state);
        loop {
            let busy = st.sched.busy_pids();
            if !busy.is_empty() || crate::deadline::passed(until) {
                return busy;
            }
            st = self.shared.wait(st, until);
        }
    }

    /// Kills worker `pid` as an outside killer would (SIGKILL /
    /// `TerminateProcess`); whether `pid` was a worker of this pool and
    /// the kill was sent.
    #[doc(hidden)]
    pub fn kill_worker(&self, pid: u32) -> bool {
        self.shared.kill_pid(pid)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.terminate();
    }
}
