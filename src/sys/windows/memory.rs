//! The resident memory of this process, for `max_memory_per_child`.

use std::io;

use windows_sys::Win32::System::ProcessStatus::{K32GetProcessMemoryInfo, PROCESS_MEMORY_COUNTERS};
use windows_sys::Win32::System::Threading::GetCurrentProcess;

/// This process's working set, in bytes (`GetProcessMemoryInfo`'s
/// `WorkingSetSize`: the pages resident in physical memory).
///
/// <https://learn.microsoft.com/en-us/windows/win32/api/psapi/nf-psapi-getprocessmemoryinfo>
pub(crate) fn resident_memory() -> io::Result<u64> {
    let mut counters = PROCESS_MEMORY_COUNTERS {
        cb: 0,
        PageFaultCount: 0,
        PeakWorkingSetSize: 0,
        WorkingSetSize: 0,
        QuotaPeakPagedPoolUsage: 0,
        QuotaPagedPoolUsage: 0,
        QuotaPeakNonPagedPoolUsage: 0,
        QuotaNonPagedPoolUsage: 0,
        PagefileUsage: 0,
        PeakPagefileUsage: 0,
    };
    let size = std::mem::size_of::<PROCESS_MEMORY_COUNTERS>() as u32;
    counters.cb = size;
    // SAFETY: `GetCurrentProcess` returns a pseudo handle that is always
    // valid in this process and needs no closing.
    let process = unsafe { GetCurrentProcess() };
    // SAFETY: `counters` is a live, writable PROCESS_MEMORY_COUNTERS of
    // exactly `size` bytes, as `cb` says.
    let ok = unsafe { K32GetProcessMemoryInfo(process, &mut counters, size) };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(counters.WorkingSetSize as u64)
}
