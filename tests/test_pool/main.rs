//! Pool: results, chunking, and behavior under faults (crashing, hanging,
//! panicking workers; failing initializers; bad inputs; chaos).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use std::path::PathBuf;

use multiproc::{Connection, Pipe, Pool, PoolBuilder, PopenBuilder, Stdio};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

multiproc::test_support!();

mod api;
#[path = "../common/mod.rs"]
mod common;
mod errors;
mod failures;
mod lifecycle;
use common::{block_forever, pool, square};

fn my_pid(_: u64) -> u32 {
    std::process::id()
}

fn spin(_: ()) {
    let mut x = 0u64;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

/// Task `i` misbehaves in the way `how` says when `i == 3`.
fn faulty((i, how): (u64, u8)) -> u64 {
    if i == 3 {
        match how {
            0 => std::process::abort(),
            1 => std::process::exit(7),
            2 => panic!("task {i} panicked"),
            3 => {
                #[allow(unconditional_recursion)]
                fn deep(n: u64) -> u64 {
                    let pad = std::hint::black_box([n; 64]);
                    deep(pad[0] + 1) + pad[1]
                }
                deep(0)
            }
            _ => unreachable!(),
        };
    }
    i * 10
}

static INIT_VALUE: AtomicU64 = AtomicU64::new(0);

fn init_ok(v: u64) {
    INIT_VALUE.store(v, Ordering::SeqCst);
}

fn init_fails(_: ()) {
    panic!("initializer says no")
}

fn read_init(_: ()) -> u64 {
    INIT_VALUE.load(Ordering::SeqCst)
}

fn slow_square(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(1)); // workload, not synchronization
    x * x
}

/// Serializes fine except for 13; deserializes fine except for 17.
#[derive(Debug, PartialEq)]
struct Picky(u64);

impl Serialize for Picky {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == 13 {
            return Err(serde::ser::Error::custom("13 can't be serialized"));
        }
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for Picky {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u64::deserialize(d)?;
        if v == 17 {
            return Err(serde::de::Error::custom("17 can't be deserialized"));
        }
        Ok(Picky(v))
    }
}

fn picky(p: Picky) -> Picky {
    p
}

/// The argument of `hold_channel`. Serialized in a pool worker, it sends
/// that worker's own channel to the pool (so the grandchild gets a copy of
/// it, as a forked child inherits one), then `ready`.
struct Holder {
    worker: Option<Connection>,
    ready: Connection,
}

impl Serialize for Holder {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let worker = match &self.worker {
            Some(c) => c,
            None => multiproc::test_hooks::pool_worker_connection()
                .ok_or_else(|| serde::ser::Error::custom("not in a pool worker"))?,
        };
        (worker, &self.ready).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Holder {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (worker, ready) = <(Connection, Connection)>::deserialize(d)?;
        Ok(Holder {
            worker: Some(worker),
            ready,
        })
    }
}

/// A grandchild that holds a pool worker's channel. It lives a minute at
/// most (not synchronization: a bound, so nothing lingers if the test
/// fails); the test kills it sooner.
fn hold_channel(h: Holder) {
    h.ready.send(&std::process::id()).unwrap();
    std::thread::sleep(Duration::from_secs(60));
    drop(h);
}

/// A task that starts a grandchild holding this worker's channel, waits
/// until it runs, writes its pid to `path`, and aborts.
fn abort_while_a_grandchild_holds_the_channel(path: PathBuf) {
    let (mine, theirs) = Pipe::duplex().unwrap();
    let holder = Holder {
        worker: None,
        ready: theirs,
    };
    let grandchild = PopenBuilder::new()
        .stdio(multiproc::Stdio::Null)
        .spawn(hold_channel, &holder)
        .unwrap();
    drop(holder);
    let pid: u32 = mine.recv().unwrap();
    assert_eq!(pid, grandchild.pid());
    std::fs::write(&path, pid.to_string()).unwrap();
    std::process::abort();
}

/// Sends `frame` to the parent as a hostile worker would, then waits to
/// be killed.
fn send_raw_then_hang(frame: Vec<u8>) {
    let conn = multiproc::test_hooks::pool_worker_connection().unwrap();
    conn.send_unframed(&frame).unwrap();
    block_forever(())
}

multiproc::entry!(
    my_pid,
    spin,
    faulty,
    init_ok,
    init_fails,
    read_init,
    slow_square,
    picky,
    send_raw_then_hang,
    hold_channel,
    abort_while_a_grandchild_holds_the_channel
);
