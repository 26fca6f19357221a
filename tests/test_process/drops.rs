//! A process or `Popen` dropped right after its spawn, or right before
//! `main` returns, still runs.

use super::*;

#[test]
fn a_process_dropped_right_after_spawn_still_runs() {
    // Issue 9 item 2: on Windows the child takes its end of the bootstrap
    // pipe out of the parent after `spawn` returned; dropping must not pull
    // it away first. The parent's copy of the passed Connection is gone
    // too: the child's own copy carries the message.
    let (mine, theirs) = multiproc::Pipe::simplex().unwrap();
    drop(Process::<()>::spawn(send_hello, theirs).unwrap());
    let got: String = mine
        .recv()
        .expect("no hello: the dropped child did not start");
    assert_eq!(got, "hello from the child");
}

#[test]
fn a_worker_that_returns_right_after_spawning_still_starts_its_child() {
    // Issue 9 item 2, one level down: the worker exits right after the
    // spawn, which closes its copy of the grandchild's bootstrap pipe end
    // unless it waits for the grandchild to take it first.
    let (mine, theirs) = multiproc::Pipe::simplex().unwrap();
    Process::<()>::spawn(spawn_hello_and_return, theirs)
        .unwrap()
        .join()
        .unwrap();
    let got: String = mine.recv().expect("no hello: the grandchild did not start");
    assert_eq!(got, "hello from the child");
}

/// The environment variable that tells [`scenario_drop_then_return`] the
/// marker file's path.
const DROP_MAIN_ENV: &str = "MULTIPROC_TEST_DROP_MAIN";

/// A scenario (see `common::scenario`), run by
/// [`a_child_dropped_right_before_main_returns_still_starts`]. Starts a
/// child that writes a marker file, drops it, prints its pid and lets
/// `main` return at once.
#[test]
#[ignore = "a scenario, run by a_child_dropped_right_before_main_returns_still_starts"]
fn scenario_drop_then_return() {
    if !in_scenario("drops::scenario_drop_then_return") {
        return;
    }
    let path = std::env::var_os(DROP_MAIN_ENV).unwrap();
    let p = Process::<()>::spawn(write_marker, path.to_string_lossy().into_owned()).unwrap();
    let pid = p.pid();
    drop(p);
    println!("grandchild {pid}");
}

#[test]
fn a_child_dropped_right_before_main_returns_still_starts() {
    // Issue 9 item 2 at the top level: `main` returns right after the
    // spawn (on Windows the child may not have taken its bootstrap pipe
    // end out of the helper yet).
    let marker = std::env::temp_dir().join(format!("multiproc-drop-main-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let out = scenario("drops::scenario_drop_then_return", |cmd| {
        cmd.env(DROP_MAIN_ENV, &marker)
            .stdin(std::process::Stdio::null());
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "helper: {}; {stdout}", out.status);
    let pid: u32 = stdout
        .lines()
        .find_map(|l| Some(l.split_once("grandchild ")?.1))
        .expect("the helper printed no pid")
        .trim()
        .parse()
        .unwrap();
    // Wait for the child to be done (bounded); a watch that can't be
    // opened means it is gone already.
    if let Ok(watch) = multiproc::test_hooks::watch_pid(pid) {
        let _ = watch.wait(LONG);
    }
    let got = std::fs::read_to_string(&marker);
    let _ = std::fs::remove_file(&marker);
    assert_eq!(
        got.ok().as_deref(),
        Some("ran"),
        "the child dropped right before main returned did not run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_popen_dropped_right_after_spawn_still_runs() {
    let (mine, theirs) = multiproc::Pipe::simplex().unwrap();
    drop(multiproc::Popen::spawn(send_hello, &theirs).unwrap());
    drop(theirs);
    let got: String = mine
        .recv()
        .expect("no hello: the dropped child did not start");
    assert_eq!(got, "hello from the child");
}
