//! Process: typed spawn/join with Python's semantics, ported from the
//! behaviors of CPython's test_multiprocessing Process tests.

use std::time::Duration;

use multiproc::{Connection, Process, ProcessBuilder};

multiproc::test_support!();

mod basics;
#[path = "../common/mod.rs"]
mod common;
#[cfg(any(target_os = "linux", windows))]
mod daemons;
mod drops;
mod stdio;
use common::{block_forever, do_nothing, exit_with, in_scenario, scenario, square, LONG};

fn panics(msg: String) -> u32 {
    panic!("{msg}")
}

fn aborts(_: ()) {
    std::process::abort()
}

fn my_name(_: ()) -> String {
    multiproc::current_process_name().to_string()
}

/// A grandchild: says hello (its pid) over `hello`, then blocks forever.
fn hello_then_block(hello: Connection) {
    hello.send(&std::process::id()).expect("say hello");
    drop(hello);
    block_forever(())
}

/// How [`spawn_grandchild`] ends once it gets the word.
#[derive(serde::Serialize, serde::Deserialize, Clone, Copy, Debug)]
enum Ending {
    /// Return from the entry.
    Return,
    /// `std::process::exit(0)` inside the entry.
    Exit,
}

/// What [`spawn_grandchild`] does: the grandchild's flags and how to end.
#[derive(serde::Serialize, serde::Deserialize, Clone, Copy, Debug)]
struct Grandchild {
    daemon: bool,
    kill_on_parent_death: bool,
    ending: Ending,
}

/// Spawns a grandchild (daemonic and/or dying with us, as asked) that says
/// hello over `hello` and blocks forever, drops its handle at once (the
/// grandchild must start all the same), reports its pid over `report`,
/// then waits for a word on `report` before it ends as asked.
fn spawn_grandchild((report, hello, how): (Connection, Connection, Grandchild)) {
    let g = ProcessBuilder::new()
        .daemon(how.daemon)
        .kill_on_parent_death(how.kill_on_parent_death)
        .spawn(hello_then_block, hello)
        .expect("spawn grandchild");
    let pid = g.pid();
    // Dropping the handle neither kills nor forgets the grandchild, nor
    // keeps it from starting: a daemon stays registered until this process
    // exits.
    drop(g);
    report.send(&pid).expect("report pid");
    let _go: u8 = report.recv().expect("wait for go");
    match how.ending {
        Ending::Return => {}
        Ending::Exit => std::process::exit(0),
    }
}

/// Sends a greeting over `conn` and returns.
fn send_hello(conn: Connection) {
    conn.send("hello from the child").expect("send hello");
}

/// Writes "ran" to the file at `path`.
fn write_marker(path: String) {
    std::fs::write(path, "ran").expect("write the marker");
}

/// Starts a child that greets over `conn`, drops it and returns at once.
fn spawn_hello_and_return(conn: Connection) {
    drop(Process::<()>::spawn(send_hello, conn).expect("spawn"));
}

fn talk(n: u32) -> u32 {
    for i in 0..n {
        println!("out {i}");
    }
    eprintln!("err done");
    n
}

multiproc::entry!(talk);

/// Writes a line to stdout and one to stderr.
fn leak_both(_: ()) {
    println!("LEAK out");
    eprintln!("LEAK err");
}

/// Runs `leak_both` in a grandchild whose stdout (`which == 1`) or stderr
/// (`which == 2`) is the null device, the other stream inherited.
fn quiet_grandchild(which: u8) {
    let mut b = ProcessBuilder::new();
    if which == 1 {
        b.stdout(multiproc::Stdio::Null);
    } else {
        b.stderr(multiproc::Stdio::Null);
    }
    let mut p: Process<()> = b.spawn(leak_both, ()).expect("spawn grandchild");
    p.join().expect("grandchild");
}

multiproc::entry!(leak_both, quiet_grandchild);

multiproc::entry!(
    panics,
    aborts,
    my_name,
    spawn_grandchild,
    hello_then_block,
    send_hello,
    spawn_hello_and_return,
    write_marker
);
