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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::task::Waker;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::launcher::Remote;
use super::protocol::{pool_worker_main, FromWorker, Heartbeat, InitArgs, ToWorker, WorkerConfig};
use super::scheduler::{Limits, Scheduler, WorkerId, Workers};
use super::spmd::Ranks;
use crate::codec::handles::Carried;
use crate::connection::{ChildEnd, Connection, Pipe};
use crate::error::{Error, Result};
use crate::popen::{Popen, PopenBuilder};
use crate::status::ExitStatus;
use crate::sys;

/// How long a worker whose channel ended may take to exit before it is
/// killed. Its exit follows at once (the OS closes a process's handles as
/// it exits, a moment before the exit is visible); only a worker that
/// closed its channel and kept running waits this long.
const EXIT_GRACE: Duration = Duration::from_secs(5);
/// After we killed a worker, how long to wait for the OS to confirm it.
/// A kill takes effect at once; this bounds only a process the OS can't
/// end (stuck in the kernel), which the reaper then collects later.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// How a worker's stream of messages ended.
enum End {
    /// At end of file, whole or cut off in the middle of a message (a
    /// worker killed while it wrote).
    Closed,
    /// The worker sent something that is not a pool message.
    Violation(String),
    /// A launched worker the pool gives up on while its connection is
    /// still open: why.
    Lost(String),
}

/// The reader thread's loop: hands each message from a worker, with the
/// handles that came with it (or why they could not be taken), to
/// `on_message` until the stream ends; how it ended. A launched worker's
/// is also watched between messages (`launched`, see [`LaunchWatch`]).
fn read_worker(
    conn: &Connection,
    mut watch: Option<LaunchWatch<'_>>,
    mut on_message: impl FnMut(FromWorker, Result<Carried>),
) -> End {
    loop {
        if let Some(lost) = watch.as_mut().and_then(|w| w.until_readable(conn)) {
            return End::Lost(lost);
        }
        let (frame, carried) = match conn.recv_frame() {
            Ok(frame) => frame,
            Err(e) if e.is_eof() || e.is_poisoned() => return End::Closed,
            Err(e) if e.is_message_too_large() => {
                return End::Violation(format!("it announced a frame that was refused: {e}"))
            }
            Err(e) => return End::Violation(format!("its messages can't be read: {e}")),
        };
        if let Some(w) = watch.as_mut() {
            w.heard = Instant::now();
        }
        match postcard::from_bytes::<FromWorker>(&frame) {
            // Heard (above): nothing for the scheduler.
            Ok(FromWorker::Heartbeat) => {}
            Ok(msg) => on_message(msg, carried),
            Err(e) => {
                return End::Violation(format!(
                    "it sent a message of {} bytes that is not a pool message: {e}",
                    frame.len()
                ))
            }
        }
    }
}

/// How often the reader of a launched worker with nothing to read looks
/// at its launcher command (a look costs a `waitpid`; while messages
/// come, it looks at most this often too).
const LAUNCH_LOOK: Duration = Duration::from_millis(250);

/// The reader's watch over a launched worker, whose process the pool
/// knows only through its launcher command and its connection, or over
/// an SPMD rank, known only by its connection. The worker is given up
/// when nothing came from it for the heartbeat timeout (see
/// `Launcher::heartbeat`), or [`EXIT_GRACE`] after its command was seen
/// to have exited while the connection stays open (`sh -c '"$0" &'`, an
/// ssh whose remote side lives on) — the worker's own end (its
/// connection's end of file) normally comes with the command's or just
/// before it.
struct LaunchWatch<'a> {
    /// The launcher command; `None` for an SPMD rank.
    child: Option<&'a sys::CommandChild>,
    heartbeat: Option<Heartbeat>,
    /// When the last message came.
    heard: Instant,
    /// When the command was seen to have exited, and how.
    exited: Option<(Instant, ExitStatus)>,
    next_look: Instant,
}

impl<'a> LaunchWatch<'a> {
    /// The watch over a worker with `child` or `heartbeat` (`None` when
    /// it has neither: nothing to watch).
    fn new(child: Option<&'a sys::CommandChild>, heartbeat: Option<Heartbeat>) -> Option<Self> {
        if child.is_none() && heartbeat.is_none() {
            return None;
        }
        let now = Instant::now();
        Some(LaunchWatch {
            child,
            heartbeat,
            heard: now,
            exited: None,
            next_look: now,
        })
    }

    /// Waits until `conn` has something to read (or an error to report);
    /// why the worker counts as dead, if it does first.
    fn until_readable(&mut self, conn: &Connection) -> Option<String> {
        loop {
            let now = Instant::now();
            if let (None, Some(child), true) = (self.exited, self.child, now >= self.next_look) {
                self.next_look = now + LAUNCH_LOOK;
                if let Ok(Some(status)) = child.try_wait() {
                    self.exited = Some((now, ExitStatus(status)));
                }
            }
            let mut wait = match self.exited {
                Some((at, status)) => {
                    let left = EXIT_GRACE.saturating_sub(now.duration_since(at));
                    if left.is_zero() {
                        return Some(format!(
                            "its launcher command ended ({status}) but the worker's connection \
                             was still open {EXIT_GRACE:?} later"
                        ));
                    }
                    left
                }
                None if self.child.is_some() => self.next_look.saturating_duration_since(now),
                // No command to look at: the heartbeat bounds the wait.
                None => Duration::MAX,
            };
            if let Some(hb) = self.heartbeat {
                let left = hb.timeout.saturating_sub(now.duration_since(self.heard));
                if left.is_zero() {
                    return Some(format!("no heartbeat for {:?}", hb.timeout));
                }
                wait = wait.min(left);
            }
            if conn.poll(Some(wait)).unwrap_or(true) {
                return None;
            }
        }
    }
}

/// After [`read_worker`]: makes sure the worker is gone and tells how it
/// ended (its status, what it did that broke the protocol, why a launched
/// worker was given up). A worker that broke the protocol or was given up
/// is killed at once; one whose stream ended is given [`EXIT_GRACE`] to
/// exit, and killed (a protocol violation too) if it is still running
/// then.
fn worker_end(popen: &Proc, end: End) -> (Option<ExitStatus>, Option<String>, Option<String>) {
    if let Proc::Rank { .. } | Proc::Member { .. } = popen {
        // No process of its own to wait for (a rank; a worker whose
        // command is shared): the end of its connection is its end. One
        // that broke the protocol or fell silent has its connection shut
        // down, so that it sees that, should it wake, and exits.
        let (violation, lost) = match end {
            End::Closed => return (None, None, None),
            End::Violation(why) => (Some(why), None),
            End::Lost(why) => (None, Some(why)),
        };
        let _ = popen.kill();
        return (None, violation, lost);
    }
    let (violation, lost) = match end {
        End::Violation(why) => (Some(why), None),
        End::Lost(why) => (None, Some(why)),
        End::Closed => match popen.wait(Some(EXIT_GRACE)) {
            Ok(Some(status)) => return (Some(status), None, None),
            _ => (
                Some(format!(
                    "it closed its channel but was still running {EXIT_GRACE:?} later"
                )),
                None,
            ),
        },
    };
    let _ = popen.kill();
    (popen.wait(Some(KILL_WAIT)).ok().flatten(), violation, lost)
}

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
    /// (`launcher::serve::parent_gone`). An SPMD rank, whose process is not ours
    /// (on another host, as a rule), and a worker that shares its command
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

    /// The reader of worker `id`, a pending launch (`popen`, its command
    /// started with `token`): waits, outside the pool's lock, for the
    /// worker to connect back, sends it `cfg`, and notes where it runs;
    /// its connection.
    fn connect_launched(
        &self,
        remote: &Remote,
        token: u64,
        id: WorkerId,
        popen: &Proc,
        cfg: &WorkerConfig,
    ) -> Result<Arc<Connection>> {
        let Proc::Launched {
            command,
            conn: slot,
            killed,
        } = popen
        else {
            unreachable!("only a launched worker's start is pending");
        };
        let (conn, hello) = remote.connect_back(token, command)?;
        if let Err(e) = conn.send(cfg) {
            let _ = command.kill();
            return Err(e);
        }
        let conn = Arc::new(conn);
        let _ = slot.set(Arc::clone(&conn));
        if killed.load(Ordering::SeqCst) {
            // Killed while it connected: `Proc::kill` did not see it.
            let _ = conn.shutdown();
        }
        let host: Arc<str> = Arc::from(hello.host);
        let mut st = lock(&self.state);
        if let Some(h) = st.handles.get(id) {
            h.host = Some(Arc::clone(&host));
            h.own_pid = Some(hello.pid);
        }
        st.sched.note_launched(id, host, hello.pid);
        Ok(conn)
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

    /// Starts worker `id`: its process, and its writer and reader threads.
    fn spawn_worker(self: &Arc<Self>, handles: &mut Handles, id: WorkerId) -> Result<u32> {
        let cfg = WorkerConfig {
            initializer: self.spawner.initializer.clone(),
            max_memory: self.limits.max_memory_per_child,
            heartbeat: match (&self.spawner.remote, &self.spawner.ranks) {
                (Some(remote), _) => Some(remote.heartbeat()),
                (None, Some(ranks)) => Some(ranks.heartbeat()),
                (None, None) => None,
            },
        };
        let heartbeat = cfg.heartbeat;
        let mut launched_host = None;
        let mut own_pid = None;
        // A launch whose worker is yet to connect back: the launcher and
        // the worker's token (its reader waits for it).
        let mut pending = None;
        let (popen, conn): (_, Option<Arc<Connection>>) =
            match (&self.spawner.remote, &self.spawner.ranks) {
                (_, Some(ranks)) => {
                    let rank = ranks.take()?;
                    rank.conn.send(&cfg)?;
                    launched_host = Some(Arc::from(rank.host));
                    let conn = Arc::new(rank.conn);
                    (
                        Proc::Rank {
                            pid: rank.pid,
                            conn: Arc::clone(&conn),
                        },
                        Some(conn),
                    )
                }
                (None, None) => {
                    let (mine, theirs) = Pipe::duplex_read_ahead()?;
                    // The worker's end marked as its channel to us (handles
                    // both ways on Windows too; a launched worker's is not).
                    let args = (ChildEnd(&theirs), &cfg);
                    let popen = self.spawner.popen.spawn_encoded(pool_worker_main, &args)?;
                    drop(theirs);
                    // The worker's exit ends the reader's stream even while
                    // children it started hold its end of the channel.
                    mine.watch_peer(&popen);
                    (Proc::Local(popen), Some(Arc::new(mine)))
                }
                (Some(remote), None) => match remote.take_pending() {
                    // One of the workers `launch_all` started: connected.
                    Some(launch) => {
                        own_pid = Some(launch.pid);
                        let (conn, host) = (launch.conn, launch.host);
                        conn.send(&cfg)?;
                        launched_host = Some(Arc::from(host));
                        let conn = Arc::new(conn);
                        let proc = Proc::Member {
                            command: launch.command,
                            pid: launch.pid,
                            conn: Arc::clone(&conn),
                        };
                        (proc, Some(conn))
                    }
                    // Only the command is started here, under the pool's
                    // lock; its reader waits for the worker.
                    None => {
                        let (command, token) = remote.start_one()?;
                        pending = Some((Arc::clone(remote), token));
                        let proc = Proc::Launched {
                            command,
                            conn: OnceLock::new(),
                            killed: AtomicBool::new(false),
                        };
                        (proc, None)
                    }
                },
            };
        let popen = Arc::new(popen);
        let (tx, rx) = mpsc::channel::<OutFrame>();
        // The writer's connection: now, or once a pending launch's worker
        // connected back (none if it never does).
        let (conn_tx, conn_rx) = mpsc::sync_channel::<Arc<Connection>>(1);
        if let Some(conn) = &conn {
            let _ = conn_tx.send(Arc::clone(conn));
        }
        let writer_popen = Arc::clone(&popen);
        let writer_shared = Arc::clone(self);
        let writer = std::thread::Builder::new()
            .name(format!("multiproc-pool-w{}", popen.pid()))
            .spawn(move || {
                let Ok(writer_conn) = conn_rx.recv() else {
                    // A launch that failed: its reader reports that.
                    return;
                };
                let beat = postcard::to_allocvec(&ToWorker::Heartbeat).unwrap_or_default();
                loop {
                    let next = match heartbeat {
                        None => rx.recv().ok(),
                        // A launched worker: a heartbeat when nothing else
                        // went for an interval.
                        Some(hb) => match rx.recv_timeout(hb.interval) {
                            Ok(next) => Some(next),
                            Err(mpsc::RecvTimeoutError::Timeout) => {
                                if writer_conn.send_bytes(&beat).is_err() {
                                    // Gone: its reader reports that.
                                    break;
                                }
                                continue;
                            }
                            Err(mpsc::RecvTimeoutError::Disconnected) => None,
                        },
                    };
                    let Some((frame, chunks, handles)) = next else {
                        break;
                    };
                    let sent = if handles.is_empty() {
                        writer_conn.send_bytes(&frame)
                    } else {
                        let parts: Vec<&Carried> = handles.iter().map(|c| &**c).collect();
                        writer_conn.send_with_handles(&frame, &parts)
                    };
                    let Err(e) = sent else { continue };
                    if e.is_eof() {
                        // The worker is gone: its reader reports that.
                        break;
                    }
                    if handles.is_empty() {
                        // The frame could not be written whole: the
                        // worker would wait forever for the rest, so it
                        // is killed, and its tasks go as for a worker
                        // that died.
                        let _ = writer_popen.kill();
                        break;
                    }
                    // The handles of its tasks could not be sent (the
                    // OS's limit on fds in flight, Windows out of
                    // handles): those tasks fail now, rather than go to
                    // another worker and fail there again, and again.
                    // Nothing of the frame was written, unless the handles
                    // went out only in part: then the stream is out of
                    // step (the end is poisoned) and the worker is killed.
                    let poisoned = e.is_poisoned();
                    writer_shared.on_send_failed(id, chunks, e);
                    if poisoned {
                        let _ = writer_popen.kill();
                        break;
                    }
                }
            })
            .map_err(|e| Error::io("cannot start a pool thread", e))?;
        let shared = Arc::clone(self);
        let reader_popen = Arc::clone(&popen);
        let reader = std::thread::Builder::new()
            .name(format!("multiproc-pool-r{}", popen.pid()))
            .spawn(move || {
                let conn = match (conn, pending) {
                    (Some(conn), _) => conn,
                    (None, Some((remote, token))) => {
                        match shared.connect_launched(&remote, token, id, &reader_popen, &cfg) {
                            Ok(conn) => {
                                let _ = conn_tx.send(Arc::clone(&conn));
                                conn
                            }
                            Err(e) => {
                                drop(conn_tx);
                                shared.on_launch_failed(id, e);
                                return;
                            }
                        }
                    }
                    (None, None) => return,
                };
                drop(conn_tx);
                // A launched worker's command and heartbeats; an SPMD
                // rank's heartbeats.
                let watch = LaunchWatch::new(reader_popen.launcher(), heartbeat);
                let end = read_worker(&conn, watch, |msg, carried| {
                    shared.on_message(id, msg, carried)
                });
                shared.on_exit(id, worker_end(&reader_popen, end));
            })
            .map_err(|e| Error::io("cannot start a pool thread", e))?;
        // Join the threads of workers already gone (finished, so this
        // doesn't wait), so a pool that keeps replacing workers doesn't
        // keep their threads (or, on Windows, their handles). A reader
        // calling this from `on_exit` is still running and stays.
        let (done, live): (Vec<_>, Vec<_>) = std::mem::take(&mut handles.threads)
            .into_iter()
            .partition(|t| t.is_finished());
        handles.threads = live;
        for t in done {
            let _ = t.join();
        }
        handles.threads.push(writer);
        handles.threads.push(reader);
        let pid = popen.pid();
        handles.workers.push(Handle {
            id,
            popen,
            host: launched_host,
            own_pid,
            tx: Some(tx),
        });
        Ok(pid)
    }
}
