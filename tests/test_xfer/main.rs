//! Handles that cross at run time: inside messages over a `Connection`
//! and in pool tasks, with real worker processes of this test binary
//! (Linux, and Windows under Wine).

use std::io::{Read, Write};

use multiproc::{Connection, PassedHandle, Pipe, Pool, Process};

multiproc::test_support!();

#[path = "../common/mod.rs"]
mod common;
mod connected;
mod messages;
mod pool;

use common::{census, serial};

/// Receives a `Connection` end over `ctl`, then serves on it: each `u64`
/// that comes is sent back doubled, until 0; reports on `ctl` how many.
fn serve_received_end(ctl: Connection) -> u64 {
    let end: Connection = ctl.recv().expect("the end sent over ctl");
    let mut served = 0;
    loop {
        let x: u64 = end.recv().expect("a number on the received end");
        if x == 0 {
            break;
        }
        end.send(&(x * 2)).expect("send back on the received end");
        served += 1;
    }
    ctl.send(&served).expect("report on ctl");
    served
}

/// Receives pipe ends over `ctl` as one message and writes its index
/// (as a byte) and its process id into each.
fn write_into_received(ctl: Connection) -> usize {
    let ends: Vec<PassedHandle> = ctl.recv().expect("the ends");
    let n = ends.len();
    for (i, h) in ends.into_iter().enumerate() {
        let mut w = std::io::PipeWriter::from(h.into_inner());
        w.write_all(&[(i % 251) as u8]).expect("write");
    }
    n
}

/// A pool task: writes `x` (8 bytes) into the pipe end it was given.
fn write_to_passed((h, x): (PassedHandle, u64)) -> u64 {
    let mut w = std::io::PipeWriter::from(h.into_inner());
    w.write_all(&x.to_le_bytes()).expect("write");
    x
}

/// A pool task: sends `x + 1` on the `Connection` end it was given.
fn send_on_passed((c, x): (Connection, u64)) -> u64 {
    c.send(&(x + 1)).expect("send on the passed end");
    x
}

/// A pool task: the number of fds / handles this worker has open.
fn open_count(_: ()) -> usize {
    multiproc::test_hooks::open_handle_count().expect("count")
}

/// A pool task: writes `x` into the pipe end it was given, if any; how
/// many task windows this worker has opened so far.
fn write_if_passed((h, x): (Option<PassedHandle>, u64)) -> u64 {
    if let Some(h) = h {
        let mut w = std::io::PipeWriter::from(h.into_inner());
        w.write_all(&x.to_le_bytes()).expect("write");
    }
    multiproc::test_hooks::task_windows_opened()
}

multiproc::entry!(
    serve_received_end,
    write_into_received,
    write_to_passed,
    send_on_passed,
    open_count,
    write_if_passed
);
