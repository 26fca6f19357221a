//! Listener and Client: the authentication handshake between processes
//! that did not start each other, over loopback TCP and over a local
//! address (`Listener::bind_local`: a named pipe on Windows, a Unix-domain
//! socket on Unix), and what happens to peers that don't follow it.

#[path = "../common/mod.rs"]
mod common;
mod handshake;
mod local;
mod tcp;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{in_scenario, scenario, LONG};
use multiproc::{Address, Barrier, Client, Connection, ErrorKind, Listener, Process};

multiproc::test_support!();

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

/// The error a child saw: its kind (Debug) and message.
type ChildError = (String, String);

fn child_error(e: multiproc::Error) -> ChildError {
    (format!("{:?}", e.kind()), e.to_string())
}

/// Connects back to `addr` with `key`, sends its pid and `n`, and returns
/// what the listener answers.
fn connect_back((addr, key, n): (String, Option<Vec<u8>>, u64)) -> Result<u64, ChildError> {
    let conn = Client::connect(addr.as_str(), key.as_deref()).map_err(child_error)?;
    conn.send(&(std::process::id(), n)).map_err(child_error)?;
    conn.recv::<u64>().map_err(child_error)
}

/// Connects back and echoes messages until the listener closes; returns
/// how many.
fn echo_back((addr, key): (String, Vec<u8>)) -> Result<u64, ChildError> {
    let conn = Client::connect(addr.as_str(), Some(&key)).map_err(child_error)?;
    let mut n = 0;
    loop {
        match conn.recv_bytes() {
            Ok(m) => conn.send_bytes(&m).map_err(child_error)?,
            Err(e) if e.is_eof() => return Ok(n),
            Err(e) => return Err(child_error(e)),
        }
        n += 1;
    }
}

/// Receives a number on a connection it was given, sends it back plus
/// one, and returns it.
fn add_one(conn: Connection) -> u32 {
    let v: u32 = conn.recv().expect("recv in the child");
    conn.send(&(v + 1)).expect("send in the child");
    v
}

/// Tries to send a handle on a connection it was given; the error, if
/// refused.
fn send_a_handle(conn: Connection) -> Option<String> {
    let (_r, w) = std::io::pipe().expect("a pipe in the child");
    conn.send(&multiproc::PassedHandle::new(w.into()))
        .err()
        .map(|e| e.to_string())
}

/// Waits at `start` with the other clients, then does `connect_back`
/// with its pid as the number.
fn connect_back_together((start, addr): (Barrier, String)) -> Result<u64, ChildError> {
    let _me = start.register().map_err(child_error)?;
    start.wait_timeout(LONG).map_err(child_error)?;
    connect_back((addr, Some(KEY.to_vec()), u64::from(std::process::id())))
}

multiproc::entry!(
    connect_back,
    echo_back,
    add_one,
    connect_back_together,
    send_a_handle
);

fn listener() -> Listener {
    Listener::bind("127.0.0.1:0", Some(KEY)).unwrap()
}

fn tcp_addr(l: &Listener) -> std::net::SocketAddr {
    match l.address() {
        Address::Tcp(a) => *a,
        other => panic!("not TCP: {other}"),
    }
}

/// Serves one `connect_back` child: checks its pid, answers `n * 2`.
fn serve_connect_back(l: &Listener, child_pid: u32) -> u64 {
    let conn = l.accept().expect("accept");
    let (pid, n): (u32, u64) = conn.recv().unwrap();
    assert_eq!(pid, child_pid, "the connection is not the child's");
    conn.send(&(n * 2)).unwrap();
    n
}

/// A `connect_back` child with the right key and `n` gets through `l`:
/// served (see [`serve_connect_back`]), it returns `2 * n`.
fn a_child_gets_through(l: &Listener, n: u64) {
    let addr = l.address().to_string();
    let mut child = Process::spawn(connect_back, (addr, Some(KEY.to_vec()), n)).unwrap();
    assert_eq!(serve_connect_back(l, child.pid()), n);
    assert_eq!(child.join().unwrap(), Ok(2 * n));
}

/// An `echo_back` child connected through `l`, whose echoes of 0, 1,
/// 64 KiB + 3 and 3 MiB bytes came back as sent: the child and the
/// connection.
fn an_echoing_child(l: &Listener) -> (Process<Result<u64, ChildError>>, Connection) {
    let addr = l.address().to_string();
    let child = Process::spawn(echo_back, (addr, KEY.to_vec())).unwrap();
    let conn = l.accept().unwrap();
    for len in [0usize, 1, 64 * 1024 + 3, 3 << 20] {
        let msg: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        conn.send_bytes(&msg).unwrap();
        assert_eq!(conn.recv_bytes().unwrap(), msg, "{len} bytes");
    }
    (child, conn)
}

/// A child with a wrong key is refused by `l`, and is told so; the next
/// one, with the right key, gets through.
fn a_wrong_key_is_refused_and_the_next_child_gets_through(l: &Listener) {
    let addr = l.address().to_string();
    let mut bad = Process::spawn(connect_back, (addr, Some(b"guess".to_vec()), 1)).unwrap();
    let e = l.accept().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Authentication, "{e}");
    assert!(e.to_string().contains("its key is not ours"), "{e}");
    let (kind, msg) = bad.join().unwrap().unwrap_err();
    assert_eq!(kind, "Authentication", "{msg}");
    assert!(msg.contains("our key is not its key"), "{msg}");

    // The next client with the right key gets through.
    a_child_gets_through(l, 5);
}
