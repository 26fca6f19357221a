//! The listener's handover of a worker's connection to its launch: a
//! hello of another build, a worker that exits or connects early, a
//! replacement's launch that is still pending.

use super::*;

#[cfg(unix)]
#[test]
fn a_hello_of_another_build_is_refused_as_such() {
    // The test hook makes the worker send the hello of an older build
    // (without the host), which this build can't decode.
    let msg = spawn_error(1, &["env", "MULTIPROC_TEST_OLD_HELLO=1", "{exe}"]);
    assert!(
        msg.contains("that this build can't read")
            && msg.contains("a worker of a different build/protocol"),
        "{msg}"
    );
}

/// A worker that finished its side of the handshake, said its hello and
/// exited (its launcher command with it) before the pool's listener had
/// handed its connection over is still heard: here its hello, of another
/// build, is refused as such — not "the launcher command … exited with
/// exit code 0 before its worker connected back", which a loaded machine
/// once made `a_hello_of_another_build_is_refused_as_such` fail with.
#[cfg(unix)]
#[test]
fn a_worker_that_exits_before_the_listener_hands_its_connection_over_is_heard() {
    let out = scenario("handover::scenario_late_handover", |_| {});
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("REPORT heard"),
        "{}\n{stdout}",
        out.status
    );
}

#[cfg(unix)]
#[test]
#[ignore = "a scenario, run by a_worker_that_exits_before_the_listener_hands_its_connection_over_is_heard"]
fn scenario_late_handover() {
    if !in_scenario("handover::scenario_late_handover") {
        return;
    }
    println!();
    // The listener's handshake thread keeps the finished connection until
    // the launch's wait has seen the command exited.
    multiproc::test_hooks::hold_listener_handovers(true);
    let release = std::thread::spawn(|| {
        wait_for("the launch to see its command exited", || {
            multiproc::test_hooks::launch_exits_seen() >= 1
        });
        multiproc::test_hooks::hold_listener_handovers(false);
    });
    let msg = spawn_error(1, &["env", "MULTIPROC_TEST_OLD_HELLO=1", "{exe}"]);
    release.join().unwrap();
    assert!(
        msg.contains("a worker of a different build/protocol"),
        "{msg}"
    );
    println!("REPORT heard");
}

/// A launcher that holds back every launch after the first two: each
/// launch notes its shell's pid (the worker's, after `exec`) in
/// `base/launches`, and the third and later wait until a line is written
/// to the FIFO `base/go`.
#[cfg(target_os = "linux")]
fn held_launcher(name: &str) -> (std::path::PathBuf, Launcher) {
    let base = std::env::temp_dir().join(format!("multiproc-held-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(base.join("launches")).unwrap();
    mkfifo(&base.join("go"));
    let script = "n=$(ls \"$1/launches\" | wc -l); touch \"$1/launches/$$\"; \
                  if [ \"$n\" -ge 2 ]; then read line < \"$1/go\"; fi; exec \"$0\"";
    let launcher = Launcher::command([
        "sh".to_string(),
        "-c".to_string(),
        script.to_string(),
        "{exe}".to_string(),
        base.to_str().unwrap().to_string(),
    ]);
    (base, launcher)
}

/// The pids of the launches `held_launcher` started so far.
#[cfg(target_os = "linux")]
fn launches(base: &std::path::Path) -> Vec<u32> {
    std::fs::read_dir(base.join("launches"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
        .collect()
}

/// A pool of 2 through `held_launcher(name)` whose first two launches
/// went through; its busy worker is killed, and the replacement's launch
/// is held back (its launcher started, waiting on the FIFO): the
/// launcher's directory, the pool, and that launch's pid.
#[cfg(target_os = "linux")]
fn with_a_held_replacement(name: &str) -> (std::path::PathBuf, Pool, u32) {
    let (base, launcher) = held_launcher(name);
    let p = PoolBuilder::new()
        .workers(2)
        .launcher(launcher)
        .build()
        .unwrap();
    let first = launches(&base);
    assert_eq!(first.len(), 2);
    let h = p.submit(block_forever, ());
    let busy = p.wait_busy(LONG);
    assert_eq!(busy.len(), 1, "one worker runs `block_forever`");
    assert!(p.kill_worker(busy[0]));
    assert!(h.get().unwrap_err().is_worker_died());
    wait_for("the replacement's launcher to start", || {
        launches(&base).len() == 3
    });
    let held = launches(&base).into_iter().find(|p| !first.contains(p));
    (base, p, held.unwrap())
}

#[cfg(target_os = "linux")]
#[test]
fn while_a_replacement_launch_is_pending_the_pool_serves_with_its_other_worker() {
    let (base, p, held) = with_a_held_replacement("serves");
    // The launch waits on the FIFO until this test writes to it: the
    // survivor alone runs the map, the stats come, and the pool has one
    // ready worker.
    let want: Vec<u64> = (0..300u64).map(|x| x * x).collect();
    assert_eq!(p.map(square, 0..300u64).unwrap(), want);
    let stats = p.stats();
    assert_eq!(stats.workers_started, 3);
    assert_eq!(stats.workers_died, 1);
    assert_eq!(stats.workers_replaced, 1);
    assert_eq!(stats.tasks_done, 300);
    assert_eq!(p.pids().len(), 1);
    assert!(!p.pids().contains(&held));
    assert!(!exited(held), "the held launcher still waits");
    // Released: it becomes the second worker, and both serve.
    std::fs::write(base.join("go"), "go\n").unwrap();
    wait_for("the replacement to be ready", || p.pids().len() == 2);
    assert!(p.pids().contains(&held));
    let got: Vec<u32> = p.map_chunked(own_pid, 0..400u32, 1).unwrap();
    assert_eq!(got.len(), 400);
    assert_eq!(p.map(square, 0..300u64).unwrap(), want);
    drop(p);
    let _ = std::fs::remove_dir_all(&base);
}

#[cfg(target_os = "linux")]
#[test]
fn dropping_a_pool_while_a_launch_is_pending_kills_its_launcher() {
    let (base, p, held) = with_a_held_replacement("drop");
    // Never released: the drop returns only if it kills the launcher
    // (the launch would wait 60 s for its worker, longer than `LONG`).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(p);
        let _ = tx.send(());
    });
    assert!(
        rx.recv_timeout(LONG).is_ok(),
        "the pool's drop still waits for the pending launch after {LONG:?}"
    );
    assert!(exited(held), "the held launcher {held} was killed");
    let _ = std::fs::remove_dir_all(&base);
}

/// A launched worker that connects back before its own launch's wait
/// began, while another launch of the pool waits, is handed over to its
/// launch, not closed (CI once lost a worker that way: "the launcher
/// command … exited with exit code 0 before its worker connected back").
#[cfg(target_os = "linux")]
#[test]
fn a_worker_that_connects_before_its_launch_waits_is_not_lost() {
    let out = scenario("handover::scenario_early_worker", |_| {});
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("REPORT the early worker serves"),
        "{}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(target_os = "linux")]
#[test]
#[ignore = "a scenario, run by a_worker_that_connects_before_its_launch_waits_is_not_lost"]
fn scenario_early_worker() {
    if !in_scenario("handover::scenario_early_worker") {
        return;
    }
    println!();
    // Launch 1's worker waits on a FIFO; launch 2's connects back at once,
    // but launch 2's wait (a hook in this process) begins only after launch
    // 1's wait read that worker's hello. Then launch 1's worker goes on.
    let base = std::env::temp_dir().join(format!("multiproc-early-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let fifo = base.join("go");
    mkfifo(&fifo);
    multiproc::test_hooks::hold_launch_wait_until_hello(2);
    let release = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            wait_for(
                "launch 1's wait to read the hello of launch 2's worker",
                || multiproc::test_hooks::launch_hello_was_read(2),
            );
            std::fs::write(&fifo, "go\n").unwrap();
        })
    };
    let script = "if [ \"$MULTIPROC_WORKER_TOKEN\" = 1 ]; then read line < \"$1\"; fi; exec \"$0\"";
    let p = PoolBuilder::new()
        .workers(2)
        .launcher(Launcher::command([
            "sh",
            "-c",
            script,
            "{exe}",
            fifo.to_str().unwrap(),
        ]))
        .build()
        .unwrap();
    release.join().unwrap();
    assert_eq!(p.pids().len(), 2);
    let want: Vec<u64> = (0..200u64).map(|x| x * x).collect();
    assert_eq!(p.map_chunked(square, 0..200u64, 1).unwrap(), want);
    drop(p);
    let _ = std::fs::remove_dir_all(&base);
    println!("REPORT the early worker serves");
}
