//! A queue's lane keeper, Windows: a process of the crate's own that keeps
//! the section handles of the queue's large items (`lane.rs` says why a
//! process must keep them at all), so that no user process does. It is
//! the program workers run (below), started with [`MARKER`] as its only
//! argument, which [`run_keeper`] (called by `init`) turns into the
//! keeper's loop; CPython's resource tracker is such a process too.
//!
//! **Its life.** The first large `put` of a queue that has no live keeper
//! starts one, under the queue's lock ([`start`]); a queue that never sees
//! a large item starts none. The keeper lives while any process holds the
//! queue: under the queue's lock it looks at the lane's holders, and
//! unlocked it waits on one live holder's process handle and on its
//! *wake* event, which a holder that leaves the queue sets. When it finds
//! no holder alive, it stops being the lane's keeper under the lock (the
//! table's keeper words cleared, its slots freed: nobody holds the queue,
//! so nobody can get those items) and exits; a holder that joins later
//! finds no keeper and its first large `put` starts a new one. The
//! decision and every push into the keeper are made under the queue's
//! lock, so no block is ever pushed into a keeper that decided to exit.
//!
//! **What it gets.** Five handles, inherited (listed in the
//! `PROC_THREAD_ATTRIBUTE_HANDLE_LIST`, so at the same values, which its
//! command line names, and nothing else of the starter's): the lane's
//! table, the queue's mutex and its dirty flag, a *ready* event it sets
//! once it has checked them, and its wake event. The starter waits (under
//! the queue's lock, at most [`READY_TIMEOUT`]) for ready or the keeper's
//! exit; a keeper that is not ready (a program that does not run `init`
//! first, another build's) is terminated and that copy of the queue falls
//! back to keeping blocks in its holders, as before the keeper
//! (`lane.rs`). A start the OS refuses fails that large `put` with the
//! OS's error, as a spawn would fail; the next one tries again. The start
//! is the only thing a large `put` waits for, once per keeper.
//!
//! **Jobs.** The keeper is started with `CREATE_BREAKAWAY_FROM_JOB`: the
//! crate's own job objects allow it (`job.rs`), so a keeper started by a
//! pool worker or a child in a kill-on-close job does not die with that
//! job (a killed worker, a pool that ends, a parent that dies): it leaves
//! when the queue's last holder does. A job of someone else's that
//! forbids breakaway makes the start fail with `ERROR_ACCESS_DENIED`; the
//! keeper is then started inside the starter's jobs, and dies with them.
//! It has no console (`DETACHED_PROCESS`) and the null device as its
//! standard handles: it holds no pipe of anyone's open.
//!
//! **Which program.** The program workers run: the path given to
//! `set_executable` ([`set_executable`] here mirrors it), else this
//! process's running image as `init` found it (started from where the file
//! is now, as workers are: `spawn.rs`), else `current_exe()`; and no
//! keeper (blocks kept by holders) in a process that called neither
//! `init` nor `set_executable`, as it could start no worker either. A
//! program that can run workers calls `init` first in `main`, and `init`
//! runs the keeper. Under Wine the image can't be found once renamed
//! (see `executable()`), so there a replaced binary starts no keeper.
//!
//! **What is left.** The keeper itself killed (it is no user process,
//! but nothing stops a user from killing it) takes the blocks it keeps
//! with it: their records are skipped, as when a holder kept them. A
//! process killed between pushing a handle into the keeper and writing
//! its slot leaves that handle in the keeper until it exits.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::windows::io::{AsHandle, AsRawHandle, BorrowedHandle, FromRawHandle, OwnedHandle};
use std::path::PathBuf;
use std::ptr;
use std::sync::{OnceLock, RwLock};
use std::time::Duration;

use windows_sys::Win32::Foundation::{
    DuplicateHandle, DUPLICATE_SAME_ACCESS, ERROR_ACCESS_DENIED, FALSE, HANDLE,
};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, ResetEvent, ResumeThread, SetEvent, CREATE_BREAKAWAY_FROM_JOB,
};

use super::exe::RunningImage;
use super::held::{identity, start_time};
use super::lane::{KeeperCheck, SysLane};
use super::spawn::{create_from_image, create_process, creation_flags, kill_and_reap};
use super::stdio::{inheritable_copy, StdHandles};
use super::sync::check_type;
use super::{cvt, is_os_error, new_event, to_wide, wait_any, SysMutex};
use crate::exit_code;
use crate::sys::{LockStatus, StdioMode};

/// The keeper's one argument: `MARKER` then the five handle values,
/// comma-separated (table, mutex, dirty flag, ready, wake).
pub(crate) const MARKER: &str = "--multiproc-lane-keeper=";

/// How long a large `put` waits for a new keeper to be ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a keeper that can open none of the live holders (it can't
/// wait on them) looks again.
const BLIND_RECHECK: Duration = Duration::from_secs(1);

/// The path `set_executable` set, if any.
static EXECUTABLE: RwLock<Option<PathBuf>> = RwLock::new(None);

/// What `init` found: the running image, if it could be opened. Unset
/// before `init`.
static IMAGE: OnceLock<Option<&'static RunningImage>> = OnceLock::new();

/// Notes what `init` found (once).
pub(crate) fn note_init(image: Option<&'static RunningImage>) {
    let _ = IMAGE.set(image);
}

/// Mirrors `set_executable` (`Some`) and `reset_executable` (`None`).
pub(crate) fn set_executable(path: Option<PathBuf>) {
    *EXECUTABLE.write().unwrap_or_else(|e| e.into_inner()) = path;
}

/// The program a keeper runs (module docs), if this process can start one.
fn program() -> io::Result<(PathBuf, Option<&'static RunningImage>)> {
    if let Some(p) = EXECUTABLE.read().unwrap_or_else(|e| e.into_inner()).clone() {
        return Ok((p, None));
    }
    match IMAGE.get() {
        Some(Some(image)) => Ok((image.path().to_path_buf(), Some(image))),
        Some(None) => Ok((std::env::current_exe()?, None)),
        None => Err(io::Error::other(
            "this program called neither multiproc::init nor set_executable",
        )),
    }
}

/// A keeper just started and ready.
pub(super) struct Started {
    pub(super) process: OwnedHandle,
    pub(super) pid: u32,
    pub(super) start: u64,
    /// Its wake event's value in its own table.
    pub(super) wake: u32,
}

/// Starts a keeper for the lane whose table is `table`, of the queue whose
/// mutex handles are `mutex` (mutex, dirty flag), and waits until it is
/// ready (module docs). Called under the queue's lock. `Ok(None)` when
/// this program can't run one (no program, or one that exited or was not
/// ready in time: the lane's holders keep the blocks); an error when the
/// OS could not start it (the large `put` fails with it, as a spawn
/// would).
pub(super) fn start(
    table: BorrowedHandle<'_>,
    mutex: &[BorrowedHandle<'_>],
) -> io::Result<Option<Started>> {
    let Ok((exe, image)) = program() else {
        return Ok(None);
    };
    let ready = new_event()?;
    let wake = new_event()?;
    let mut std = StdHandles::new([StdioMode::Null; 3])?;
    let mut values = Vec::with_capacity(5);
    let mine = [
        table,
        mutex[0],
        mutex[1],
        ready.as_handle(),
        wake.as_handle(),
    ];
    for h in mine {
        let copy = inheritable_copy(h.as_raw_handle())?;
        values.push(copy.as_raw_handle() as usize);
        std.inherit_also(copy);
    }
    let arg = OsString::from(format!(
        "{MARKER}{}",
        values
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(",")
    ));
    let args = [arg];
    let flags = creation_flags([StdioMode::Null; 3]);
    let create = |flags: u32| match image {
        Some(image) => create_from_image(image, &exe, &args, flags, &std),
        None => {
            let app = to_wide(exe.as_os_str())?;
            let mut cmd = super::args::make_command_line(exe.as_os_str(), &args)?;
            create_process(&app, &mut cmd, flags, &std)
        }
    };
    let (process, thread, pid) = match create(flags | CREATE_BREAKAWAY_FROM_JOB) {
        Err(e) if is_os_error(&e, ERROR_ACCESS_DENIED) => create(flags)?,
        other => other?,
    };
    // Its copies are in it now.
    drop(std);
    // SAFETY: `thread` is the child's main thread, open with all access;
    // it was created suspended (count 1), so this lets it run.
    if unsafe { ResumeThread(thread.as_raw_handle()) } == u32::MAX {
        let e = io::Error::last_os_error();
        kill_and_reap(&process);
        return Err(e);
    }
    drop(thread);
    let woken = wait_any(
        &[ready.as_handle(), process.as_handle()],
        Some(READY_TIMEOUT),
    );
    if !matches!(&woken, Ok(r) if r.first() == Some(&0)) {
        kill_and_reap(&process);
        woken?;
        return Ok(None);
    }
    let start = start_time(process.as_raw_handle() as HANDLE)?;
    Ok(Some(Started {
        process,
        pid,
        start,
        wake: values[4] as u32,
    }))
}

/// Wakes keeper `process` (a holder left): sets the wake event whose value
/// in its table is `value`. Best effort: a keeper that can't be woken
/// finds the change when the holder it watches exits.
pub(super) fn wake(process: &OwnedHandle, value: u32) {
    // SAFETY: plain call; a pseudo handle that needs no closing.
    let me = unsafe { GetCurrentProcess() };
    let mut out: HANDLE = ptr::null_mut();
    // SAFETY: `process` is open with PROCESS_DUP_HANDLE; `value` is only a
    // value in its table, which the OS checks there; `out` is a valid
    // place for the result, a new handle in this process.
    let ok = unsafe {
        DuplicateHandle(
            process.as_raw_handle() as HANDLE,
            value as usize as HANDLE,
            me,
            &mut out,
            0,
            FALSE,
            DUPLICATE_SAME_ACCESS,
        )
    };
    if cvt(ok).is_err() {
        return;
    }
    // SAFETY: on success `out` is a new handle in this process, ours alone.
    let event = unsafe { OwnedHandle::from_raw_handle(out) };
    // SAFETY: our open handle; on anything but an event this only fails.
    unsafe { SetEvent(event.as_raw_handle()) };
}

/// Runs the keeper if `arg` (this process's first argument) asks for it:
/// its exit code, `None` if this is no keeper.
pub(crate) fn run_keeper(arg: &OsStr) -> Option<i32> {
    let rest = arg.to_str()?.strip_prefix(MARKER)?;
    Some(match keeper_main(rest) {
        Ok(()) => exit_code::SUCCESS,
        Err(e) => {
            eprintln!("multiproc lane keeper {}: {e}", std::process::id());
            exit_code::BAD_COMMAND_LINE
        }
    })
}

/// Takes the inherited handles `values` names (module docs).
///
/// The values are the ones the starter listed for this process to
/// inherit; a forged command line can name other handles of this process
/// (a keeper runs nothing else, so at worst it closes them at its exit),
/// and each is checked for its type before use.
fn take_inherited(values: &str) -> io::Result<[OwnedHandle; 5]> {
    let parsed: Vec<usize> = values
        .split(',')
        .map(|v| v.parse::<usize>().ok().filter(|&v| v != 0 && v % 4 == 0))
        .collect::<Option<_>>()
        .ok_or_else(|| bad(format!("malformed keeper argument `{values}`")))?;
    let parsed: [usize; 5] = parsed.try_into().map_err(|_| {
        bad(format!(
            "a keeper argument of other than 5 values: `{values}`"
        ))
    })?;
    let mut seen = parsed.to_vec();
    seen.sort_unstable();
    seen.dedup();
    if seen.len() != 5 {
        return Err(bad(format!(
            "a keeper argument with a value twice: `{values}`"
        )));
    }
    // SAFETY: each value is a handle this process inherited for this
    // purpose (see above), distinct, taken once here and owned from now on.
    Ok(parsed.map(|v| unsafe { OwnedHandle::from_raw_handle(v as HANDLE) }))
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// The keeper's loop (module docs).
fn keeper_main(values: &str) -> io::Result<()> {
    let [table, mutex, dirty, ready, wake] = take_inherited(values)?;
    check_type(&ready, "Event")?;
    check_type(&wake, "Event")?;
    let lane = SysLane::from_parts(vec![table], 0)?;
    let mutex = SysMutex::from_parts(vec![mutex, dirty], 0, false)?;
    let me = identity()?;
    // SAFETY: our open event handle.
    cvt(unsafe { SetEvent(ready.as_raw_handle()) })?;
    drop(ready);
    loop {
        match mutex.lock(None)? {
            LockStatus::Acquired => {}
            LockStatus::OwnerDied => mutex.mark_consistent(),
            s => return Err(io::Error::other(format!("the queue's lock said {s:?}"))),
        }
        // Under the lock: a leave from now on sets it again.
        // SAFETY: our open event handle.
        unsafe { ResetEvent(wake.as_raw_handle()) };
        let check = lane.keeper_check(me);
        mutex.unlock()?;
        match check {
            KeeperCheck::Retire => return Ok(()),
            KeeperCheck::Watch(holder) => {
                wait_any(&[wake.as_handle(), holder.as_handle()], None)?;
            }
            KeeperCheck::Blind => {
                wait_any(&[wake.as_handle()], Some(BLIND_RECHECK))?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_keeper_argument_takes_no_handle() {
        for bad in [
            "",
            "4,8,12,16",
            "4,8,12,16,20,24",
            "4,8,12,16,x",
            "4,8,12,16,21",
        ] {
            let e = take_inherited(bad).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{bad}: {e}");
        }
        let e = take_inherited("4,8,12,16,4").unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
    }

    #[test]
    fn only_the_marker_makes_a_keeper() {
        assert_eq!(run_keeper(OsStr::new("--multiproc-lane-keeper")), None);
        assert_eq!(run_keeper(OsStr::new("--other=4,8,12,16,20")), None);
    }
}
