//! Shared objects sent over an arbitrary `Pipe` between processes that
//! don't know each other — two siblings holding the two ends of one pipe
//! their parent made — with real processes of this test binary (Linux,
//! and Windows under Wine). On Unix the fds travel as `SCM_RIGHTS`; on
//! Windows the sender holds its handles and the receiver takes them out
//! of it (CPython's `DupHandle`; see "Handles in messages" on
//! `Connection`).

use std::sync::atomic::{AtomicU64, Ordering};

use common::{census, serial, LONG};
use multiproc::{
    Connection, ErrorKind, Event, Frozen, Lock, Pipe, Process, Queue, Semaphore, Shared, SharedMut,
};

multiproc::test_support!();

mod common;

/// Spawns and joins a process that does nothing: what the first spawn
/// of a process makes and keeps (under Wine, now and then, one handle) is
/// made before a test counts.
fn warm_up() {
    Process::spawn(common::do_nothing, ())
        .unwrap()
        .join()
        .unwrap();
}

fn count() -> usize {
    multiproc::test_hooks::open_handle_count().expect("count")
}

/// `0, 3, 6, …`: `n` of them, frozen.
fn block_of_threes(n: u64) -> Frozen<u64> {
    let v: Vec<u64> = (0..n).map(|i| 3 * i).collect();
    SharedMut::from_slice(&v)
        .expect("block")
        .freeze()
        .expect("freeze")
}

/// Child A: makes a frozen block and a lock, holds the lock, sends both to
/// whoever holds the other end (and drops its own block at once); lets go
/// of the lock once told what the other side saw. Returns what it was
/// told.
fn give_block_and_lock(conn: Connection) -> bool {
    let lock = Lock::new().expect("lock");
    let held = lock.acquire().expect("acquire");
    conn.send(&(block_of_threes(1000), &lock)).expect("send");
    let took_it_while_held: bool = conn.recv().expect("what B saw");
    drop(held);
    conn.send(&()).expect("released");
    took_it_while_held
}

/// Child B: receives a block and a lock; the block's sum, whether it
/// could take the lock while A held it, and whether it could once A let
/// go.
fn take_block_and_lock(conn: Connection) -> (u64, bool, bool) {
    let (block, lock): (Frozen<u64>, Lock) = conn.recv().expect("block and lock");
    let sum = block.iter().sum();
    let while_held = lock.try_acquire().expect("try").is_some();
    conn.send(&while_held).expect("report");
    let () = conn.recv().expect("A let go");
    let after = lock.acquire_timeout(LONG).expect("acquire").is_some();
    (sum, while_held, after)
}

/// Child A: sends an atomic, a semaphore, an event, a queue and a pipe
/// end; waits for B to use each; what came back through them.
fn give_everything(conn: Connection) -> (u64, u64, u64, bool) {
    let atomic = Shared::new(AtomicU64::new(0)).expect("atomic");
    let sem = Semaphore::new(0).expect("semaphore");
    let event = Event::new().expect("event");
    let queue: Queue<u64> = Queue::new().expect("queue");
    let (mine, theirs) = Pipe::duplex().expect("pipe");
    conn.send(&(&atomic, &sem, &event, &queue, theirs))
        .expect("send");
    let set = event.wait_timeout(LONG).expect("event wait");
    let _permit = sem
        .acquire_timeout(LONG)
        .expect("semaphore")
        .expect("released by B");
    let from_queue = queue.get_timeout(LONG).expect("queue");
    let from_pipe: u64 = mine.recv().expect("pipe");
    (atomic.load(Ordering::SeqCst), from_queue, from_pipe, set)
}

/// Child B: receives what `give_everything` sends and uses each.
fn use_everything(conn: Connection) {
    #[allow(clippy::type_complexity)] // what A sends, spelled out
    let (atomic, sem, event, queue, end): (
        Shared<AtomicU64>,
        Semaphore,
        Event,
        Queue<u64>,
        Connection,
    ) = conn.recv().expect("everything");
    atomic.fetch_add(5, Ordering::SeqCst);
    queue.put(42).expect("put");
    end.send(&43u64).expect("send on the received end");
    sem.release().expect("release");
    event.set().expect("set");
}

multiproc::entry!(
    give_block_and_lock,
    take_block_and_lock,
    give_everything,
    use_everything
);

#[test]
fn siblings_pass_a_frozen_block_and_a_lock_over_one_pipe() {
    let _serial = serial();
    let (a, b) = Pipe::duplex().unwrap();
    let mut pa = Process::spawn(give_block_and_lock, a).unwrap();
    let mut pb = Process::spawn(take_block_and_lock, b).unwrap();
    // B saw A's bytes, could not take the lock A held, and could once A
    // let go: the same block and the same lock.
    assert_eq!(pb.join().unwrap(), (3 * 999 * 1000 / 2, false, true));
    assert!(!pa.join().unwrap());
}

#[test]
fn atomics_semaphores_events_queues_and_pipe_ends_cross_a_pipe_between_siblings() {
    let _serial = serial();
    let (a, b) = Pipe::duplex().unwrap();
    let mut pa = Process::spawn(give_everything, a).unwrap();
    let mut pb = Process::spawn(use_everything, b).unwrap();
    pb.join().unwrap();
    assert_eq!(pa.join().unwrap(), (5, 42, 43, true));
}

/// Child A: sends a frozen block and exits.
fn send_a_block_and_exit(conn: Connection) -> u64 {
    conn.send(&block_of_threes(100)).expect("send");
    3 * 99 * 100 / 2
}

/// Child B: receives a frozen block: its sum or the error (its text, its
/// kind, the kind of its I/O cause), and this process's handle count
/// before and after.
#[allow(clippy::type_complexity)] // an outcome and two counts
fn receive_a_block(conn: Connection) -> (Result<u64, (String, String, String)>, usize, usize) {
    let before = count();
    let outcome = conn
        .recv::<Frozen<u64>>()
        .map(|block| block.iter().sum())
        .map_err(|e| {
            (
                e.to_string(),
                format!("{:?}", e.kind()),
                format!("{:?}", e.io_error().map(std::io::Error::kind)),
            )
        });
    (outcome, before, count())
}

multiproc::entry!(send_a_block_and_exit, receive_a_block);

#[test]
fn a_message_received_after_its_sender_exited_fails_on_windows_and_arrives_on_unix() {
    let _serial = serial();
    warm_up();
    let start = census();
    // The sender's process handle kept (the parent has not let go of the
    // exited process), then not (its id is free).
    for keep_sender in [true, false] {
        let (a, b) = Pipe::duplex().unwrap();
        let mut pa = Process::spawn(send_a_block_and_exit, a).unwrap();
        assert_eq!(pa.join().unwrap(), 14850);
        let pid = pa.pid();
        let kept = keep_sender.then_some(pa);
        let mut pb = Process::spawn(receive_a_block, b).unwrap();
        let (outcome, before, after) = pb.join().unwrap();
        drop(kept);
        assert_eq!(before, after, "B's count, keep_sender {keep_sender}");
        if cfg!(windows) {
            // The sender held the handles; they closed with it.
            let (text, kind, io_kind) = outcome.unwrap_err();
            assert_eq!(
                text,
                format!(
                    "cannot take the handles of a message: the process that sent this message \
                     (pid {pid}) exited before the message was received, and the handles it \
                     carried closed with it (on Windows a message's handles stay in the process \
                     that sent it until they are received)"
                ),
                "keep_sender {keep_sender}"
            );
            assert_eq!(kind, format!("{:?}", ErrorKind::Io));
            assert_eq!(io_kind, "Some(NotFound)");
        } else {
            // SCM_RIGHTS: the fds in flight belong to the socket, not to
            // the sender.
            assert_eq!(outcome, Ok(14850));
        }
    }
    assert_eq!(census(), start);
}

/// How many cycles the count test runs.
const CYCLES: u64 = 1000;

/// Child A: a warm-up message, then [`CYCLES`] messages of a fresh block
/// and lock each; its handle count after the warm-up and once B took them
/// all.
fn send_many(conn: Connection) -> (usize, usize) {
    let send = |i: u64| {
        let block = SharedMut::from_slice(&[i; 16])
            .expect("block")
            .freeze()
            .expect("freeze");
        let lock = Lock::new().expect("lock");
        conn.send(&(i, block, lock)).expect("send");
    };
    send(0);
    let () = conn.recv().expect("warm-up taken");
    let before = count();
    for i in 1..=CYCLES {
        send(i);
    }
    let () = conn.recv().expect("all taken");
    (before, count())
}

/// Child B: takes what `send_many` sends, checking each block's bytes and
/// taking each lock; its count after the warm-up and after the last.
fn receive_many(conn: Connection) -> (usize, usize) {
    let take = |want: u64| {
        let (i, block, lock): (u64, Frozen<u64>, Lock) = conn.recv().expect("recv");
        assert_eq!(i, want);
        assert_eq!(&block[..], &[i; 16]);
        assert!(lock.try_acquire().expect("try").is_some());
    };
    take(0);
    let before = count();
    conn.send(&()).expect("ack");
    for i in 1..=CYCLES {
        take(i);
    }
    let after = count();
    conn.send(&()).expect("ack");
    (before, after)
}

multiproc::entry!(send_many, receive_many);

#[test]
fn a_thousand_messages_of_blocks_and_locks_leave_every_count_where_it_started() {
    let _serial = serial();
    warm_up();
    let start = census();
    let (a, b) = Pipe::duplex().unwrap();
    let mut pa = Process::spawn(send_many, a).unwrap();
    let mut pb = Process::spawn(receive_many, b).unwrap();
    let (b_before, b_after) = pb.join().unwrap();
    let (a_before, a_after) = pa.join().unwrap();
    assert_eq!(a_after, a_before, "the sender's count");
    assert_eq!(b_after, b_before, "the receiver's count");
    drop((pa, pb));
    assert_eq!(census(), start, "the parent's count");
}

/// A frame flagged as carrying handles (bit 62) whose block is a held
/// block (Windows, `sys/windows/held.rs`: the tag and the sender's pid,
/// its start time, the message's number, then the handle values) for
/// `values`, around a `PassedHandle` (token 0).
#[cfg(windows)]
fn held_frame(pid: u32, start: u64, number: u64, values: &[u64]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(values.len() as u32).to_le_bytes());
    body.extend_from_slice(&(values.len() as u32 + 3).to_le_bytes());
    for v in [1 | u64::from(pid) << 32, start, number]
        .iter()
        .chain(values)
    {
        body.extend_from_slice(&v.to_le_bytes());
    }
    body.push(0);
    let mut frame = (body.len() as u64 | 1 << 62).to_le_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// Sends this process's identity and handle count; waits for a byte;
/// returns the count then.
#[cfg(windows)]
fn report_identity(conn: Connection) -> (usize, usize) {
    let me = multiproc::test_hooks::process_identity().expect("identity");
    let before = count();
    conn.send(&me).expect("send");
    let () = conn.recv().expect("go");
    (before, count())
}

#[cfg(windows)]
multiproc::entry!(report_identity);

#[cfg(windows)]
#[test]
fn forged_senders_and_handle_values_are_refused_and_nothing_leaks() {
    use std::io::{Read, Write};
    use std::os::windows::io::AsRawHandle;

    let _serial = serial();
    let (me, my_start) = multiproc::test_hooks::process_identity().unwrap();
    let (ctl, theirs) = Pipe::duplex().unwrap();
    let mut child = Process::spawn(report_identity, theirs).unwrap();
    let (pid, start): (u32, u64) = ctl.recv().unwrap();
    let (a, b) = Pipe::duplex().unwrap();
    let (mut r, mut w) = std::io::pipe().unwrap();
    // A round first: whatever a process makes once on first use is made.
    a.send(&multiproc::PassedHandle::new(w.try_clone().unwrap().into()))
        .unwrap();
    drop(b.recv::<multiproc::PassedHandle>().unwrap());
    let before = census();
    let mine = r.as_raw_handle() as u64;
    let cases = [
        // This process, naming a handle it owns but never left for a
        // message: not taken (it would be owned twice).
        (
            held_frame(me, my_start, 1, &[mine]),
            format!("handle value {mine:#x} is not one this process left"),
        ),
        // This process's id with another start time: not this process.
        (
            held_frame(me, my_start ^ 1, 1, &[4]),
            format!("the process that sent this message (pid {me}) exited"),
        ),
        // A live process, and a value that is no handle of it.
        (
            held_frame(pid, start, 1, &[0xffff_fffc]),
            format!(
                "cannot take handle 0xfffffffc out of the process that sent this message \
                 (pid {pid})"
            ),
        ),
        // A process id with the wrong start time (the live child's).
        (
            held_frame(pid, start.wrapping_add(1), 1, &[4]),
            format!("the process that sent this message (pid {pid}) exited"),
        ),
    ];
    for (frame, want) in cases {
        a.send_unframed(&frame).unwrap();
        let err = b.recv::<multiproc::PassedHandle>().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io, "{err}");
        assert!(err.to_string().contains(&want), "{err}\nwant: {want}");
    }
    assert_eq!(census(), before, "ours");
    // Each frame was consumed whole: the end goes on; our pipe still works.
    a.send(&9u8).unwrap();
    assert_eq!(b.recv::<u8>().unwrap(), 9);
    w.write_all(b"ok").unwrap();
    drop(w);
    let mut got = Vec::new();
    r.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"ok");
    drop(r);
    ctl.send(&()).unwrap();
    let (child_before, child_after) = child.join().unwrap();
    assert_eq!(child_after, child_before, "the live sender's count");
}

#[test]
fn a_message_with_handles_to_a_closed_end_fails_and_leaves_nothing_behind() {
    let _serial = serial();
    let (a, b) = Pipe::duplex().unwrap();
    let (r, w) = std::io::pipe().unwrap();
    // A round first: whatever a process makes once on first use is made.
    a.send(&multiproc::PassedHandle::new(w.try_clone().unwrap().into()))
        .unwrap();
    drop(b.recv::<multiproc::PassedHandle>().unwrap());
    drop(b);
    let before = census();
    // Nobody can receive it (Windows: the copies the sender would have
    // held are closed again; Unix: the fds never left).
    let err = a
        .send(&(
            multiproc::PassedHandle::new(w.try_clone().unwrap().into()),
            block_of_threes(10),
        ))
        .unwrap_err();
    // Windows: the frame's write finds the end gone (end of file); Unix:
    // already the fds' `sendmsg` (a broken pipe).
    let broken = err.io_error().map(std::io::Error::kind) == Some(std::io::ErrorKind::BrokenPipe);
    assert!(err.is_eof() || broken, "{err}");
    assert_eq!(census(), before);
    drop((r, w));
}
