//! Pool: results, chunking, and behavior under faults (crashing, hanging,
//! panicking workers; failing initializers; bad inputs; chaos).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use std::path::PathBuf;

use multiproc::{Connection, Pipe, Pool, PoolBuilder, PopenBuilder, Stdio};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

multiproc::test_support!();

mod common;
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

#[test]
fn map_is_ordered_and_complete() {
    let p = pool(2);
    let out = p.map(square, 0..1000u64).unwrap();
    assert_eq!(out, (0..1000u64).map(|x| x * x).collect::<Vec<_>>());
    let out = p.map_chunked(square, 0..100u64, 7).unwrap();
    assert_eq!(out, (0..100u64).map(|x| x * x).collect::<Vec<_>>());
    assert_eq!(p.map(square, Vec::<u64>::new()).unwrap(), Vec::<u64>::new());
}

#[test]
fn imap_streams_in_order_and_unordered_as_completed() {
    let p = pool(2);
    let v: Vec<u64> = p
        .imap(square, 0..500u64)
        .chunksize(1)
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(v, (0..500u64).map(|x| x * x).collect::<Vec<_>>());
    let mut u: Vec<u64> = p
        .imap_unordered(square, 0..500u64)
        .map(|r| r.unwrap())
        .collect();
    u.sort_unstable();
    assert_eq!(u, (0..500u64).map(|x| x * x).collect::<Vec<_>>());
}

#[test]
fn submit_get_timeout_and_ready() {
    let p = pool(2);
    let a = p.submit(square, 12u64);
    assert_eq!(a.get().unwrap(), 144);
    let mut h = p.submit(block_forever, ());
    assert!(h.get_timeout(Duration::from_millis(50)).is_none());
    assert!(!h.is_ready());
    p.terminate();
    let err = h
        .get_timeout(Duration::from_secs(30))
        .expect("terminated pool answers")
        .unwrap_err();
    assert!(err.is_pool_closed(), "{err}");
    assert_eq!(err.kind(), multiproc::ErrorKind::PoolClosed);
}

#[test]
fn a_worker_killed_from_outside_fails_only_its_task() {
    let p = pool(2);
    let h = p.submit(block_forever, ());
    let killed = p.wait_busy(Duration::from_secs(30));
    assert_eq!(killed.len(), 1, "one worker runs `block_forever`");
    assert!(p.kill_worker(killed[0]));
    let err = h.get().unwrap_err();
    assert!(err.is_worker_died(), "{err}");
    assert_eq!(err.kind(), multiproc::ErrorKind::WorkerDied);
    let st = err.exit_status().expect("status known");
    assert!(!st.success());
    assert!(
        err.to_string().contains(&err.pid().unwrap().to_string()),
        "{err}"
    );
    // Replaced, and usable.
    assert_eq!(p.map(square, 0..100u64).unwrap()[99], 99 * 99);
    let now = p.pids();
    assert!(
        !now.is_empty() && now.iter().all(|pid| !killed.contains(pid)),
        "{now:?}"
    );
}

fn faulty_run(how: u8) -> (Vec<multiproc::Result<u64>>, Pool) {
    let p = PoolBuilder::new()
        .workers(2)
        .stdio(Stdio::Null)
        .build()
        .unwrap();
    let out = p
        .imap(faulty, (0..20u64).map(|i| (i, how)))
        .chunksize(1)
        .collect::<Vec<_>>();
    (out, p)
}

fn assert_only_task_3_failed(out: &[multiproc::Result<u64>]) {
    assert_eq!(out.len(), 20);
    for (i, r) in out.iter().enumerate() {
        if i == 3 {
            assert!(r.is_err());
        } else {
            assert_eq!(*r.as_ref().unwrap(), i as u64 * 10, "task {i}");
        }
    }
}

/// How `std::process::abort()` ends a process.
fn assert_aborted(st: multiproc::ExitStatus) {
    if cfg!(unix) {
        assert_eq!(st.signal(), Some(6));
    } else {
        // Rust's abort() on Windows is __fastfail: STATUS_STACK_BUFFER_OVERRUN.
        assert_eq!(st.code(), Some(0xC000_0409_u32 as i32));
    }
}

#[test]
fn abort_in_a_task_fails_only_that_task() {
    let (out, p) = faulty_run(0);
    assert_only_task_3_failed(&out);
    let err = out[3].as_ref().unwrap_err();
    assert!(err.is_worker_died(), "{err}");
    assert_aborted(err.exit_status().unwrap());
    assert_eq!(p.map(square, [3u64]).unwrap(), vec![9]);
}

/// Kills process `pid` (not our child) with the system's own tool.
#[cfg(any(target_os = "linux", windows))]
fn kill_pid(pid: u32) {
    let pid = pid.to_string();
    let status = if cfg!(windows) {
        std::process::Command::new("taskkill")
            .args(["/F", "/PID", &pid])
            .stdout(std::process::Stdio::null())
            .status()
    } else {
        std::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status()
    };
    assert!(status.unwrap().success(), "cannot kill {pid}");
}

#[cfg(any(target_os = "linux", windows))]
#[test]
fn a_dead_worker_is_noticed_while_a_grandchild_still_holds_its_channel() {
    let path = std::env::temp_dir().join(format!("multiproc-holder-{}", std::process::id()));
    let p = PoolBuilder::new()
        .workers(1)
        .stdio(Stdio::Null)
        .task_timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let err = p
        .submit(abort_while_a_grandchild_holds_the_channel, path.clone())
        .get()
        .unwrap_err();
    // The worker wrote the grandchild's pid before it aborted.
    let holder: u32 = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    let _ = std::fs::remove_file(&path);
    let watch = multiproc::test_hooks::watch_pid(holder);
    let alive_at_error = matches!(
        watch.as_ref().map(|w| w.wait(Duration::ZERO)),
        Ok(Ok(false))
    );
    if alive_at_error {
        kill_pid(holder);
        assert!(watch.unwrap().wait(Duration::from_secs(30)).unwrap());
    }
    assert!(
        alive_at_error,
        "the error came only once the grandchild holding the channel was gone: {err}"
    );
    assert!(err.is_worker_died() && !err.is_timeout(), "{err}");
    assert_aborted(err.exit_status().unwrap());
    assert_eq!(p.map(square, 0..4u64).unwrap(), vec![0, 1, 4, 9]);
}

#[test]
fn process_exit_in_a_task_fails_only_that_task() {
    let (out, _p) = faulty_run(1);
    assert_only_task_3_failed(&out);
    let err = out[3].as_ref().unwrap_err();
    assert!(err.is_worker_died(), "{err}");
    assert_eq!(err.exit_status().unwrap().code(), Some(7));
}

#[test]
fn a_panicking_task_fails_alone_and_the_worker_survives() {
    let p = PoolBuilder::new()
        .workers(2)
        .stdio(Stdio::Null)
        .build()
        .unwrap();
    let before = {
        let mut v = p.pids();
        v.sort();
        v
    };
    let out = p.map_results(faulty, (0..20u64).map(|i| (i, 2u8)));
    assert_only_task_3_failed(&out);
    let err = out[3].as_ref().unwrap_err();
    assert!(err.is_panic(), "{err}");
    assert_eq!(err.panic_report().unwrap().message, "task 3 panicked");
    let after = {
        let mut v = p.pids();
        v.sort();
        v
    };
    assert_eq!(before, after, "a panic must not cost a worker");
    // map (fail fast) reports it as the error.
    assert!(p
        .map(faulty, (0..20u64).map(|i| (i, 2u8)))
        .unwrap_err()
        .is_panic());
}

#[test]
fn stack_overflow_in_a_task_fails_only_that_task() {
    let (out, _p) = faulty_run(3);
    assert_only_task_3_failed(&out);
    assert!(out[3].as_ref().unwrap_err().is_worker_died());
}

#[test]
fn a_task_past_its_timeout_fails_and_its_worker_is_replaced() {
    let p = PoolBuilder::new()
        .workers(2)
        .task_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let h = p.submit(spin, ());
    let ok = p.submit(square, 5u64);
    let err = h.get().unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(err.kind(), multiproc::ErrorKind::Timeout);
    assert_eq!(
        std::io::Error::from(err).kind(),
        std::io::ErrorKind::TimedOut
    );
    assert_eq!(ok.get().unwrap(), 25);
    assert_eq!(p.map(square, 0..50u64).unwrap()[7], 49);
    assert!(!p.pids().is_empty());
}

#[test]
fn max_tasks_per_child_replaces_workers() {
    let p = PoolBuilder::new()
        .workers(2)
        .max_tasks_per_child(5)
        .build()
        .unwrap();
    let pids = p.map_chunked(my_pid, 0..40u64, 1).unwrap();
    let mut count: HashMap<u32, usize> = HashMap::new();
    for pid in pids {
        *count.entry(pid).or_default() += 1;
    }
    assert!(count.values().all(|&n| n <= 5), "{count:?}");
    assert!(count.len() >= 8, "{count:?}");
    assert_eq!(p.map(square, 0..10u64).unwrap()[3], 9);
}

#[test]
fn initializer_runs_once_per_worker() {
    let p = PoolBuilder::new()
        .workers(2)
        .initializer(init_ok, 41u64)
        .build()
        .unwrap();
    let v = p.map_chunked(read_init, vec![(); 10], 1).unwrap();
    assert!(v.iter().all(|&x| x == 41), "{v:?}");
}

#[test]
fn a_failing_initializer_is_a_clear_error_not_a_respawn_loop() {
    let err = PoolBuilder::new()
        .workers(2)
        .stdio(Stdio::Null)
        .initializer(init_fails, ())
        .build()
        .unwrap_err();
    assert!(err.is_pool_broken(), "{err}");
    assert_eq!(err.kind(), multiproc::ErrorKind::PoolBroken);
    assert!(err.to_string().contains("initializer says no"), "{err}");
}

#[test]
fn initializer_arguments_that_cannot_be_serialized_are_an_encode_error() {
    let err = PoolBuilder::new()
        .workers(1)
        .initializer(picky, Picky(13))
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), multiproc::ErrorKind::Encode);
    assert!(err.to_string().contains("13 can't be serialized"), "{err}");
}

#[test]
fn unserializable_inputs_and_undecodable_results_are_task_errors() {
    let p = pool(2);
    let out = p.map_results(picky, (10..20u64).map(Picky));
    for (i, r) in out.iter().enumerate() {
        let v = 10 + i as u64;
        match v {
            // 13 fails here, serialized by the parent; 17 in the worker.
            13 => assert_eq!(
                r.as_ref().unwrap_err().kind(),
                multiproc::ErrorKind::Encode,
                "{v}: {r:?}"
            ),
            17 => assert_eq!(
                r.as_ref().unwrap_err().kind(),
                multiproc::ErrorKind::Decode,
                "{v}: {r:?}"
            ),
            _ => assert_eq!(r.as_ref().unwrap(), &Picky(v)),
        }
    }
}

#[test]
fn unregistered_entry_is_an_error() {
    fn nope(x: u64) -> u64 {
        x
    }
    let p = pool(1);
    assert!(p.map(nope, [1u64]).unwrap_err().is_unknown_entry());
    assert!(p.submit(nope, 1u64).get().unwrap_err().is_unknown_entry());
}

#[test]
fn close_then_join_finishes_the_work() {
    let p = pool(2);
    let hs: Vec<_> = (0..10u64).map(|i| p.submit(square, i)).collect();
    p.close();
    assert!(p.submit(square, 1u64).get().unwrap_err().is_pool_closed());
    p.join().unwrap();
    assert!(p.pids().is_empty());
    let got: Vec<u64> = hs.into_iter().map(|h| h.get().unwrap()).collect();
    assert_eq!(got, (0..10u64).map(|x| x * x).collect::<Vec<_>>());
}

#[cfg(any(target_os = "linux", windows))]
#[test]
fn drop_with_a_worker_stuck_in_a_loop_does_not_hang() {
    let p = pool(1);
    let watch = multiproc::test_hooks::watch_pid(p.pids()[0]).unwrap();
    let h = p.submit(spin, ());
    drop(p);
    assert!(
        watch.wait(Duration::ZERO).unwrap(),
        "drop returned before the worker was gone"
    );
    assert!(h.get().is_err());
}

#[test]
fn chaos_every_task_ends_once_as_value_or_worker_died() {
    let p = PoolBuilder::new()
        .workers(2)
        .stdio(Stdio::Null)
        .build()
        .unwrap();
    let kills = AtomicU64::new(0);
    let done = std::sync::atomic::AtomicBool::new(false);
    let results: Vec<multiproc::Result<u64>> = std::thread::scope(|s| {
        s.spawn(|| {
            let mut rng = 0x9e3779b97f4a7c15u64;
            while kills.load(Ordering::SeqCst) < 100 && !done.load(Ordering::SeqCst) {
                let pids = p.pids();
                if pids.is_empty() {
                    continue;
                }
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                if p.kill_worker(pids[(rng % pids.len() as u64) as usize]) {
                    kills.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::yield_now();
            }
        });
        let r = p.imap(slow_square, 0..10_000u64).chunksize(1).collect();
        done.store(true, Ordering::SeqCst);
        r
    });
    assert_eq!(results.len(), 10_000);
    let mut died = 0;
    for (i, r) in results.iter().enumerate() {
        match r {
            Ok(v) => assert_eq!(*v, (i * i) as u64),
            Err(e) => {
                assert!(e.is_worker_died(), "task {i}: {e}");
                died += 1;
            }
        }
    }
    // Each kill fails at most the one task its worker was running.
    assert!(
        died <= kills.load(Ordering::SeqCst),
        "{died} failures for {kills:?} kills"
    );
    assert_eq!(p.map(square, 0..10u64).unwrap()[9], 81);
}

#[test]
fn an_unserializable_input_is_an_encode_error_through_every_call() {
    let p = pool(1);
    let via_submit = p.submit(picky, Picky(13)).get().unwrap_err();
    let via_map = p.map(picky, [Picky(13)]).unwrap_err();
    let via_imap = p.imap(picky, [Picky(13)]).next().unwrap().unwrap_err();
    let via_unordered = p
        .imap_unordered(picky, [Picky(13)])
        .next()
        .unwrap()
        .unwrap_err();
    for e in [via_submit, via_map, via_imap, via_unordered] {
        assert!(e.is_encode() && !e.is_decode(), "{e}");
    }
}

#[test]
fn zero_workers_and_zero_max_tasks_per_child_are_usage_errors() {
    let e = Pool::new(0).unwrap_err();
    assert!(e.is_usage() && !e.is_pool_broken(), "{e}");
    assert!(e.to_string().contains("at least one worker"), "{e}");
    let e = PoolBuilder::new().workers(0).build().unwrap_err();
    assert!(e.is_usage(), "{e}");
    assert_eq!(e.kind(), multiproc::ErrorKind::Usage);
    let e = PoolBuilder::new()
        .workers(1)
        .max_tasks_per_child(0)
        .build()
        .unwrap_err();
    assert!(e.is_usage(), "{e}");
    assert!(e.to_string().contains("max_tasks_per_child"), "{e}");
    assert_eq!(
        std::io::Error::from(e).kind(),
        std::io::ErrorKind::InvalidInput
    );
}

#[test]
fn capture_stdio_is_refused_when_the_pool_is_built() {
    let e = PoolBuilder::new()
        .workers(1)
        .stdio(Stdio::Capture)
        .build()
        .unwrap_err();
    assert!(e.is_usage(), "{e}");
    assert!(e.to_string().contains("Stdio::Capture"), "{e}");
    // The other choices still build.
    for s in [Stdio::Inherit, Stdio::Null] {
        let p = PoolBuilder::new().workers(1).stdio(s).build().unwrap();
        assert_eq!(p.map(square, [3u64]).unwrap(), vec![9]);
    }
}

#[test]
fn join_before_close_is_a_usage_error_and_leaves_the_pool_usable() {
    let p = pool(1);
    let e = p.join().unwrap_err();
    assert!(e.is_usage() && !e.is_pool_closed(), "{e}");
    assert!(e.to_string().contains("close()"), "{e}");
    assert_eq!(p.submit(square, 4u64).get().unwrap(), 16);
    p.close();
    p.join().unwrap();
}

/// A pool of one whose worker sends `frame` while running a task: that
/// task's error.
fn hostile_frame(frame: Vec<u8>) -> (multiproc::Error, u32) {
    let p = pool(1);
    let pid = p.pids()[0];
    let err = p.submit(send_raw_then_hang, frame).get().unwrap_err();
    // Replaced, and usable.
    assert_eq!(p.map(square, 0..10u64).unwrap()[3], 9);
    assert!(!p.pids().contains(&pid));
    (err, pid)
}

#[test]
fn an_over_cap_frame_from_a_worker_is_a_protocol_violation_naming_it() {
    let (err, pid) = hostile_frame(u64::MAX.to_le_bytes().to_vec());
    assert!(err.is_protocol_violation(), "{err}");
    assert_eq!(err.kind(), multiproc::ErrorKind::ProtocolViolation);
    assert!(!err.is_worker_died(), "{err}");
    assert_eq!(err.pid(), Some(pid));
    let msg = err.to_string();
    assert!(
        msg.contains(&pid.to_string()) && msg.contains("cap"),
        "{msg}"
    );
    assert!(!msg.contains("signal"), "{msg}");
}

#[test]
fn a_garbage_frame_from_a_worker_is_a_protocol_violation_naming_it() {
    let mut frame = 4u64.to_le_bytes().to_vec();
    frame.extend_from_slice(&[0xff; 4]); // no FromWorker starts like this
    let (err, pid) = hostile_frame(frame);
    assert!(err.is_protocol_violation(), "{err}");
    assert_eq!(err.pid(), Some(pid));
    let msg = err.to_string();
    assert!(msg.contains("not a pool message"), "{msg}");
    assert!(!msg.contains("signal"), "{msg}");
}

/// 0, 1, 2, … then a panic when item `at` is pulled.
fn panicking_inputs(at: u64) -> impl Iterator<Item = u64> {
    (0..10u64).inspect(move |&i| {
        if i == at {
            panic!("input {i} can't be made")
        }
    })
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

#[test]
fn a_panic_in_the_imap_input_comes_after_the_earlier_results() {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    let p = pool(2);
    let mut got = Vec::new();
    let mut it = p.imap(square, panicking_inputs(3)).chunksize(1);
    let caught = catch_unwind(AssertUnwindSafe(|| {
        for r in &mut it {
            got.push(r.unwrap());
        }
    }));
    assert_eq!(got, vec![0, 1, 4], "the results before the panic, in order");
    let msg = panic_message(caught.expect_err("the input's panic resumes"));
    assert_eq!(msg, "input 3 can't be made");
    assert!(it.next().is_none(), "nothing after the panic");

    // Unordered: every earlier result, then the panic.
    let mut got = Vec::new();
    let caught = catch_unwind(AssertUnwindSafe(|| {
        for r in p.imap_unordered(square, panicking_inputs(3)).chunksize(1) {
            got.push(r.unwrap());
        }
    }));
    got.sort_unstable();
    assert_eq!(got, vec![0, 1, 4]);
    assert!(caught.is_err());

    // map reaches it after the earlier tasks succeeded.
    let caught = catch_unwind(AssertUnwindSafe(|| p.map(square, panicking_inputs(5))));
    assert_eq!(
        panic_message(caught.expect_err("map panics")),
        "input 5 can't be made"
    );
    // The pool is fine.
    assert_eq!(p.map(square, 0..4u64).unwrap(), vec![0, 1, 4, 9]);
}
