//! The link-time identity of the binary module (executable or shared
//! library) that contains multiproc's code: part of the build identity a
//! worker checks against its parent's (see `spawn::build_id`).
//!
//! It is read from the module's headers as they are mapped in memory, once
//! per process: no file is opened or hashed.
//!
//! - Linux (ELF): the GNU build-id note (`NT_GNU_BUILD_ID`), a hash of the
//!   linked output that the linker writes with `--build-id` (which the GCC
//!   and Clang drivers of most Linux distributions pass by default, also
//!   when rustc links through them). A module without one gives `None`.
//! - Windows (PE): the COFF header's link time stamp, and the optional
//!   header's checksum and image size ("PE Format" on MSDN). GNU ld and
//!   MSVC's link both set the time stamp to the time of linking unless told
//!   not to (`--no-insert-timestamp`, `/Brepro`); the checksum is a sum
//!   over the file's contents (GNU ld writes it, link.exe with
//!   `/RELEASE`).
//! - Elsewhere: `None`.

/// The identity bytes of the module that contains this function, or
/// `None` when it has none (see the module docs).
#[cfg(target_os = "linux")]
pub(crate) fn image_build_id() -> Option<Vec<u8>> {
    struct Search {
        /// An address inside the module we look for.
        addr: usize,
        found: Option<Vec<u8>>,
    }

    /// Called by `dl_iterate_phdr` for each loaded module; stops (non-zero)
    /// at the one that holds `addr`.
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `data` is the `&mut Search` passed to dl_iterate_phdr
        // below, alive and not otherwise borrowed during the call.
        let search = unsafe { &mut *data.cast::<Search>() };
        // SAFETY: dl_iterate_phdr passes a valid `dl_phdr_info` for the
        // duration of the callback (dl_iterate_phdr(3)).
        let info = unsafe { &*info };
        let phdrs = if info.dlpi_phdr.is_null() {
            &[]
        } else {
            // SAFETY: `dlpi_phdr` points at the module's `dlpi_phnum`
            // program headers, mapped while the module is loaded (and it
            // can't be unloaded during the callback).
            unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) }
        };
        let base = info.dlpi_addr as usize;
        let holds_addr = phdrs.iter().any(|p| {
            let start = base.wrapping_add(p.p_vaddr as usize);
            p.p_type == libc::PT_LOAD
                && (start..start.wrapping_add(p.p_memsz as usize)).contains(&search.addr)
        });
        if !holds_addr {
            return 0;
        }
        for p in phdrs.iter().filter(|p| p.p_type == libc::PT_NOTE) {
            let start = base.wrapping_add(p.p_vaddr as usize) as *const u8;
            // SAFETY: a PT_NOTE segment lies inside a PT_LOAD segment of
            // the module (the linker places the notes in the first,
            // read-only one), so its `p_memsz` bytes are mapped and never
            // written.
            let notes = unsafe { std::slice::from_raw_parts(start, p.p_memsz as usize) };
            if let Some(id) = gnu_build_id(notes, p.p_align as usize) {
                search.found = Some(id.to_vec());
                break;
            }
        }
        1
    }

    let mut search = Search {
        addr: image_build_id as fn() -> Option<Vec<u8>> as usize,
        found: None,
    };
    // SAFETY: `visit` matches the callback type and only reads what
    // dl_iterate_phdr hands it; `search` outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&raw mut search).cast()) };
    search.found
}

/// The descriptor of the `NT_GNU_BUILD_ID` note among `notes` (the
/// contents of a PT_NOTE segment whose entries are padded to `align`, 4 or
/// 8); `None` if there is none or the notes are malformed.
#[cfg(any(target_os = "linux", test))]
fn gnu_build_id(mut notes: &[u8], align: usize) -> Option<&[u8]> {
    const NT_GNU_BUILD_ID: u32 = 3;
    let align = if align == 8 { 8 } else { 4 };
    let word = |b: &[u8], i: usize| -> Option<usize> {
        let w: [u8; 4] = b.get(i..i + 4)?.try_into().ok()?;
        Some(u32::from_ne_bytes(w) as usize)
    };
    while notes.len() >= 12 {
        let (namesz, descsz, kind) = (word(notes, 0)?, word(notes, 4)?, word(notes, 8)?);
        let name_end = 12usize.checked_add(namesz)?;
        let desc_start = name_end.checked_next_multiple_of(align)?;
        let desc_end = desc_start.checked_add(descsz)?;
        let name = notes.get(12..name_end)?;
        let desc = notes.get(desc_start..desc_end)?;
        if kind == NT_GNU_BUILD_ID as usize && name == b"GNU\0" {
            return Some(desc);
        }
        let next = desc_end.checked_next_multiple_of(align)?;
        notes = notes.get(next..)?;
    }
    None
}

/// See the Linux version.
#[cfg(windows)]
pub(crate) fn image_build_id() -> Option<Vec<u8>> {
    use windows_sys::Win32::Foundation::HMODULE;
    use windows_sys::Win32::System::LibraryLoader::{
        GetModuleHandleExW, GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS,
        GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
    };
    let mut module: HMODULE = std::ptr::null_mut();
    // SAFETY: with FROM_ADDRESS the "name" is an address inside a module
    // (this function's own); UNCHANGED_REFCOUNT takes no reference, so
    // nothing is to be released; `module` is a valid place for the result.
    let ok = unsafe {
        GetModuleHandleExW(
            GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
            image_build_id as fn() -> Option<Vec<u8>> as *const u16,
            &mut module,
        )
    };
    if ok == 0 || module.is_null() {
        return None;
    }
    // An HMODULE is the module's base address, where its headers are
    // mapped: the DOS header, whose `e_lfanew` (at 0x3c) locates the NT
    // headers: "PE\0\0", the COFF header (time stamp at +8), the optional
    // header (at +24: image size at +56, checksum at +64, in PE32 and PE32+
    // alike).
    let base = module as *const u8;
    let read_u32 = |offset: usize| {
        // SAFETY: every offset read is below 4096: inside the first page
        // of the module's image, its headers, mapped read-only as long as
        // the module (which holds this code) is loaded; the read is
        // unaligned-safe.
        unsafe { base.add(offset).cast::<u32>().read_unaligned() }
    };
    let nt = read_u32(0x3c) as usize;
    // Everything read lies in the first page (the headers' page: at least
    // 4 KiB), which the offset check keeps us in.
    if nt > 4096 - (24 + 68) || read_u32(nt) != u32::from_le_bytes(*b"PE\0\0") {
        return None;
    }
    let (stamp, size, checksum) = (
        read_u32(nt + 8),
        read_u32(nt + 24 + 56),
        read_u32(nt + 24 + 64),
    );
    let mut id = Vec::with_capacity(12);
    for v in [stamp, checksum, size] {
        id.extend_from_slice(&v.to_le_bytes());
    }
    Some(id)
}

/// See the Linux version.
#[cfg(not(any(target_os = "linux", windows)))]
pub(crate) fn image_build_id() -> Option<Vec<u8>> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(name: &[u8], kind: u32, desc: &[u8], align: usize) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(name.len() as u32).to_ne_bytes());
        v.extend_from_slice(&(desc.len() as u32).to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(name);
        v.resize(v.len().next_multiple_of(align), 0);
        v.extend_from_slice(desc);
        v.resize(v.len().next_multiple_of(align), 0);
        v
    }

    #[test]
    fn the_build_id_note_is_found_among_others() {
        for align in [4, 8] {
            let mut notes = note(b"GNU\0", 1, &[0; 16], align); // ABI tag
            notes.extend(note(b"GNU\0", 3, &[7, 8, 9, 10, 11], align));
            assert_eq!(gnu_build_id(&notes, align), Some(&[7, 8, 9, 10, 11][..]));
        }
        let other = note(b"Go\0\0", 3, &[1; 4], 4);
        assert_eq!(gnu_build_id(&other, 4), None);
    }

    #[test]
    fn malformed_notes_give_none() {
        let mut notes = note(b"GNU\0", 3, &[1; 20], 4);
        notes.truncate(30); // the descriptor runs past the end
        assert_eq!(gnu_build_id(&notes, 4), None);
        let mut huge = note(b"GNU\0", 3, &[1; 4], 4);
        huge[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(gnu_build_id(&huge, 4), None);
    }

    #[cfg(any(target_os = "linux", windows))]
    #[test]
    fn this_test_binary_has_an_identity() {
        let id = image_build_id().expect("a build id");
        assert!(id.len() >= 8, "{id:?}");
        assert_eq!(image_build_id(), Some(id));
    }
}
