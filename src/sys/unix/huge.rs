//! Huge pages for anonymous shared memory (Linux): the part of `shm.rs`
//! that makes a block of user data of them.
//!
//! A block of user data (`ShmPages::HugeIfFree`) of at least
//! one huge page is first tried as a hugetlb memfd (`MFD_HUGETLB`, the
//! system's default huge page size, 2 MiB on x86-64), whose pages come
//! from the pool the administrator reserved (`vm.nr_hugepages`): every
//! process that maps it then maps 512 times fewer pages, which is what
//! a child reading a large `Frozen` block pays for (docs/benchmarks.md,
//! "broadcast"). A hugetlbfs file's size is whole huge pages
//! (`ftruncate` to anything else is `EINVAL`), so the block's file is
//! its length rounded up, while the block's length stays what was asked.
//! Its pages are reserved (a shared mapping reserves them, or fails with
//! `ENOMEM` when the pool is short, before anything is zeroed) and then
//! allocated (`fallocate`, which fails with `ENOSPC` where a hugetlb
//! cgroup limit says no, instead of a SIGBUS at a later fault). Any
//! refusal falls back to the base-page memfd: a missing pool is never an
//! error. Sealing works the same on hugetlb memfds (since Linux 4.16). A
//! received block on hugetlbfs must have exactly its length rounded up
//! to its huge pages, all of them allocated (so reading it can't fault
//! on a page the pool can't give), and is mapped whole (a hugetlb
//! mapping is unmapped in whole huge pages).
//!
//! Otherwise a block of 2 MiB or more asks for transparent huge pages
//! when it is mapped to be written (see `ask_for_huge_pages`).

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::mm::{MapFlags, ProtFlags};

use super::shm::{invalid, ShmView};

/// hugetlbfs's `f_type` (`HUGETLBFS_MAGIC`, linux/magic.h).
const HUGETLBFS_MAGIC: u32 = 0x9584_58f6;

/// The huge page size of the file behind `fd` if it is on hugetlbfs
/// (statfs(2): `f_bsize` is the huge page size there); `None` otherwise.
pub(super) fn huge_page_size(fd: BorrowedFd<'_>) -> io::Result<Option<usize>> {
    let st = rustix::fs::fstatfs(fd)?;
    // `f_type` is a signed word of the platform's width; the magic is 32
    // bits.
    if st.f_type as u32 != HUGETLBFS_MAGIC {
        return Ok(None);
    }
    usize::try_from(st.f_bsize)
        .ok()
        .filter(|p| p.is_power_of_two())
        .map(Some)
        .ok_or_else(|| invalid(format!("hugetlbfs reports a page size of {}", st.f_bsize)))
}

/// A block of `len` bytes (at least a huge page) of huge pages, its file
/// `len` rounded up to whole huge pages, every page allocated (zeroed)
/// and sealed against resizing; the first refusal otherwise (module
/// docs), having taken nothing from the pool.
pub(super) fn huge_block(len: usize) -> io::Result<OwnedFd> {
    use rustix::fs::{FallocateFlags, MemfdFlags, SealFlags};
    use std::os::fd::AsFd;
    let fd = rustix::fs::memfd_create(
        "multiproc",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING | MemfdFlags::HUGETLB,
    )?;
    let page = huge_page_size(fd.as_fd())?
        .ok_or_else(|| io::Error::other("an MFD_HUGETLB memfd that is not on hugetlbfs"))?;
    if len < page {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{len} bytes is less than a huge page ({page} bytes)"),
        ));
    }
    let size = len
        .checked_next_multiple_of(page)
        .ok_or_else(|| io::Error::other("a block's size overflows in huge pages"))?;
    rustix::fs::ftruncate(&fd, size as u64)?;
    reserve_huge_pages(fd.as_fd(), size)?;
    rustix::fs::fallocate(&fd, FallocateFlags::empty(), 0, size as u64)?;
    rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW)?;
    Ok(fd)
}

/// Reserves the `size` bytes of huge pages of the hugetlbfs file `fd`: a
/// shared mapping takes the pages the file lacks from the pool's free
/// ones, for the file, or fails with `ENOMEM` if there are too few; the
/// reservation stays with the file after the mapping is gone
/// (`hugetlb_reserve_pages`; kernel Documentation/mm/hugetlbfs_reserv.rst
/// on shared mappings, and measured: `HugePages_Rsvd` holds them until
/// `fallocate` takes them). Cheap either way: nothing is allocated or
/// zeroed yet.
fn reserve_huge_pages(fd: BorrowedFd<'_>, size: usize) -> io::Result<()> {
    // SAFETY: a new mapping (null hint: the kernel picks a free range), so
    // no existing memory is affected; it is never read.
    let p = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            size,
            ProtFlags::READ,
            MapFlags::SHARED,
            fd,
            0,
        )
    }?;
    // SAFETY: exactly the mapping just made (a whole number of huge
    // pages), which nothing has seen.
    unsafe { rustix::mm::munmap(p, size) }?;
    Ok(())
}

/// The size of a (transparent) huge page on x86-64 and most Linux
/// targets: below it a block is not tried as huge pages at all.
pub(super) const HUGE_PAGE: usize = 2 << 20;

/// Linux: a block of 2 MiB or more mapped to be written asks for
/// transparent huge pages (`MADV_HUGEPAGE`) before anything is written to
/// it. Where the system gives shared memory huge pages on request
/// (`/sys/kernel/mm/transparent_hugepage/shmem_enabled` is `advise`), the
/// block is then made of 2 MiB pages, and every process that maps it later
/// (a child reading a `Frozen` broadcast) maps 512 times fewer pages:
/// measured on a tmpfs mounted `huge=advise` on this kernel (6.18), a
/// child summing a 1 GiB block took 77 ms of CPU instead of 138-146, and
/// unmapping it 0.2 ms instead of 23. Where it is `never` it does nothing;
/// `always` and `within_size` don't need it. A hint: failure is ignored.
#[cfg(target_os = "linux")]
pub(super) fn ask_for_huge_pages(view: &ShmView) {
    // SAFETY: `view` is a whole mapping `shm_map` just made; MADV_HUGEPAGE
    // changes how its pages are allocated, never what they hold.
    let _ = unsafe {
        rustix::mm::madvise(
            view.as_ptr().cast(),
            view.len,
            rustix::mm::Advice::LinuxHugepage,
        )
    };
}

/// Test hooks: why this thread's last block that could have been of huge
/// pages is not; no huge pages for this thread's blocks.
#[cfg(feature = "test-hooks")]
pub(crate) mod hooks {
    use std::cell::{Cell, RefCell};
    use std::io;

    thread_local! {
        static REFUSAL: RefCell<Option<io::Error>> = const { RefCell::new(None) };
        static ALLOWED: Cell<bool> = const { Cell::new(true) };
    }

    /// Whether blocks this thread creates may be of huge pages (default:
    /// yes), for a bench that compares both kinds in one run.
    pub(crate) fn set_huge_pages(allowed: bool) {
        ALLOWED.with(|a| a.set(allowed));
    }

    pub(crate) fn huge_pages_allowed() -> bool {
        ALLOWED.with(Cell::get)
    }

    /// Notes how this thread's last try for huge pages went (`None`: it
    /// got them).
    pub(crate) fn note(refusal: Option<io::Error>) {
        REFUSAL.with(|r| *r.borrow_mut() = refusal);
    }

    /// Why the last block this thread created that could have been of
    /// huge pages (user data of at least 2 MiB, Linux) is not: the
    /// refusal of the first step that failed (`ENOMEM`: the pool had too
    /// few free pages to reserve). `None` if it is, or if there was none.
    pub(crate) fn huge_page_refusal() -> Option<io::Error> {
        REFUSAL.with(|r| r.borrow_mut().take())
    }
}

#[cfg(test)]
mod tests {
    use super::super::shm::{shm_create, shm_freeze, shm_map};
    use super::*;
    use crate::sys::{ShmAccess, ShmPages};

    fn refused(r: io::Result<ShmView>) -> String {
        let e = r.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        e.to_string()
    }
    use std::os::fd::AsFd;

    /// The line starting with `field` of the mapping that starts at
    /// `addr`, from /proc/self/smaps.
    #[cfg(target_os = "linux")]
    fn smaps_line(addr: *mut u8, field: &str) -> String {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let start = format!("{:x}-", addr as usize);
        let entry = smaps
            .split_once(&format!("\n{start}"))
            .map(|(_, rest)| rest)
            .unwrap_or_else(|| panic!("no mapping at {start} in smaps"));
        let line = entry.lines().find(|l| l.starts_with(field)).unwrap();
        line.to_string()
    }

    /// The `VmFlags` line of the mapping that starts at `addr`.
    #[cfg(target_os = "linux")]
    fn vm_flags(addr: *mut u8) -> String {
        smaps_line(addr, "VmFlags:")
    }

    /// The `KernelPageSize` of the mapping that starts at `addr`, in kB.
    #[cfg(target_os = "linux")]
    fn kernel_page_kb(addr: *mut u8) -> u64 {
        let line = smaps_line(addr, "KernelPageSize:");
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// A field of /proc/meminfo (a count, or kB).
    #[cfg(target_os = "linux")]
    fn meminfo(field: &str) -> Option<u64> {
        let m = std::fs::read_to_string("/proc/meminfo").ok()?;
        let line = m.lines().find(|l| l.starts_with(field))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// Huge pages free and not reserved, now.
    #[cfg(target_os = "linux")]
    fn huge_pages_available() -> u64 {
        let free = meminfo("HugePages_Free:").unwrap_or(0);
        free.saturating_sub(meminfo("HugePages_Rsvd:").unwrap_or(0))
    }

    /// `huge_block(len)`, or `None` (printing why the test is skipped)
    /// where the pool has fewer than `pages` free, now that it refused.
    /// Any other refusal fails the test.
    #[cfg(target_os = "linux")]
    fn huge_block_if_free(len: usize, pages: u64) -> Option<OwnedFd> {
        match huge_block(len) {
            Ok(fd) => Some(fd),
            Err(e)
                if matches!(e.raw_os_error(), Some(libc::ENOMEM | libc::ENOSPC))
                    && huge_pages_available() < pages =>
            {
                println!(
                    "skipped: {pages} free huge pages needed, {} free ({e}); \
                     reserve some with `echo 8 > /proc/sys/vm/nr_hugepages` as root",
                    huge_pages_available()
                );
                None
            }
            Err(e) => panic!(
                "huge pages refused while {} free: {e}",
                huge_pages_available()
            ),
        }
    }

    /// Needs 2 free huge pages of 2 MiB: skips (and says so) without.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_block_of_huge_pages_is_whole_pages_and_seals_like_base_pages() {
        let len = 3 * (1 << 20) + 5;
        let Some(fd) = huge_block_if_free(len, 2) else {
            return;
        };
        let st = rustix::fs::fstat(&fd).unwrap();
        assert_eq!(st.st_size, 4 << 20, "the file is whole huge pages");
        assert_eq!(st.st_blocks * 512, 4 << 20, "every page allocated");
        let v = shm_map(fd.as_fd(), len, ShmAccess::ReadWrite).unwrap();
        assert_eq!(kernel_page_kb(v.as_ptr()), 2048);
        assert_eq!(v.len, 4 << 20, "mapped (and unmapped) in whole pages");
        // SAFETY: in bounds of a writable mapping only this test has.
        unsafe { v.as_ptr().add(len - 1).write(7) };
        // Frozen: F_SEAL_WRITE works on a hugetlb memfd (Linux 4.16+),
        // once no writable mapping is left.
        assert_eq!(
            shm_freeze(fd.try_clone().unwrap())
                .unwrap_err()
                .raw_os_error(),
            Some(libc::EBUSY)
        );
        drop(v);
        let fd = shm_freeze(fd).unwrap();
        let ro = shm_map(fd.as_fd(), len, ShmAccess::ReadOnly).unwrap();
        // SAFETY: in bounds; frozen, so nothing writes it.
        assert_eq!(unsafe { ro.as_ptr().add(len - 1).read() }, 7);
        assert_eq!(kernel_page_kb(ro.as_ptr()), 2048);
        refused(shm_map(fd.as_fd(), len, ShmAccess::ReadWrite));
        // Lengths that round up to these 2 pages pass, others don't.
        shm_map(fd.as_fd(), 4 << 20, ShmAccess::ReadOnly).unwrap();
        let m = refused(shm_map(fd.as_fd(), 2 << 20, ShmAccess::ReadOnly));
        assert!(m.contains("huge pages"), "{m}");
        refused(shm_map(fd.as_fd(), (4 << 20) + 1, ShmAccess::ReadOnly));
    }

    /// Runs wherever hugetlb memfds can be made, with or without a pool.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_huge_page_block_with_pages_missing_or_resizable_is_refused() {
        use rustix::fs::{MemfdFlags, SealFlags};
        let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING | MemfdFlags::HUGETLB;
        let fd = match rustix::fs::memfd_create("x", flags) {
            Ok(fd) => fd,
            Err(e) => return println!("skipped: no hugetlb memfd here ({e})"),
        };
        assert_eq!(huge_page_size(fd.as_fd()).unwrap(), Some(2 << 20));
        rustix::fs::ftruncate(&fd, 4 << 20).unwrap();
        let m = refused(shm_map(fd.as_fd(), 4 << 20, ShmAccess::ReadWrite));
        assert!(m.contains("resizing"), "{m}");
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW).unwrap();
        // No page allocated: a read would take one from the pool, which
        // can fail as a SIGBUS.
        let m = refused(shm_map(fd.as_fd(), 4 << 20, ShmAccess::ReadWrite));
        assert!(m.contains("0 of its 4194304 bytes allocated"), "{m}");
        let m = refused(shm_map(fd.as_fd(), 1 << 20, ShmAccess::ReadWrite));
        assert!(
            m.contains("has 4194304 bytes, its wire form says 1048576"),
            "{m}"
        );
    }

    /// Runs always: a block larger than the whole pool (its total and its
    /// overcommit) is refused at the reservation, before anything is
    /// zeroed, and made of base pages instead.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_block_the_pool_cant_give_is_of_base_pages() {
        let overcommit = std::fs::read_to_string("/proc/sys/vm/nr_overcommit_hugepages")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let pages = meminfo("HugePages_Total:").unwrap_or(0) + overcommit + 1;
        let len = usize::try_from(pages * (2 << 20) + 8).unwrap();
        if let Ok(fd) = rustix::fs::memfd_create(
            "x",
            rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::HUGETLB,
        ) {
            if huge_page_size(fd.as_fd()).unwrap() == Some(2 << 20) {
                let e = huge_block(len).unwrap_err();
                assert_eq!(e.raw_os_error(), Some(libc::ENOMEM), "{e}");
            }
        }
        let fd = shm_create(len, ShmPages::HugeIfFree).unwrap();
        assert_eq!(huge_page_size(fd.as_fd()).unwrap(), None);
        assert_eq!(rustix::fs::fstat(&fd).unwrap().st_size as usize, len);
        let v = shm_map(fd.as_fd(), len, ShmAccess::ReadWrite).unwrap();
        assert_eq!(kernel_page_kb(v.as_ptr()), 4);
        assert_eq!(v.len, len);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn large_writable_blocks_ask_for_huge_pages_and_small_or_frozen_ones_dont() {
        let fd = shm_create(HUGE_PAGE * 2, ShmPages::Base).unwrap();
        let big = shm_map(fd.as_fd(), HUGE_PAGE * 2, ShmAccess::ReadWrite).unwrap();
        let flags = vm_flags(big.as_ptr());
        assert!(flags.split_whitespace().any(|f| f == "hg"), "{flags}");
        drop(big);
        // A frozen block's read-only mappings are of pages that exist
        // already: nothing to ask.
        let fd = shm_freeze(fd).unwrap();
        let ro = shm_map(fd.as_fd(), HUGE_PAGE * 2, ShmAccess::ReadOnly).unwrap();
        let flags = vm_flags(ro.as_ptr());
        assert!(!flags.split_whitespace().any(|f| f == "hg"), "{flags}");
        let fd = shm_create(HUGE_PAGE / 2, ShmPages::Base).unwrap();
        let small = shm_map(fd.as_fd(), HUGE_PAGE / 2, ShmAccess::ReadWrite).unwrap();
        let flags = vm_flags(small.as_ptr());
        assert!(!flags.split_whitespace().any(|f| f == "hg"), "{flags}");
    }
}
