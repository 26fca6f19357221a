//! Anonymous shared memory: a block of bytes that lives as long as some
//! process holds its fd or a mapping of it, with no name to leak.
//!
//! - Linux: `memfd_create(MFD_CLOEXEC | MFD_ALLOW_SEALING)`, sized with
//!   `ftruncate` and sealed at once with `F_SEAL_SHRINK | F_SEAL_GROW`, so
//!   no process that gets the fd can shrink it under our mapping (an
//!   access past the end of a shrunk file is SIGBUS). A received fd must
//!   carry those seals (which only memfds can have) and the exact size;
//!   freezing adds `F_SEAL_WRITE | F_SEAL_SEAL`, after which no process
//!   can write it, and a frozen block is mapped only if it has them.
//!   See memfd_create(2) and the "File Sealing" part of fcntl(2).
//!
//!   A block of user data (`ShmPages::HugeIfFree`) may be of huge pages:
//!   how, and how a received one is checked, in `huge.rs`.
//! - macOS (and other Unixes): `shm_open` with a random name and
//!   `O_CREAT | O_EXCL`, `shm_unlink` right away, then `ftruncate`. There
//!   are no seals: a received fd is checked for its size only (`fstat`),
//!   and freezing only drops this process's writable mapping. Any process
//!   holding the fd could still map it writable; ours never do. No huge
//!   pages.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use rustix::mm::{MapFlags, ProtFlags};

#[cfg(all(
    feature = "test-hooks",
    any(target_os = "linux", target_os = "android")
))]
use super::huge::hooks;
#[cfg(any(target_os = "linux", target_os = "android"))]
use super::huge::{collapse, huge_block, huge_page_size, map_aligned, HUGE_PAGE};
use crate::sys::{ShmAccess, ShmPages};

/// A mapping of a shared-memory block into this process: `len` bytes at
/// `ptr` (the block's length, or for a block of huge pages its whole huge
/// pages), unmapped on drop. Whether it may be written is what it was
/// mapped with ([`shm_map`]).
#[derive(Debug)]
pub(crate) struct ShmView {
    pub(super) ptr: NonNull<u8>,
    pub(super) len: usize,
}

// SAFETY: the view is plain memory owned by this value (no thread
// affinity); what may be done through the pointer is the user's contract,
// as for a raw pointer.
unsafe impl Send for ShmView {}
// SAFETY: as above; `&ShmView` only hands out the pointer and the length.
unsafe impl Sync for ShmView {}

impl ShmView {
    /// The first byte of the mapping (page-aligned).
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for ShmView {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly a mapping `shm_map` made, which
        // nothing else unmaps; after this no one uses them (the owner is
        // being dropped, and views are never copied).
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// An `InvalidData` error: a received block is not what it claims to be.
pub(super) fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Creates an anonymous block of `len` bytes (at least 1), zeroed, that
/// can't be resized: of huge pages if `pages` allows it and the system
/// has them free (module docs), else of base pages.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn shm_create(len: usize, pages: ShmPages) -> io::Result<OwnedFd> {
    use rustix::fs::{MemfdFlags, SealFlags};
    use std::os::fd::AsFd;
    #[cfg(feature = "test-hooks")]
    let pages = match hooks::huge_pages_allowed() {
        true => pages,
        false => ShmPages::Base,
    };
    if pages == ShmPages::HugeIfFree && len >= HUGE_PAGE {
        match huge_block(len) {
            Ok(fd) => {
                #[cfg(feature = "test-hooks")]
                hooks::note(None);
                return Ok(fd);
            }
            Err(_e) => {
                #[cfg(feature = "test-hooks")]
                hooks::note(Some(_e));
            }
        }
    }
    let fd =
        rustix::fs::memfd_create("multiproc", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
    rustix::fs::ftruncate(&fd, len as u64)?;
    rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW)?;
    if pages == ShmPages::HugeIfFree && len >= HUGE_PAGE {
        // Transparent huge pages, where the kernel and the memory rule
        // allow (`huge.rs`); base pages otherwise, never an error.
        let outcome = collapse(fd.as_fd(), len);
        if let Err(e) = &outcome {
            log::debug!("a shared-memory block of {len} bytes keeps 4 KiB pages: {e}");
        }
        #[cfg(feature = "test-hooks")]
        hooks::note_collapse(outcome);
    }
    Ok(fd)
}

/// Creates an anonymous block of `len` bytes (at least 1), zeroed: a
/// POSIX shared-memory object unlinked as soon as it is open. Base pages
/// whatever `ShmPages` says.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn shm_create(len: usize, _: ShmPages) -> io::Result<OwnedFd> {
    use rustix::fs::Mode;
    use rustix::shm::OFlags;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut tries = 0;
    let fd = loop {
        // Unguessable enough that another program can't pre-create it
        // (O_EXCL refuses it then, and we try another), short enough for
        // macOS's 31-character limit (PSHMNAMLEN).
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        // At most 3 + 8 + 1 + 4 + 1 + 8 = 25 characters.
        let name = format!(
            "/mp{:x}.{:x}.{:x}",
            std::process::id(),
            n as u16,
            nanos ^ (n as u32).rotate_left(16)
        );
        match rustix::shm::open(
            name.as_str(),
            OFlags::CREATE | OFlags::EXCL | OFlags::RDWR,
            Mode::RUSR | Mode::WUSR,
        ) {
            Ok(fd) => {
                // Nameless from now on: freed when the last fd and mapping go.
                rustix::shm::unlink(name.as_str())?;
                break fd;
            }
            Err(rustix::io::Errno::EXIST) if tries < 100 => tries += 1,
            Err(e) => return Err(e.into()),
        }
    };
    // shm_open sets FD_CLOEXEC (POSIX); ftruncate zero-fills.
    rustix::fs::ftruncate(&fd, len as u64)?;
    Ok(fd)
}

/// Checks that `fd` is a block this module made, of exactly `len` bytes,
/// fit for `access` (see the module docs), and maps it.
pub(crate) fn shm_map(fd: BorrowedFd<'_>, len: usize, access: ShmAccess) -> io::Result<ShmView> {
    if len == 0 {
        return Err(invalid("a shared-memory block of 0 bytes".into()));
    }
    let backing = check(fd, len, access)?;
    let prot = match access {
        ShmAccess::ReadWrite => ProtFlags::READ | ProtFlags::WRITE,
        ShmAccess::ReadOnly => ProtFlags::READ,
    };
    let map_len = backing.map_len;
    // Base pages of 2 MiB or more may be transparent huge pages (`huge.rs`),
    // mapped whole only at a 2 MiB boundary; hugetlbfs aligns its own.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if !backing.huge && map_len >= HUGE_PAGE {
        return map_aligned(fd, map_len, prot);
    }
    // SAFETY: a new mapping (null hint: the kernel picks a free range), so
    // no existing memory is affected; `check` made sure the file has
    // `map_len` bytes and can't shrink (Linux), so every byte of the
    // mapping is backed.
    let ptr =
        unsafe { rustix::mm::mmap(std::ptr::null_mut(), map_len, prot, MapFlags::SHARED, fd, 0) }?;
    let ptr =
        NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
    Ok(ShmView { ptr, len: map_len })
}

/// What `check` found: how many bytes to map, and whether the block is
/// made of huge pages (hugetlbfs).
struct Backing {
    map_len: usize,
    #[cfg_attr(not(any(target_os = "linux", target_os = "android")), allow(dead_code))]
    huge: bool,
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn check(fd: BorrowedFd<'_>, len: usize, access: ShmAccess) -> io::Result<Backing> {
    use rustix::fs::SealFlags;
    // F_GET_SEALS fails with EINVAL on files that can't be sealed: not a
    // memfd (or other shmem or hugetlbfs file).
    let seals = rustix::fs::fcntl_get_seals(fd)
        .map_err(|e| invalid(format!("the fd is not a shared-memory block (memfd): {e}")))?;
    if !seals.contains(SealFlags::SHRINK | SealFlags::GROW) {
        return Err(invalid(
            "the shared-memory block is not sealed against resizing (F_SEAL_SHRINK, F_SEAL_GROW)"
                .into(),
        ));
    }
    match access {
        ShmAccess::ReadOnly if !seals.contains(SealFlags::WRITE) => {
            return Err(invalid(
                "the frozen shared-memory block is not sealed against writing (F_SEAL_WRITE)"
                    .into(),
            ))
        }
        ShmAccess::ReadWrite if seals.contains(SealFlags::WRITE) => {
            return Err(invalid(
                "a writable shared-memory block arrived sealed against writing (F_SEAL_WRITE)"
                    .into(),
            ))
        }
        _ => {}
    }
    let st = rustix::fs::fstat(fd)?;
    let size = st.st_size as u64;
    let Some(page) = huge_page_size(fd)? else {
        // Base pages: exactly, as a sealed memfd can't change.
        if size != len as u64 {
            return Err(invalid(format!(
                "the shared-memory block has {size} bytes, its wire form says {len}"
            )));
        }
        return Ok(Backing {
            map_len: len,
            huge: false,
        });
    };
    // Huge pages: the length rounded up to them, as `huge_block` made it.
    let whole = len
        .checked_next_multiple_of(page)
        .filter(|&w| w as u64 == size)
        .ok_or_else(|| {
            invalid(format!(
                "the shared-memory block of huge pages ({page} bytes each) has {size} bytes, \
                 its wire form says {len}"
            ))
        })?;
    // Every page allocated (`st_blocks` counts 512-byte units), so that no
    // read of it allocates one, which can fail as a SIGBUS.
    let allocated = (st.st_blocks as u64).saturating_mul(512);
    if allocated < size {
        return Err(invalid(format!(
            "the shared-memory block of huge pages has {allocated} of its {size} bytes allocated"
        )));
    }
    Ok(Backing {
        map_len: whole,
        huge: true,
    })
}

/// The file behind `fd` has at least `len` bytes (macOS rounds a
/// shared-memory object's size up to pages): no seals to check here.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn check(fd: BorrowedFd<'_>, len: usize, _: ShmAccess) -> io::Result<Backing> {
    let st = rustix::fs::fstat(fd)?;
    let size = st.st_size as u64;
    if size < len as u64 {
        return Err(invalid(format!(
            "the shared-memory block has {size} bytes, its wire form says {len}"
        )));
    }
    Ok(Backing {
        map_len: len,
        huge: false,
    })
}

/// Makes the block read-only for every process (Linux: seals it against
/// writing, for good). No writable mapping of it may exist anywhere (on
/// Linux the seal fails with `EBUSY` otherwise). Returns the handle to
/// keep (the same fd on Unix).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn shm_freeze(fd: OwnedFd) -> io::Result<OwnedFd> {
    use rustix::fs::SealFlags;
    rustix::fs::fcntl_add_seals(&fd, SealFlags::WRITE | SealFlags::SEAL)?;
    Ok(fd)
}

/// Nothing to do without seals: see the module docs.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn shm_freeze(fd: OwnedFd) -> io::Result<OwnedFd> {
    Ok(fd)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::os::fd::AsFd;

    /// The message of a mapping refused as invalid data (also used by
    /// `huge.rs`'s tests).
    pub(in crate::sys::imp) fn refused(r: io::Result<ShmView>) -> String {
        let e = r.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        e.to_string()
    }

    #[test]
    fn a_block_maps_writable_then_frozen_read_only() {
        let fd = shm_create(8192, ShmPages::Base).unwrap();
        let v = shm_map(fd.as_fd(), 8192, ShmAccess::ReadWrite).unwrap();
        drop(v);
        let fd = shm_freeze(fd).unwrap();
        shm_map(fd.as_fd(), 8192, ShmAccess::ReadOnly).unwrap();
    }

    #[test]
    fn a_size_other_than_the_blocks_is_refused() {
        let fd = shm_create(8192, ShmPages::Base).unwrap();
        let m = refused(shm_map(fd.as_fd(), 8193, ShmAccess::ReadWrite));
        assert!(m.contains("8192 bytes"), "{m}");
        refused(shm_map(fd.as_fd(), 0, ShmAccess::ReadWrite));
        if cfg!(target_os = "linux") {
            refused(shm_map(fd.as_fd(), 4096, ShmAccess::ReadWrite));
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_pipe_or_an_unsealed_memfd_is_refused() {
        use rustix::fs::{MemfdFlags, SealFlags};
        let (r, _w) = rustix::pipe::pipe().unwrap();
        let m = refused(shm_map(r.as_fd(), 4096, ShmAccess::ReadWrite));
        assert!(m.contains("not a shared-memory block"), "{m}");

        // Resizable: a peer could shrink it under our mapping (SIGBUS).
        let fd =
            rustix::fs::memfd_create("x", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING).unwrap();
        rustix::fs::ftruncate(&fd, 4096).unwrap();
        let m = refused(shm_map(fd.as_fd(), 4096, ShmAccess::ReadWrite));
        assert!(m.contains("resizing"), "{m}");
        // Not sealed against writing: not frozen.
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW).unwrap();
        let m = refused(shm_map(fd.as_fd(), 4096, ShmAccess::ReadOnly));
        assert!(m.contains("F_SEAL_WRITE"), "{m}");
        shm_map(fd.as_fd(), 4096, ShmAccess::ReadWrite).unwrap();
        // Sealed against writing: can't be mapped writable.
        let fd = shm_freeze(fd).unwrap();
        refused(shm_map(fd.as_fd(), 4096, ShmAccess::ReadWrite));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_block_mapped_writable_elsewhere_cant_be_frozen() {
        let fd = shm_create(4096, ShmPages::Base).unwrap();
        let _v = shm_map(fd.as_fd(), 4096, ShmAccess::ReadWrite).unwrap();
        let e = shm_freeze(fd).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBUSY), "{e}");
    }
}
