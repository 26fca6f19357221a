//! Anonymous shared memory: a page-file-backed section
//! (`CreateFileMappingW(INVALID_HANDLE_VALUE, ..)`, no name), freed by the
//! system when the last handle and view of it are gone, mapped with
//! `MapViewOfFile`.
//!
//! A received handle is checked by mapping it: `MapViewOfFile` fails on a
//! handle that is not a section, and on a view larger than the section
//! (`STATUS_INVALID_VIEW_SIZE`); `VirtualQuery` then confirms a mapped
//! view of at least the size the wire form says. Freezing keeps only a
//! handle with read access (`DuplicateHandle` with `FILE_MAP_READ |
//! SECTION_QUERY`, the writable one closed), and a frozen block is mapped
//! only if its handle can't be mapped writable. See "Creating Named Shared
//! Memory", "CreateFileMappingW" and "MapViewOfFile" on MSDN.
//!
//! Pages are the base 4 KiB ones whatever `ShmPages` asks: a section of
//! large pages (`SEC_LARGE_PAGES`) needs the creator to hold
//! `SeLockMemoryPrivilege`, which accounts don't have by default ("Large-
//! Page Support" on MSDN).

use std::io;
use std::os::windows::io::{AsRawHandle, BorrowedHandle, FromRawHandle, OwnedHandle};
use std::ptr::{self, NonNull};

use windows_sys::Win32::Foundation::{DuplicateHandle, FALSE, HANDLE, INVALID_HANDLE_VALUE};
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, MapViewOfFile, UnmapViewOfFile, VirtualQuery, FILE_MAP_READ,
    FILE_MAP_WRITE, MEMORY_BASIC_INFORMATION, MEMORY_MAPPED_VIEW_ADDRESS, MEM_MAPPED,
    PAGE_READWRITE, SECTION_QUERY,
};
use windows_sys::Win32::System::Threading::GetCurrentProcess;

use super::{cvt, owned_or_null};
use crate::sys::{ShmAccess, ShmPages};

/// A view of a section in this process, unmapped on drop. Whether it may be written is what it was mapped with
/// ([`shm_map`]).
#[derive(Debug)]
pub(crate) struct ShmView {
    ptr: NonNull<u8>,
}

// SAFETY: the view is plain memory owned by this value (no thread
// affinity); what may be done through the pointer is the user's contract,
// as for a raw pointer.
unsafe impl Send for ShmView {}
// SAFETY: as above; `&ShmView` only hands out the pointer.
unsafe impl Sync for ShmView {}

impl ShmView {
    /// The first byte of the view (aligned to the allocation granularity,
    /// 64 KiB).
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for ShmView {
    fn drop(&mut self) {
        // SAFETY: `ptr` is the base of a view `map_view` made, which
        // nothing else unmaps; after this no one uses it (the owner is
        // being dropped, and views are never copied).
        unsafe {
            UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS {
                Value: self.ptr.as_ptr().cast(),
            })
        };
    }
}

/// An `InvalidData` error: a received block is not what it claims to be.
fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Creates an anonymous block of `len` bytes (at least 1), zeroed (the
/// system zero-fills the pages of a page-file-backed section).
pub(crate) fn shm_create(len: usize, _: ShmPages) -> io::Result<OwnedHandle> {
    let size = len as u64;
    // SAFETY: no file (INVALID_HANDLE_VALUE: backed by the page file), no
    // security attributes, no name; the return value is checked by
    // `owned_or_null`.
    let raw = unsafe {
        CreateFileMappingW(
            INVALID_HANDLE_VALUE,
            ptr::null(),
            PAGE_READWRITE,
            (size >> 32) as u32,
            size as u32,
            ptr::null(),
        )
    };
    // SAFETY: fresh return value of `CreateFileMappingW`, ours alone.
    unsafe { owned_or_null(raw) }
}

/// `MapViewOfFile` of the first `len` bytes of `h` with `access`.
fn map_view(h: BorrowedHandle<'_>, access: u32, len: usize) -> io::Result<ShmView> {
    // SAFETY: `h` is an open handle the caller borrows (the system checks
    // that it is a section and that `access` and `len` fit it); a new view
    // is placed where the system chooses, affecting no existing memory.
    let view = unsafe { MapViewOfFile(h.as_raw_handle() as HANDLE, access, 0, 0, len) };
    match NonNull::new(view.Value.cast::<u8>()) {
        Some(ptr) => Ok(ShmView { ptr }),
        None => Err(io::Error::last_os_error()),
    }
}

/// Checks that `h` is a section of at least `len` bytes fit for `access`
/// (see the module docs), and maps it.
pub(crate) fn shm_map(h: BorrowedHandle<'_>, len: usize, access: ShmAccess) -> io::Result<ShmView> {
    if len == 0 {
        return Err(invalid("a shared-memory block of 0 bytes".into()));
    }
    let rights = match access {
        ShmAccess::ReadWrite => FILE_MAP_READ | FILE_MAP_WRITE,
        ShmAccess::ReadOnly => {
            // A handle that can still map the section writable is not a
            // frozen block's (one page is enough to tell).
            if map_view(h, FILE_MAP_WRITE, 1).is_ok() {
                return Err(invalid(
                    "the frozen shared-memory block's handle allows writing".into(),
                ));
            }
            FILE_MAP_READ
        }
    };
    let view = map_view(h, rights, len).map_err(|e| {
        invalid(format!(
            "the handle is not a shared-memory section of {len} bytes or more: {e}"
        ))
    })?;
    let mut info = MEMORY_BASIC_INFORMATION::default();
    // SAFETY: as above: `view.as_ptr()` is an address in this process, and
    // `info` is writable for `size_of` bytes.
    let got = unsafe {
        VirtualQuery(
            view.as_ptr().cast(),
            &mut info,
            std::mem::size_of::<MEMORY_BASIC_INFORMATION>(),
        )
    };
    if got == 0 {
        return Err(io::Error::last_os_error());
    }
    if info.Type != MEM_MAPPED || info.RegionSize < len {
        return Err(invalid(format!(
            "the shared-memory view has {} bytes (type {:#x}), its wire form says {len}",
            info.RegionSize, info.Type
        )));
    }
    Ok(view)
}

/// Makes the block read-only for every process that gets it from here:
/// returns a handle with read access only and closes `h`, the writable
/// one. No writable view of it should remain (the caller unmapped its own).
pub(crate) fn shm_freeze(h: OwnedHandle) -> io::Result<OwnedHandle> {
    // SAFETY: plain call; returns the pseudo handle of this process, which
    // needs no closing.
    let me = unsafe { GetCurrentProcess() };
    let mut out: HANDLE = ptr::null_mut();
    // SAFETY: `h` is an open section handle we own; `out` is a valid place
    // for the result; the access asked for is a subset of `h`'s.
    let ok = unsafe {
        DuplicateHandle(
            me,
            h.as_raw_handle() as HANDLE,
            me,
            &mut out,
            FILE_MAP_READ | SECTION_QUERY,
            FALSE,
            0,
        )
    };
    cvt(ok)?;
    // SAFETY: on success `out` is a new handle in this process, ours alone.
    let read_only = unsafe { OwnedHandle::from_raw_handle(out) };
    drop(h);
    Ok(read_only)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::windows::io::AsHandle;

    fn refused(r: io::Result<ShmView>) -> String {
        let e = r.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        e.to_string()
    }

    #[test]
    fn a_block_maps_writable_then_frozen_read_only() {
        let h = shm_create(8192, ShmPages::Base).unwrap();
        let v = shm_map(h.as_handle(), 8192, ShmAccess::ReadWrite).unwrap();
        drop(v);
        let h = shm_freeze(h).unwrap();
        shm_map(h.as_handle(), 8192, ShmAccess::ReadOnly).unwrap();
        // The frozen handle can't map writable any more.
        refused(shm_map(h.as_handle(), 8192, ShmAccess::ReadWrite));
    }

    #[test]
    fn a_writable_handle_is_not_a_frozen_block() {
        let h = shm_create(4096, ShmPages::Base).unwrap();
        let m = refused(shm_map(h.as_handle(), 4096, ShmAccess::ReadOnly));
        assert!(m.contains("allows writing"), "{m}");
    }

    #[test]
    fn a_view_larger_than_the_section_or_of_no_bytes_is_refused() {
        let h = shm_create(4096, ShmPages::Base).unwrap();
        // Sections are whole pages: 4096 bytes map as one page, 2 pages don't.
        let m = refused(shm_map(h.as_handle(), 3 * 65536, ShmAccess::ReadWrite));
        assert!(m.contains("not a shared-memory section"), "{m}");
        refused(shm_map(h.as_handle(), 0, ShmAccess::ReadWrite));
    }

    #[test]
    fn an_event_handle_is_not_a_section() {
        let ev = super::super::new_event().unwrap();
        let m = refused(shm_map(ev.as_handle(), 4096, ShmAccess::ReadWrite));
        assert!(m.contains("not a shared-memory section"), "{m}");
    }
}
