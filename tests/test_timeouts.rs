//! Any `Duration` is a valid timeout: `Duration::MAX` (whose deadline
//! overflows `Instant`) means no deadline, on something ready now and on
//! something that becomes ready later.

use std::time::Duration;

use multiproc::{Connection, Pipe, PoolBuilder, Popen, Process};

multiproc::test_support!();

mod common;
use common::{exit_with, square};

/// Waits for a word on `conn`, then sends it back doubled.
fn echo_doubled(conn: Connection) {
    let n: u32 = conn.recv().expect("a word");
    conn.send(&(n * 2)).expect("reply");
}

multiproc::entry!(echo_doubled);

const FOREVER: Duration = Duration::MAX;

#[test]
fn join_timeout_with_duration_max_waits_for_the_result() {
    // Becomes ready later: the worker has barely started.
    let mut p = Process::spawn(square, 7).unwrap();
    assert_eq!(p.join_timeout(FOREVER).unwrap(), Some(49));

    // Ready now: the worker has exited before the call.
    let mut q = Process::spawn(square, 3).unwrap();
    let ready = multiproc::wait(&[q.sentinel().into()], Some(FOREVER)).unwrap();
    assert_eq!(ready, vec![0]);
    assert_eq!(q.join_timeout(FOREVER).unwrap(), Some(9));
}

#[test]
fn popen_wait_with_duration_max_gives_the_status() {
    let p = Popen::spawn(exit_with, 5).unwrap();
    let st = p.wait(Some(FOREVER)).unwrap().expect("exited");
    assert_eq!(st.code(), Some(5));
    // Recorded: ready now.
    assert_eq!(p.wait(Some(FOREVER)).unwrap(), Some(st));
}

#[test]
fn poll_and_wait_with_duration_max_see_a_message() {
    let (mine, theirs) = Pipe::duplex().unwrap();
    let mut child = Process::spawn(echo_doubled, theirs).unwrap();
    // Becomes ready later: the reply comes only after our word.
    std::thread::scope(|s| {
        s.spawn(|| mine.send(&21u32).unwrap());
        assert!(mine.poll(Some(FOREVER)).unwrap());
    });
    // Ready now: the reply is there.
    assert!(mine.poll(Some(FOREVER)).unwrap());
    assert_eq!(
        multiproc::wait(&[(&mine).into()], Some(FOREVER)).unwrap(),
        vec![0]
    );
    assert_eq!(mine.recv::<u32>().unwrap(), 42);
    child.join().unwrap();

    // wait() on a connection that becomes ready later.
    let (a, b) = Pipe::duplex().unwrap();
    let mut child = Process::spawn(echo_doubled, b).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| a.send(&1u32).unwrap());
        let ready = multiproc::wait(&[(&a).into(), child.sentinel().into()], Some(FOREVER));
        assert!(ready.unwrap().contains(&0));
    });
    assert_eq!(a.recv::<u32>().unwrap(), 2);
    child.join().unwrap();
}

#[test]
fn get_timeout_and_task_timeout_with_duration_max() {
    let pool = PoolBuilder::new()
        .workers(2)
        .task_timeout(FOREVER)
        .build()
        .unwrap();
    // Chunks of several tasks: the chunk's deadline is the timeout times
    // its task count, which must not overflow either.
    let squares: Vec<u64> = pool.map_chunked(square, 0..100u64, 10).unwrap();
    assert_eq!(squares, (0..100u64).map(|x| x * x).collect::<Vec<_>>());
    let mut r = pool.submit(square, 12);
    assert_eq!(r.get_timeout(FOREVER).unwrap().unwrap(), 144);
    let mut r = pool.submit(square, 5);
    while !r.is_ready() {
        std::thread::yield_now(); // until the result is there: ready now
    }
    assert_eq!(r.get_timeout(FOREVER).unwrap().unwrap(), 25);
}
