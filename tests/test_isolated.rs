//! Tests that count this process's fds/handles or copy the test binary:
//! each takes `SERIAL`, so no other spawn in this binary runs meanwhile
//! (a concurrent spawn would hold the copied executable open for writing —
//! ETXTBSY — or change the count).

use std::sync::Mutex;

use multiproc::{Popen, PopenBuilder};

multiproc::test_support!();

mod common;
use common::{do_nothing, exit_with, wait_done};

static SERIAL: Mutex<()> = Mutex::new(());

fn double(x: u32) -> u32 {
    2 * x
}

multiproc::entry!(double);

#[test]
fn missing_executable_is_a_clear_error_and_leaves_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let missing = || {
        PopenBuilder::new()
            .executable("/no/such/dir/multiproc-worker")
            .spawn(do_nothing, ())
            .unwrap_err()
    };
    // A first failure may set up what the OS caches for process creation.
    let err = missing();
    assert!(err.is_spawn(), "{err}");
    assert_eq!(err.kind(), multiproc::ErrorKind::Spawn);
    // The OS error is the cause, and what io_error gives.
    assert_eq!(
        err.io_error().map(|e| e.kind()),
        Some(std::io::ErrorKind::NotFound),
        "{err:?}"
    );
    assert!(std::error::Error::source(&err).is_some_and(|s| s.is::<std::io::Error>()));
    assert!(
        err.to_string().contains("/no/such/dir/multiproc-worker"),
        "{err}"
    );
    let before = multiproc::test_hooks::open_handle_count().unwrap();
    for _ in 0..20 {
        assert!(missing().is_spawn());
    }
    assert_eq!(multiproc::test_hooks::open_handle_count().unwrap(), before);
}

#[test]
fn handle_count_is_unchanged_after_200_spawn_wait_cycles() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Warm up whatever a first spawn sets up once.
    wait_done(&Popen::spawn(do_nothing, ()).unwrap());
    let before = multiproc::test_hooks::open_handle_count().unwrap();
    for i in 0..200 {
        let p = Popen::spawn(exit_with, i % 7).unwrap();
        assert_eq!(wait_done(&p).code(), Some(i % 7));
        if i % 2 == 0 {
            p.close();
        }
    }
    assert_eq!(multiproc::test_hooks::open_handle_count().unwrap(), before);
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
        .spawn(exit_with, 42)
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

    multiproc::set_executable(&host);
    assert_eq!(multiproc::executable().unwrap(), host);
    let p = Popen::spawn(exit_with, 42);
    multiproc::reset_executable();
    let p = p.unwrap();
    assert_eq!(wait_done(&p).code(), Some(42));
    assert_eq!(multiproc::executable().unwrap(), exe);

    // A host that can't start is the spawn's error, naming the host.
    multiproc::set_executable(dir.join("missing-host"));
    let err = Popen::spawn(exit_with, 1).unwrap_err();
    multiproc::reset_executable();
    assert!(
        err.is_spawn() && err.to_string().contains("missing-host"),
        "{err}"
    );
    drop(p);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Changes the link-time build identity in the image of a binary, as
/// another build would have it: Linux flips a byte of the GNU build-id
/// note; Windows bumps the PE link time stamp.
#[cfg(any(target_os = "linux", windows))]
fn rebuild_identity(image: &mut [u8]) {
    if cfg!(windows) {
        let pe = u32::from_le_bytes(image[0x3c..0x40].try_into().unwrap()) as usize;
        assert_eq!(&image[pe..pe + 4], b"PE\0\0");
        image[pe + 8] = image[pe + 8].wrapping_add(1);
    } else {
        let id = multiproc::test_hooks::image_build_id().expect("this binary has a build id");
        let at = image
            .windows(id.len())
            .position(|w| w == id)
            .expect("the build id is in the file");
        image[at] ^= 0xff;
    }
}

#[cfg(any(target_os = "linux", windows))]
fn write_executable(path: &std::path::Path, image: &[u8]) {
    std::fs::write(path, image).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[cfg(any(target_os = "linux", windows))]
#[test]
fn a_worker_binary_from_another_build_is_refused_with_build_mismatch() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!("multiproc-rebuilt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut image = std::fs::read(&exe).unwrap();

    // The same bytes elsewhere: the same build.
    let same = dir.join(exe.file_name().unwrap());
    write_executable(&same, &image);
    let mut p = multiproc::ProcessBuilder::new()
        .executable(&same)
        .spawn(double, 21)
        .unwrap();
    assert_eq!(p.join().unwrap(), 42);

    // Same entry table, same crate version, another build id: refused.
    rebuild_identity(&mut image);
    let other = dir.join(format!(
        "rebuilt-{}",
        exe.file_name().unwrap().to_string_lossy()
    ));
    write_executable(&other, &image);
    let mut p = multiproc::ProcessBuilder::new()
        .executable(&other)
        .stderr(multiproc::Stdio::Null)
        .spawn(double, 21)
        .unwrap();
    let err = p.join().unwrap_err();
    assert!(err.is_bootstrap_failure(), "{err}");
    assert_eq!(
        err.exit_status().and_then(|s| s.code()),
        Some(multiproc::exit_code::BUILD_MISMATCH),
        "{err}"
    );
    assert!(err.to_string().contains("not the parent's build"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
