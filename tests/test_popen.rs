//! Popen and the spawn protocol, with real worker processes of this test
//! binary (Linux, and Windows under Wine).

use std::io::{Read, Write};
use std::time::Duration;

use multiproc::{exit_code, Popen, PopenBuilder};

multiproc::test_support!();

mod common;
use common::{block_forever, exit_with, wait_done};

/// Exits with the number of fds (Unix: beyond stdio) / pipe handles
/// (Windows: beyond the std handles) this worker can see: 1 means it sees
/// only its own bootstrap channel.
fn count_visible_handles(_: ()) {
    let seen = multiproc::test_hooks::open_ipc_handles().expect("list handles");
    std::process::exit(seen.len() as i32)
}

/// Writes a greeting into a pipe end passed from the parent.
fn greet_through(h: multiproc::PassedHandle) {
    let mut w = std::io::PipeWriter::from(h.into_inner());
    write!(w, "hello from {}", std::process::id()).expect("write to the passed pipe");
}

multiproc::entry!(count_visible_handles, greet_through);

#[test]
fn exit_codes_pass_through() {
    for code in [0, 1, 42, 255] {
        let p = Popen::spawn(exit_with, code).unwrap();
        let st = wait_done(&p);
        assert_eq!(st.code(), Some(code), "{st}");
        assert_eq!(st.success(), code == 0);
    }
}

#[test]
fn builders_are_reached_from_their_types() {
    let p = Popen::builder()
        .kill_on_drop(true)
        .spawn(exit_with, 7)
        .unwrap();
    assert_eq!(wait_done(&p).code(), Some(7));
    let mut p = multiproc::Process::builder()
        .name("built")
        .spawn(exit_with, 8)
        .unwrap();
    assert!(p.join().unwrap_err().is_no_result());
    assert_eq!(p.exitcode(), Some(8));
}

#[test]
fn wait_with_short_timeout_on_running_worker_returns_none_then_status() {
    let p = Popen::spawn(block_forever, ()).unwrap();
    assert_eq!(p.wait(Some(Duration::from_millis(20))).unwrap(), None);
    assert_eq!(p.poll().unwrap(), None);
    p.kill().unwrap();
    let st = wait_done(&p);
    assert!(!st.success());
    // Recorded once, returned again.
    assert_eq!(p.poll().unwrap(), Some(st));
    assert_eq!(p.wait(None).unwrap(), Some(st));
}

#[test]
fn poll_after_exit_gives_the_status() {
    let p = Popen::spawn(exit_with, 3).unwrap();
    let st = wait_done(&p);
    assert_eq!(p.poll().unwrap(), Some(st));
    assert_eq!(st.code(), Some(3));
}

#[test]
fn terminate_gives_the_platform_terminate_status() {
    let p = Popen::spawn(block_forever, ()).unwrap();
    p.terminate().unwrap();
    let st = wait_done(&p);
    assert!(st.is_terminated(), "{st}");
    if cfg!(windows) {
        assert_eq!(st.code(), Some(exit_code::TERMINATE));
        assert_eq!(st.code(), Some(0x10000));
    } else {
        assert_eq!(st.signal(), Some(15));
        assert_eq!(st.python_exitcode(), -15);
    }
}

#[test]
fn terminate_twice_and_after_exit_is_not_an_error() {
    let p = Popen::spawn(block_forever, ()).unwrap();
    p.terminate().unwrap();
    p.terminate().unwrap();
    let st = wait_done(&p);
    p.terminate().unwrap();
    p.kill().unwrap();
    assert_eq!(p.poll().unwrap(), Some(st));

    // Exited on its own, not yet waited for: still not an error, and the
    // status stays the worker's own.
    let q = Popen::spawn(exit_with, 5).unwrap();
    let st = wait_done(&q);
    q.terminate().unwrap();
    assert_eq!(q.wait(None).unwrap(), Some(st));
    assert_eq!(st.code(), Some(5));
}

#[test]
fn kill_ends_a_running_worker() {
    let p = Popen::spawn(block_forever, ()).unwrap();
    p.kill().unwrap();
    let st = wait_done(&p);
    if cfg!(windows) {
        // CPython: on Windows kill is terminate.
        assert_eq!(st.code(), Some(exit_code::TERMINATE));
    } else {
        assert_eq!(st.signal(), Some(9));
    }
}

#[test]
fn wait_and_terminate_from_different_threads() {
    let p = Popen::spawn(block_forever, ()).unwrap();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| p.wait(None).unwrap());
        p.terminate().unwrap();
        let st = waiter.join().unwrap().expect("no timeout");
        assert!(st.is_terminated(), "{st}");
    });
}

#[test]
fn duplicate_for_child_outside_a_spawn_is_an_error() {
    let (r, _w) = std::io::pipe().unwrap();
    #[cfg(unix)]
    let h = std::os::fd::AsFd::as_fd(&r);
    #[cfg(windows)]
    let h = std::os::windows::io::AsHandle::as_handle(&r);
    let err = multiproc::duplicate_for_child(h).unwrap_err();
    assert!(err.is_not_spawning(), "{err}");
    assert_eq!(err.kind(), multiproc::ErrorKind::NotSpawning);
    assert_eq!(
        std::io::Error::from(err).kind(),
        std::io::ErrorKind::InvalidInput
    );
}

#[test]
fn a_passed_pipe_end_works_in_the_child() {
    let (mut r, w) = std::io::pipe().unwrap();
    let p = Popen::spawn(greet_through, multiproc::PassedHandle::new(w.into())).unwrap();
    // Our copy of the write end was dropped with the argument, so EOF comes
    // when the child is done.
    let mut got = String::new();
    r.read_to_string(&mut got).unwrap();
    assert_eq!(got, format!("hello from {}", p.pid()));
    assert!(wait_done(&p).success());
}

#[test]
fn unregistered_entry_is_refused_before_spawning() {
    fn not_registered(_: ()) {}
    let err = Popen::spawn(not_registered, ()).unwrap_err();
    assert!(err.is_unknown_entry(), "{err}");
    assert_eq!(err.kind(), multiproc::ErrorKind::UnknownEntry);
    assert!(err.to_string().contains("not_registered"), "{err}");
}

/// Sends `data` as the whole bootstrap, closes the channel, and returns the
/// worker's exit code.
fn raw_bootstrap_exit_code(data: &[u8]) -> i32 {
    let p = PopenBuilder::new()
        .stdio(multiproc::Stdio::Null)
        .spawn_with_raw_bootstrap(data)
        .unwrap();
    wait_done(&p).code().expect("exit code")
}

fn good_bootstrap() -> Vec<u8> {
    let payload = postcard::to_allocvec(&7i32).unwrap();
    multiproc::test_hooks::bootstrap_bytes(multiproc::test_hooks::entry_id(&exit_with), &payload)
}

#[test]
fn a_valid_raw_bootstrap_runs_the_entry() {
    // The control for the bad-input tests below.
    assert_eq!(raw_bootstrap_exit_code(&good_bootstrap()), 7);
}

#[test]
fn garbage_bootstrap_exits_with_bad_magic() {
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    assert_eq!(raw_bootstrap_exit_code(&garbage), exit_code::BAD_MAGIC);
}

#[test]
fn truncated_bootstrap_exits_with_truncated() {
    let good = good_bootstrap();
    for cut in [0, 1, 20, good.len() - 1] {
        assert_eq!(
            raw_bootstrap_exit_code(&good[..cut]),
            exit_code::TRUNCATED,
            "cut at {cut}"
        );
    }
}

#[test]
fn wrong_magic_version_build_are_refused() {
    let mut b = good_bootstrap();
    b[0] ^= 0xff;
    assert_eq!(raw_bootstrap_exit_code(&b), exit_code::BAD_MAGIC);
    let mut b = good_bootstrap();
    b[8] = b[8].wrapping_add(1);
    assert_eq!(raw_bootstrap_exit_code(&b), exit_code::VERSION_MISMATCH);
    let mut b = good_bootstrap();
    b[16] ^= 1;
    assert_eq!(raw_bootstrap_exit_code(&b), exit_code::BUILD_MISMATCH);
}

#[test]
fn huge_length_prefix_exits_with_too_large() {
    let mut b = good_bootstrap();
    b[32..40].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert_eq!(raw_bootstrap_exit_code(&b), exit_code::TOO_LARGE);
    for field in [24..28, 28..32] {
        let mut b = good_bootstrap();
        b[field].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(raw_bootstrap_exit_code(&b), exit_code::TOO_LARGE);
    }
}

#[test]
fn unknown_entry_and_bad_payload_are_refused() {
    let b = multiproc::test_hooks::bootstrap_bytes("no::such::entry", &[]);
    assert_eq!(raw_bootstrap_exit_code(&b), exit_code::UNKNOWN_ENTRY);
    // exit_with wants an i32; an empty payload can't be one.
    let b =
        multiproc::test_hooks::bootstrap_bytes(multiproc::test_hooks::entry_id(&exit_with), &[]);
    assert_eq!(raw_bootstrap_exit_code(&b), exit_code::BAD_PAYLOAD);
}

#[test]
fn malformed_command_line_marker_exits_with_bad_command_line() {
    let exe = std::env::current_exe().unwrap();
    for marker in [
        "--multiproc-worker=",
        "--multiproc-worker=1,2",
        "--multiproc-worker=x,y,z",
    ] {
        let st = std::process::Command::new(&exe)
            .arg(marker)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert_eq!(st.code(), Some(exit_code::BAD_COMMAND_LINE), "{marker}");
    }
}

#[test]
fn worker_that_dies_during_a_big_bootstrap_does_not_hang_the_parent() {
    // 64 MiB of garbage: the worker reads the header, sees bad magic and
    // exits while the parent is still writing; the parent must get an error
    // carrying the worker's exit status, not block on a full pipe.
    let garbage = vec![0x5au8; 64 << 20];
    let err = PopenBuilder::new()
        .stdio(multiproc::Stdio::Null)
        .spawn_with_raw_bootstrap(&garbage)
        .unwrap_err();
    assert!(err.is_exited_early(), "{err}");
    assert_eq!(err.kind(), multiproc::ErrorKind::ExitedEarly);
    assert_eq!(
        err.exit_status().and_then(|s| s.code()),
        Some(exit_code::BAD_MAGIC),
        "{err}"
    );
}

#[test]
fn concurrent_spawns_each_child_sees_only_its_own_channel() {
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    (0..25)
                        .map(|_| {
                            let p = Popen::spawn(count_visible_handles, ()).unwrap();
                            wait_done(&p).code()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for t in threads {
            for code in t.join().unwrap() {
                assert_eq!(
                    code,
                    Some(1),
                    "a child saw handles other than its own channel"
                );
            }
        }
    });
}

#[test]
fn a_stray_inheritable_handle_does_not_reach_workers() {
    use multiproc::Stdio::{Inherit, Null};
    // What a careless library leaves behind: an fd without close-on-exec,
    // a handle marked inheritable. On Windows a worker inherits its
    // standard handles, so inheritance is on, restricted to exactly those
    // (PROC_THREAD_ATTRIBUTE_HANDLE_LIST); on Unix everything above fd 3
    // is closed in the child.
    let (r, w) = std::io::pipe().unwrap();
    let r = multiproc::test_hooks::make_inheritable(r).unwrap();
    for [stdin, out] in [[Null, Null], [Null, Inherit], [Inherit, Inherit]] {
        let p = PopenBuilder::new()
            .stdin(stdin)
            .stdio(out)
            .spawn(count_visible_handles, ())
            .unwrap();
        assert_eq!(
            wait_done(&p).code(),
            Some(1),
            "stdin {stdin:?}, stdout/stderr {out:?}: the worker saw more than its own channel"
        );
    }
    drop((r, w));
}

#[test]
fn a_popen_sentinel_is_ready_once_the_worker_exits() {
    let p = Popen::spawn(block_forever, ()).unwrap();
    let ready = multiproc::wait(&[p.sentinel().into()], Some(Duration::ZERO)).unwrap();
    assert!(ready.is_empty(), "ready while the worker runs");
    p.kill().unwrap();
    let ready = multiproc::wait(&[p.sentinel().into()], Some(common::LONG)).unwrap();
    assert_eq!(ready, vec![0]);
}

#[test]
fn popen_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Popen>();
    check::<multiproc::Error>();
}
