//! The resident memory of this process, for `max_memory_per_child`.

use std::io;

/// This process's resident set size, in bytes: Linux's
/// `/proc/self/statm` (its second field, in pages; proc(5)). Other Unix
/// systems: unsupported (an error), so a pool never recycles a worker
/// for its memory there.
pub(crate) fn resident_memory() -> io::Result<u64> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let statm = std::fs::read("/proc/self/statm")?;
        let pages = statm
            .split(|&b| b == b' ')
            .nth(1)
            .and_then(|f| std::str::from_utf8(f).ok())
            .and_then(|f| f.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc/self/statm")
            })?;
        Ok(pages.saturating_mul(rustix::param::page_size() as u64))
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        Err(io::ErrorKind::Unsupported.into())
    }
}
