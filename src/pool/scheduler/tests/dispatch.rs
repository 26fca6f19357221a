//! The scheduler's dispatch against the mock (`scheduler/dispatch.rs`):
//! who gets work and how much, pacing by the measured time per task, a
//! `submit` sent at once or with the next frame, frames whose handles
//! could not be sent, miscounted result handles; and the pool's time limit
//! on a chunk sent.

use super::*;

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
