//! Tasks and workers that fail: killed, aborted, exited, panicked,
//! overflowed, chaos; frames a worker should not send.

use super::*;

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
