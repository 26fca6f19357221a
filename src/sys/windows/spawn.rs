//! Parent side: starting a child (`CreateProcessW`, suspended, put in its
//! job, then resumed).

use std::ffi::OsString;
use std::io;
use std::mem::size_of;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::path::Path;
use std::ptr;
use std::sync::{Arc, Mutex, OnceLock};

use windows_sys::Win32::Foundation::{FALSE, GENERIC_READ, GENERIC_WRITE, TRUE};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_SHARE_READ, FILE_SHARE_WRITE, OPEN_EXISTING, PIPE_ACCESS_DUPLEX,
};
use windows_sys::Win32::System::Threading::{
    CreateProcessW, TerminateProcess, WaitForSingleObject, CREATE_NO_WINDOW, CREATE_SUSPENDED,
    CREATE_UNICODE_ENVIRONMENT, DETACHED_PROCESS, EXTENDED_STARTUPINFO_PRESENT, INFINITE,
    PROCESS_INFORMATION, STARTF_USESTDHANDLES, STARTUPINFOEXW, STARTUPINFOW,
};

use super::{
    args::make_command_line,
    bootstrap::pack_boot_handles,
    child::{prune_kept_peers, Child, Peer},
    cvt,
    exe::RunningImage,
    job::contain,
    new_event, owned_or_invalid,
    pipe::{named_pipe, Channel},
    stdio::{HandleList, StdHandles},
    to_wide, TERMINATE_CODE,
};
use crate::sys::{image_gone, BootToken, SpawnRequest, StdioMode};

/// Starts `req.exe` with the bootstrap channel ready for it to take.
///
/// The child inherits its standard handles and nothing else (see
/// [`create_process`]); its arguments, built by `req.args`, carry where
/// its end of the channel is, which it duplicates out of this process.
/// It starts suspended, is put into its own job object (with
/// `KILL_ON_JOB_CLOSE` if `req.kill_on_parent_death`), then resumed, so it
/// runs no code outside the job. On error every handle made so far is
/// closed (they are owned from the moment they exist) and a child already
/// created is terminated and waited for.
pub(crate) fn spawn(req: &SpawnRequest<'_>) -> io::Result<(Child, Channel)> {
    prune_kept_peers();
    let (server, client) = named_pipe(PIPE_ACCESS_DUPLEX, GENERIC_READ | GENERIC_WRITE, 0)?;
    let ack = new_event()?;
    let token = BootToken {
        parent_pid: std::process::id(),
        handle: pack_boot_handles(client.as_raw_handle(), ack.as_raw_handle())?,
    };
    let args = (req.args)(token);
    // `req.new_group` is a Unix matter: here every child gets its own job,
    // which nests in the job we are in ourselves (Windows 8 and later), so
    // a `terminate_tree` from further up still reaches nested workers.
    let _ = req.new_group;
    let flags = creation_flags(req.stdio);
    let std = StdHandles::new(req.stdio)?;
    let (process, thread, pid) = match req.image {
        Some(image) => create_from_image(image, req.exe, &args, flags, &std)?,
        None => {
            let app = to_wide(req.exe.as_os_str())?;
            let mut cmd = make_command_line(req.exe.as_os_str(), &args)?;
            create_process(&app, &mut cmd, flags, &std)?
        }
    };
    // The child has its own copies of its standard handles.
    drop(std);
    // A daemonic child must not outlive our normal exit, which on Windows
    // is `ExitProcess` (Rust's `std::process::exit`): that skips the C
    // runtime's atexit handlers, so the hook that terminates daemons does
    // not run. A kill-on-close job, whose only handle we hold, does it
    // whatever way we exit.
    let kill_on_close = req.kill_on_parent_death || req.daemon;
    let job = match contain(&process, &thread, kill_on_close) {
        Ok(job) => job,
        Err(err) => {
            // Still suspended: it has run no code of its own.
            kill_and_reap(&process);
            return Err(err);
        }
    };
    drop(thread);
    let child = Child {
        process: Arc::new(process),
        pid,
        job,
        bootstrap_peer: Mutex::new(Some(Peer { pipe: client, ack })),
        status: OnceLock::new(),
    };
    Ok((child, Channel::from_owned(server)))
}

/// Starts this process's own executable (`image`), with `shown` as the
/// program name on the command line: from where its file is now, so that
/// an image renamed away (and replaced by a new file at its path) still
/// starts workers of this build.
///
/// A process can only be started from a path, so the file at the path used
/// is checked after `CreateProcessW`, while the child is still suspended:
/// if it is not ours, that child is terminated (it ran no code) and the
/// image is looked for where it is now ([`RunningImage::locate`]), which
/// fails with `image_gone`'s error when it isn't found. One check per
/// spawn while nothing moves; the path that worked is used from then on.
/// A file that can't be checked (opening it for its attributes fails
/// other than for "not found") is taken as it is, as before the check.
pub(super) fn create_from_image(
    image: &RunningImage,
    shown: &Path,
    args: &[OsString],
    flags: u32,
    std: &StdHandles,
) -> io::Result<(OwnedHandle, OwnedHandle, u32)> {
    let mut from = image.last_path();
    // Twice for a file that moved once; a third time if it moved again
    // meanwhile.
    for _ in 0..3 {
        let app = to_wide(from.as_os_str())?;
        // Built anew each time: `CreateProcessW` may modify it.
        let mut cmd = make_command_line(shown.as_os_str(), args)?;
        let created = create_process(&app, &mut cmd, flags, std);
        if image.is_at(&from).unwrap_or(true) {
            image.set_last_path(&from);
            return created;
        }
        if let Ok((process, _, _)) = &created {
            kill_and_reap(process);
        }
        from = image.locate()?;
    }
    Err(image_gone(
        "it kept moving while a worker was being started",
    ))
}

/// The process creation flags for a child with these standard streams.
///
/// Always `CREATE_SUSPENDED` (see [`spawn`]) and
/// `CREATE_UNICODE_ENVIRONMENT` (harmless with the inherited environment,
/// required once one is passed). The standard handles themselves are
/// given in `STARTUPINFOW` ([`create_process`]), whatever the flags.
///
/// Consoles ("Creation of a Console" and "Process Creation Flags" on
/// MSDN), for a console-subsystem child:
/// - This process has a console: no console flag. The child shares the
///   console, and no window opens. `CREATE_NO_WINDOW` would be wrong here:
///   it gives the child a new console of its own, without a window.
/// - This process has no console (started detached, a service): the child
///   would get a new console, and a window would flash up for every
///   worker. `CREATE_NO_WINDOW` makes that console windowless.
/// - All three [`StdioMode::Null`]: `DETACHED_PROCESS`, no console at
///   all; its standard handles are the null device.
///
/// A GUI-subsystem child ignores these flags.
pub(super) fn creation_flags(stdio: [StdioMode; 3]) -> u32 {
    let base = CREATE_SUSPENDED | CREATE_UNICODE_ENVIRONMENT;
    if stdio == [StdioMode::Null; 3] {
        base | DETACHED_PROCESS
    } else if has_console() {
        base
    } else {
        base | CREATE_NO_WINDOW
    }
}

/// Whether this process is attached to a console: only then can it open
/// `CONOUT$`, the console's active screen buffer ("Console Handles" on
/// MSDN). Asked at each spawn, since `AllocConsole`/`FreeConsole` can
/// change it.
pub(super) fn has_console() -> bool {
    let name: Vec<u16> = "CONOUT$\0".encode_utf16().collect();
    // SAFETY: `name` is NUL-terminated and outlives the call; shared access,
    // no security attributes; the result is checked below.
    let raw = unsafe {
        CreateFileW(
            name.as_ptr(),
            GENERIC_READ | GENERIC_WRITE,
            FILE_SHARE_READ | FILE_SHARE_WRITE,
            ptr::null(),
            OPEN_EXISTING,
            0,
            ptr::null_mut(),
        )
    };
    // SAFETY: fresh return value of `CreateFileW`, owned by nobody else; it
    // is closed again at once.
    unsafe { owned_or_invalid(raw) }.is_ok()
}

/// `CreateProcessW` with the standard handles `std`, which are the only
/// handles the child inherits; returns the process handle, the main
/// thread's handle and the pid.
///
/// `STARTF_USESTDHANDLES` names the child's standard handles, which must
/// be inherited; `PROC_THREAD_ATTRIBUTE_HANDLE_LIST` (in a
/// `STARTUPINFOEXW`, with `EXTENDED_STARTUPINFO_PRESENT`) restricts
/// inheritance to them, so no other handle of this process reaches the
/// child, inheritable or not, whatever other threads do meanwhile
/// (rust-lang/rust#38227). With no handle to inherit (a process without
/// standard handles, spawning with `Inherit`), inheritance stays off.
pub(super) fn create_process(
    app: &[u16],
    cmd: &mut [u16],
    flags: u32,
    std: &StdHandles,
) -> io::Result<(OwnedHandle, OwnedHandle, u32)> {
    let [input, output, error] = std.std();
    let list = match std.inherit() {
        [] => None,
        handles => Some(HandleList::new(handles)?),
    };
    let startup = STARTUPINFOEXW {
        StartupInfo: STARTUPINFOW {
            cb: if list.is_some() {
                size_of::<STARTUPINFOEXW>()
            } else {
                size_of::<STARTUPINFOW>()
            } as u32,
            dwFlags: STARTF_USESTDHANDLES,
            hStdInput: input,
            hStdOutput: output,
            hStdError: error,
            ..STARTUPINFOW::default()
        },
        lpAttributeList: list.as_ref().map_or(ptr::null_mut(), HandleList::as_ptr),
    };
    let (inherit, flags) = match list {
        Some(_) => (TRUE, flags | EXTENDED_STARTUPINFO_PRESENT),
        None => (FALSE, flags),
    };
    let mut info = PROCESS_INFORMATION::default();
    // SAFETY: `app` (`lpApplicationName`, so no search path is used) is
    // NUL-terminated; `cmd` is a NUL-terminated, writable buffer
    // (CreateProcessW may modify it); both outlive the call. No security
    // attributes, inherited environment and directory. `startup` is valid
    // for the call, a `STARTUPINFOEXW` whose attribute list (`list`, alive
    // until after the call) holds the handle list when `inherit` is set,
    // a plain `STARTUPINFOW` by its `cb` otherwise; `info` is valid for the
    // call.
    let ok = unsafe {
        CreateProcessW(
            app.as_ptr(),
            cmd.as_mut_ptr(),
            ptr::null(),
            ptr::null(),
            inherit,
            flags,
            ptr::null(),
            ptr::null(),
            &startup.StartupInfo,
            &mut info,
        )
    };
    cvt(ok)?;
    drop(list);
    // SAFETY: on success `hProcess` is a new handle to the child, ours alone.
    let process = unsafe { OwnedHandle::from_raw_handle(info.hProcess) };
    // SAFETY: on success `hThread` is a new handle to its main thread, ours
    // alone.
    let thread = unsafe { OwnedHandle::from_raw_handle(info.hThread) };
    Ok((process, thread, info.dwProcessId))
}

/// Best effort for a child that must not live on: terminate it and, if that
/// worked, wait until it is gone.
pub(super) fn kill_and_reap(process: &OwnedHandle) {
    // SAFETY: `process` is open with PROCESS_TERMINATE.
    if unsafe { TerminateProcess(process.as_raw_handle(), TERMINATE_CODE) } != 0 {
        // SAFETY: `process` is open with SYNCHRONIZE; a terminated process
        // is signaled promptly.
        unsafe { WaitForSingleObject(process.as_raw_handle(), INFINITE) };
    }
}
