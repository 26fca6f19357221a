//! Overlapped I/O: one read or write on a pipe from start to finish, with
//! its own `OVERLAPPED` and event.

use std::cell::UnsafeCell;
use std::io;
use std::mem::MaybeUninit;
use std::os::windows::io::{AsRawHandle, BorrowedHandle, OwnedHandle};
use std::ptr;

use windows_sys::core::BOOL;
use windows_sys::Win32::Foundation::{
    ERROR_IO_PENDING, ERROR_NO_DATA, ERROR_OPERATION_ABORTED, ERROR_PIPE_CONNECTED, HANDLE, TRUE,
};
use windows_sys::Win32::Storage::FileSystem::{ReadFile, WriteFile};
use windows_sys::Win32::System::Pipes::ConnectNamedPipe;
use windows_sys::Win32::System::IO::{CancelIoEx, GetOverlappedResult, OVERLAPPED};

use super::{is_os_error, is_signaled, new_event, MAX_WRITE};

/// One overlapped read or write on a pipe, from start to finish.
///
/// The `OVERLAPPED` lives on the heap and the kernel may write to it until
/// the operation is over, so it is boxed (it never moves) and kept in an
/// `UnsafeCell`; dropping an `Op` that is still pending cancels it and waits
/// until it is over, so neither the `OVERLAPPED` nor the caller's buffer can
/// go away under the kernel. The lifetime `'a` ties both the pipe handle
/// and the buffer to the `Op`: neither can go while it may be pending.
pub(super) struct Op<'a> {
    /// The pipe the operation runs on.
    pipe: BorrowedHandle<'a>,
    /// Signaled (manual reset) when the operation is over.
    event: OwnedHandle,
    /// The operation's `OVERLAPPED`; its address is in the kernel's hands
    /// while `pending`.
    ov: Box<UnsafeCell<OVERLAPPED>>,
    /// Started and not yet seen to be over.
    pending: bool,
    /// The buffer the kernel reads or writes while pending.
    _buf: std::marker::PhantomData<&'a mut [u8]>,
}

/// How an [`Op`] ended.
pub(super) enum Finished {
    /// Transferred this many bytes.
    Done(u32),
    /// Canceled (or never started). A canceled read has consumed nothing:
    /// a pipe read completes as soon as any data is there.
    Canceled,
    /// Failed (`ERROR_BROKEN_PIPE` at end-of-file, for example).
    Failed(io::Error),
}

impl<'a> Op<'a> {
    /// A new operation on `pipe`, not started.
    pub(super) fn new(pipe: BorrowedHandle<'a>) -> io::Result<Self> {
        let event = new_event()?;
        let ov = OVERLAPPED {
            hEvent: event.as_raw_handle(),
            ..OVERLAPPED::default()
        };
        Ok(Op {
            pipe,
            event,
            ov: Box::new(UnsafeCell::new(ov)),
            pending: false,
            _buf: std::marker::PhantomData,
        })
    }

    /// Starts `ReadFile` into `buf`. A zero-length `buf` makes a read that
    /// completes once data (or end-of-file) is there, consuming nothing.
    /// An error means it did not start.
    pub(super) fn read(&mut self, buf: &'a mut [u8]) -> io::Result<()> {
        let len = buf.len();
        // SAFETY: `buf` is valid for writes of `len` bytes for `'a`.
        unsafe { self.read_raw(buf.as_mut_ptr(), len) }
    }

    /// [`read`](Op::read) into memory that need not be initialized; the
    /// kernel only writes to it.
    pub(super) fn read_uninit(&mut self, buf: &'a mut [MaybeUninit<u8>]) -> io::Result<()> {
        let len = buf.len();
        // SAFETY: `buf` is valid for writes of `len` bytes for `'a`; the
        // kernel only writes to it, so it need not be initialized.
        unsafe { self.read_raw(buf.as_mut_ptr().cast::<u8>(), len) }
    }

    /// Starts `ReadFile` of up to `len` bytes to `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr` must be valid for writes of `len` bytes for `'a`.
    pub(super) unsafe fn read_raw(&mut self, ptr: *mut u8, len: usize) -> io::Result<()> {
        self.not_started()?;
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        // SAFETY: `ptr` is valid for `len` bytes for `'a`, which the `Op`
        // does not outlive, and the pipe is borrowed for `'a`; the
        // OVERLAPPED is boxed, unused by any other operation, and stays put
        // until this one is over (`finish`, `Drop`). No byte-count pointer
        // with an OVERLAPPED, as "ReadFile" on MSDN advises.
        let ok = unsafe {
            ReadFile(
                self.pipe.as_raw_handle(),
                ptr,
                len,
                ptr::null_mut(),
                self.ov.get(),
            )
        };
        self.started(ok)
    }

    /// Starts `WriteFile` of `buf` (at most [`MAX_WRITE`] bytes of it).
    pub(super) fn write(&mut self, buf: &'a [u8]) -> io::Result<()> {
        self.not_started()?;
        let len = buf.len().min(MAX_WRITE) as u32;
        // SAFETY: as in `read_raw`: `buf` and the pipe are borrowed for
        // `'a`, and the boxed OVERLAPPED is free and stays put until the
        // operation is over.
        let ok = unsafe {
            WriteFile(
                self.pipe.as_raw_handle(),
                buf.as_ptr(),
                len,
                ptr::null_mut(),
                self.ov.get(),
            )
        };
        self.started(ok)
    }

    /// Starts `ConnectNamedPipe` on the server end of a named pipe:
    /// `Ok(true)` if a client is already there (nothing pending),
    /// `Ok(false)` if the wait for one is pending ([`finish`](Op::finish)
    /// waits for it).
    ///
    /// "ConnectNamedPipe" on MSDN: a client that connected between
    /// `CreateNamedPipeW` and this call makes it fail with
    /// `ERROR_PIPE_CONNECTED`, which is "a good connection" (and no
    /// operation, so the event is not set); one that connected and
    /// already closed its end makes it fail with `ERROR_NO_DATA`, which is
    /// a connection too: reading it gives end of file (CPython's
    /// `PipeListener.accept` takes it the same way, bpo-14725).
    pub(super) fn connect(&mut self) -> io::Result<bool> {
        self.not_started()?;
        // SAFETY: the pipe is borrowed for `'a`; the boxed OVERLAPPED is
        // free and stays put until the operation is over (`finish`,
        // `Drop`).
        let ok = unsafe { ConnectNamedPipe(self.pipe.as_raw_handle(), self.ov.get()) };
        if ok == 0 {
            let err = io::Error::last_os_error();
            if is_os_error(&err, ERROR_PIPE_CONNECTED) || is_os_error(&err, ERROR_NO_DATA) {
                return Ok(true);
            }
            if !is_os_error(&err, ERROR_IO_PENDING) {
                return Err(err);
            }
        }
        // Pending, or connected at once: the event is (or will be) set.
        self.pending = true;
        Ok(false)
    }

    /// An `Op` runs one operation: its OVERLAPPED must not be reused while
    /// the kernel may still hold it.
    pub(super) fn not_started(&self) -> io::Result<()> {
        if self.pending {
            return Err(io::Error::other(
                "an overlapped operation is already running",
            ));
        }
        Ok(())
    }

    /// Records the outcome of the `ReadFile`/`WriteFile` call: pending
    /// unless it failed outright (then the error is returned, and nothing is
    /// pending).
    pub(super) fn started(&mut self, ok: BOOL) -> io::Result<()> {
        if ok == 0 {
            let err = io::Error::last_os_error();
            if !is_os_error(&err, ERROR_IO_PENDING) {
                return Err(err);
            }
        }
        // Completed at once or pending: either way the event is (or will
        // be) set and GetOverlappedResult tells the outcome.
        self.pending = true;
        Ok(())
    }

    /// The event that is set when the operation is over.
    pub(super) fn event(&self) -> HANDLE {
        self.event.as_raw_handle()
    }

    /// Cancels the operation if it is still running, waits until it is
    /// over and reports how it ended. It may have completed in the meantime:
    /// then its bytes count (`CancelIoEx` fails with `ERROR_NOT_FOUND`).
    pub(super) fn cancel(&mut self) -> Finished {
        if self.pending && !is_signaled(self.event()) {
            // SAFETY: cancels only the request identified by our OVERLAPPED
            // on `pipe`, which is borrowed (open) for the `Op`'s lifetime.
            unsafe { CancelIoEx(self.pipe.as_raw_handle(), self.ov.get()) };
        }
        self.finish()
    }

    /// Waits until the operation is over and reports how it ended.
    pub(super) fn finish(&mut self) -> Finished {
        if !self.pending {
            return Finished::Canceled;
        }
        let mut n = 0u32;
        // SAFETY: the OVERLAPPED belongs to the operation started on `pipe`;
        // with bWait = TRUE this returns only once it is over ("CancelIoEx"
        // on MSDN: wait for the completion this way after canceling).
        let ok =
            unsafe { GetOverlappedResult(self.pipe.as_raw_handle(), self.ov.get(), &mut n, TRUE) };
        let err = (ok == 0).then(io::Error::last_os_error);
        self.pending = false;
        match err {
            None => Finished::Done(n),
            Some(e) if is_os_error(&e, ERROR_OPERATION_ABORTED) => Finished::Canceled,
            Some(e) => Finished::Failed(e),
        }
    }

    /// [`finish`](Op::finish) if `done` (the event fired), otherwise
    /// [`cancel`](Op::cancel).
    pub(super) fn finish_if(&mut self, done: bool) -> Finished {
        if done {
            self.finish()
        } else {
            self.cancel()
        }
    }
}

impl Drop for Op<'_> {
    fn drop(&mut self) {
        let _ = self.cancel();
    }
}
