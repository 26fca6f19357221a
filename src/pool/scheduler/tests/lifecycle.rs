//! A worker's life in the scheduler against the mock
//! (`scheduler/lifecycle.rs`): a death fails only the running chunk and
//! requeues the rest, protocol violations, retiring at
//! `max_tasks_per_child`, replacement (or none, in an SPMD pool), workers
//! that keep dying before ready, failed launches.

use super::*;

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
