//! A child's standard handles, given at the spawn itself: an inheritable
//! copy of what each stream is to be, and an attribute list that makes
//! those copies the only handles the child inherits.
//!
//! `STARTF_USESTDHANDLES` takes handles *of the child*, so they must be
//! inherited (`bInheritHandles = TRUE`); `PROC_THREAD_ATTRIBUTE_HANDLE_LIST`
//! then limits inheritance to the handles listed ("UpdateProcThreadAttribute"
//! on MSDN; Windows Vista and later, and the only way to inherit *some*
//! handles: without it, every inheritable handle of this process would
//! go). The listed handles must themselves be inheritable, so this module
//! makes inheritable copies: of the null device, opened for the purpose,
//! and of this process's standard handles (`GetStdHandle`), whatever they
//! are (a console, a file, a pipe). The copies exist only until
//! `CreateProcessW` returned. A `CreateProcess` with `bInheritHandles =
//! TRUE` and no list on another thread meanwhile (std's `Command`) could
//! pick them up too: a copy of the null device or of a standard handle,
//! which such a child gets from std anyway.

use std::io;
use std::marker::PhantomData;
use std::mem::{size_of, MaybeUninit};
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::ptr;

use windows_sys::Win32::Foundation::{
    DuplicateHandle, DUPLICATE_SAME_ACCESS, ERROR_INSUFFICIENT_BUFFER, GENERIC_READ, GENERIC_WRITE,
    HANDLE, INVALID_HANDLE_VALUE, TRUE,
};
use windows_sys::Win32::Security::SECURITY_ATTRIBUTES;
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_SHARE_READ, FILE_SHARE_WRITE, OPEN_EXISTING,
};
use windows_sys::Win32::System::Console::{
    GetStdHandle, STD_ERROR_HANDLE, STD_INPUT_HANDLE, STD_OUTPUT_HANDLE,
};
use windows_sys::Win32::System::Threading::{
    DeleteProcThreadAttributeList, GetCurrentProcess, InitializeProcThreadAttributeList,
    UpdateProcThreadAttribute, LPPROC_THREAD_ATTRIBUTE_LIST, PROC_THREAD_ATTRIBUTE_HANDLE_LIST,
};

use super::{cvt, is_os_error, owned_or_invalid};
use crate::sys::StdioMode;

/// The standard handles for one child: stdin, stdout and stderr as the
/// child gets them, and the inheritable copies behind them, owned here.
pub(super) struct StdHandles {
    /// The value of each stream in the child (the same as in this process,
    /// since inherited handles keep their values); null for a stream this
    /// process has none for.
    std: [HANDLE; 3],
    /// The handles to inherit, each once (streams may share the null
    /// device).
    inherit: Vec<HANDLE>,
    /// The owners of `inherit`'s handles.
    owned: Vec<OwnedHandle>,
}

impl StdHandles {
    /// Inheritable handles for `stdio`: the null device for `Null`; a copy
    /// of this process's standard handle for `Inherit`, or none where this
    /// process has none (no console, a GUI program) or it can't be copied
    /// (a stale value): the child gets none either, as it would from an
    /// inheriting `CreateProcess`.
    pub(super) fn new(stdio: [StdioMode; 3]) -> io::Result<Self> {
        let mut owned = Vec::new();
        let mut null = None;
        let mut std = [ptr::null_mut(); 3];
        let ids = [STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, STD_ERROR_HANDLE];
        for ((slot, mode), id) in std.iter_mut().zip(stdio).zip(ids) {
            *slot = match mode {
                StdioMode::Null => match null {
                    Some(h) => h,
                    None => {
                        let nul = open_null_device()?;
                        let h = nul.as_raw_handle();
                        owned.push(nul);
                        null = Some(h);
                        h
                    }
                },
                StdioMode::Inherit => match own_std_handle(id).map(inheritable_copy) {
                    Some(Ok(copy)) => {
                        let h = copy.as_raw_handle();
                        owned.push(copy);
                        h
                    }
                    Some(Err(_)) | None => ptr::null_mut(),
                },
            };
        }
        let inherit = owned.iter().map(AsRawHandle::as_raw_handle).collect();
        Ok(StdHandles {
            std,
            inherit,
            owned,
        })
    }

    /// stdin, stdout, stderr, for `STARTUPINFOW`.
    pub(super) fn std(&self) -> [HANDLE; 3] {
        self.std
    }

    /// The handles the child must inherit: each of [`std`](Self::std)'s
    /// that is not null, once.
    pub(super) fn inherit(&self) -> &[HANDLE] {
        &self.inherit
    }

    /// Adds `h` (inheritable) to the handles the child inherits, at the
    /// same value, which its command line may name (a lane keeper's,
    /// `keeper.rs`); closed with the others once the child has its copy.
    pub(super) fn inherit_also(&mut self, h: OwnedHandle) {
        self.inherit.push(h.as_raw_handle());
        self.owned.push(h);
    }
}

/// This process's standard handle `id`, if it has one.
fn own_std_handle(id: u32) -> Option<HANDLE> {
    // SAFETY: `GetStdHandle` only reads the process's parameters; the
    // handle stays owned by the process (not closed here).
    let h = unsafe { GetStdHandle(id) };
    (!h.is_null() && h != INVALID_HANDLE_VALUE).then_some(h)
}

/// An inheritable copy of `h` (a handle of this process), with the same
/// access.
pub(super) fn inheritable_copy(h: HANDLE) -> io::Result<OwnedHandle> {
    // SAFETY: plain call; returns the pseudo handle of this process, which
    // needs no closing.
    let me = unsafe { GetCurrentProcess() };
    let mut out: HANDLE = ptr::null_mut();
    // SAFETY: `h` is only a value in our own handle table, which the OS
    // checks; `out` is a valid place for the result.
    let ok = unsafe { DuplicateHandle(me, h, me, &mut out, 0, TRUE, DUPLICATE_SAME_ACCESS) };
    cvt(ok)?;
    // SAFETY: on success `out` is a new handle in this process, ours alone.
    Ok(unsafe { OwnedHandle::from_raw_handle(out) })
}

/// The null device (`NUL`), for reading and writing, inheritable.
fn open_null_device() -> io::Result<OwnedHandle> {
    let name: Vec<u16> = "NUL\0".encode_utf16().collect();
    let inheritable = SECURITY_ATTRIBUTES {
        nLength: size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: ptr::null_mut(),
        bInheritHandle: TRUE,
    };
    // SAFETY: `name` is NUL-terminated and `inheritable` valid; both
    // outlive the call; the result is checked below.
    let raw = unsafe {
        CreateFileW(
            name.as_ptr(),
            GENERIC_READ | GENERIC_WRITE,
            FILE_SHARE_READ | FILE_SHARE_WRITE,
            &inheritable,
            OPEN_EXISTING,
            0,
            ptr::null_mut(),
        )
    };
    // SAFETY: fresh return value of `CreateFileW`, owned by nobody else.
    unsafe { owned_or_invalid(raw) }
}

/// An initialized `PROC_THREAD_ATTRIBUTE_LIST` holding one attribute,
/// `PROC_THREAD_ATTRIBUTE_HANDLE_LIST`, deleted when dropped.
///
/// The list points at the handle array it was given, which must outlive
/// it (`'a`). It stays in the buffer it was initialized in, and exists
/// only once initialized, so `Drop` never deletes an uninitialized one.
pub(super) struct HandleList<'a> {
    /// Pointer-aligned storage of the size the system asked for.
    buf: Box<[MaybeUninit<usize>]>,
    _handles: PhantomData<&'a [HANDLE]>,
}

impl<'a> HandleList<'a> {
    /// A list that lets a child inherit exactly `handles` (not empty, no
    /// duplicates, each inheritable).
    pub(super) fn new(handles: &'a [HANDLE]) -> io::Result<Self> {
        let mut size = 0usize;
        // SAFETY: with a null list, the call only writes the size it needs
        // to `size`; it "fails" with ERROR_INSUFFICIENT_BUFFER by design.
        let ok = unsafe { InitializeProcThreadAttributeList(ptr::null_mut(), 1, 0, &mut size) };
        if let Err(e) = cvt(ok) {
            if !is_os_error(&e, ERROR_INSUFFICIENT_BUFFER) {
                return Err(e);
            }
        }
        let words = size.div_ceil(size_of::<usize>());
        let mut buf: Box<[MaybeUninit<usize>]> = vec![MaybeUninit::uninit(); words].into();
        let list: LPPROC_THREAD_ATTRIBUTE_LIST = buf.as_mut_ptr().cast();
        // SAFETY: `list` points at `size` writable bytes (at least), aligned
        // for pointers; `size` says how many.
        cvt(unsafe { InitializeProcThreadAttributeList(list, 1, 0, &mut size) })?;
        let mut this = HandleList {
            buf,
            _handles: PhantomData,
        };
        // SAFETY: `this` holds an initialized list with room for one
        // attribute; `handles` is an array of `handles.len()` handle values
        // that outlives the list (`'a`), as the attribute only points at
        // it; no previous value or return size is asked for.
        let ok = unsafe {
            UpdateProcThreadAttribute(
                this.as_mut_ptr(),
                0,
                PROC_THREAD_ATTRIBUTE_HANDLE_LIST as usize,
                handles.as_ptr().cast(),
                std::mem::size_of_val(handles),
                ptr::null_mut(),
                ptr::null(),
            )
        };
        cvt(ok)?;
        Ok(this)
    }

    /// The list, for the calls that change it.
    fn as_mut_ptr(&mut self) -> LPPROC_THREAD_ATTRIBUTE_LIST {
        self.buf.as_mut_ptr().cast()
    }

    /// The list, for `STARTUPINFOEXW::lpAttributeList`, which
    /// `CreateProcessW` only reads (the field's type is a `*mut`).
    pub(super) fn as_ptr(&self) -> LPPROC_THREAD_ATTRIBUTE_LIST {
        self.buf.as_ptr().cast_mut().cast()
    }
}

impl Drop for HandleList<'_> {
    fn drop(&mut self) {
        // SAFETY: initialized in `new` (a `HandleList` exists only then),
        // deleted once here.
        unsafe { DeleteProcThreadAttributeList(self.as_mut_ptr()) };
    }
}
