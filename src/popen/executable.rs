//! The program workers run: [`set_executable`], [`reset_executable`],
//! [`executable`].

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use crate::error::{Error, Kind, Result};
use crate::spawn;

pub(super) static EXECUTABLE: RwLock<Option<PathBuf>> = RwLock::new(None);

/// Sets the program that workers run, for every later spawn in this process
/// (Python's `multiprocessing.set_executable`).
///
/// By default a worker runs the current executable, which must call
/// [`init`](crate::init) first thing in `main`. Set another program when the
/// current one can't act as a worker:
/// - multiproc lives in a library loaded by a host that isn't yours (a
///   plugin in a Python interpreter, a service host): point this at a small
///   helper program that loads that same library file and calls a function
///   of it that calls `init()` (the build check below is about the library
///   that holds multiproc, so a program that merely links the same source
///   is another build);
/// - the current executable is a launcher that re-executes another binary
///   (a venv-style launcher): name the real binary, so the bootstrap channel
///   reaches the process that reads it.
///
/// [`reset_executable`] restores the default. Every place that names an
/// executable takes the same type as this function, `impl AsRef<Path>` (as
/// `std::process::Command` does): [`PopenBuilder::executable`](crate::PopenBuilder::executable),
/// [`ProcessBuilder::executable`](crate::ProcessBuilder::executable),
/// [`PoolBuilder::executable`](crate::PoolBuilder::executable).
///
/// # The build check
///
/// The worker must be the same build as the parent; otherwise it exits
/// with [`exit_code::BUILD_MISMATCH`](crate::exit_code::BUILD_MISMATCH) before running anything, and
/// [`Process::join`](crate::Process::join) reports a bootstrap failure that
/// says so. Parent and worker compare a hash of:
/// - the bootstrap protocol version and multiproc's crate version;
/// - the entry table: every registered entry's id and signature (the type
///   names of its function, argument and result);
/// - the link-time identity of the binary module (executable or shared
///   library) that holds multiproc's code, read from its headers in memory:
///   on Linux the GNU build id (a hash of the linked output, written by
///   linkers with `--build-id`, the default of most distributions' GCC and
///   Clang); on Windows the PE link time stamp, checksum and image size.
///
/// A path set here is started as it is, whatever file is there at the
/// time: only the default, this process's own executable, is started from
/// the running image (see [`executable`] for what each platform does when
/// that file is replaced on disk).
///
/// So a copy of the same file passes, and a rebuild that changed any code
/// (an argument struct whose fields changed type but not size, say) is
/// refused. Not caught: on macOS, and on Linux for a binary linked without
/// a build id, only the first two are compared, so two builds with the
/// same entry names and signatures are taken as one; on Windows, two links
/// of the same code with the time stamp turned off (`/Brepro`,
/// `--no-insert-timestamp`) that also have the same checksum and size.
pub fn set_executable(path: impl AsRef<Path>) {
    *EXECUTABLE.write().unwrap_or_else(|e| e.into_inner()) = Some(path.as_ref().to_path_buf());
    crate::sys::lane_keeper_executable(Some(path.as_ref().to_path_buf()));
}

/// Undoes [`set_executable`]: later spawns run this process's own
/// executable again (see [`executable`]).
pub fn reset_executable() {
    *EXECUTABLE.write().unwrap_or_else(|e| e.into_inner()) = None;
    crate::sys::lane_keeper_executable(None);
}

/// The program the next worker will run.
///
/// By default that is this process's own executable: the path it was
/// started from, as [`init`](crate::init) found it. Workers then run the
/// image that is running, not whatever file is at that path now, so a
/// binary replaced on disk while the program runs (a package upgrade, an
/// installer, `cargo build`) never gets to run as a worker of this one:
/// - Linux: workers are started from the running image (`/proc/self/exe`,
///   where `/proc` is mounted). Their `argv[0]` is this path; their
///   `current_exe()` is the path this process was started from, with
///   ` (deleted)` appended once the file was replaced.
/// - Windows: a running `.exe` can be renamed (not overwritten or
///   deleted), which is how it is replaced. `init` opens the file
///   (sharing read, write and delete, so it is in no upgrade's way), and a
///   spawn starts workers from where that file is now, found from the
///   handle (`GetFinalPathNameByHandleW` follows renames) and checked
///   after the process was created, still suspended: a process created
///   from another file is terminated before it runs. `argv[0]` stays this
///   path; the workers' `current_exe()` is where the file is. If the file
///   can't be found (Wine 8, whose `GetFinalPathNameByHandleW` does not
///   follow renames), the spawn fails as below.
/// - macOS and the other Unix systems: a process can only be started from
///   a path, so each spawn checks that the file at this path is still the
///   one `init` saw (device and inode). Not caught: a file overwritten in
///   place, or replaced in the moment between that check and the spawn
///   (the bootstrap's build check, see [`set_executable`], still refuses
///   another multiproc build).
///
/// Where the running image can't be started, the spawn fails with an
/// [`ErrorKind::Spawn`](crate::ErrorKind::Spawn) error whose message says
/// that this program's executable was replaced or removed on disk since it
/// started; [`Pool::new`](crate::Pool::new) fails with it, and a running
/// pool that can't replace a worker for this reason is broken
/// ([`Error::is_pool_broken`](crate::Error::is_pool_broken)), naming it. A program that didn't call `init` before the
/// replacement (or whose executable couldn't be opened then) starts
/// workers from the path, as with [`set_executable`].
pub fn executable() -> Result<PathBuf> {
    if let Some(p) = EXECUTABLE.read().unwrap_or_else(|e| e.into_inner()).clone() {
        return Ok(p);
    }
    match spawn::running_image() {
        Some(image) => Ok(image.path().to_path_buf()),
        None => current_exe(),
    }
}

pub(super) fn current_exe() -> Result<PathBuf> {
    std::env::current_exe().map_err(|e| Error::new(Kind::CurrentExe(e)))
}
