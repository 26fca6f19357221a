//! The scheduler's per-task control against the mock of its workers
//! (`scheduler/tests.rs`): cancelling, a chunk's own time limit, waking
//! the timer, recycling for memory, and the counts.

use std::time::Duration;

use super::super::tests::{done, limits, queue, ready, results, Mock};
use super::super::*;
use crate::pool::protocol::{put_frame, FromWorker, TaskFail};
use crate::status::ExitStatus;

/// Queues one chunk of one task with its own time limit; its id.
fn queue_timed(s: &mut Scheduler, job: u64, first: u64, timeout: Duration) -> u64 {
    let mut tasks = Vec::new();
    put_frame(&mut tasks, &[0]);
    s.enqueue_to(
        job,
        "e",
        first,
        (1, tasks),
        TaskHandles::default(),
        None,
        Some(timeout),
    )
    .unwrap()
}

/// The ids of the chunks queued, in order.
fn queued_ids(s: &Scheduler) -> Vec<u64> {
    s.queue.iter().copied().collect()
}

#[test]
fn a_queued_chunk_cancelled_leaves_the_queue_and_is_never_sent() {
    let mut io = Mock::new();
    let (mut s, _, job) = ready(limits(1), &mut io);
    queue(&mut s, job, &[1, 1, 1]);
    let ids = queued_ids(&s);
    s.dispatch(&mut io);
    s.dispatch(&mut io);
    assert_eq!(io.take_work().len(), 2, "the window holds two");
    assert_eq!(queued_ids(&s), [ids[2]]);
    assert!(s.cancel_chunk(&mut io, ids[2]));
    assert!(s.queue.is_empty());
    assert!(io.killed.is_empty(), "nothing running was cancelled");
    let r = results(&mut s, job);
    assert_eq!(r.len(), 1);
    assert!(
        matches!(r[0], (2, 1, Some(Failure::Cancelled))),
        "{:?}",
        r[0]
    );
    // Gone: a second cancel finds nothing.
    assert!(!s.cancel_chunk(&mut io, ids[2]));
    assert_eq!(s.counts().tasks_cancelled, 1);
}

#[test]
fn a_running_chunk_cancelled_kills_its_worker_and_the_chunks_behind_it_run_once_elsewhere() {
    let mut io = Mock::new();
    let (mut s, w, job) = ready(limits(1), &mut io);
    queue(&mut s, job, &[1, 1]);
    let ids = queued_ids(&s);
    s.dispatch(&mut io);
    s.dispatch(&mut io);
    let sent = io.take_work();
    assert_eq!(sent.len(), 2);
    // The worker runs the first chunk; the second waits behind it.
    s.on_message(&mut io, w[0], FromWorker::Started(sent[0].1));
    assert!(s.cancel_chunk(&mut io, ids[0]));
    assert_eq!(io.killed, [w[0]], "killed at once");
    // Not killed again as more comes in.
    s.cancel_chunk(&mut io, ids[0]);
    assert_eq!(io.killed, [w[0]]);
    // Its end: nothing more fails; the chunk it had not started goes
    // back to the queue, and a replacement starts.
    s.on_exit(&mut io, w[0], None, None);
    let r = results(&mut s, job);
    assert_eq!(r.len(), 1, "only the cancel: {r:?}");
    assert!(matches!(r[0], (0, 1, Some(Failure::Cancelled))));
    assert_eq!(queued_ids(&s), [ids[1]]);
    let replacement = io.spawned[1];
    s.on_message(&mut io, replacement, FromWorker::Ready);
    let resent = io.take_work();
    assert_eq!(resent.len(), 1);
    assert_eq!((resent[0].0, &resent[0].2), (replacement, &vec![ids[1]]));
    s.on_message(&mut io, replacement, FromWorker::Started(resent[0].1));
    s.on_message(&mut io, replacement, done(ids[1], 1));
    let r = results(&mut s, job);
    assert_eq!(r.len(), 1);
    assert!(matches!(r[0], (1, 1, None)));
    // Each chunk was sent to a running worker once and no more.
    assert!(s.idle());
    let c = s.counts();
    assert_eq!((c.tasks_done, c.tasks_cancelled, c.tasks_failed), (1, 1, 0));
    assert_eq!(
        (c.workers_started, c.workers_died, c.workers_replaced),
        (2, 1, 1)
    );
}

#[test]
fn a_cancelled_chunk_in_a_started_frame_behind_the_running_one_requeues_only_the_rest() {
    let mut io = Mock::new();
    let (mut s, w, job) = ready(limits(1), &mut io);
    // Fast tasks: many chunks to a frame.
    queue(&mut s, job, &[1]);
    s.dispatch(&mut io);
    let (_, frame, chunks) = io.take_work()[0].clone();
    s.on_message(&mut io, w[0], FromWorker::Started(frame));
    io.advance(Duration::from_micros(2));
    s.on_message(&mut io, w[0], done(chunks[0], 1));
    let job = {
        s.cancel_job(job);
        s.new_job()
    };
    queue(&mut s, job, &[1, 1, 1]);
    let ids = queued_ids(&s);
    s.dispatch(&mut io);
    let frames = io.take_work();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].2, ids, "one frame");
    s.on_message(&mut io, w[0], FromWorker::Started(frames[0].1));
    // The second is cancelled while the first runs: no kill yet.
    assert!(s.cancel_chunk(&mut io, ids[1]));
    assert!(io.killed.is_empty());
    // The first finishes: the worker now runs the cancelled one.
    s.on_message(&mut io, w[0], done(ids[0], 1));
    assert_eq!(io.killed, [w[0]]);
    s.on_exit(&mut io, w[0], None, None);
    let r = results(&mut s, job);
    assert_eq!(r.len(), 2, "{r:?}");
    assert!(
        matches!(r[0], (1, 1, Some(Failure::Cancelled))),
        "{:?}",
        r[0]
    );
    assert!(matches!(r[1], (0, 1, None)), "{:?}", r[1]);
    // The third, never started, is queued again (and only it).
    assert_eq!(queued_ids(&s), [ids[2]]);
}

#[test]
fn a_cancelled_chunk_not_yet_started_kills_its_worker_only_when_it_starts() {
    let mut io = Mock::new();
    let (mut s, w, job) = ready(limits(1), &mut io);
    queue(&mut s, job, &[1, 1]);
    let ids = queued_ids(&s);
    s.dispatch(&mut io);
    s.dispatch(&mut io);
    let sent = io.take_work();
    s.on_message(&mut io, w[0], FromWorker::Started(sent[0].1));
    assert!(s.cancel_chunk(&mut io, ids[1]));
    io.advance(Duration::from_secs(1));
    s.on_message(&mut io, w[0], done(ids[0], 1));
    assert!(io.killed.is_empty(), "its frame is not started yet");
    s.on_message(&mut io, w[0], FromWorker::Started(sent[1].1));
    assert_eq!(io.killed, [w[0]]);
    s.on_exit(&mut io, w[0], None, None);
    let r = results(&mut s, job);
    assert_eq!(r.len(), 2);
    assert!(s.queue.is_empty());
    assert!(s.idle());
}

#[test]
fn cancel_after_the_result_is_in_does_nothing() {
    let mut io = Mock::new();
    let (mut s, w, job) = ready(limits(1), &mut io);
    queue(&mut s, job, &[1]);
    let ids = queued_ids(&s);
    s.dispatch(&mut io);
    let sent = io.take_work();
    s.on_message(&mut io, w[0], FromWorker::Started(sent[0].1));
    s.on_message(&mut io, w[0], done(ids[0], 1));
    assert!(!s.cancel_chunk(&mut io, ids[0]));
    assert!(io.killed.is_empty());
    assert_eq!(s.counts().tasks_cancelled, 0);
    assert_eq!(s.counts().tasks_done, 1);
}

#[test]
fn a_chunk_with_its_own_timeout_uses_it_instead_of_the_pools() {
    let mut io = Mock::new();
    let lim = Limits {
        task_timeout: Some(Duration::from_secs(10)),
        ..limits(2)
    };
    let (mut s, w, job) = ready(lim, &mut io);
    let own = Duration::from_secs(1);
    let short = queue_timed(&mut s, job, 0, own);
    let unlimited = queue_timed(&mut s, job, 1, Duration::MAX);
    s.dispatch(&mut io);
    let sent = io.take_work();
    assert_eq!(sent.len(), 2);
    let at = io.now;
    for (wid, frame, _) in &sent {
        s.on_message(&mut io, *wid, FromWorker::Started(*frame));
    }
    // Only the short one has a deadline: Duration::MAX is no limit, not
    // the pool's 10 s.
    assert_eq!(s.enforce_timeouts(&mut io), Some(at + own));
    io.advance(own);
    assert_eq!(s.enforce_timeouts(&mut io), None);
    let on = |c: u64| sent.iter().find(|x| x.2 == [c]).unwrap().0;
    assert_eq!(io.killed, [on(short)]);
    io.advance(Duration::from_secs(3600));
    s.enforce_timeouts(&mut io);
    assert_eq!(io.killed, [on(short)]);
    s.on_exit(&mut io, on(short), None, None);
    let r = results(&mut s, job);
    assert!(
        matches!(r[0].2, Some(Failure::Timeout { timeout, .. }) if timeout == own),
        "{:?}",
        r[0].2
    );
    let _ = (w, unlimited);
    let c = s.counts();
    assert_eq!(
        (c.tasks_timed_out, c.workers_died, c.workers_replaced),
        (1, 1, 1)
    );
}

#[test]
fn the_timer_is_woken_only_for_a_deadline_earlier_than_the_one_it_waits_for() {
    let mut io = Mock::new();
    let (mut s, w, job) = ready(limits(3), &mut io);
    // No time limits anywhere: never woken.
    queue(&mut s, job, &[1]);
    s.dispatch(&mut io);
    assert_eq!(io.timer_wakes, 0);
    assert_eq!(s.enforce_timeouts(&mut io), None);
    let (wid, frame, chunks) = io.take_work()[0].clone();
    s.on_message(&mut io, wid, FromWorker::Started(frame));
    io.advance(Duration::from_secs(1));
    s.on_message(&mut io, wid, done(chunks[0], 1));
    assert_eq!(io.timer_wakes, 0);
    // The first deadline wakes it (it sleeps with none).
    queue_timed(&mut s, job, 1, Duration::from_secs(5));
    s.dispatch(&mut io);
    assert_eq!(io.timer_wakes, 1);
    let next = s.enforce_timeouts(&mut io);
    assert_eq!(next, Some(io.now + Duration::from_secs(5)));
    // A later one doesn't; an earlier one does.
    queue_timed(&mut s, job, 2, Duration::from_secs(10));
    s.dispatch(&mut io);
    assert_eq!(io.timer_wakes, 1);
    let sent = io.take_work();
    assert_eq!(sent.len(), 2);
    let busy: Vec<WorkerId> = sent.iter().map(|x| x.0).collect();
    let free = *w.iter().find(|x| !busy.contains(x)).unwrap();
    queue_timed(&mut s, job, 3, Duration::from_secs(1));
    s.dispatch(&mut io);
    assert_eq!(io.take_work()[0].0, free);
    assert_eq!(io.timer_wakes, 2);
    assert_eq!(
        s.enforce_timeouts(&mut io),
        Some(io.now + Duration::from_secs(1))
    );
}

#[test]
fn a_worker_over_its_memory_limit_exits_and_its_unstarted_chunks_run_elsewhere() {
    let mut io = Mock::new();
    let (mut s, w, job) = ready(limits(1), &mut io);
    // Fast tasks: three chunks in one frame.
    queue(&mut s, job, &[1]);
    s.dispatch(&mut io);
    let (_, frame, chunks) = io.take_work()[0].clone();
    s.on_message(&mut io, w[0], FromWorker::Started(frame));
    io.advance(Duration::from_micros(2));
    s.on_message(&mut io, w[0], done(chunks[0], 1));
    queue(&mut s, job, &[1, 1, 1]);
    let ids = queued_ids(&s);
    s.dispatch(&mut io);
    let frames = io.take_work();
    assert_eq!(frames[0].2, ids);
    s.on_message(&mut io, w[0], FromWorker::Started(frames[0].1));
    s.on_message(&mut io, w[0], done(ids[0], 1));
    s.on_message(&mut io, w[0], FromWorker::Recycle { rss: 1 << 30 });
    assert_eq!(io.closed, [w[0]], "nothing more is sent to it");
    queue(&mut s, job, &[1]);
    s.dispatch(&mut io);
    assert!(io.take_work().is_empty());
    // It exits by itself: nothing fails, though its frame was started.
    s.on_exit(
        &mut io,
        w[0],
        Some(ExitStatus(crate::sys::RawStatus::Exited(0))),
        None,
    );
    assert!(io.killed.is_empty());
    let r = results(&mut s, job);
    assert_eq!(r.len(), 2, "{r:?}");
    assert!(r.iter().all(|x| x.2.is_none()));
    let replacement = io.spawned[1];
    s.on_message(&mut io, replacement, FromWorker::Ready);
    let resent: Vec<u64> = io.take_work().into_iter().flat_map(|x| x.2).collect();
    assert_eq!(&resent[..2], &ids[1..]);
    let c = s.counts();
    assert_eq!(
        (c.workers_started, c.workers_died, c.workers_replaced),
        (2, 0, 1)
    );
}

#[test]
fn the_counts_put_each_task_and_worker_in_one_place() {
    let mut io = Mock::new();
    let lim = Limits {
        task_timeout: Some(Duration::from_secs(1)),
        max_tasks_per_child: Some(4),
        ..limits(1)
    };
    let (mut s, w, job) = ready(lim, &mut io);
    // A chunk of 3: one fails (a panic), two return values.
    queue(&mut s, job, &[3]);
    s.dispatch(&mut io);
    let (_, frame, chunks) = io.take_work()[0].clone();
    s.on_message(&mut io, w[0], FromWorker::Started(frame));
    let mut values = Vec::new();
    put_frame(&mut values, &[0]);
    put_frame(&mut values, &[0]);
    let report = crate::status::PanicReport {
        message: "boom".into(),
        location: None,
    };
    s.on_message(
        &mut io,
        w[0],
        FromWorker::Done {
            id: chunks[0],
            values,
            fails: vec![(1, TaskFail::Panic(report))],
            handles: Vec::new(),
        },
    );
    // One times out (the worker dies: replaced).
    queue(&mut s, job, &[1]);
    s.dispatch(&mut io);
    let (_, frame, _) = io.take_work()[0].clone();
    s.on_message(&mut io, w[0], FromWorker::Started(frame));
    io.advance(Duration::from_secs(2));
    s.enforce_timeouts(&mut io);
    s.on_exit(&mut io, w[0], None, None);
    let w1 = io.spawned[1];
    s.on_message(&mut io, w1, FromWorker::Ready);
    // Four on the replacement: it retires (asked to exit, not died) and
    // is replaced.
    queue(&mut s, job, &[4]);
    s.dispatch(&mut io);
    let (_, frame, chunks) = io.take_work()[0].clone();
    s.on_message(&mut io, w1, FromWorker::Started(frame));
    s.on_message(&mut io, w1, done(chunks[0], 4));
    assert_eq!(io.shutdowns(), [w1]);
    s.on_exit(
        &mut io,
        w1,
        Some(ExitStatus(crate::sys::RawStatus::Exited(0))),
        None,
    );
    let w2 = io.spawned[2];
    s.on_message(&mut io, w2, FromWorker::Ready);
    // Three fast chunks in one frame: the third is cancelled behind the
    // first, which dies under it, killed from outside; the second goes
    // back to the queue.
    queue(&mut s, job, &[1, 1, 1]);
    let ids = queued_ids(&s);
    s.dispatch(&mut io);
    let sent = io.take_work();
    assert_eq!(sent[0].2, ids);
    assert!(s.cancel_chunk(&mut io, ids[2]));
    s.on_message(&mut io, w2, FromWorker::Started(sent[0].1));
    s.on_exit(
        &mut io,
        w2,
        Some(ExitStatus(crate::sys::RawStatus::Exited(3))),
        None,
    );
    let c = s.counts();
    assert_eq!(
        (
            c.tasks_done,
            c.tasks_failed,
            c.tasks_cancelled,
            c.tasks_timed_out
        ),
        (6, 2, 1, 1)
    );
    assert_eq!(
        (c.workers_started, c.workers_died, c.workers_replaced),
        (4, 2, 3)
    );
    // Terminate: the one requeued fails; the workers killed don't count
    // as dying.
    s.terminate(&mut io);
    let w3 = io.spawned[3];
    s.on_exit(&mut io, w3, None, None);
    let c = s.counts();
    assert_eq!(
        (c.tasks_failed, c.workers_died, c.workers_started),
        (3, 2, 4)
    );
}
