//! The scheduler against a mock of its [`Workers`]: no processes, no
//! threads, and a clock the test moves.
//!
//! This file: the mock and the helpers every scheduler test uses, and the
//! tests of the scheduler's core (`scheduler/mod.rs`: jobs, results,
//! slots and wakers, cancelling a job, terminating); `dispatch.rs` and
//! `lifecycle.rs` test the files of those names.

use std::time::{Duration, Instant};

use super::*;
use crate::error::Error;
use crate::pool::protocol::{put_frame, FromWorker};
use crate::pool::{MAX_FAILED_STARTS, MAX_FRAME_CHUNKS};

mod dispatch;
mod lifecycle;

/// Records what the scheduler asked for; its clock moves only when a
/// test moves it.
pub(super) struct Mock {
    pub(super) now: Instant,
    pub(super) spawned: Vec<WorkerId>,
    /// Every frame written, decoded.
    pub(super) sent: Vec<(WorkerId, ToWorker)>,
    pub(super) closed: Vec<WorkerId>,
    pub(super) killed: Vec<WorkerId>,
    /// `spawn` fails.
    pub(super) spawn_fails: bool,
    /// How many times the timer was woken.
    pub(super) timer_wakes: usize,
}

impl Mock {
    pub(super) fn new() -> Self {
        Mock {
            now: Instant::now(),
            spawned: Vec::new(),
            sent: Vec::new(),
            closed: Vec::new(),
            killed: Vec::new(),
            spawn_fails: false,
            timer_wakes: 0,
        }
    }

    pub(super) fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    /// The work frames written since the last call: (worker, frame id,
    /// chunk ids).
    pub(super) fn take_work(&mut self) -> Vec<(WorkerId, u64, Vec<u64>)> {
        self.sent
            .drain(..)
            .filter_map(|(w, msg)| match msg {
                ToWorker::Work { frame, chunks, .. } => {
                    Some((w, frame, chunks.iter().map(|c| c.id).collect()))
                }
                ToWorker::Shutdown | ToWorker::Heartbeat => None,
            })
            .collect()
    }

    pub(super) fn shutdowns(&self) -> Vec<WorkerId> {
        self.sent
            .iter()
            .filter(|(_, m)| matches!(m, ToWorker::Shutdown))
            .map(|&(w, _)| w)
            .collect()
    }
}

impl Workers for Mock {
    fn spawn(&mut self, id: WorkerId) -> Result<u32> {
        if self.spawn_fails {
            return Err(Error::io(
                "cannot start",
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ));
        }
        self.spawned.push(id);
        Ok(1000 + id as u32)
    }

    fn send(&mut self, id: WorkerId, frame: Vec<u8>) {
        let msg = postcard::from_bytes::<ToWorker>(&frame).expect("a pool message");
        self.sent.push((id, msg));
    }

    fn close(&mut self, id: WorkerId) {
        self.closed.push(id);
    }

    fn kill(&mut self, id: WorkerId) {
        self.killed.push(id);
    }

    fn now(&self) -> Instant {
        self.now
    }

    fn wake_timer(&mut self) {
        self.timer_wakes += 1;
    }
}

pub(super) fn limits(workers: usize) -> Limits {
    Limits {
        workers,
        max_tasks_per_child: None,
        task_timeout: None,
        max_memory_per_child: None,
    }
}

/// A scheduler with `n` workers that said they are ready, and one job.
pub(super) fn ready(limits: Limits, io: &mut Mock) -> (Scheduler, Vec<WorkerId>, u64) {
    let mut s = Scheduler::new(limits);
    for _ in 0..limits.workers {
        s.start_worker(io).unwrap();
    }
    let ids = io.spawned.clone();
    assert!(s.starting());
    for &w in &ids {
        s.on_message(io, w, FromWorker::Ready);
    }
    assert!(!s.starting());
    let job = s.new_job();
    (s, ids, job)
}

/// Queues chunks of `n` tasks each, numbered on from the job's last one.
pub(super) fn queue(s: &mut Scheduler, job: u64, chunks: &[u32]) {
    let mut first = 0;
    for &n in chunks {
        let mut tasks = Vec::new();
        for _ in 0..n {
            put_frame(&mut tasks, &[0]);
        }
        s.enqueue(job, "e", first, (n, tasks)).unwrap();
        first += u64::from(n);
    }
}

pub(super) fn done(id: u64, n: u32) -> FromWorker {
    let mut values = Vec::new();
    for _ in 0..n {
        put_frame(&mut values, &[0]);
    }
    FromWorker::Done {
        id,
        values,
        fails: Vec::new(),
        handles: Vec::new(),
    }
}

/// The job's results so far: (first task, tasks, why all failed).
pub(super) fn results(s: &mut Scheduler, job: u64) -> Vec<(u64, u32, Option<Failure>)> {
    s.take_results(job)
        .into_iter()
        .map(|r| (r.first, r.n, r.all))
        .collect()
}

#[test]
fn terminate_kills_every_worker_and_fails_queued_and_running_chunks() {
    let mut io = Mock::new();
    let (mut s, w, job) = ready(limits(2), &mut io);
    queue(&mut s, job, &[1, 1, 1, 1, 1]);
    s.dispatch(&mut io);
    let (_, frame, _) = io.take_work()[0].clone();
    s.on_message(&mut io, w[0], FromWorker::Started(frame));
    let queued = s.queue.len();
    assert!(queued > 0);
    s.terminate(&mut io);
    assert_eq!(io.killed, w);
    assert_eq!(io.closed, w);
    let r = results(&mut s, job);
    assert_eq!(r.len(), queued, "the queued chunks fail now");
    // Then the ones in flight, as the workers' ends come in: the running
    // one, and the ones never started (requeued, and nothing queued runs
    // any more). Nothing is replaced.
    s.on_exit(&mut io, w[0], None, None);
    s.on_exit(&mut io, w[1], None, None);
    let rest = results(&mut s, job);
    assert_eq!(r.len() + rest.len(), 5);
    assert!(r
        .iter()
        .chain(&rest)
        .all(|(_, _, why)| matches!(why, Some(Failure::Terminated))));
    assert_eq!(io.spawned.len(), 2);
    assert_eq!(s.worker_count(), 0);
    assert!(s.queue.is_empty());
}

#[test]
fn a_cancelled_job_leaves_the_queue_and_its_late_results_are_dropped() {
    let mut io = Mock::new();
    let (mut s, w, job) = ready(limits(1), &mut io);
    let other = s.new_job();
    queue(&mut s, job, &[1, 1, 1]);
    queue(&mut s, other, &[1]);
    s.dispatch(&mut io);
    let (_, frame, chunks) = io.take_work()[0].clone();
    s.cancel_job(job);
    assert_eq!(s.queued(), 1, "only the other job's chunk is left");
    // The chunk in flight finishes; its result goes nowhere, and the
    // other job's chunk is sent.
    s.on_message(&mut io, w[0], FromWorker::Started(frame));
    io.advance(Duration::from_secs(1));
    s.on_message(&mut io, w[0], done(chunks[0], 1));
    assert!(s.take_results(job).is_empty());
    let sent = io.take_work();
    assert_eq!(sent.len(), 1);
    s.on_message(&mut io, w[0], done(sent[0].2[0], 1));
    assert_eq!(s.take_results(other).len(), 1);
    assert!(s.idle());
}

/// A waker that counts its wakes.
struct CountWakes(std::sync::atomic::AtomicUsize);

impl std::task::Wake for CountWakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn counting_waker() -> (Arc<CountWakes>, Waker) {
    let count = Arc::new(CountWakes(Default::default()));
    (Arc::clone(&count), Waker::from(count))
}

fn one_task() -> Vec<u8> {
    let mut task = Vec::new();
    put_frame(&mut task, &[0]);
    task
}

#[test]
fn a_submitted_tasks_result_goes_to_its_slot_and_its_waker_is_handed_back_once() {
    let mut io = Mock::new();
    let (mut s, w, _) = ready(limits(1), &mut io);
    let jobs = s.jobs.len();
    let slot = Arc::new(Slot::default());
    let (job, _) = s
        .enqueue_slot(
            "e",
            one_task(),
            TaskHandles::default(),
            Arc::clone(&slot),
            None,
        )
        .unwrap();
    assert!(job > 0);
    s.dispatch(&mut io);
    let (_, frame, chunks) = io.take_work()[0].clone();
    let (count, waker) = counting_waker();
    assert!(slot.take_or_register(&waker).is_none());
    s.on_message(&mut io, w[0], FromWorker::Started(frame));
    assert!(s.take_wakers().is_empty(), "nothing arrived yet");
    s.on_message(&mut io, w[0], done(chunks[0], 1));
    // The scheduler hands the waker back (to be woken outside its lock) ...
    let woken = s.take_wakers();
    assert_eq!(woken.len(), 1);
    woken.into_iter().for_each(Waker::wake);
    assert_eq!(count.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    // ... the result is in the slot, and no job record was left behind.
    let r = slot.take_or_register(&waker).expect("the result");
    assert_eq!((r.first, r.n), (0, 1));
    assert_eq!(s.jobs.len(), jobs);
    assert!(s.take_wakers().is_empty());
}

#[test]
fn a_submitted_task_that_fails_wakes_its_slot_too() {
    let mut io = Mock::new();
    let (mut s, w, _) = ready(limits(1), &mut io);
    let slot = Arc::new(Slot::default());
    s.enqueue_slot(
        "e",
        one_task(),
        TaskHandles::default(),
        Arc::clone(&slot),
        None,
    )
    .unwrap();
    s.dispatch(&mut io);
    let (_, frame, _) = io.take_work()[0].clone();
    let (_, waker) = counting_waker();
    assert!(slot.take_or_register(&waker).is_none());
    s.on_message(&mut io, w[0], FromWorker::Started(frame));
    s.on_exit(&mut io, w[0], None, None);
    assert_eq!(s.take_wakers().len(), 1);
    let r = slot.take_or_register(&waker).expect("the failure");
    assert!(matches!(r.all, Some(Failure::Died { .. })));
}

#[test]
fn a_jobs_waker_is_handed_back_when_its_next_result_arrives() {
    let mut io = Mock::new();
    let (mut s, w, job) = ready(limits(1), &mut io);
    queue(&mut s, job, &[1, 1]);
    s.dispatch(&mut io);
    let (_, frame, chunks) = io.take_work()[0].clone();
    let (_, waker) = counting_waker();
    assert!(s.set_waker(job, &waker));
    assert!(!s.set_waker(job + 1000, &waker), "no such job");
    s.on_message(&mut io, w[0], FromWorker::Started(frame));
    s.on_message(&mut io, w[0], done(chunks[0], 1));
    assert_eq!(s.take_wakers().len(), 1);
    // One wake per registration: the next result wakes nobody.
    let second: Vec<u64> = io.take_work().into_iter().flat_map(|(.., c)| c).collect();
    s.on_message(&mut io, w[0], done(second[0], 1));
    assert!(s.take_wakers().is_empty());
    assert_eq!(results(&mut s, job).len(), 2);
}
