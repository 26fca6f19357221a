//! Diagnostics for leak and isolation tests: the handles open in this
//! process, and a waitable handle on any process (feature `test-hooks`).

use std::io;
use std::os::windows::io::AsRawHandle;

use windows_sys::Win32::Foundation::{
    GetHandleInformation, SetHandleInformation, FALSE, HANDLE, HANDLE_FLAG_INHERIT,
};
use windows_sys::Win32::Storage::FileSystem::{GetFileType, FILE_TYPE_PIPE};
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, Thread32First, Thread32Next, TH32CS_SNAPTHREAD, THREADENTRY32,
};
use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcessId, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_SYNCHRONIZE,
};

use super::{cvt, handle_to_token, owned_or_invalid, owned_or_null, BorrowedRaw, OwnedRaw};

/// The highest handle value [`open_handle_count`] and [`open_ipc_handles`]
/// probe.
const MAX_PROBED_HANDLE: usize = 65536;

/// The values 4..=65536 that name an open handle in this process.
///
/// Probed one by one with `GetHandleInformation`, which fails for a value
/// that is not open. `GetProcessHandleCount` would be the obvious call, but
/// Wine 8 returns TRUE and a count of 0 (shared/windows/README.md). Handle
/// values above 65536 (a process with very many handles) are not seen; for
/// leak and isolation tests that is plenty.
pub(super) fn open_handles() -> impl Iterator<Item = HANDLE> {
    (4..=MAX_PROBED_HANDLE)
        .step_by(4)
        .map(|v| v as HANDLE)
        .filter(|&h| {
            let mut flags = 0u32;
            // SAFETY: only reads the flags of a handle-table entry; a value
            // that is not open makes it fail, nothing more.
            unsafe { GetHandleInformation(h, &mut flags) != 0 }
        })
}

/// How many handles this process has open (values up to 65536), for leak
/// tests. See [`open_handles`] for why it probes instead of asking
/// `GetProcessHandleCount`.
pub(crate) fn open_handle_count() -> io::Result<usize> {
    Ok(open_handles().count())
}

/// The open pipe handles of this process other than its standard handles,
/// for isolation tests (what a child got besides its bootstrap pipe).
///
/// Caveat: `GetFileType` queries the handle's file object, which for a
/// synchronous handle waits behind an operation another thread has in
/// progress on it; don't call this while another thread is blocked reading
/// a synchronous pipe.
pub(crate) fn open_ipc_handles() -> io::Result<Vec<u64>> {
    // `as_raw_handle` on the std streams asks `GetStdHandle`.
    let std_handles = [
        io::stdin().as_raw_handle(),
        io::stdout().as_raw_handle(),
        io::stderr().as_raw_handle(),
    ];
    Ok(open_handles()
        .filter(|h| !std_handles.contains(h))
        .filter(|&h| {
            // SAFETY: `h` was just seen open; for a handle that is not a
            // file this returns FILE_TYPE_UNKNOWN, nothing more.
            unsafe { GetFileType(h) == FILE_TYPE_PIPE }
        })
        .map(handle_to_token)
        .collect())
}

/// The number of threads of this process: a Toolhelp snapshot of the
/// system's threads, counting those this process owns
/// (`CreateToolhelp32Snapshot`, `Thread32First`/`Thread32Next` on MSDN).
pub(crate) fn thread_count() -> io::Result<usize> {
    // SAFETY: plain call (the process id is ignored for threads); the
    // result is checked by `owned_or_invalid`.
    let raw = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0) };
    // SAFETY: fresh return value of `CreateToolhelp32Snapshot`, owned by
    // nobody else.
    let snap = unsafe { owned_or_invalid(raw) }?;
    // SAFETY: plain call.
    let me = unsafe { GetCurrentProcessId() };
    let mut entry = THREADENTRY32 {
        dwSize: std::mem::size_of::<THREADENTRY32>() as u32,
        ..THREADENTRY32::default()
    };
    let mut n = 0;
    // SAFETY: `snap` is a thread snapshot, open for the call; `entry` is a
    // THREADENTRY32 with its `dwSize` set, written by the call.
    let mut more = unsafe { Thread32First(snap.as_raw_handle(), &mut entry) } != 0;
    while more {
        if entry.th32OwnerProcessID == me {
            n += 1;
        }
        // SAFETY: as for `Thread32First`.
        more = unsafe { Thread32Next(snap.as_raw_handle(), &mut entry) } != 0;
    }
    Ok(n)
}

/// This process's id and creation time, as a held block names its sender
/// (`held.rs`).
pub(crate) fn process_identity() -> io::Result<(u32, u64)> {
    super::held::identity()
}

/// A waitable handle on any process by pid (`SYNCHRONIZE`): signaled once
/// it has exited.
pub(crate) fn watch_process(pid: u32) -> io::Result<OwnedRaw> {
    // SAFETY: plain call; the result is checked by `owned_or_null`.
    let raw = unsafe {
        OpenProcess(
            PROCESS_SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION,
            FALSE,
            pid,
        )
    };
    // SAFETY: fresh return value of `OpenProcess`, owned by nobody else.
    unsafe { owned_or_null(raw) }
}

/// Whether this process runs under Wine, which differs from Windows in a
/// few documented ways the tests have to expect: Wine's `ntdll.dll`
/// exports `wine_get_version` (Wine's own "Developer FAQ" names this check).
pub(crate) fn under_wine() -> bool {
    let name: Vec<u16> = "ntdll.dll\0".encode_utf16().collect();
    // SAFETY: `name` is NUL-terminated and outlives the call; ntdll is
    // loaded in every process, and the handle returned is not owned (no
    // reference is taken, nothing to close).
    let ntdll = unsafe { GetModuleHandleW(name.as_ptr()) };
    if ntdll.is_null() {
        return false;
    }
    // SAFETY: `ntdll` is a loaded module for as long as the process runs;
    // the name is a NUL-terminated C string. The address is only compared
    // with null, never called.
    unsafe { GetProcAddress(ntdll, c"wine_get_version".as_ptr().cast()) }.is_some()
}

/// Makes `h` inheritable (`HANDLE_FLAG_INHERIT`): a stray handle that a
/// careless library made, for isolation tests.
pub(crate) fn set_inheritable(h: BorrowedRaw<'_>) -> io::Result<()> {
    // SAFETY: `h` is open (borrowed); only its inherit flag changes.
    let ok = unsafe {
        SetHandleInformation(h.as_raw_handle(), HANDLE_FLAG_INHERIT, HANDLE_FLAG_INHERIT)
    };
    cvt(ok)
}
