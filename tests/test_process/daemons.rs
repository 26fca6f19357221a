//! Grandchildren: daemons gone with their parent, kill on parent death,
//! kill tree, kill on drop.

use super::*;

#[cfg(any(target_os = "linux", windows))]
/// Spawns an intermediate worker that starts a grandchild as `how` says
/// and reports its pid; checks that the grandchild ran (it said hello with
/// that pid) and returns (intermediate, its connection, pid).
fn intermediate(how: Grandchild) -> (Process<()>, Connection, u32) {
    intermediate_with(how, false)
}

#[cfg(any(target_os = "linux", windows))]
/// [`intermediate`], the intermediate leading its own process group
/// (`own_group`, Unix) so that its tree can be killed.
fn intermediate_with(how: Grandchild, own_group: bool) -> (Process<()>, Connection, u32) {
    use multiproc::Pipe;
    let (mine, theirs) = Pipe::duplex().unwrap();
    let (hello_r, hello_w) = Pipe::simplex().unwrap();
    let p = ProcessBuilder::new()
        .own_process_group(own_group)
        .spawn(spawn_grandchild, (theirs, hello_w, how))
        .unwrap();
    let pid: u32 = mine.recv().unwrap();
    let hello: u32 = hello_r
        .recv()
        .expect("the grandchild never said hello: it did not start");
    assert_eq!(hello, pid);
    (p, mine, pid)
}

#[cfg(any(target_os = "linux", windows))]
/// Starts a daemonic grandchild through an intermediate worker that then
/// ends as `ending` says; the grandchild must be gone afterwards.
fn daemon_grandchild_dies_with_its_parent(ending: Ending) {
    let (mut p, conn, grandchild) = intermediate(Grandchild {
        daemon: true,
        kill_on_parent_death: false,
        ending,
    });
    let watch = multiproc::test_hooks::watch_pid(grandchild).unwrap();
    assert!(!watch.wait(Duration::ZERO).unwrap());
    conn.send(&1u8).unwrap();
    match ending {
        Ending::Return => p.join_timeout(LONG).unwrap().expect("returned"),
        Ending::Exit => {
            let err = p.join_timeout(LONG).unwrap_err();
            assert!(err.is_no_result(), "{err}");
        }
    }
    assert_eq!(p.exitcode(), Some(0));
    assert!(
        watch.wait(LONG).unwrap(),
        "daemon grandchild {grandchild} still running after its parent ended ({ending:?})"
    );
}

#[cfg(any(target_os = "linux", windows))]
#[test]
fn daemon_children_are_gone_after_the_parent_returns() {
    daemon_grandchild_dies_with_its_parent(Ending::Return);
}

#[cfg(any(target_os = "linux", windows))]
#[test]
fn daemon_children_are_gone_after_the_parent_calls_exit() {
    // Issue 9 item 6: on Windows `std::process::exit` is `ExitProcess`,
    // which skips the C runtime's atexit handlers.
    daemon_grandchild_dies_with_its_parent(Ending::Exit);
}

/// The environment variable that tells [`scenario_daemon_main`] how its
/// `main` ends (`return` or `exit`).
#[cfg(any(target_os = "linux", windows))]
const DAEMON_MAIN_ENV: &str = "MULTIPROC_TEST_DAEMON_MAIN";

/// A scenario (see `common::scenario`), run by
/// [`daemon_children_are_gone_after_main_ends`]. Starts a daemonic
/// grandchild, waits for its hello, prints its pid, waits for a line on
/// stdin, then lets `main` return (the test harness returns from `main`
/// when every test passed) or calls `std::process::exit(0)`.
#[cfg(any(target_os = "linux", windows))]
#[test]
#[ignore = "a scenario, run by daemon_children_are_gone_after_main_ends"]
fn scenario_daemon_main() {
    if !in_scenario("daemons::scenario_daemon_main") {
        return;
    }
    let mode = std::env::var(DAEMON_MAIN_ENV).unwrap();
    let (hello_r, hello_w) = multiproc::Pipe::simplex().unwrap();
    // No stdio: a grandchild that survived would otherwise keep the test's
    // pipe on our stdout open.
    let g = ProcessBuilder::new()
        .daemon(true)
        .stdio(multiproc::Stdio::Null)
        .spawn(hello_then_block, hello_w)
        .unwrap();
    let pid = g.pid();
    drop(g);
    let hello: u32 = hello_r.recv().unwrap();
    assert_eq!(hello, pid);
    println!("grandchild {pid}");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    if mode == "exit" {
        std::process::exit(0);
    }
}

#[cfg(any(target_os = "linux", windows))]
#[test]
fn daemon_children_are_gone_after_main_ends() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    for mode in ["return", "exit"] {
        let exe = std::env::current_exe().unwrap();
        let mut helper = common::scenario_command(&exe, "daemons::scenario_daemon_main")
            .env(DAEMON_MAIN_ENV, mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = helper.stdin.take().unwrap();
        let stdout = BufReader::new(helper.stdout.take().unwrap());
        let mut pid = None;
        let mut lines = stdout.lines();
        for line in lines.by_ref() {
            // libtest may have written `test NAME ... ` before it.
            if let Some((_, p)) = line.unwrap().split_once("grandchild ") {
                pid = Some(p.trim().parse::<u32>().unwrap());
                break;
            }
        }
        let grandchild = pid.expect("the helper printed no grandchild pid");
        let watch = multiproc::test_hooks::watch_pid(grandchild).unwrap();
        assert!(!watch.wait(Duration::ZERO).unwrap());
        stdin.write_all(b"go\n").unwrap();
        drop(stdin);
        let status = helper.wait().unwrap();
        assert!(
            watch.wait(LONG).unwrap(),
            "daemon grandchild {grandchild} still running after main ended ({mode})"
        );
        let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
        assert!(status.success(), "helper ({mode}): {status}; {rest:?}");
    }
}

#[cfg(any(target_os = "linux", windows))]
#[test]
fn kill_on_parent_death_children_die_when_the_parent_is_killed() {
    let (mut p, _conn, grandchild) = intermediate(Grandchild {
        daemon: false,
        kill_on_parent_death: true,
        ending: Ending::Return,
    });
    let watch = multiproc::test_hooks::watch_pid(grandchild).unwrap();
    p.kill().unwrap();
    assert!(p.join().unwrap_err().is_terminated());
    assert!(
        watch.wait(LONG).unwrap(),
        "grandchild {grandchild} outlived its killed parent"
    );
}

#[cfg(any(target_os = "linux", windows))]
#[test]
fn kill_tree_leaves_no_grandchild() {
    let (mut p, _conn, grandchild) = intermediate_with(
        Grandchild {
            daemon: false,
            kill_on_parent_death: false,
            ending: Ending::Return,
        },
        true,
    );
    let watch = multiproc::test_hooks::watch_pid(grandchild).unwrap();
    p.kill_tree().unwrap();
    assert!(p.join().unwrap_err().is_terminated());
    assert!(
        watch.wait(LONG).unwrap(),
        "grandchild {grandchild} survived kill_tree"
    );
}

#[cfg(any(target_os = "linux", windows))]
#[test]
fn kill_on_drop_kills_the_worker() {
    let p = ProcessBuilder::new()
        .kill_on_drop(true)
        .spawn::<_, _, ()>(block_forever, ())
        .unwrap();
    let watch = multiproc::test_hooks::watch_pid(p.pid()).unwrap();
    assert!(!watch.wait(Duration::ZERO).unwrap());
    drop(p);
    assert!(
        watch.wait(LONG).unwrap(),
        "the worker outlived its dropped Process"
    );
}
