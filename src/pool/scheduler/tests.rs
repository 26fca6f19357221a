//! The scheduler against a mock of its [`Workers`]: no processes, no
//! threads, and a clock the test moves.

use std::time::{Duration, Instant};

use super::*;
use crate::error::Error;
use crate::pool::protocol::{put_frame, FromWorker};
use crate::pool::{MAX_FAILED_STARTS, MAX_FRAME_CHUNKS};

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
fn dispatch_fills_ready_workers_round_robin_up_to_their_window() {
    let mut io = Mock::new();
    let (mut s, w, job) = ready(limits(2), &mut io);
    queue(&mut s, job, &[1; 5]);
    // Nothing measured yet: one chunk a frame, two in flight per worker.
    s.dispatch(&mut io);
    let first = io.take_work();
    assert_eq!(first.len(), 2);
    assert_eq!((first[0].0, first[1].0), (w[0], w[1]));
    s.dispatch(&mut io);
    let second = io.take_work();
    assert_eq!(second.len(), 2);
    assert!(second.iter().all(|(_, _, c)| c.len() == 1));
    // Both windows full: the fifth chunk waits.
    s.dispatch(&mut io);
    assert!(io.take_work().is_empty());
    assert_eq!(s.queue.len(), 1);
    // A chunk done makes room on that worker. (Slow tasks, so the pacing
    // stays at one chunk a frame.)
    let (wid, frame, chunks) = &first[1];
    s.on_message(&mut io, *wid, FromWorker::Started(*frame));
    io.advance(Duration::from_secs(1));
    s.on_message(&mut io, *wid, done(chunks[0], 1));
    let third = io.take_work();
    assert_eq!(third.len(), 1);
    assert_eq!(third[0].0, *wid);
    assert!(s.queue.is_empty());
}

#[test]
fn a_worker_that_is_not_ready_gets_nothing() {
    let mut io = Mock::new();
    let mut s = Scheduler::new(limits(1));
    s.start_worker(&mut io).unwrap();
    let job = s.new_job();
    queue(&mut s, job, &[1]);
    s.dispatch(&mut io);
    assert!(io.take_work().is_empty());
    let w = io.spawned[0];
    s.on_message(&mut io, w, FromWorker::Ready);
    assert_eq!(io.take_work().len(), 1);
}

#[test]
fn a_dead_worker_fails_only_its_running_chunk_and_the_rest_is_requeued() {
    let mut io = Mock::new();
    let (mut s, w, job) = ready(limits(2), &mut io);
    queue(&mut s, job, &[1, 1, 1, 1]);
    s.dispatch(&mut io);
    s.dispatch(&mut io);
    let sent = io.take_work();
    let on_w0: Vec<_> = sent.iter().filter(|(x, ..)| *x == w[0]).collect();
    assert_eq!(on_w0.len(), 2);
    let (running, queued_behind) = (on_w0[0], on_w0[1]);
    // w0 started its first frame only, then died.
    s.on_message(&mut io, w[0], FromWorker::Started(running.1));
    s.on_exit(&mut io, w[0], None, None);
    let r = results(&mut s, job);
    assert_eq!(r.len(), 1);
    assert!(
        matches!(r[0].2, Some(Failure::Died { pid, status: None, .. }) if pid == 1000 + w[0] as u32),
        "{:?}",
        r[0].2
    );
    // The chunk it had not started goes back to the front of the queue,
    // and a replacement starts (it gets the chunk once it is ready; w1's
    // window is full).
    assert_eq!(s.queue.front(), Some(&queued_behind.2[0]));
    assert_eq!(io.spawned.len(), 3);
    let replacement = io.spawned[2];
    assert!(io.take_work().is_empty());
    s.on_message(&mut io, replacement, FromWorker::Ready);
    let resent = io.take_work();
    assert_eq!(resent.len(), 1);
    assert_eq!(resent[0].0, replacement);
    assert_eq!(resent[0].2, queued_behind.2);
}

#[test]
fn a_worker_that_dies_before_starting_its_frame_fails_nothing() {
    let mut io = Mock::new();
    let (mut s, w, job) = ready(limits(1), &mut io);
    queue(&mut s, job, &[1, 1]);
    s.dispatch(&mut io);
    s.dispatch(&mut io);
    assert_eq!(io.take_work().len(), 2);
    s.on_exit(&mut io, w[0], None, None);
    assert!(results(&mut s, job).is_empty());
    assert_eq!(s.queue.len(), 2);
}

#[test]
fn a_protocol_violation_is_named_on_the_running_chunk() {
    let mut io = Mock::new();
    let (mut s, w, job) = ready(limits(1), &mut io);
    queue(&mut s, job, &[1]);
    s.dispatch(&mut io);
    let (_, frame, _) = io.take_work()[0].clone();
    s.on_message(&mut io, w[0], FromWorker::Started(frame));
    s.on_exit(&mut io, w[0], None, Some("garbage".into()));
    let r = results(&mut s, job);
    assert!(
        matches!(&r[0].2, Some(Failure::Protocol { why, .. }) if why == "garbage"),
        "{:?}",
        r[0].2
    );
}

#[test]
fn a_chunk_past_its_timeout_gets_its_worker_killed_once_and_fails_as_a_timeout() {
    let mut io = Mock::new();
    let timeout = Duration::from_secs(1);
    let lim = Limits {
        task_timeout: Some(timeout),
        ..limits(1)
    };
    let (mut s, w, job) = ready(lim, &mut io);
    // Three tasks in one chunk: the limit is three timeouts.
    queue(&mut s, job, &[3]);
    s.dispatch(&mut io);
    let (_, frame, _) = io.take_work()[0].clone();
    io.advance(Duration::from_secs(10)); // before it started: not counted
    s.on_message(&mut io, w[0], FromWorker::Started(frame));
    let started = io.now;
    assert_eq!(s.enforce_timeouts(&mut io), Some(started + 3 * timeout));
    io.advance(3 * timeout - Duration::from_millis(1));
    assert_eq!(s.enforce_timeouts(&mut io), Some(started + 3 * timeout));
    assert!(io.killed.is_empty());
    io.advance(Duration::from_millis(1));
    assert_eq!(s.enforce_timeouts(&mut io), None);
    assert_eq!(io.killed, [w[0]]);
    // Not killed again while its end is on the way.
    s.enforce_timeouts(&mut io);
    assert_eq!(io.killed, [w[0]]);
    s.on_exit(&mut io, w[0], None, None);
    let r = results(&mut s, job);
    assert!(
        matches!(r[0].2, Some(Failure::Timeout { timeout: t, .. }) if t == timeout),
        "{:?}",
        r[0].2
    );
}

#[test]
fn no_timeout_means_no_deadline() {
    let mut io = Mock::new();
    let (mut s, _, job) = ready(limits(1), &mut io);
    queue(&mut s, job, &[1]);
    s.dispatch(&mut io);
    io.advance(Duration::from_secs(1 << 40));
    assert_eq!(s.enforce_timeouts(&mut io), None);
    let huge = Limits {
        task_timeout: Some(Duration::MAX),
        ..limits(1)
    };
    let (mut s, _, job) = ready(huge, &mut io);
    queue(&mut s, job, &[2]);
    s.dispatch(&mut io);
    assert_eq!(s.enforce_timeouts(&mut io), None);
    assert!(io.killed.is_empty());
}

#[test]
fn measured_fast_tasks_pack_many_chunks_into_one_frame() {
    let mut io = Mock::new();
    let (mut s, w, job) = ready(limits(1), &mut io);
    assert_eq!(s.pacing("e"), (1, 2));
    queue(&mut s, job, &[1]);
    s.dispatch(&mut io);
    let (_, frame, chunks) = io.take_work()[0].clone();
    s.on_message(&mut io, w[0], FromWorker::Started(frame));
    // One task took 2 µs: a frame of FRAME_TARGET holds 1000 such
    // chunks, capped at MAX_FRAME_CHUNKS.
    io.advance(Duration::from_micros(2));
    s.on_message(&mut io, w[0], done(chunks[0], 1));
    assert_eq!(s.pacing("e"), (MAX_FRAME_CHUNKS, 2 * MAX_FRAME_CHUNKS));
    queue(&mut s, job, &[1; 3 * MAX_FRAME_CHUNKS]);
    s.dispatch(&mut io);
    let frames = io.take_work();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].2.len(), MAX_FRAME_CHUNKS);
    // Busy, with room for a whole frame: it gets one.
    s.dispatch(&mut io);
    assert_eq!(io.take_work()[0].2.len(), MAX_FRAME_CHUNKS);
    s.dispatch(&mut io);
    assert!(io.take_work().is_empty(), "the window is full");
    // One chunk done: room for one, less than a frame, and more than one
    // queued: not topped up chunk by chunk.
    s.on_message(&mut io, w[0], done(frames[0].2[0], 1));
    assert!(io.take_work().is_empty());
    assert_eq!(s.queue.len(), MAX_FRAME_CHUNKS);
}

#[test]
fn slow_tasks_go_one_chunk_per_frame() {
    let mut io = Mock::new();
    let (mut s, w, job) = ready(limits(1), &mut io);
    queue(&mut s, job, &[1]);
    s.dispatch(&mut io);
    let (_, frame, chunks) = io.take_work()[0].clone();
    s.on_message(&mut io, w[0], FromWorker::Started(frame));
    io.advance(Duration::from_secs(1));
    s.on_message(&mut io, w[0], done(chunks[0], 1));
    assert_eq!(s.pacing("e"), (1, 2));
}

#[test]
fn a_worker_at_max_tasks_per_child_is_asked_to_exit_once_its_chunks_are_done() {
    let mut io = Mock::new();
    let lim = Limits {
        max_tasks_per_child: Some(2),
        ..limits(1)
    };
    let (mut s, w, job) = ready(lim, &mut io);
    queue(&mut s, job, &[1, 1, 1]);
    s.dispatch(&mut io);
    s.dispatch(&mut io);
    let sent = io.take_work();
    assert_eq!(sent.len(), 2);
    // Retiring: no third chunk, no shutdown while chunks are in flight.
    s.dispatch(&mut io);
    assert!(io.take_work().is_empty());
    s.on_message(&mut io, w[0], done(sent[0].2[0], 1));
    assert!(io.shutdowns().is_empty());
    s.on_message(&mut io, w[0], done(sent[1].2[0], 1));
    assert_eq!(io.shutdowns(), [w[0]]);
    assert_eq!(io.closed, [w[0]]);
    // It exits; its replacement takes the third chunk.
    s.on_exit(&mut io, w[0], None, None);
    let replacement = io.spawned[1];
    s.on_message(&mut io, replacement, FromWorker::Ready);
    let work = io.take_work();
    assert_eq!(work.len(), 1);
    assert_eq!(work[0].0, replacement);
}

#[test]
fn a_worker_that_cannot_be_replaced_breaks_the_pool_and_fails_the_queue() {
    let mut io = Mock::new();
    let (mut s, w, job) = ready(limits(1), &mut io);
    queue(&mut s, job, &[1, 1, 1]);
    s.dispatch(&mut io);
    io.take_work();
    io.spawn_fails = true;
    s.on_exit(&mut io, w[0], None, None);
    let broken = s.broken.as_ref().expect("broken");
    assert!(broken.why.contains("cannot replace"), "{}", broken.why);
    // The spawn error is kept whole, down to its OS error.
    let cause = broken.cause.as_ref().expect("the spawn error is kept");
    assert_eq!(
        cause.io_error().map(std::io::Error::kind),
        Some(std::io::ErrorKind::NotFound)
    );
    let r = results(&mut s, job);
    // The chunk it was sent (never started) went back to the queue; all
    // three fail.
    assert_eq!(r.len(), 3);
    assert_eq!(s.queue.len(), 0);
    assert!(r
        .iter()
        .all(|(_, _, why)| matches!(why, Some(Failure::Broken(_)))));
    assert!(matches!(
        s.enqueue(job, "e", 9, (1, Vec::new())),
        Err(Failure::Broken(_))
    ));
}

#[test]
fn without_replacements_a_dead_worker_fails_its_task_and_the_last_one_breaks_the_pool() {
    let mut io = Mock::new();
    let mut s = Scheduler::new(limits(2)).without_replacements();
    s.start_worker(&mut io).unwrap();
    s.start_worker(&mut io).unwrap();
    let w = io.spawned.clone();
    for &id in &w {
        s.on_message(&mut io, id, FromWorker::Ready);
    }
    let job = s.new_job();
    queue(&mut s, job, &[1, 1, 1, 1]);
    s.dispatch(&mut io);
    let work = io.take_work();
    let (_, frame, _) = work.iter().find(|(id, ..)| *id == w[0]).unwrap().clone();
    s.on_message(&mut io, w[0], FromWorker::Started(frame));
    io.take_work();
    // The first dies running its chunk: that chunk fails, nothing is
    // started in its place, and the rest goes to the survivor.
    s.on_exit(&mut io, w[0], None, None);
    assert_eq!(io.spawned, w, "no replacement");
    assert!(s.broken.is_none());
    let r = results(&mut s, job);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].1, 1);
    assert!(matches!(r[0].2, Some(Failure::Died { pid, .. }) if pid == 1000 + w[0] as u32));
    let again = io.take_work();
    assert!(
        again.iter().all(|(id, ..)| *id == w[1]),
        "{again:?} vs {w:?}"
    );
    // The last one dies too: the pool is broken, and what is left fails.
    s.on_exit(&mut io, w[1], None, None);
    assert_eq!(io.spawned, w);
    let broken = s.broken.as_ref().expect("broken").why.clone();
    assert!(broken.contains("every worker is gone"), "{broken}");
    let r = results(&mut s, job);
    assert_eq!(r.len(), 3, "{r:?}");
    assert!(r
        .iter()
        .all(|(_, _, why)| matches!(why, Some(Failure::Died { .. } | Failure::Broken(_)))));
    assert!(matches!(
        s.enqueue(job, "e", 9, (1, Vec::new())),
        Err(Failure::Broken(_))
    ));
}

#[test]
fn without_replacements_workers_leaving_a_closed_idle_pool_do_not_break_it() {
    let mut io = Mock::new();
    let mut s = Scheduler::new(limits(1)).without_replacements();
    s.start_worker(&mut io).unwrap();
    let w = io.spawned[0];
    s.on_message(&mut io, w, FromWorker::Ready);
    s.close();
    s.shutdown_all(&mut io);
    s.on_exit(&mut io, w, None, None);
    assert!(s.broken.is_none());
    assert_eq!(s.worker_count(), 0);
}

#[test]
fn workers_that_keep_dying_before_ready_break_the_pool() {
    let mut io = Mock::new();
    let mut s = Scheduler::new(limits(1));
    s.start_worker(&mut io).unwrap();
    for i in 0..MAX_FAILED_STARTS {
        assert!(s.broken.is_none(), "broken after {i} failed starts");
        let w = *io.spawned.last().unwrap();
        s.on_exit(&mut io, w, None, None);
    }
    assert!(s.broken.is_some());
    assert_eq!(io.spawned.len(), MAX_FAILED_STARTS as usize);
    assert!(!s.starting());
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

#[test]
fn a_submit_is_sent_at_once_only_while_a_worker_has_fewer_than_two_chunks_in_flight() {
    let mut io = Mock::new();
    let (mut s, _, job) = ready(limits(1), &mut io);
    assert!(s.wants_dispatch());
    queue(&mut s, job, &[1]);
    s.dispatch(&mut io);
    assert!(s.wants_dispatch(), "one chunk in flight");
    queue(&mut s, job, &[1]);
    s.dispatch(&mut io);
    assert!(
        !s.wants_dispatch(),
        "two in flight: the next waits for a reply"
    );
}

#[test]
fn a_frame_whose_handles_could_not_be_sent_fails_its_chunks_once_and_the_worker_goes_on() {
    let mut io = Mock::new();
    let (mut s, w, job) = ready(limits(1), &mut io);
    queue(&mut s, job, &[1, 1, 1]);
    s.dispatch(&mut io);
    let sent = io.take_work();
    assert_eq!(sent.len(), 1);
    let (wid, _frame, chunks) = sent[0].clone();
    let why = Error::io(
        "cannot send",
        std::io::Error::other("too many fds in flight"),
    );
    s.on_send_failed(&mut io, wid, chunks.clone(), why);
    // The chunk failed, as an input that could not be sent, and is not
    // sent again (to this worker or another).
    let r = results(&mut s, job);
    assert_eq!(r.len(), 1);
    assert!(matches!(r[0].2, Some(Failure::Encode { .. })));
    assert!(!s.chunks.contains_key(&chunks[0]));
    assert!(io.killed.is_empty());
    // The worker is not killed and gets the next chunks; the failed one
    // is no longer counted in flight there.
    let next: Vec<u64> = io.take_work().into_iter().flat_map(|x| x.2).collect();
    assert!(!next.is_empty() && !next.contains(&chunks[0]), "{next:?}");
    assert_eq!(s.workers[0].id, w[0]);
    assert!(!s.workers[0].inflight.iter().any(|&(c, _)| c == chunks[0]));
}

#[test]
fn result_handles_that_miscount_fail_only_the_tasks_that_have_some() {
    use crate::codec::handles::Carried;
    let mut io = Mock::new();
    let (mut s, w, job) = ready(limits(1), &mut io);
    queue(&mut s, job, &[2]);
    s.dispatch(&mut io);
    let (wid, frame, chunks) = io.take_work().remove(0);
    assert_eq!(wid, w[0]);
    s.on_message(&mut io, wid, FromWorker::Started(frame));
    let FromWorker::Done {
        id, values, fails, ..
    } = done(chunks[0], 2)
    else {
        unreachable!()
    };
    // The second task's result says it carries one handle; none came.
    let msg = FromWorker::Done {
        id,
        values,
        fails,
        handles: vec![0, 1],
    };
    s.on_message_with(&mut io, wid, msg, Ok(Carried::default()));
    let mut r = s.take_results(job).remove(0);
    assert_eq!(r.next_result::<u8>().unwrap().unwrap(), 0);
    let e = r.next_result::<u8>().unwrap().unwrap_err();
    assert!(e.is_decode(), "{e}");
    assert!(
        e.to_string()
            .contains("names 1 handles for 2 of 2 tasks, and 0 came"),
        "{e}"
    );
}

fn launch_error() -> Error {
    Error::io(
        "the launch failed",
        std::io::Error::from(std::io::ErrorKind::TimedOut),
    )
}

#[test]
fn a_failed_launch_of_a_first_worker_is_the_start_error_and_breaks_the_pool() {
    let mut io = Mock::new();
    let mut s = Scheduler::new(limits(2));
    s.start_worker(&mut io).unwrap();
    s.start_worker(&mut io).unwrap();
    let ids = io.spawned.clone();
    s.on_message(&mut io, ids[0], FromWorker::Ready);
    assert!(s.starting(), "the second launch is pending");
    s.on_launch_failed(&mut io, ids[1], launch_error());
    assert!(!s.starting());
    assert_eq!(s.worker_count(), 1);
    assert_eq!(s.counts().workers_started, 1);
    let e = s.take_start_error().expect("the launch's own error");
    assert_eq!(
        e.io_error().map(std::io::Error::kind),
        Some(std::io::ErrorKind::TimedOut)
    );
    let broken = s.broken().expect("broken");
    assert!(
        broken.why.starts_with("cannot start a worker: "),
        "{}",
        broken.why
    );
}

#[test]
fn a_failed_replacement_launch_breaks_the_pool_and_fails_the_queue() {
    let mut io = Mock::new();
    let (mut s, w, job) = ready(limits(2), &mut io);
    s.on_exit(&mut io, w[0], None, None);
    let new = *io.spawned.last().unwrap();
    assert!(s.starting(), "the replacement's launch is pending");
    assert_eq!(s.counts().workers_replaced, 1);
    // Work queued meanwhile goes to the ready worker only.
    queue(&mut s, job, &[1, 1, 1, 1]);
    s.dispatch(&mut io);
    let sent = io.take_work();
    assert!(!sent.is_empty());
    assert!(sent.iter().all(|(wid, _, _)| *wid == w[1]));
    let queued = s.queue.len();
    assert!(queued > 0);
    s.on_launch_failed(&mut io, new, launch_error());
    let broken = s.broken().expect("broken");
    assert!(
        broken
            .why
            .starts_with(&format!("cannot replace worker {}: ", 1000 + w[0])),
        "{}",
        broken.why
    );
    assert!(broken.cause.is_some());
    assert!(s.take_start_error().is_none());
    assert_eq!(s.counts().workers_replaced, 0);
    // The chunks still queued fail; those in flight on the survivor stay.
    let r = results(&mut s, job);
    assert_eq!(r.len(), queued);
    assert_eq!(s.queue.len(), 0);
    assert!(r
        .iter()
        .all(|(_, _, why)| matches!(why, Some(Failure::Broken(_)))));
    assert_eq!(s.worker_count(), 1);
}

#[test]
fn a_launch_killed_by_terminate_does_not_break_the_pool() {
    let mut io = Mock::new();
    let mut s = Scheduler::new(limits(1));
    s.start_worker(&mut io).unwrap();
    let id = io.spawned[0];
    s.terminate(&mut io);
    assert_eq!(io.killed, vec![id]);
    s.on_launch_failed(&mut io, id, launch_error());
    assert!(s.broken().is_none());
    assert!(s.take_start_error().is_none());
    assert_eq!(s.worker_count(), 0);
}
