//! The scheduler: the queue of chunks, the workers' chunks in flight,
//! dispatch, chunk pacing, timeouts, and what happens when a worker ends.
//!
//! A plain state machine over worker ids: no threads, no processes, no
//! clock of its own. Everything it does to the outside world goes through
//! [`Workers`] (start a worker, write it a frame, close its input, kill
//! it, tell the time, wake the timer), which the pool's threads implement
//! over real processes (`workers.rs`) and the tests below implement with a
//! mock. The pool's threads drive it: they call it under the pool's lock
//! when a caller queues or cancels work, a worker sends a message or ends,
//! or the pool's timer looks at the time limits. The per-task control
//! (time limits, cancelling, the counts and log events of a worker's end)
//! is in `control.rs`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use super::protocol::{FromWorker, TaskFail, TaskHandles, ToWorker, ToWorkerRef, WireChunkRef};
use super::results::{Broken, ChunkResults, Failure, ResultHandles, Slot};
use super::{FRAME_TARGET, MAX_FAILED_STARTS, MAX_FRAME_CHUNKS};
use crate::codec::handles::{Carried, MAX_HANDLES};
use crate::error::{Error, Result};
use crate::status::ExitStatus;

mod control;
pub(super) use control::Counts;
use control::KilledFor;

/// A worker, as the scheduler knows it: a number it chose.
pub(super) type WorkerId = u64;

/// The signal `Popen::kill` sends on Unix (SIGKILL; there is no signal on
/// Windows, where a kill ends the process with `TERMINATE`).
const KILL_SIGNAL: i32 = 9;

/// What the scheduler asks of the world outside it. Calls are made under
/// the pool's lock, so they must not block (a frame is handed to the
/// worker's writer thread, a kill only starts the kill).
pub(super) trait Workers {
    /// Starts worker `id`; its pid. It reports through
    /// [`Scheduler::on_message_with`] and [`Scheduler::on_exit`] with this id
    /// — a launched worker, whose command this only starts, through
    /// [`Scheduler::on_launch_failed`] instead if it never connects back.
    fn spawn(&mut self, id: WorkerId) -> Result<u32>;
    /// The host worker `id` runs on, if it is not this one (a worker
    /// started by a launcher command says it when it connects).
    fn host(&self, _id: WorkerId) -> Option<Arc<str>> {
        None
    }
    /// The pid worker `id` said it has, for a launched worker (the pool
    /// knows it by its launcher command's: `srun`'s, `ssh`'s, a shell's).
    fn own_pid(&self, _id: WorkerId) -> Option<u32> {
        None
    }
    /// Writes `frame` to worker `id`, after the frames written before.
    fn send(&mut self, id: WorkerId, frame: Vec<u8>);
    /// Writes `frame`, whose chunks are `chunks`, with the handles their
    /// tasks carry (the chunks' handles, in chunk order), which stay open
    /// here until sent. If they can't be sent, that is reported through
    /// [`Scheduler::on_send_failed`].
    fn send_with(
        &mut self,
        id: WorkerId,
        frame: Vec<u8>,
        chunks: Vec<u64>,
        handles: Vec<Arc<Carried>>,
    ) {
        drop((chunks, handles));
        self.send(id, frame)
    }
    /// Nothing more will be written to worker `id`.
    fn close(&mut self, id: WorkerId);
    /// Kills worker `id`; its end is reported as usual.
    fn kill(&mut self, id: WorkerId);
    /// The time now.
    fn now(&self) -> Instant;
    /// A deadline earlier than the one the pool's timer sleeps towards
    /// appeared: the timer should call
    /// [`enforce_timeouts`](Scheduler::enforce_timeouts) now.
    fn wake_timer(&mut self);
}

/// The options the scheduler obeys.
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    /// How many workers the pool keeps.
    pub(super) workers: usize,
    pub(super) max_tasks_per_child: Option<u64>,
    pub(super) task_timeout: Option<Duration>,
    /// Checked by the workers themselves, which say [`FromWorker::Recycle`].
    pub(super) max_memory_per_child: Option<u64>,
}

/// A chunk waiting to be sent or in flight.
struct ChunkRec {
    job: u64,
    first: u64,
    entry: &'static str,
    /// How many tasks; their arguments, each length-prefixed.
    n: u32,
    tasks: Vec<u8>,
    handles: TaskHandles,
    /// A `submit`'s task: its result goes here, not to a [`JobRec`].
    slot: Option<Arc<Slot>>,
    /// Its own time limit per task, instead of the pool's.
    timeout: Option<Duration>,
}

/// A caller's `imap`/`map`: the results that arrived and were not yet
/// taken, and the task (an `Imap` stream's) to wake when the next one
/// arrives.
#[derive(Default)]
struct JobRec {
    results: Vec<ChunkResults>,
    waker: Option<Waker>,
}

struct Worker {
    id: WorkerId,
    pid: u32,
    /// Where it runs, for a launched worker (named in its errors).
    host: Option<Arc<str>>,
    /// Its own pid, for a launched worker (named in its errors).
    own_pid: Option<u32>,
    /// Frames can be written to it (not closed).
    open: bool,
    /// Chunks sent, in order, with the frame that carried each.
    inflight: VecDeque<(u64, u64)>,
    /// The last frame the worker said it started.
    started_frame: u64,
    head_since: Instant,
    sent_tasks: u64,
    ready: bool,
    retiring: bool,
    /// The pool killed it, and why.
    killed_for: Option<KilledFor>,
    /// Chunks in flight on it that were cancelled: it is killed when one
    /// of them is the one it runs.
    cancelled: Vec<u64>,
    /// It said it is over `max_memory_per_child` and exits without
    /// starting anything more: nothing in flight was started.
    recycled: bool,
    /// A launched worker the driver gave up on while its connection was
    /// open (no heartbeat, its launcher command gone): why.
    lost: Option<String>,
    /// It was started in place of this worker (pid) that ended.
    in_place_of: Option<u32>,
}

impl Worker {
    /// It said it started the frame that holds its oldest chunk.
    fn busy(&self) -> bool {
        self.inflight
            .front()
            .is_some_and(|&(_, f)| f <= self.started_frame)
    }
}

#[derive(Clone, Copy)]
struct EntryStats {
    /// Exponential average of the time one task takes.
    per_task: Duration,
}

/// A map keyed by the scheduler's own ids and the entries' names, which
/// no one outside chooses: hashed with rustc's FxHash, not SipHash (its
/// protection against chosen keys is not needed, and it was a visible
/// part of each task's cost).
type FastMap<K, V> = rustc_hash::FxHashMap<K, V>;

/// The pool's state: see the module docs.
pub(super) struct Scheduler {
    workers: Vec<Worker>,
    queue: VecDeque<u64>,
    chunks: FastMap<u64, ChunkRec>,
    jobs: FastMap<u64, JobRec>,
    stats: FastMap<&'static str, EntryStats>,
    next_id: u64,
    closed: bool,
    terminated: bool,
    broken: Option<Broken>,
    starting: usize,
    failed_starts: u32,
    /// Where the next dispatch starts its round.
    next_worker: usize,
    limits: Limits,
    /// The wakers of jobs whose results arrived: the driver wakes them
    /// ([`take_wakers`](Self::take_wakers)) once it released the pool's
    /// lock, after every call that can complete a chunk.
    woken: Vec<Waker>,
    /// Some chunk has a time limit (the pool's or its own): deadlines are
    /// worth computing.
    timed: bool,
    /// The deadline the pool's timer sleeps towards (`None`: none).
    armed: Option<Instant>,
    counts: Counts,
    /// A worker that ends is replaced (false for an SPMD pool, whose
    /// workers are the job's other ranks: see
    /// [`without_replacements`](Self::without_replacements)).
    replaces: bool,
    /// Why the launch of one of the pool's first workers failed (what
    /// `PoolBuilder::build` returns).
    start_error: Option<Error>,
}

impl Scheduler {
    pub(super) fn new(limits: Limits) -> Self {
        Scheduler {
            workers: Vec::new(),
            queue: VecDeque::new(),
            chunks: FastMap::default(),
            jobs: FastMap::default(),
            stats: FastMap::default(),
            next_id: 0,
            closed: false,
            terminated: false,
            broken: None,
            starting: 0,
            failed_starts: 0,
            next_worker: 0,
            limits,
            woken: Vec::new(),
            timed: limits.task_timeout.is_some(),
            armed: None,
            counts: Counts::default(),
            replaces: true,
            start_error: None,
        }
    }

    /// Workers that end are not replaced (an SPMD pool's ranks: nothing
    /// can start another): the pool goes on with those left, and once
    /// none is left while work may still come, it is broken.
    pub(super) fn without_replacements(mut self) -> Self {
        self.replaces = false;
        self
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// A new job, to queue chunks for and take results from.
    pub(super) fn new_job(&mut self) -> u64 {
        let job = self.next_id();
        self.jobs.insert(job, JobRec::default());
        job
    }

    /// The results of `job` that arrived since the last call.
    pub(super) fn take_results(&mut self, job: u64) -> Vec<ChunkResults> {
        self.jobs
            .get_mut(&job)
            .map(|j| std::mem::take(&mut j.results))
            .unwrap_or_default()
    }

    /// The results of chunk `c` arrived (or its failure): to its slot, or
    /// to its job's record; the waker to wake, if any, goes to `woken`.
    fn deliver(&mut self, c: ChunkRec, results: ChunkResults) {
        match c.slot {
            Some(slot) => self.woken.extend(slot.put(results)),
            None => {
                if let Some(job) = self.jobs.get_mut(&c.job) {
                    job.results.push(results);
                    self.woken.extend(job.waker.take());
                }
            }
        }
    }

    /// Has `waker` woken when the next result of `job` arrives (one
    /// wake: a later poll registers again). False if there is no such job.
    pub(super) fn set_waker(&mut self, job: u64, waker: &Waker) -> bool {
        let Some(j) = self.jobs.get_mut(&job) else {
            return false;
        };
        match &mut j.waker {
            Some(w) if w.will_wake(waker) => {}
            slot => *slot = Some(waker.clone()),
        }
        true
    }

    /// The wakers of jobs whose results arrived since the last call (see
    /// [`Scheduler::woken`]'s docs: to be woken outside the lock).
    pub(super) fn take_wakers(&mut self) -> Vec<Waker> {
        std::mem::take(&mut self.woken)
    }

    /// Forgets `job` and drops its chunks that are still queued; the ones
    /// in flight finish, and their results are dropped.
    pub(super) fn cancel_job(&mut self, job: u64) {
        self.jobs.remove(&job);
        let mine: Vec<u64> = self
            .queue
            .iter()
            .copied()
            .filter(|c| self.chunks.get(c).is_some_and(|c| c.job == job))
            .collect();
        self.queue.retain(|c| !mine.contains(c));
        for c in mine {
            if let Some(c) = self.chunks.remove(&c) {
                self.counts.tasks_cancelled += u64::from(c.n);
            }
        }
    }

    /// How many chunks wait to be sent.
    pub(super) fn queued(&self) -> usize {
        self.queue.len()
    }

    /// The measured time one task of `entry` takes, if measured.
    pub(super) fn per_task(&self, entry: &str) -> Option<Duration> {
        self.stats.get(entry).map(|s| s.per_task)
    }

    /// No more work will be queued ([`enqueue_with`](Self::enqueue_with)
    /// and [`enqueue_slot`](Self::enqueue_slot) refuse it).
    pub(super) fn close(&mut self) {
        self.closed = true;
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed
    }

    /// Why the pool is broken, if it is.
    pub(super) fn broken(&self) -> Option<&Broken> {
        self.broken.as_ref()
    }

    /// How many workers there are (starting, ready or retiring).
    pub(super) fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// Some worker was started and has not said it is ready (nor ended).
    pub(super) fn starting(&self) -> bool {
        self.starting > 0
    }

    /// Nothing queued, nothing in flight.
    pub(super) fn idle(&self) -> bool {
        self.queue.is_empty() && self.workers.iter().all(|w| w.inflight.is_empty())
    }

    /// The pids of the workers ready for tasks.
    pub(super) fn ready_pids(&self) -> Vec<u32> {
        self.workers
            .iter()
            .filter(|w| w.ready)
            .map(|w| w.pid)
            .collect()
    }

    /// The pids of the workers running a task.
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
    pub(super) fn busy_pids(&self) -> Vec<u32> {
        self.workers
            .iter()
            .filter(|w| w.busy())
            .map(|w| w.pid)
            .collect()
    }

    /// The worker whose pid is `pid`.
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
    pub(super) fn worker_with_pid(&self, pid: u32) -> Option<WorkerId> {
        self.workers.iter().find(|w| w.pid == pid).map(|w| w.id)
    }

    /// Chunks per frame and chunks in flight per worker for `entry`.
    pub(super) fn pacing(&self, entry: &str) -> (usize, usize) {
        let per_chunk_task = self.stats.get(entry).map(|s| s.per_task);
        match per_chunk_task {
            None => (1, 2),
            Some(t) => {
                let n = (FRAME_TARGET.as_nanos() / t.as_nanos().max(1)) as usize;
                let n = n.clamp(1, MAX_FRAME_CHUNKS);
                (n, 2 * n)
            }
        }
    }

    fn fail_chunk(&mut self, cid: u64, why: Failure) {
        if let Some(c) = self.chunks.remove(&cid) {
            let n = u64::from(c.n);
            match why {
                Failure::Timeout { .. } => self.counts.tasks_timed_out += n,
                Failure::Cancelled => self.counts.tasks_cancelled += n,
                _ => self.counts.tasks_failed += n,
            }
            let results = ChunkResults::failed(c.first, c.n, why);
            self.deliver(c, results);
        }
    }

    /// Starts one more worker.
    pub(super) fn start_worker(&mut self, io: &mut impl Workers) -> Result<()> {
        let id = self.next_id();
        let pid = io.spawn(id)?;
        self.counts.workers_started += 1;
        log::debug!("multiproc pool: worker {pid} spawned");
        self.starting += 1;
        self.workers.push(Worker {
            id,
            pid,
            host: io.host(id),
            own_pid: io.own_pid(id),
            open: true,
            inflight: VecDeque::new(),
            started_frame: 0,
            head_since: io.now(),
            sent_tasks: 0,
            ready: false,
            retiring: false,
            killed_for: None,
            cancelled: Vec::new(),
            recycled: false,
            lost: None,
            in_place_of: None,
        });
        Ok(())
    }

    /// Whether a chunk just queued should be sent now rather than with the
    /// next frame the workers' replies trigger: some ready worker has
    /// fewer than two chunks in flight (so it would idle, or run its last
    /// chunk with nothing behind it, until then). Otherwise the chunk
    /// waits in the queue, and `on_message` sends it with the chunks
    /// queued after it, in one frame: a caller that `submit`s many tasks
    /// in a row then pays for a frame (a write, a wake-up of the writer
    /// thread, a `Started` reply) per frame, not per task.
    pub(super) fn wants_dispatch(&self) -> bool {
        self.workers
            .iter()
            .any(|w| w.ready && w.open && !w.retiring && w.inflight.len() < 2)
    }

    /// Sends queued chunks to workers with room, round robin from where
    /// the last call stopped (so no worker is always served first).
    pub(super) fn dispatch(&mut self, io: &mut impl Workers) {
        if self.queue.is_empty() && !self.workers.iter().any(|w| w.retiring) {
            return;
        }
        let now = io.now();
        let n = self.workers.len();
        let start = self.next_worker % n.max(1);
        for k in (start..n).chain(0..start) {
            if self.queue.is_empty() {
                break;
            }
            let w = &self.workers[k];
            if !w.ready || w.retiring || !w.open {
                continue;
            }
            let Some(&head) = self.queue.front() else {
                break;
            };
            let entry = self.chunks.get(&head).map_or("", |c| c.entry);
            let (per_frame, window) = self.pacing(entry);
            let room = window.saturating_sub(w.inflight.len()).min(per_frame);
            // A busy worker gets a new frame only when a whole one fits (or
            // the queue is shorter): topping it up chunk by chunk would
            // cost a write and a `Started` reply per chunk.
            if room == 0 || (!w.inflight.is_empty() && room < per_frame && room < self.queue.len())
            {
                continue;
            }
            let frame_id = self.next_id();
            let Scheduler {
                queue,
                chunks,
                workers,
                limits,
                ..
            } = &mut *self;
            let w = &mut workers[k];
            let mut entries: Vec<&str> = Vec::new();
            let mut wire = Vec::new();
            let mut carried: Vec<Arc<Carried>> = Vec::new();
            let mut handles_sent = 0;
            let mut tasks_sent = 0;
            while wire.len() < room {
                let Some(&cid) = queue.front() else {
                    break;
                };
                let Some(c) = chunks.get(&cid) else {
                    queue.pop_front();
                    continue;
                };
                // A frame carries at most MAX_HANDLES handles (a chunk
                // never has more, see `HandlesBuilder`'s callers).
                if handles_sent + c.handles.len() > MAX_HANDLES && !wire.is_empty() {
                    break;
                }
                queue.pop_front();
                handles_sent += c.handles.len();
                carried.extend(c.handles.carried.clone());
                let e = match entries.iter().position(|x| *x == c.entry) {
                    Some(i) => i,
                    None => {
                        entries.push(c.entry);
                        entries.len() - 1
                    }
                };
                tasks_sent += u64::from(c.n);
                wire.push(WireChunkRef {
                    id: cid,
                    entry: e as u16,
                    tasks: &c.tasks,
                    handles: &c.handles.counts,
                });
                if let Some(max) = limits.max_tasks_per_child {
                    if w.sent_tasks + tasks_sent >= max {
                        break;
                    }
                }
            }
            if wire.is_empty() {
                continue;
            }
            let frame = postcard::to_allocvec(&ToWorkerRef::Work {
                frame: frame_id,
                entries: &entries,
                chunks: &wire,
            })
            .unwrap_or_default();
            let armed = w.inflight.is_empty();
            if armed {
                w.head_since = now;
            }
            w.inflight.extend(wire.iter().map(|c| (c.id, frame_id)));
            w.sent_tasks += tasks_sent;
            if let Some(max) = limits.max_tasks_per_child {
                if w.sent_tasks >= max {
                    w.retiring = true;
                }
            }
            if w.open && carried.is_empty() {
                io.send(w.id, frame);
            } else if w.open {
                io.send_with(w.id, frame, wire.iter().map(|c| c.id).collect(), carried);
            }
            self.next_worker = k + 1;
            if armed {
                self.arm(io, k);
            }
        }
        // Retiring workers with nothing left in flight: ask them to exit.
        for w in self.workers.iter_mut() {
            if w.retiring && w.inflight.is_empty() && w.open {
                w.open = false;
                io.send(w.id, shutdown_frame());
                io.close(w.id);
            }
        }
    }

    /// Worker `wid` sent `msg`, without handles.
    #[cfg(test)]
    pub(super) fn on_message(&mut self, io: &mut impl Workers, wid: WorkerId, msg: FromWorker) {
        self.on_message_with(io, wid, msg, Ok(Carried::default()));
    }

    /// Worker `wid` sent `msg`, and with it `carried` (or they could not
    /// be taken: why).
    pub(super) fn on_message_with(
        &mut self,
        io: &mut impl Workers,
        wid: WorkerId,
        msg: FromWorker,
        carried: Result<Carried>,
    ) {
        let Some(k) = self.workers.iter().position(|w| w.id == wid) else {
            return;
        };
        match msg {
            // The driver's reader takes them; one that got here is news
            // of nothing.
            FromWorker::Heartbeat => {}
            FromWorker::Ready => {
                log::debug!("multiproc pool: worker {} ready", self.workers[k].pid);
                self.workers[k].ready = true;
                self.failed_starts = 0;
                self.starting = self.starting.saturating_sub(1);
            }
            FromWorker::InitFailed(why) => {
                self.broken.get_or_insert(Broken::new(why));
                self.starting = self.starting.saturating_sub(1);
            }
            FromWorker::Started(frame) => {
                let w = &mut self.workers[k];
                w.started_frame = w.started_frame.max(frame);
                if w.inflight.front().is_some_and(|&(_, f)| f == frame) {
                    w.head_since = io.now();
                    self.arm(io, k);
                }
                self.kill_if_running_cancelled(io, k);
            }
            FromWorker::Recycle { rss } => {
                let w = &mut self.workers[k];
                log::info!(
                    "multiproc pool: worker {} uses {rss} bytes, over max_memory_per_child; replacing it",
                    w.pid
                );
                w.recycled = true;
                w.retiring = true;
                if w.open {
                    w.open = false;
                    io.close(w.id);
                }
            }
            FromWorker::Done {
                id,
                values,
                fails,
                handles,
            } => {
                let now = io.now();
                let w = &mut self.workers[k];
                if w.inflight.front().map(|&(c, _)| c) == Some(id) {
                    w.inflight.pop_front();
                } else {
                    w.inflight.retain(|&(c, _)| c != id);
                }
                let took = now.saturating_duration_since(w.head_since);
                w.head_since = now;
                let more = !w.inflight.is_empty();
                if more {
                    self.arm(io, k);
                    self.kill_if_running_cancelled(io, k);
                }
                if let Some(c) = self.chunks.remove(&id) {
                    let failed = (fails.len() as u64).min(u64::from(c.n));
                    self.counts.tasks_done += u64::from(c.n) - failed;
                    self.counts.tasks_failed += failed;
                    if c.n > 0 {
                        let per_task = took / c.n;
                        let s = self.stats.entry(c.entry).or_insert(EntryStats { per_task });
                        s.per_task = (s.per_task * 3 + per_task) / 4;
                    }
                    // (Dropped in `deliver` if nobody waits for it.)
                    let fails = fails
                        .into_iter()
                        .map(|(i, f)| {
                            (
                                i,
                                match f {
                                    TaskFail::Panic(p) => Failure::Panic(p),
                                    TaskFail::BadArgs(m) => Failure::BadArgs(m),
                                    TaskFail::BadResult(m) => Failure::BadResult(m),
                                },
                            )
                        })
                        .collect();
                    let results = ChunkResults {
                        first: c.first,
                        n: c.n,
                        next: 0,
                        values,
                        pos: 0,
                        fails,
                        all: None,
                        handles: ResultHandles::new(c.n, handles, carried),
                    };
                    self.deliver(c, results);
                }
            }
        }
        self.dispatch(io);
    }

    /// The frame holding `chunks` could not be written to worker `wid`
    /// with its handles (`why`): it never reached the worker, so its
    /// chunks fail now — sent again they would most likely fail again
    /// (the OS's limit on fds in flight, Windows out of handles) — and are
    /// no longer in flight there. The worker goes on unless its stream was
    /// left out of step (then the pool's writer kills it, and its end is
    /// reported as usual).
    pub(super) fn on_send_failed(
        &mut self,
        io: &mut impl Workers,
        wid: WorkerId,
        chunks: Vec<u64>,
        why: crate::error::Error,
    ) {
        if let Some(w) = self.workers.iter_mut().find(|w| w.id == wid) {
            w.inflight.retain(|(c, _)| !chunks.contains(c));
        }
        let why = Arc::new(why);
        for cid in chunks {
            let Some(entry) = self.chunks.get(&cid).map(|c| c.entry) else {
                continue;
            };
            let source = crate::encode::EncodeError::Handle(Arc::clone(&why));
            self.fail_chunk(cid, Failure::Encode { entry, source });
        }
        self.dispatch(io);
    }

    /// The driver gives launched worker `wid` up, for `why` (its end
    /// follows through [`on_exit`](Self::on_exit), whose errors say why).
    pub(super) fn note_lost(&mut self, wid: WorkerId, why: String) {
        if let Some(w) = self.workers.iter_mut().find(|w| w.id == wid) {
            w.lost = Some(why);
        }
    }

    /// Launched worker `wid` connected back: it runs on `host`, as `pid`
    /// there.
    pub(super) fn note_launched(&mut self, wid: WorkerId, host: Arc<str>, pid: u32) {
        if let Some(w) = self.workers.iter_mut().find(|w| w.id == wid) {
            w.host = Some(host);
            w.own_pid = Some(pid);
        }
    }

    /// The launch of worker `wid` (its command started by
    /// [`Workers::spawn`], its worker yet to connect back) failed: `why`.
    /// As when the start itself fails: one of the pool's first workers
    /// fails the pool's build (with `why`, see
    /// [`take_start_error`](Self::take_start_error)), a replacement breaks
    /// the pool — unless the pool was terminated, which killed it.
    pub(super) fn on_launch_failed(&mut self, io: &mut impl Workers, wid: WorkerId, why: Error) {
        let Some(k) = self.workers.iter().position(|w| w.id == wid) else {
            return;
        };
        let w = self.workers.remove(k);
        self.starting = self.starting.saturating_sub(1);
        // Counted as it started; not a worker after all.
        self.counts.workers_started = self.counts.workers_started.saturating_sub(1);
        if let Some(old) = w.in_place_of {
            self.counts.workers_replaced = self.counts.workers_replaced.saturating_sub(1);
            if !self.terminated && self.broken.is_none() {
                log::warn!("multiproc pool: cannot replace worker {old}: {why}");
                self.broken = Some(Broken {
                    why: format!("cannot replace worker {old}: {why}"),
                    cause: Some(Arc::new(why)),
                });
            }
        } else if !self.terminated && self.broken.is_none() {
            self.broken = Some(Broken::new(format!("cannot start a worker: {why}")));
            self.start_error = Some(why);
        }
        let failure = if self.terminated {
            Some(Failure::Terminated)
        } else {
            self.broken.clone().map(Failure::Broken)
        };
        if let Some(failure) = failure {
            let queued: Vec<u64> = self.queue.drain(..).collect();
            for cid in queued {
                self.fail_chunk(cid, failure.clone());
            }
        }
        self.dispatch(io);
    }

    /// Why the launch of one of the pool's first workers failed, if it
    /// did ([`on_launch_failed`](Self::on_launch_failed)).
    pub(super) fn take_start_error(&mut self) -> Option<Error> {
        self.start_error.take()
    }

    /// Worker `wid` is gone: `status` is how it ended (if known);
    /// `violation`, what it sent that made us kill it.
    pub(super) fn on_exit(
        &mut self,
        io: &mut impl Workers,
        wid: WorkerId,
        status: Option<ExitStatus>,
        violation: Option<String>,
    ) {
        let Some(k) = self.workers.iter().position(|w| w.id == wid) else {
            return;
        };
        let w = self.workers.remove(k);
        let pid = w.pid;
        self.note_end(&w, status, violation.as_deref());
        if !w.ready && self.broken.is_none() && !self.terminated {
            // Killed from outside while starting, or unable to start at
            // all: retry, but not forever.
            self.starting = self.starting.saturating_sub(1);
            self.failed_starts += 1;
            if self.failed_starts >= MAX_FAILED_STARTS {
                self.broken = Some(Broken::new(match status {
                    Some(s) => format!(
                        "{MAX_FAILED_STARTS} workers in a row ended before they were ready; the last, {pid}, with {s}"
                    ),
                    None => format!("{MAX_FAILED_STARTS} workers in a row ended before they were ready"),
                }));
            }
        }
        let started = w.started_frame;
        let mut inflight = w.inflight.into_iter().peekable();
        // The head chunk was running only if the worker had started its
        // frame; otherwise nothing in flight was started, and all of it
        // goes back to the queue.
        // A recycled worker said it starts nothing more after its last
        // result: none of it was started.
        let head = inflight
            .next_if(|&(_, frame)| frame <= started && !w.recycled)
            .map(|(c, _)| c);
        if let Some(head) = head {
            // A timed-out worker was killed by us; if it ended some other
            // way first (an abort, say), that is what happened.
            let killed_by_us =
                status.is_none_or(|s| s.signal() == Some(KILL_SIGNAL) || s.is_terminated());
            let why = if self.terminated {
                Failure::Terminated
            } else if let Some(why) = violation {
                Failure::Protocol { pid, why }
            } else if let (Some(KilledFor::Timeout(timeout)), true) = (w.killed_for, killed_by_us) {
                Failure::Timeout { pid, timeout }
            } else {
                Failure::Died {
                    pid,
                    host: w.host.clone(),
                    own_pid: w.own_pid,
                    status,
                    cause: w.lost.clone(),
                }
            };
            self.fail_chunk(head, why);
        }
        // Never started: back to the front of the queue, in order.
        let rest: Vec<u64> = inflight.map(|(c, _)| c).collect();
        for cid in rest.into_iter().rev() {
            self.queue.push_front(cid);
        }
        let wanted = !self.terminated
            && self.broken.is_none()
            && !(self.closed && self.queue.is_empty())
            && self.workers.len() < self.limits.workers;
        let replace = wanted && self.replaces;
        if wanted && !self.replaces && self.workers.is_empty() {
            let host = w
                .host
                .as_deref()
                .map(|h| format!(" on host {h}"))
                .unwrap_or_default();
            self.broken = Some(Broken::new(format!(
                "every worker is gone and none can be started in its place (the pool's \
                 workers were the job's other ranks); the last, {pid}{host}, {}",
                match status {
                    Some(s) => format!("ended with {s}"),
                    None => "ended its connection".to_string(),
                }
            )));
        }
        if replace {
            match self.start_worker(io) {
                Ok(()) => {
                    self.counts.workers_replaced += 1;
                    let new = self.workers.last_mut().map_or(0, |w| {
                        w.in_place_of = Some(pid);
                        w.pid
                    });
                    log::info!("multiproc pool: worker {pid} replaced by worker {new}");
                }
                Err(e) => {
                    log::warn!("multiproc pool: cannot replace worker {pid}: {e}");
                    self.broken.get_or_insert(Broken {
                        why: format!("cannot replace worker {pid}: {e}"),
                        cause: Some(Arc::new(e)),
                    });
                }
            }
        }
        // Terminated, or broken just now or before: nothing queued will
        // run (and `enqueue` refuses new work), so it fails now rather
        // than wait for a worker that will never come.
        let why = if self.terminated {
            Some(Failure::Terminated)
        } else {
            self.broken.clone().map(Failure::Broken)
        };
        if let Some(why) = why {
            let queued: Vec<u64> = self.queue.drain(..).collect();
            for cid in queued {
                self.fail_chunk(cid, why.clone());
            }
        }
        self.dispatch(io);
    }

    /// Queues a chunk of `n` tasks of `entry` (the tasks `first..first + n`
    /// of `job`), or says why it can't run.
    #[cfg(test)]
    pub(super) fn enqueue(
        &mut self,
        job: u64,
        entry: &'static str,
        first: u64,
        tasks: (u32, Vec<u8>),
    ) -> std::result::Result<u64, Failure> {
        self.enqueue_to(job, entry, first, tasks, TaskHandles::default(), None, None)
    }

    /// Queues a chunk of tasks of `entry` (the tasks `first..first + n`
    /// of `job`) with the handles they carry, or says why it can't run.
    pub(super) fn enqueue_with(
        &mut self,
        job: u64,
        entry: &'static str,
        first: u64,
        tasks: (u32, Vec<u8>),
        handles: TaskHandles,
    ) -> std::result::Result<(), Failure> {
        self.enqueue_to(job, entry, first, tasks, handles, None, None)
            .map(drop)
    }

    /// Queues a `submit`'s one task, whose result goes to `slot`, with a
    /// time limit of its own (in place of the pool's) if `timeout` says
    /// so; its job id (the job has no [`JobRec`]: nothing to look up when
    /// the result arrives) and its chunk's id.
    pub(super) fn enqueue_slot(
        &mut self,
        entry: &'static str,
        task: Vec<u8>,
        handles: TaskHandles,
        slot: Arc<Slot>,
        timeout: Option<Duration>,
    ) -> std::result::Result<(u64, u64), Failure> {
        let job = self.next_id();
        let cid = self.enqueue_to(job, entry, 0, (1, task), handles, Some(slot), timeout)?;
        Ok((job, cid))
    }

    /// Queues a chunk (see [`enqueue_with`](Self::enqueue_with),
    /// [`enqueue_slot`](Self::enqueue_slot)); its id.
    #[allow(clippy::too_many_arguments)]
    fn enqueue_to(
        &mut self,
        job: u64,
        entry: &'static str,
        first: u64,
        (n, tasks): (u32, Vec<u8>),
        handles: TaskHandles,
        slot: Option<Arc<Slot>>,
        timeout: Option<Duration>,
    ) -> std::result::Result<u64, Failure> {
        if let Some(why) = &self.broken {
            return Err(Failure::Broken(why.clone()));
        }
        if self.closed {
            return Err(if self.terminated {
                Failure::Terminated
            } else {
                Failure::Closed
            });
        }
        let cid = self.next_id();
        self.chunks.insert(
            cid,
            ChunkRec {
                job,
                first,
                entry,
                n,
                tasks,
                handles,
                slot,
                timeout,
            },
        );
        self.timed |= timeout.is_some();
        self.queue.push_back(cid);
        Ok(cid)
    }

    /// After the queued work: asks every worker to exit.
    pub(super) fn shutdown_all(&mut self, io: &mut impl Workers) {
        for w in self.workers.iter_mut() {
            if w.open {
                w.open = false;
                io.send(w.id, shutdown_frame());
                io.close(w.id);
            }
        }
    }

    /// Kills every worker; the queued tasks fail now, the ones in flight
    /// as their workers' ends are reported.
    pub(super) fn terminate(&mut self, io: &mut impl Workers) {
        self.terminated = true;
        self.closed = true;
        for w in self.workers.iter_mut() {
            if w.open {
                w.open = false;
                io.close(w.id);
            }
            io.kill(w.id);
        }
        let queued: Vec<u64> = self.queue.drain(..).collect();
        for cid in queued {
            self.fail_chunk(cid, Failure::Terminated);
        }
    }
}

fn shutdown_frame() -> Vec<u8> {
    postcard::to_allocvec(&ToWorker::Shutdown).unwrap_or_default()
}

#[cfg(test)]
mod tests;
