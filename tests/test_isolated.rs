//! Tests that count this process's fds/handles or copy the test binary:
//! each takes `SERIAL`, so no other spawn in this binary runs meanwhile
//! (a concurrent spawn would hold the copied executable open for writing —
//! ETXTBSY — or change the count).

use std::sync::Mutex;
use std::time::Duration;

use multiproc::{Popen, PopenBuilder};

multiproc::test_support!();

static SERIAL: Mutex<()> = Mutex::new(());

fn exit_with(code: i32) {
    std::process::exit(code)
}

fn do_nothing(_: ()) {}

multiproc::entry!(exit_with, do_nothing);

fn wait_done(p: &Popen) -> multiproc::ExitStatus {
    p.wait(Some(Duration::from_secs(30)))
        .expect("wait")
        .expect("worker still running after 30 s")
}

#[test]
fn missing_executable_is_a_clear_error_and_leaves_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let missing = || {
        PopenBuilder::new()
            .executable("/no/such/dir/multiproc-worker")
            .spawn(do_nothing, &())
            .unwrap_err()
    };
    // A first failure may set up what the OS caches for process creation.
    let err = missing();
    assert!(err.is_spawn(), "{err}");
    assert!(
        err.to_string().contains("/no/such/dir/multiproc-worker"),
        "{err}"
    );
    let before = multiproc::__private::open_handle_count().unwrap();
    for _ in 0..20 {
        assert!(missing().is_spawn());
    }
    assert_eq!(multiproc::__private::open_handle_count().unwrap(), before);
}

#[test]
fn handle_count_is_unchanged_after_200_spawn_wait_cycles() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Warm up whatever a first spawn sets up once.
    wait_done(&Popen::spawn(do_nothing, &()).unwrap());
    let before = multiproc::__private::open_handle_count().unwrap();
    for i in 0..200 {
        let p = Popen::spawn(exit_with, &(i % 7)).unwrap();
        assert_eq!(wait_done(&p).code(), Some(i % 7));
        if i % 2 == 0 {
            p.close();
        }
    }
    assert_eq!(multiproc::__private::open_handle_count().unwrap(), before);
}

#[test]
fn executable_path_with_spaces_and_non_ascii_works() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!("multiproc dir ä ü {}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = std::env::current_exe().unwrap();
    let copy = dir.join(format!(
        "worker copy ß{}",
        exe.extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default()
    ));
    std::fs::copy(&exe, &copy).unwrap();
    let p = PopenBuilder::new()
        .executable(&copy)
        .spawn(exit_with, &42)
        .unwrap();
    assert_eq!(wait_done(&p).code(), Some(42));
    drop(p);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn set_executable_names_the_worker_host_for_every_spawn() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!("multiproc-host-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = std::env::current_exe().unwrap();
    let host = dir.join(exe.file_name().unwrap());
    std::fs::copy(&exe, &host).unwrap();

    multiproc::set_executable(Some(host.clone()));
    assert_eq!(multiproc::executable().unwrap(), host);
    let p = Popen::spawn(exit_with, &42);
    multiproc::set_executable(None);
    let p = p.unwrap();
    assert_eq!(wait_done(&p).code(), Some(42));
    assert_eq!(multiproc::executable().unwrap(), exe);

    // A host that can't start is the spawn's error, naming the host.
    multiproc::set_executable(Some(dir.join("missing-host")));
    let err = Popen::spawn(exit_with, &1).unwrap_err();
    multiproc::set_executable(None);
    assert!(
        err.is_spawn() && err.to_string().contains("missing-host"),
        "{err}"
    );
    drop(p);
    let _ = std::fs::remove_dir_all(&dir);
}
