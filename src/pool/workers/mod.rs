//! The pool's threads: they drive the [`Scheduler`] over real worker
//! processes.
//!
//! [`Shared`] holds the scheduler under one lock with the workers' OS
//! side (each worker's [`Popen`] and the sending end of its writer
//! thread's queue) and the condition variable callers wait on. Per
//! worker, one thread writes frames and one reads messages, so neither
//! side can block the other; the reader hands each message, then the
//! worker's end, to the scheduler. [`Os`] is the scheduler's
//! [`Workers`] over these.
//!
//! Time limits are the pool's one timer thread's: it sleeps on its own
//! condition variable until the earliest deadline of a running chunk
//! (or until the scheduler wakes it for an earlier one), then calls
//! [`Scheduler::enforce_timeouts`], whether or not any caller waits. It
//! is started with the pool when the pool has a task timeout, else with
//! the first task that has one of its own; a pool without time limits
//! has none.
//!
//! Starting a worker (its process, its writer and reader threads; a
//! launched worker's connect back) is in `spawn.rs`; what its reader runs
//! (reading its messages, watching a launched worker, making sure of its
//! end) in `reader.rs`. This file: the shared state, the scheduler's
//! [`Workers`] over it, and the driver's calls.

mod reader;
mod spawn;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::task::Waker;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::launcher::Remote;
use super::protocol::{FromWorker, InitArgs};
use super::scheduler::{Limits, Scheduler, WorkerId, Workers};
use super::spmd::Ranks;
use crate::codec::handles::Carried;
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::popen::{Popen, PopenBuilder};
use crate::status::ExitStatus;
use crate::sys;

/// How the pool starts its workers.
#[derive(Clone, Debug)]
pub(super) struct Spawner {
    pub(super) initializer: Option<(String, InitArgs)>,
    pub(super) popen: PopenBuilder,
    /// A launcher command's listener and key (`Launcher::command`);
    /// `None`: local workers.
    pub(super) remote: Option<Arc<Remote>>,
    /// SPMD mode: the job's other ranks, joined (`Launcher::spmd`).
    pub(super) ranks: Option<Arc<Ranks>>,
}

impl Spawner {
    /// The workers are reached over TCP (a launcher command's, or SPMD
    /// ranks), which carries no handles.
    pub(super) fn over_network(&self) -> bool {
        self.remote.is_some() || self.ranks.is_some()
    }
}

/// A worker's process: a local worker's `Popen`, the process of the
/// command that launched it (the worker itself for `sh -c 'exec …'`, else
/// `srun`, `ssh`, …) with the worker's connection, or none of ours: an
/// SPMD rank, known by its connection (and the pid it said it has, on its
/// own host).
///
/// A worker started with others by one command (`{ntasks}`) is a
/// `Member`: the command is shared (killed and reaped when the last of
/// its workers is dropped), the pid is the worker's own.
///
/// A worker launched on its own is `Launched` as soon as its command
/// runs: its connection comes later, when the worker connected back
/// (its reader waits for that, outside the pool's lock).
enum Proc {
    Local(Popen),
    Launched {
        command: sys::CommandChild,
        /// Set once the worker connected back.
        conn: OnceLock<Arc<Connection>>,
        /// The pool killed it: a connection that comes after that is
        /// shut down at once.
        killed: AtomicBool,
    },
    Member {
        command: Arc<sys::CommandChild>,
        pid: u32,
        conn: Arc<Connection>,
    },
    Rank {
        pid: u32,
        conn: Arc<Connection>,
    },
}

impl Proc {
    fn pid(&self) -> u32 {
        match self {
            Proc::Local(p) => p.pid(),
            Proc::Launched { command, .. } => command.id(),
            Proc::Rank { pid, .. } | Proc::Member { pid, .. } => *pid,
        }
    }

    /// Kills a local worker. A launched one: kills its launcher command
    /// and shuts its connection down, both ways: the worker may outlive
    /// its command (`ssh`, `sh -c` without `exec`), but its reader here
    /// sees end of file at once, and the worker sees it too and exits
    /// (`launcher::serve::parent_gone`). An SPMD rank, whose process is
    /// not ours (on another host, as a rule), and a worker that shares its command
    /// with others: its connection is shut down, which ends the worker at
    /// once.
    fn kill(&self) -> Result<()> {
        match self {
            Proc::Local(p) => p.kill(),
            Proc::Launched {
                command,
                conn,
                killed,
            } => {
                // Before looking at `conn`: its reader sets it, then looks
                // at `killed` (one of the two sees the other).
                killed.store(true, Ordering::SeqCst);
                let kill = command
                    .kill()
                    .map_err(|e| Error::io("cannot kill a launcher command", e));
                let shut = conn.get().map_or(Ok(()), |c| c.shutdown());
                kill.and(shut)
            }
            Proc::Rank { conn, .. } | Proc::Member { conn, .. } => conn.shutdown(),
        }
    }

    /// The launcher command, for a launched worker.
    fn launcher(&self) -> Option<&sys::CommandChild> {
        match self {
            Proc::Local(_) | Proc::Rank { .. } => None,
            Proc::Launched { command, .. } => Some(command),
            Proc::Member { command, .. } => Some(command),
        }
    }

    fn wait(&self, timeout: Option<Duration>) -> Result<Option<ExitStatus>> {
        match self {
            Proc::Local(p) => p.wait(timeout),
            Proc::Launched { command, .. } => command
                .wait(timeout)
                .map(|s| s.map(ExitStatus))
                .map_err(|e| Error::io("cannot wait for a launcher command", e)),
            Proc::Rank { .. } | Proc::Member { .. } => Ok(None),
        }
    }
}

/// What the pool's callers and threads share.
pub(super) struct Shared {
    pub(super) state: Mutex<Inner>,
    pub(super) cond: Condvar,
    /// The timer thread sleeps on this one (so the callers' wake-ups
    /// don't wake it).
    timer_cond: Condvar,
    /// The scheduler's options (a copy, readable without the lock).
    pub(super) limits: Limits,
    pub(super) spawner: Spawner,
}

/// What [`Shared::state`] guards.
pub(super) struct Inner {
    pub(super) sched: Scheduler,
    handles: Handles,
    /// The timer thread is to end.
    timer_stop: bool,
}

impl Inner {
    pub(super) fn new(sched: Scheduler) -> Self {
        Inner {
            sched,
            handles: Handles::default(),
            timer_stop: false,
        }
    }
}

/// The OS side of the workers the scheduler knows.
#[derive(Default)]
struct Handles {
    workers: Vec<Handle>,
    /// The workers' reader and writer threads.
    threads: Vec<JoinHandle<()>>,
    /// The timer thread, once started.
    timer: Option<JoinHandle<()>>,
}

/// A frame for a worker's writer thread, its chunks (when it carries
/// handles) and the handles that go with it.
type OutFrame = (Vec<u8>, Vec<u64>, Vec<Arc<Carried>>);

struct Handle {
    id: WorkerId,
    popen: Arc<Proc>,
    /// The host a launched worker said it runs on.
    host: Option<Arc<str>>,
    /// The pid a launched worker said it has (its own, where the pool
    /// knows it by its launcher command's).
    own_pid: Option<u32>,
    /// To the worker's writer thread (a frame, and the handles that go
    /// with it); `None` once closed.
    tx: Option<mpsc::Sender<OutFrame>>,
}

impl Handles {
    fn get(&mut self, id: WorkerId) -> Option<&mut Handle> {
        self.workers.iter_mut().find(|h| h.id == id)
    }
}

/// The scheduler's [`Workers`]: real processes and threads.
struct Os<'a> {
    shared: &'a Arc<Shared>,
    handles: &'a mut Handles,
}

impl Workers for Os<'_> {
    fn spawn(&mut self, id: WorkerId) -> Result<u32> {
        self.shared.spawn_worker(self.handles, id)
    }

    fn host(&self, id: WorkerId) -> Option<Arc<str>> {
        self.handles
            .workers
            .iter()
            .find(|h| h.id == id)
            .and_then(|h| h.host.clone())
    }

    fn own_pid(&self, id: WorkerId) -> Option<u32> {
        self.handles
            .workers
            .iter()
            .find(|h| h.id == id)
            .and_then(|h| h.own_pid)
    }

    fn send(&mut self, id: WorkerId, frame: Vec<u8>) {
        self.send_with(id, frame, Vec::new(), Vec::new());
    }

    fn send_with(
        &mut self,
        id: WorkerId,
        frame: Vec<u8>,
        chunks: Vec<u64>,
        handles: Vec<Arc<Carried>>,
    ) {
        if let Some(tx) = self.handles.get(id).and_then(|h| h.tx.as_ref()) {
            let _ = tx.send((frame, chunks, handles));
        }
    }

    fn close(&mut self, id: WorkerId) {
        if let Some(h) = self.handles.get(id) {
            h.tx = None;
        }
    }

    fn kill(&mut self, id: WorkerId) {
        if let Some(h) = self.handles.get(id) {
            let _ = h.popen.kill();
        }
    }

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wake_timer(&mut self) {
        // Started before any chunk with a time limit was queued
        // (`Shared::start_timer`).
        self.shared.timer_cond.notify_one();
    }
}

pub(super) fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// The pool's shared state, before any worker is started.
    pub(super) fn new(sched: Scheduler, limits: Limits, spawner: Spawner) -> Self {
        Shared {
            state: Mutex::new(Inner::new(sched)),
            cond: Condvar::new(),
            timer_cond: Condvar::new(),
            limits,
            spawner,
        }
    }

    /// Starts the timer thread unless it runs already.
    pub(super) fn start_timer(self: &Arc<Self>, st: &mut Inner) -> Result<()> {
        if st.handles.timer.is_some() || st.timer_stop {
            return Ok(());
        }
        let shared = Arc::clone(self);
        let timer = std::thread::Builder::new()
            .name("multiproc-pool-timer".into())
            .spawn(move || shared.run_timer())
            .map_err(|e| Error::io("cannot start a pool thread", e))?;
        st.handles.timer = Some(timer);
        Ok(())
    }

    /// The timer thread: enforces the time limits until the pool ends.
    fn run_timer(self: Arc<Self>) {
        let mut st = lock(&self.state);
        while !st.timer_stop {
            let next = self.with(&mut st, |sched, os| sched.enforce_timeouts(os));
            st = match next {
                None => self.timer_cond.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(t) => {
                    let d = t.saturating_duration_since(Instant::now());
                    self.timer_cond
                        .wait_timeout(st, d)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    /// Ends the timer thread; the thread to join, if it ran.
    fn stop_timer(&self, st: &mut Inner) -> Option<JoinHandle<()>> {
        st.timer_stop = true;
        self.timer_cond.notify_all();
        st.handles.timer.take()
    }

    /// Runs `f` on the scheduler with the real workers.
    fn with<T>(
        self: &Arc<Self>,
        st: &mut Inner,
        f: impl FnOnce(&mut Scheduler, &mut Os<'_>) -> T,
    ) -> T {
        let Inner { sched, handles, .. } = st;
        f(
            sched,
            &mut Os {
                shared: self,
                handles,
            },
        )
    }

    /// Starts one more worker.
    pub(super) fn start_worker(self: &Arc<Self>, st: &mut Inner) -> Result<()> {
        self.with(st, |sched, os| sched.start_worker(os))
    }

    /// Cancels chunk `cid` (see [`Scheduler::cancel_chunk`]).
    pub(super) fn cancel_chunk(self: &Arc<Self>, st: &mut Inner, cid: u64) -> bool {
        self.with(st, |sched, os| sched.cancel_chunk(os, cid))
    }

    /// Sends queued chunks to workers with room.
    pub(super) fn dispatch(self: &Arc<Self>, st: &mut Inner) {
        self.with(st, |sched, os| sched.dispatch(os));
    }

    /// Releases the lock after the scheduler may have completed chunks:
    /// wakes the threads waiting on the pool and the tasks (futures,
    /// streams) whose results arrived, these outside the lock (a waker
    /// may run code of its executor).
    pub(super) fn unlock_and_wake(&self, mut st: MutexGuard<'_, Inner>) {
        let woken = st.sched.take_wakers();
        drop(st);
        self.cond.notify_all();
        woken.into_iter().for_each(Waker::wake);
    }

    /// For a task instead of [`wait`](Self::wait): has `waker` woken when
    /// a result of `job` arrives. (Time limits are the timer thread's.)
    pub(super) fn register(&self, st: &mut Inner, job: u64, waker: &Waker) -> bool {
        st.sched.set_waker(job, waker)
    }

    /// The reader of worker `id` got `msg`, with `carried`.
    fn on_message(self: &Arc<Self>, id: WorkerId, msg: FromWorker, carried: Result<Carried>) {
        let mut st = lock(&self.state);
        self.with(&mut st, |sched, os| {
            sched.on_message_with(os, id, msg, carried)
        });
        self.unlock_and_wake(st);
    }

    /// The writer of worker `id` could not send the handles of the frame
    /// holding `chunks` (their chunks fail: results for waiters).
    fn on_send_failed(self: &Arc<Self>, id: WorkerId, chunks: Vec<u64>, why: Error) {
        let mut st = lock(&self.state);
        self.with(&mut st, |sched, os| {
            sched.on_send_failed(os, id, chunks, why)
        });
        self.unlock_and_wake(st);
    }

    /// Worker `id` is gone: how it ended, what it did that broke the
    /// protocol, why a launched worker was given up.
    fn on_exit(
        self: &Arc<Self>,
        id: WorkerId,
        (status, why, lost): (Option<ExitStatus>, Option<String>, Option<String>),
    ) {
        let mut st = lock(&self.state);
        st.handles.workers.retain(|h| h.id != id);
        if let Some(lost) = lost {
            st.sched.note_lost(id, lost);
        }
        self.with(&mut st, |sched, os| sched.on_exit(os, id, status, why));
        self.unlock_and_wake(st);
    }

    /// The launch of worker `id` failed: `why`.
    fn on_launch_failed(self: &Arc<Self>, id: WorkerId, why: Error) {
        let mut st = lock(&self.state);
        st.handles.workers.retain(|h| h.id != id);
        self.with(&mut st, |sched, os| sched.on_launch_failed(os, id, why));
        self.unlock_and_wake(st);
    }

    /// Kills worker `pid` as an outside killer would; whether it was one
    /// of ours and the kill was sent.
    #[cfg(feature = "test-hooks")]
    pub(super) fn kill_pid(&self, pid: u32) -> bool {
        let mut st = lock(&self.state);
        let Some(id) = st.sched.worker_with_pid(pid) else {
            return false;
        };
        st.handles.get(id).is_some_and(|h| h.popen.kill().is_ok())
    }

    /// Waits for something to change (or `until`). (Time limits are the
    /// timer thread's.)
    pub(super) fn wait<'a>(
        self: &'a Arc<Self>,
        st: MutexGuard<'a, Inner>,
        until: Option<Instant>,
    ) -> MutexGuard<'a, Inner> {
        match until {
            None => self.cond.wait(st).unwrap_or_else(|e| e.into_inner()),
            Some(t) => {
                let d = t.saturating_duration_since(Instant::now());
                self.cond
                    .wait_timeout(st, d)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        }
    }

    /// Asks every worker to exit once its work is done, waits until all
    /// did, and joins the pool's threads.
    pub(super) fn join_workers<'a>(self: &'a Arc<Self>, st: MutexGuard<'a, Inner>) {
        let mut st = st;
        self.with(&mut st, |sched, os| sched.shutdown_all(os));
        while st.sched.worker_count() > 0 {
            st = self.wait(st, None);
        }
        let timer = self.stop_timer(&mut st);
        let threads = std::mem::take(&mut st.handles.threads);
        drop(st);
        for t in threads.into_iter().chain(timer) {
            let _ = t.join();
        }
    }

    /// Kills the workers; unfinished tasks fail. Joins the pool's threads.
    pub(super) fn terminate(self: &Arc<Self>) {
        let (threads, timer) = {
            let mut st = lock(&self.state);
            self.with(&mut st, |sched, os| sched.terminate(os));
            let timer = self.stop_timer(&mut st);
            let threads = std::mem::take(&mut st.handles.threads);
            self.unlock_and_wake(st);
            (threads, timer)
        };
        for t in threads.into_iter().chain(timer) {
            let _ = t.join();
        }
    }
}
