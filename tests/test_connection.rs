//! Pipe and Connection, in one process and across processes; ported from
//! the behaviors of CPython's test_multiprocessing connection tests.

use std::collections::BTreeMap;
use std::time::Duration;

use multiproc::{Connection, ErrorKind, Pipe, Popen, Process};

/// How long a test waits for something that takes milliseconds.
const LONG: Duration = Duration::from_secs(30);
use serde::{Deserialize, Serialize};

multiproc::test_support!();

/// Echoes every message back until the peer closes; returns how many.
fn echo_loop(conn: Connection) -> u64 {
    let mut n = 0;
    loop {
        match conn.recv_bytes() {
            Ok(msg) => {
                conn.send_bytes(&msg).expect("echo");
                n += 1;
            }
            Err(e) if e.is_eof() => return n,
            Err(e) => panic!("echo_loop: {e}"),
        }
    }
}

/// Sends `count` greetings to a sibling.
fn sibling_sender((conn, count): (Connection, u32)) {
    for i in 0..count {
        conn.send(&format!("hello {i}")).expect("send to sibling");
    }
}

/// Receives greetings from a sibling until EOF.
fn sibling_receiver(conn: Connection) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        match conn.recv::<String>() {
            Ok(s) => got.push(s),
            Err(e) if e.is_eof() => return got,
            Err(e) => panic!("sibling_receiver: {e}"),
        }
    }
}

/// Receives one message from a reader end it shares with its parent, then
/// exits with 10 + that message (so the parent learns what it took).
fn recv_one_and_exit(conn: Connection) {
    let v: u32 = conn.recv().expect("recv in the child");
    std::process::exit(10 + v as i32);
}

/// Echoes one message through each of `conns`, in order; returns how many.
fn echo_once_each(conns: Vec<Connection>) -> usize {
    for c in &conns {
        let m = c.recv_bytes().expect("recv in the child");
        c.send_bytes(&m).expect("send in the child");
    }
    conns.len()
}

/// Receives one message's bytes, then exits with 10 + its size in MiB.
fn recv_bytes_one_and_exit(conn: Connection) {
    let v = conn.recv_bytes().expect("recv in the child");
    std::process::exit(10 + (v.len() >> 20) as i32);
}

/// Polls a reader end it shares with its parent: exits 10 if a message is
/// there, 11 if not.
fn poll_and_exit(conn: Connection) {
    let ready = conn.poll(Some(Duration::from_secs(60))).expect("poll");
    std::process::exit(if ready { 10 } else { 11 });
}

multiproc::entry!(
    echo_loop,
    sibling_sender,
    sibling_receiver,
    recv_one_and_exit,
    recv_bytes_one_and_exit,
    poll_and_exit,
    echo_once_each
);

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Shape {
    Circle { r: f64 },
    Square(u32),
    Empty,
}

#[test]
fn send_and_recv_many_types() {
    let (a, b) = Pipe::duplex().unwrap();
    a.send(&42u8).unwrap();
    a.send(&-7i64).unwrap();
    a.send(&3.5f64).unwrap();
    a.send("text ä").unwrap();
    a.send(&vec![1u32, 2, 3]).unwrap();
    a.send(&(1u8, "two".to_string(), Some(3u16))).unwrap();
    a.send(&Shape::Circle { r: 1.5 }).unwrap();
    a.send(&vec![Shape::Square(4), Shape::Empty]).unwrap();
    let map: BTreeMap<String, u32> = [("x".to_string(), 1), ("y".to_string(), 2)].into();
    a.send(&map).unwrap();
    a.send(&()).unwrap();
    assert_eq!(b.recv::<u8>().unwrap(), 42);
    assert_eq!(b.recv::<i64>().unwrap(), -7);
    assert_eq!(b.recv::<f64>().unwrap(), 3.5);
    assert_eq!(b.recv::<String>().unwrap(), "text ä");
    assert_eq!(b.recv::<Vec<u32>>().unwrap(), vec![1, 2, 3]);
    assert_eq!(
        b.recv::<(u8, String, Option<u16>)>().unwrap(),
        (1, "two".to_string(), Some(3))
    );
    assert_eq!(b.recv::<Shape>().unwrap(), Shape::Circle { r: 1.5 });
    assert_eq!(
        b.recv::<Vec<Shape>>().unwrap(),
        vec![Shape::Square(4), Shape::Empty]
    );
    assert_eq!(b.recv::<BTreeMap<String, u32>>().unwrap(), map);
    b.recv::<()>().unwrap();
}

#[test]
fn zero_byte_and_64_mib_messages() {
    let (a, b) = Pipe::duplex().unwrap();
    let big: Vec<u8> = (0..64u32 << 20).map(|i| (i % 251) as u8).collect();
    std::thread::scope(|s| {
        let big = &big;
        s.spawn(move || {
            a.send_bytes(&[]).unwrap();
            a.send_bytes(big).unwrap();
        });
        assert_eq!(b.recv_bytes().unwrap(), Vec::<u8>::new());
        let got = b.recv_bytes().unwrap();
        assert_eq!(got.len(), big.len());
        assert!(got == *big);
    });
}

#[test]
fn recv_bytes_into_fits_or_says_how_much_is_needed() {
    let (a, b) = Pipe::duplex().unwrap();
    a.send_bytes(b"hello world").unwrap();
    let mut small = [0u8; 4];
    let err = b.recv_bytes_into(&mut small).unwrap_err();
    assert_eq!(err.buffer_too_short(), Some(11));
    assert_eq!(err.kind(), ErrorKind::BufferTooShort);
    // The message stayed queued.
    let mut buf = [0u8; 32];
    let n = b.recv_bytes_into(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello world");
}

#[test]
fn poll_with_and_without_data() {
    let (a, b) = Pipe::duplex().unwrap();
    assert!(!b.poll(Some(Duration::ZERO)).unwrap());
    assert!(!b.poll(Some(Duration::from_millis(20))).unwrap());
    a.send(&1u8).unwrap();
    assert!(b.poll(None).unwrap());
    assert!(b.poll(Some(Duration::ZERO)).unwrap()); // still there
    assert_eq!(b.recv::<u8>().unwrap(), 1);
    assert!(!b.poll(Some(Duration::ZERO)).unwrap());
}

#[test]
fn eof_after_peer_close_is_an_error_not_a_hang() {
    let (a, b) = Pipe::duplex().unwrap();
    a.send(&7u32).unwrap();
    a.close();
    assert_eq!(b.recv::<u32>().unwrap(), 7);
    // EOF counts as ready. Not necessarily at once: while another test's
    // thread starts a child, that child holds a copy of every fd of this
    // process (`a`'s too) from its fork until its exec closes them
    // (close-on-exec), and the peer sees EOF only once the last copy is
    // closed (seen once in ~150 runs next to spawning tests). So a bounded
    // wait, not a zero timeout.
    assert!(b.poll(Some(LONG)).unwrap());
    let err = b.recv::<u32>().unwrap_err();
    assert!(err.is_eof(), "{err}");
    assert_eq!(err.kind(), ErrorKind::Eof);
    // As an io::Error: a matching kind, and the Error still inside.
    let io = std::io::Error::from(err);
    assert_eq!(io.kind(), std::io::ErrorKind::UnexpectedEof);
    let inner = io
        .get_ref()
        .and_then(|e| e.downcast_ref::<multiproc::Error>());
    assert_eq!(inner.map(|e| e.kind()), Some(ErrorKind::Eof));
    // Sending to a closed peer fails too.
    assert!(b.send(&1u8).unwrap_err().is_eof());
}

#[test]
fn simplex_ends_only_go_one_way() {
    let (r, w) = Pipe::simplex().unwrap();
    assert!(r.readable() && !r.writable());
    assert!(w.writable() && !w.readable());
    w.send(&"one way").unwrap();
    assert_eq!(r.recv::<String>().unwrap(), "one way");
    // A call the end can't take: a usage error.
    assert_eq!(r.send(&1u8).unwrap_err().kind(), ErrorKind::Usage);
    assert_eq!(w.recv::<u8>().unwrap_err().kind(), ErrorKind::Usage);
}

#[test]
fn oversized_frame_is_rejected_and_poisons() {
    let (a, b) = Pipe::duplex().unwrap();
    b.set_max_message_len(1024);
    a.send_bytes(&[7u8; 2048]).unwrap();
    let err = b.recv_bytes().unwrap_err();
    assert!(err.is_message_too_large(), "{err}");
    assert_eq!(err.kind(), ErrorKind::MessageTooLarge);
    // The stream can't be resynchronized: later calls fail the same way.
    a.send_bytes(b"ok").unwrap();
    let err = b.recv_bytes().unwrap_err();
    assert!(err.is_poisoned(), "{err}");
    assert_eq!(err.kind(), ErrorKind::Poisoned);
}

#[test]
fn garbage_length_prefix_is_rejected_without_allocating() {
    let (a, b) = Pipe::duplex().unwrap();
    // A frame header claiming 2^60 bytes: refused before any allocation
    // (allocating it would abort the test process).
    a.send_unframed(&(1u64 << 60).to_le_bytes()).unwrap();
    let err = b.recv_bytes().unwrap_err();
    assert!(err.is_message_too_large(), "{err}");
}

#[test]
fn garbage_body_is_a_decode_error() {
    let (a, b) = Pipe::duplex().unwrap();
    a.send_bytes(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).unwrap();
    let err = b.recv::<String>().unwrap_err();
    assert!(err.is_decode(), "{err}");
    assert_eq!(err.kind(), ErrorKind::Decode);
    // The decoder's own error is the cause.
    let source = std::error::Error::source(&err).expect("a source");
    assert!(source.is::<postcard::Error>(), "{source:?}");
    assert_eq!(
        std::io::Error::from(err).kind(),
        std::io::ErrorKind::InvalidData
    );
}

#[test]
fn peer_dying_mid_message_is_an_error() {
    let (a, b) = Pipe::duplex().unwrap();
    let mut frame = 100u64.to_le_bytes().to_vec();
    frame.extend_from_slice(&[1u8; 10]); // 10 of the promised 100 bytes
    a.send_unframed(&frame).unwrap();
    drop(a);
    let err = b.recv_bytes().unwrap_err();
    assert!(err.is_poisoned() || err.is_eof(), "{err}");
}

#[test]
fn a_connection_passed_to_a_child_works_both_ways() {
    let (mine, theirs) = Pipe::duplex().unwrap();
    let mut p = Process::spawn(echo_loop, theirs).unwrap();
    for msg in [&b""[..], b"x", &[9u8; 100_000]] {
        mine.send_bytes(msg).unwrap();
        assert_eq!(mine.recv_bytes().unwrap(), msg);
    }
    mine.send(&"typed").unwrap();
    assert_eq!(mine.recv::<String>().unwrap(), "typed");
    drop(mine);
    assert_eq!(p.join().unwrap(), 4);
}

#[test]
fn echo_of_64_mib_through_a_child() {
    let (mine, theirs) = Pipe::duplex().unwrap();
    let mut p = Process::spawn(echo_loop, theirs).unwrap();
    let big: Vec<u8> = (0..64u32 << 20).map(|i| (i % 253) as u8).collect();
    std::thread::scope(|s| {
        let (mine, big) = (&mine, &big);
        s.spawn(move || mine.send_bytes(big).unwrap());
        let back = mine.recv_bytes().unwrap();
        assert!(back == *big);
    });
    drop(mine);
    assert_eq!(p.join().unwrap(), 1);
}

#[test]
fn sibling_to_sibling_pipe() {
    let (r, w) = Pipe::simplex().unwrap();
    let mut receiver = Process::spawn(sibling_receiver, r).unwrap();
    let mut sender = Process::spawn(sibling_sender, (w, 5u32)).unwrap();
    sender.join().unwrap();
    let got = receiver.join().unwrap();
    assert_eq!(
        got,
        (0..5).map(|i| format!("hello {i}")).collect::<Vec<_>>()
    );
}

#[test]
fn wait_on_connections_and_processes_together() {
    let (a, b) = Pipe::duplex().unwrap();
    let (c, d) = Pipe::duplex().unwrap();
    let ready =
        multiproc::wait(&[(&a).into(), (&c).into()], Some(Duration::from_millis(20))).unwrap();
    assert!(ready.is_empty());
    d.send(&1u8).unwrap();
    let ready = multiproc::wait(&[(&a).into(), (&c).into()], None).unwrap();
    assert_eq!(ready, vec![1]);
    drop(b);
    // `a` sees EOF once every copy of `b` is closed: while another test's
    // thread starts a child, that child holds a copy of every fd of this
    // process from its fork until its exec closes them (close-on-exec), so
    // a `wait` right after the drop may find only `c` ready (seen as `[1]`
    // in a run with 16 test threads). Wait (bounded) for `a` alone first.
    assert_eq!(
        multiproc::wait(&[(&a).into()], Some(LONG)).unwrap(),
        vec![0]
    );
    let ready = multiproc::wait(&[(&a).into(), (&c).into()], None).unwrap();
    assert_eq!(ready, vec![0, 1]); // a: EOF, c: data
}

#[test]
fn wait_beyond_64_objects() {
    let pairs: Vec<(Connection, Connection)> = (0..80).map(|_| Pipe::duplex().unwrap()).collect();
    pairs[77].1.send(&1u8).unwrap();
    let objs: Vec<multiproc::Waitable<'_>> = pairs.iter().map(|(a, _)| a.into()).collect();
    assert_eq!(multiproc::wait(&objs, None).unwrap(), vec![77]);
}

fn exit_code(p: &Popen) -> Option<i32> {
    p.wait(Some(Duration::from_secs(60)))
        .unwrap()
        .expect("worker still running after 60 s")
        .code()
}

#[test]
fn a_child_sharing_the_reader_takes_exactly_one_message() {
    let (r, w) = Pipe::simplex().unwrap();
    w.send(&1u32).unwrap();
    w.send(&2u32).unwrap();
    // The child gets its own copy of `r`; the parent keeps `r`.
    let child = Popen::spawn(recv_one_and_exit, &r).unwrap();
    assert_eq!(exit_code(&child), Some(11)); // the child took message 1
    w.send(&3u32).unwrap();
    drop(w);
    assert_eq!(r.recv::<u32>().unwrap(), 2); // message 2 is still there
    assert_eq!(r.recv::<u32>().unwrap(), 3);
    assert!(r.recv::<u32>().unwrap_err().is_eof());
}

#[test]
fn a_child_that_only_polls_consumes_nothing() {
    let (r, w) = Pipe::simplex().unwrap();
    w.send(&1u32).unwrap();
    w.send(&2u32).unwrap();
    let child = Popen::spawn(poll_and_exit, &r).unwrap();
    assert_eq!(exit_code(&child), Some(10));
    drop(w);
    assert_eq!(r.recv::<u32>().unwrap(), 1);
    assert_eq!(r.recv::<u32>().unwrap(), 2);
    assert!(r.recv::<u32>().unwrap_err().is_eof());
}

#[test]
fn poll_in_this_process_then_a_child_receives() {
    let (r, w) = Pipe::simplex().unwrap();
    w.send(&1u32).unwrap();
    w.send(&2u32).unwrap();
    drop(w);
    assert!(r.poll(Some(Duration::ZERO)).unwrap());
    let child = Popen::spawn(recv_one_and_exit, &r).unwrap();
    assert_eq!(exit_code(&child), Some(11));
    assert!(r.poll(Some(Duration::ZERO)).unwrap());
    assert_eq!(r.recv::<u32>().unwrap(), 2);
    assert!(r.recv::<u32>().unwrap_err().is_eof());
}

#[test]
fn a_child_takes_a_big_message_and_leaves_the_next() {
    // The big message's body takes the bulk lane on Unix; its header on
    // the pipe is read exactly, so the next frame stays in the pipe.
    let (r, w) = Pipe::simplex().unwrap();
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            w.send_bytes(&vec![7u8; 2 << 20]).unwrap();
            w.send(&2u32).unwrap();
        });
        let child = Popen::spawn(recv_bytes_one_and_exit, &r).unwrap();
        assert_eq!(exit_code(&child), Some(12)); // 2 MiB
        writer.join().unwrap();
    });
    drop(w);
    assert_eq!(r.recv::<u32>().unwrap(), 2);
    assert!(r.recv::<u32>().unwrap_err().is_eof());
}

#[test]
fn wait_reports_every_ready_object() {
    let (mine, theirs) = Pipe::duplex().unwrap();
    let mut p = Process::spawn(echo_loop, theirs).unwrap();
    drop(mine); // the worker sees EOF and exits
    let sentinel = p.sentinel();
    assert_eq!(multiproc::wait(&[sentinel.into()], None).unwrap(), vec![0]);
    // The exit is now known without asking the OS; the connection is
    // ready only as far as the OS knows.
    let (a, b) = Pipe::duplex().unwrap();
    b.send(&1u8).unwrap();
    let ready = multiproc::wait(&[sentinel.into(), (&a).into()], None).unwrap();
    assert_eq!(ready, vec![0, 1]);
    let ready = multiproc::wait(&[(&a).into(), sentinel.into()], Some(Duration::ZERO)).unwrap();
    assert_eq!(ready, vec![0, 1]);
    assert_eq!(p.join().unwrap(), 0);
}

/// Raises this process's soft fd limit to at least `want` (capped by the
/// hard limit); returns the soft limit now in force.
#[cfg(unix)]
#[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
fn raise_fd_limit(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into `lim`, which we own.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    if (lim.rlim_cur as u64) < want {
        lim.rlim_cur = (want as libc::rlim_t).min(lim.rlim_max);
        // SAFETY: setrlimit reads `lim`; raising the soft limit up to the
        // hard one is always allowed.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    }
    lim.rlim_cur as u64
}

#[cfg(windows)]
fn raise_fd_limit(_want: u64) -> u64 {
    u64::MAX
}

#[test]
fn one_child_gets_hundreds_of_duplex_connections() {
    // Unix: each end is 3 fds (two pipes and the bulk socket), and the
    // parent holds both ends plus a copy of the child's while spawning:
    // 9 fds per pair, and the child receives 3 per pair, more than one
    // SCM_RIGHTS message (253 fds) carries.
    let limit = raise_fd_limit(4096);
    for n in [100usize, 150, 400] {
        if n as u64 * 9 + 100 > limit {
            eprintln!("skipping {n} connections: the fd limit is {limit}");
            continue;
        }
        let (mine, theirs): (Vec<Connection>, Vec<Connection>) =
            (0..n).map(|_| Pipe::duplex().unwrap()).unzip();
        let mut p = Process::spawn(echo_once_each, theirs)
            .unwrap_or_else(|e| panic!("spawn with {n} connections: {e}"));
        for (i, c) in mine.iter().enumerate() {
            c.send(&(i as u32)).unwrap();
        }
        for (i, c) in mine.iter().enumerate() {
            assert_eq!(c.recv::<u32>().unwrap(), i as u32);
        }
        assert_eq!(p.join().unwrap(), n);
    }
}
