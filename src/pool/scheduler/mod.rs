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
//! is in `control.rs`; dispatch, chunk pacing and what workers answer in
//! `dispatch.rs`; a worker's start and end (launched, lost, died, retired,
//! replaced or not) in `lifecycle.rs`. This file: the state, the jobs and
//! their results, the queue, closing and terminating.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use super::protocol::{TaskHandles, ToWorker};
use super::results::{Broken, ChunkResults, Failure, Slot};
use crate::codec::handles::Carried;
use crate::error::{Error, Result};

mod control;
pub(super) use control::Counts;
use control::KilledFor;
mod dispatch;
mod lifecycle;

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
    /// Checked by the workers themselves, which say
    /// [`FromWorker::Recycle`](crate::pool::protocol::FromWorker::Recycle).
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
