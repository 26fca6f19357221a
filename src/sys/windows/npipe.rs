//! Named pipes for `Listener`/`Client` at `\\.\pipe\NAME` addresses
//! (CPython's `PipeListener`/`PipeClient` in `multiprocessing/connection.py`).
//!
//! # Design
//!
//! * **The listener owns the name from the first instance on.** The first
//!   instance is created with `FILE_FLAG_FIRST_PIPE_INSTANCE`, so binding a
//!   name some other pipe already has (another listener, another program)
//!   fails instead of joining its instances ("CreateNamedPipeW" on MSDN:
//!   then the call fails with `ERROR_ACCESS_DENIED`). Wine 8 ignores that
//!   flag (its `CreateNamedPipeW` opens the name with `FILE_OPEN_IF`
//!   whatever the flag says), so [`PipeListener::bind`] also counts the
//!   instances of what it created: more than its own one means the name
//!   was taken, and it fails the same way.
//! * **One instance always waits for the next client**, and the name never
//!   lapses: when a client connects to the waiting instance
//!   ([`PipeListener::accept`], an overlapped `ConnectNamedPipe`), the next
//!   instance is created *before* the connected one is handed over. So a
//!   client never finds no instance at all (`ERROR_FILE_NOT_FOUND`, which
//!   would read as "no listener"); while every instance is taken it gets
//!   `ERROR_PIPE_BUSY` and waits with `WaitNamedPipeW` ([`connect`]), as
//!   CPython's `PipeClient` does.
//! * **Only this user, only this machine.** Each instance gets a DACL with
//!   one entry, full access for the user of this process's token, instead
//!   of the default one, which also lets Everyone and Anonymous open the
//!   pipe for reading ("Named Pipe Security and Access Rights" on MSDN: "The
//!   ACLs in the default security descriptor for a named pipe grant full
//!   control to the LocalSystem account, administrators, and the creator
//!   owner. They also grant read access to members of the Everyone group and
//!   the anonymous account") — a reader of a listener without a key would
//!   see its messages. `PIPE_REJECT_REMOTE_CLIENTS` refuses connections
//!   from other machines (SMB). Instances are not inheritable.
//! * **A client lets the listener identify it, not impersonate it**:
//!   `SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION` on `CreateFileW`
//!   ("Impersonation Levels" on MSDN), should a process of another user
//!   own the name.
//! * **Stopping**: `accept` waits on the connection and on a stop event
//!   together; [`PipeStopper::stop`] (from the `Listener`'s drop) sets it,
//!   so stopping never depends on connecting to the name (which, were the
//!   name shared, could reach another listener's instance).
//! * **After the handshake, a connection is the crate's overlapped pipe
//!   `Channel`** (`pipe.rs`): `wait_any` waits on it as on any pipe end, and
//!   the end can be passed to a child as one. But it is marked a
//!   `Listener`/`Client` connection (`Channel::from_net_pipe`, kept when
//!   passed): handles *inside* its messages are refused either way, as on
//!   a socket (`rights.rs`). A plain `Pipe` end takes a frame that names
//!   its sending process and opens that process to take the handles
//!   (`held.rs`); a peer that connected by name could name any process of
//!   this user, and the OS names only the process that opened the pipe
//!   (`GetNamedPipeClientProcessId`), not the one holding the end now.
//!
//! Byte mode, as every pipe of the crate: messages are framed by the
//! `Connection` above, as on a socket.
//!
//! Limit: a name has at most `PIPE_UNLIMITED_INSTANCES` (255) instances,
//! one of which waits: at most 254 connections of one listener can be
//! open at a time. Past that, creating the waiting instance fails with
//! `ERROR_PIPE_BUSY`, which `accept` reports until a connection closes.

use std::ffi::c_void;
use std::io;
use std::mem::size_of;
use std::os::windows::io::{AsHandle, AsRawHandle, BorrowedHandle, FromRawHandle, OwnedHandle};
use std::ptr;
use std::sync::Arc;
use std::time::Instant;

use windows_sys::Win32::Foundation::{
    ERROR_ACCESS_DENIED, ERROR_BROKEN_PIPE, ERROR_NO_DATA, ERROR_PIPE_BUSY, FALSE, GENERIC_READ,
    GENERIC_WRITE, TRUE,
};
use windows_sys::Win32::Security::{
    AddAccessAllowedAce, GetLengthSid, GetTokenInformation, InitializeAcl,
    InitializeSecurityDescriptor, SetSecurityDescriptorDacl, TokenUser, ACCESS_ALLOWED_ACE, ACL,
    ACL_REVISION, SECURITY_ATTRIBUTES, SECURITY_DESCRIPTOR, TOKEN_QUERY, TOKEN_USER,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_ALL_ACCESS, FILE_FLAG_FIRST_PIPE_INSTANCE, FILE_FLAG_OVERLAPPED,
    OPEN_EXISTING, PIPE_ACCESS_DUPLEX, SECURITY_IDENTIFICATION, SECURITY_SQOS_PRESENT,
};
use windows_sys::Win32::System::Pipes::{
    CreateNamedPipeW, GetNamedPipeHandleStateW, WaitNamedPipeW, PIPE_READMODE_BYTE,
    PIPE_REJECT_REMOTE_CLIENTS, PIPE_TYPE_BYTE, PIPE_UNLIMITED_INSTANCES, PIPE_WAIT,
};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, OpenProcessToken, SetEvent, INFINITE,
};

use super::{
    broken_pipe_kind, cvt, is_os_error, ms_until, new_event,
    overlapped::{Finished, Op},
    owned_or_invalid, to_wide,
    wait::wait_for_any,
    PIPE_BUFFER,
};
use crate::deadline;

/// `SECURITY_DESCRIPTOR_REVISION` ("InitializeSecurityDescriptor" on
/// MSDN; windows-sys has it behind a feature of its own).
const SECURITY_DESCRIPTOR_REVISION: u32 = 1;

/// A fresh, unguessable pipe address for this process:
/// `\\.\pipe\multiproc-<pid>-<counter>-<random>`.
pub(crate) fn fresh_pipe_name() -> String {
    super::pipe::pipe_name()
}

/// The listening side: the name, the DACL every instance gets, and the
/// instance waiting for the next client.
///
/// # Drop
///
/// Closes the waiting instance; connections handed out are not affected.
/// The name is free again once they are closed too.
#[derive(Debug)]
pub(crate) struct PipeListener {
    name: Vec<u16>,
    /// An `ACL` (in `u64`s, for its alignment) allowing this user only.
    acl: Vec<u64>,
    /// The instance a client connects to next; `None` only after creating
    /// it failed (at the instance limit), until the next `accept`.
    waiting: Option<OwnedHandle>,
    /// Set once the listener is to stop: `accept` returns `Interrupted`.
    stop: Arc<OwnedHandle>,
}

/// Stops a [`PipeListener`]'s `accept`, now and for good, from any
/// thread.
#[derive(Debug)]
pub(crate) struct PipeStopper(Arc<OwnedHandle>);

impl PipeStopper {
    /// Sets the stop event.
    pub(crate) fn stop(&self) {
        // SAFETY: an event handle this process owns (shared with the
        // listener through the `Arc`, so open). Setting an event can only
        // fail for a bad handle: nothing to report.
        unsafe { SetEvent(self.0.as_raw_handle()) };
    }
}

impl PipeListener {
    /// Creates the first instance of the pipe `name` (`\\.\pipe\NAME`);
    /// an error of kind `AddrInUse` if a pipe of that name exists.
    pub(crate) fn bind(name: &str) -> io::Result<PipeListener> {
        let wide = to_wide(name.as_ref())?;
        let acl = user_only_acl()?;
        let in_use = |why: String| {
            io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "a pipe of this name already exists (another listener's, or another \
                     program's): {why}"
                ),
            )
        };
        let first = create_instance(&wide, &acl, true).map_err(|e| {
            if is_os_error(&e, ERROR_ACCESS_DENIED) || is_os_error(&e, ERROR_PIPE_BUSY) {
                in_use(e.to_string())
            } else {
                e
            }
        })?;
        // Under Wine the flag is ignored (module docs): our instance joined
        // an existing pipe if it is not the only one.
        let instances = instance_count(first.as_handle())?;
        if instances != 1 {
            return Err(in_use(format!("it has {instances} instances")));
        }
        Ok(PipeListener {
            name: wide,
            acl,
            waiting: Some(first),
            stop: Arc::new(new_event()?),
        })
    }

    /// What stops [`accept`](Self::accept) from another thread.
    pub(crate) fn stopper(&self) -> PipeStopper {
        PipeStopper(Arc::clone(&self.stop))
    }

    /// Waits for the next client and returns its end (connected, not yet
    /// through any handshake), after creating the instance the client
    /// after it will connect to.
    pub(crate) fn accept(&mut self) -> io::Result<OwnedHandle> {
        let waiting = match self.waiting.take() {
            Some(h) => h,
            None => create_instance(&self.name, &self.acl, false)?,
        };
        let connected = connect_client(waiting.as_handle(), self.stop.as_handle());
        if connected
            .as_ref()
            .is_err_and(|e| e.kind() == io::ErrorKind::Interrupted)
        {
            // Stopping: nothing more to create.
            self.waiting = Some(waiting);
            return Err(io::ErrorKind::Interrupted.into());
        }
        match create_instance(&self.name, &self.acl, false) {
            Ok(next) => {
                self.waiting = Some(next);
                // A failed instance is closed only now, with the next one
                // there: the name stays ours.
                connected.map(|()| waiting)
            }
            Err(e) => match connected {
                // At the instance limit: the client is given its end all
                // the same; the next `accept` tries again.
                Ok(()) => Ok(waiting),
                Err(_) => {
                    self.waiting = Some(waiting);
                    Err(e)
                }
            },
        }
    }
}

/// Waits until a client is connected to `pipe`, a listening instance, or
/// `stop` is set (then `Interrupted`; a client that connected at the same
/// moment wins).
fn connect_client(pipe: BorrowedHandle<'_>, stop: BorrowedHandle<'_>) -> io::Result<()> {
    let mut op = Op::new(pipe)?;
    if op.connect()? {
        return Ok(());
    }
    let woken = wait_for_any(&[op.event(), stop.as_raw_handle()], INFINITE);
    match op.finish_if(matches!(woken, Ok(Some(0)))) {
        Finished::Done(_) => Ok(()),
        // Connected and already gone: a connection that reads end of file.
        Finished::Failed(e) if is_os_error(&e, ERROR_NO_DATA) => Ok(()),
        Finished::Failed(e) => Err(e),
        Finished::Canceled => {
            woken?;
            Err(io::ErrorKind::Interrupted.into())
        }
    }
}

/// How many instances the pipe of the server end `pipe` has
/// (`GetNamedPipeHandleStateW`'s `lpCurInstances`).
fn instance_count(pipe: BorrowedHandle<'_>) -> io::Result<u32> {
    let mut n = 0u32;
    // SAFETY: `pipe` is an open pipe handle; only the instance count is
    // asked for (every other pointer null, no user name buffer).
    cvt(unsafe {
        GetNamedPipeHandleStateW(
            pipe.as_raw_handle(),
            ptr::null_mut(),
            &mut n,
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
            0,
        )
    })?;
    Ok(n)
}

/// One instance of the pipe `name`: duplex, overlapped, byte mode, local
/// clients only, this user only (`acl`), not inheritable; with `first`,
/// only if no pipe of that name exists.
fn create_instance(name: &[u16], acl: &[u64], first: bool) -> io::Result<OwnedHandle> {
    let mut sd = SECURITY_DESCRIPTOR::default();
    let psd: *mut c_void = (&raw mut sd).cast();
    // SAFETY: `psd` points to a writable SECURITY_DESCRIPTOR, which is what
    // the call initializes.
    cvt(unsafe { InitializeSecurityDescriptor(psd, SECURITY_DESCRIPTOR_REVISION) })?;
    // SAFETY: `psd` is the initialized (absolute) descriptor; `acl` is an
    // initialized ACL, which the descriptor points to (not copies), and
    // which outlives it: both live until after `CreateNamedPipeW` below,
    // which copies them into the pipe's own descriptor.
    cvt(unsafe { SetSecurityDescriptorDacl(psd, TRUE, acl.as_ptr().cast::<ACL>(), FALSE) })?;
    let sa = SECURITY_ATTRIBUTES {
        nLength: size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: psd,
        bInheritHandle: FALSE,
    };
    let first_flag = if first {
        FILE_FLAG_FIRST_PIPE_INSTANCE
    } else {
        0
    };
    // SAFETY: `name` is NUL-terminated and outlives the call; `sa` and the
    // descriptor and ACL it points to are valid for the call; the result
    // is checked below.
    let raw = unsafe {
        CreateNamedPipeW(
            name.as_ptr(),
            PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED | first_flag,
            PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS,
            PIPE_UNLIMITED_INSTANCES,
            PIPE_BUFFER,
            PIPE_BUFFER,
            0,
            &sa,
        )
    };
    // SAFETY: fresh return value of `CreateNamedPipeW`, owned by nobody else.
    unsafe { owned_or_invalid(raw) }
}

/// An ACL with one entry: `FILE_ALL_ACCESS` for the user of this
/// process's token ("Creating a Security Descriptor for a New Object" on
/// MSDN), in `u64`s so that it is aligned as an `ACL` must be.
fn user_only_acl() -> io::Result<Vec<u64>> {
    let mut raw = ptr::null_mut();
    // SAFETY: the current-process pseudo handle; `raw` receives a new
    // handle on success.
    cvt(unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut raw) })?;
    // SAFETY: `OpenProcessToken` succeeded: `raw` is a fresh handle that
    // nobody else owns.
    let token = unsafe { OwnedHandle::from_raw_handle(raw) };
    let mut len = 0u32;
    // SAFETY: a size query (no buffer, length 0): only `len` is written.
    // It fails with ERROR_INSUFFICIENT_BUFFER, as it should.
    unsafe {
        GetTokenInformation(
            token.as_raw_handle(),
            TokenUser,
            ptr::null_mut(),
            0,
            &mut len,
        )
    };
    if (len as usize) < size_of::<TOKEN_USER>() {
        return Err(io::Error::other(
            "the process token has no user (GetTokenInformation)",
        ));
    }
    let mut info = vec![0u64; (len as usize).div_ceil(8)];
    // SAFETY: `info` is writable for `len` bytes (at least), aligned for a
    // TOKEN_USER.
    cvt(unsafe {
        GetTokenInformation(
            token.as_raw_handle(),
            TokenUser,
            info.as_mut_ptr().cast(),
            len,
            &mut len,
        )
    })?;
    // SAFETY: the call wrote a TOKEN_USER at the start of `info` (aligned,
    // at least `size_of::<TOKEN_USER>()` bytes, checked above); its SID
    // pointer points further into `info`, which lives to the end of this
    // function.
    let sid = unsafe { info.as_ptr().cast::<TOKEN_USER>().read() }
        .User
        .Sid;
    // SAFETY: `sid` is the valid SID of the token's user, in `info`.
    let sid_len = unsafe { GetLengthSid(sid) } as usize;
    // "AddAccessAllowedAce" on MSDN: the ACL's size is the header, plus
    // the ACE without its `SidStart` placeholder, plus the SID.
    let acl_len = size_of::<ACL>() + size_of::<ACCESS_ALLOWED_ACE>() - size_of::<u32>() + sid_len;
    let mut acl = vec![0u64; acl_len.div_ceil(8)];
    // SAFETY: `acl` is writable for `acl_len` bytes and aligned for an ACL.
    cvt(unsafe { InitializeAcl(acl.as_mut_ptr().cast(), acl_len as u32, ACL_REVISION) })?;
    // SAFETY: `acl` is the ACL just initialized, sized for this one entry;
    // `sid` is valid (in `info`); the SID is copied into the ACL.
    cvt(unsafe {
        AddAccessAllowedAce(acl.as_mut_ptr().cast(), ACL_REVISION, FILE_ALL_ACCESS, sid)
    })?;
    Ok(acl)
}

/// Opens the pipe `name` as a client: duplex, overlapped. While every
/// instance is taken (`ERROR_PIPE_BUSY`), waits for one with
/// `WaitNamedPipeW` and tries again, until `deadline` (then an error of
/// kind `TimedOut`). No pipe of that name: `ERROR_FILE_NOT_FOUND`
/// (kind `NotFound`).
pub(crate) fn connect(name: &str, deadline: Option<Instant>) -> io::Result<OwnedHandle> {
    let wide = to_wide(name.as_ref())?;
    loop {
        // SAFETY: `wide` is NUL-terminated and outlives the call; no
        // sharing, no security attributes (not inheritable); the result is
        // checked below.
        let raw = unsafe {
            CreateFileW(
                wide.as_ptr(),
                GENERIC_READ | GENERIC_WRITE,
                0,
                ptr::null(),
                OPEN_EXISTING,
                FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION,
                ptr::null_mut(),
            )
        };
        // SAFETY: fresh return value of `CreateFileW`, owned by nobody else.
        match unsafe { owned_or_invalid(raw) } {
            Ok(h) => return Ok(h),
            Err(e) if is_os_error(&e, ERROR_PIPE_BUSY) => {}
            Err(e) => return Err(e),
        }
        if deadline::passed(deadline) {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "every instance of the pipe stayed busy (the listener accepts no more)",
            ));
        }
        // 0 would mean the pipe's default wait: at least 1 ms.
        let ms = ms_until(deadline).max(1);
        // SAFETY: `wide` is NUL-terminated and outlives the call. Its
        // outcome (an instance free, ERROR_SEM_TIMEOUT, the pipe gone) is
        // what the next `CreateFileW` finds.
        unsafe { WaitNamedPipeW(wide.as_ptr(), ms) };
    }
}

/// Reads what is there, 0 at end of file, waiting until `deadline` at the
/// latest: past it, an error of kind `TimedOut`.
pub(crate) fn read_by(
    pipe: BorrowedHandle<'_>,
    buf: &mut [u8],
    deadline: Option<Instant>,
) -> io::Result<usize> {
    if buf.is_empty() {
        return Ok(0);
    }
    loop {
        let mut op = Op::new(pipe)?;
        match op.read(buf) {
            Ok(()) => {}
            Err(e) if is_os_error(&e, ERROR_BROKEN_PIPE) => return Ok(0),
            Err(e) => return Err(e),
        }
        let woken = wait_for_any(&[op.event()], ms_until(deadline));
        match op.finish_if(matches!(woken, Ok(Some(0)))) {
            Finished::Done(n) => return Ok(n as usize),
            Finished::Failed(e) if is_os_error(&e, ERROR_BROKEN_PIPE) => return Ok(0),
            Finished::Failed(e) => return Err(e),
            Finished::Canceled => {}
        }
        woken?;
        if deadline::passed(deadline) {
            return Err(io::ErrorKind::TimedOut.into());
        }
        // A wait clamped to 49.7 days: wait again.
    }
}

/// Writes all of `buf` before `deadline`: past it, an error of kind
/// `TimedOut`; a reader that is gone, `BrokenPipe`.
pub(crate) fn write_all_by(
    pipe: BorrowedHandle<'_>,
    mut buf: &[u8],
    deadline: Option<Instant>,
) -> io::Result<()> {
    while !buf.is_empty() {
        let mut op = Op::new(pipe)?;
        op.write(buf).map_err(broken_pipe_kind)?;
        let woken = wait_for_any(&[op.event()], ms_until(deadline));
        match op.finish_if(matches!(woken, Ok(Some(0)))) {
            Finished::Done(0) => return Err(io::ErrorKind::WriteZero.into()),
            Finished::Done(n) => buf = &buf[(n as usize).min(buf.len())..],
            Finished::Failed(e) => return Err(broken_pipe_kind(e)),
            Finished::Canceled => {
                woken?;
                if deadline::passed(deadline) {
                    return Err(io::ErrorKind::TimedOut.into());
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use windows_sys::Win32::Security::{
        AclSizeInformation, EqualSid, GetAce, GetAclInformation, GetKernelObjectSecurity,
        GetSecurityDescriptorDacl, ACL_SIZE_INFORMATION, DACL_SECURITY_INFORMATION,
    };

    /// The one ACE of `acl`, an ACCESS_ALLOWED_ACE: its type, mask and SID.
    ///
    /// # Safety
    ///
    /// `acl` must point to a valid ACL that outlives the returned SID.
    unsafe fn only_ace(acl: *const ACL) -> (u8, u32, *mut c_void) {
        let mut info = ACL_SIZE_INFORMATION::default();
        // SAFETY: `acl` is valid (the caller's promise); `info` is writable
        // and of the size given.
        cvt(unsafe {
            GetAclInformation(
                acl,
                (&raw mut info).cast(),
                size_of::<ACL_SIZE_INFORMATION>() as u32,
                AclSizeInformation,
            )
        })
        .unwrap();
        assert_eq!(info.AceCount, 1, "entries in the DACL");
        let mut ace = ptr::null_mut();
        // SAFETY: as above; entry 0 exists.
        cvt(unsafe { GetAce(acl, 0, &mut ace) }).unwrap();
        let ace = ace.cast::<ACCESS_ALLOWED_ACE>();
        // SAFETY: `ace` points to entry 0 inside the ACL; its header says
        // which kind it is, checked by the caller before using the rest.
        let (kind, mask) = unsafe { ((*ace).Header.AceType, (*ace).Mask) };
        // SAFETY: as above: the SID starts at `SidStart` in the entry.
        let sid = unsafe { (&raw mut (*ace).SidStart).cast() };
        (kind, mask, sid)
    }

    #[test]
    fn a_listeners_pipe_lets_in_this_user_alone() {
        let l = PipeListener::bind(&fresh_pipe_name()).unwrap();
        let pipe = l.waiting.as_ref().unwrap().as_raw_handle();
        let mut len = 0u32;
        // SAFETY: a size query on an open handle: only `len` is written.
        unsafe {
            GetKernelObjectSecurity(
                pipe,
                DACL_SECURITY_INFORMATION,
                ptr::null_mut(),
                0,
                &mut len,
            )
        };
        let mut sd = vec![0u64; (len as usize).div_ceil(8)];
        // SAFETY: `sd` is writable for `len` bytes and aligned.
        cvt(unsafe {
            GetKernelObjectSecurity(
                pipe,
                DACL_SECURITY_INFORMATION,
                sd.as_mut_ptr().cast(),
                len,
                &mut len,
            )
        })
        .unwrap();
        let (mut present, mut defaulted, mut dacl) = (0, 0, ptr::null_mut());
        // SAFETY: `sd` holds the descriptor just read; the out-pointers are
        // valid; `dacl` points into `sd`.
        cvt(unsafe {
            GetSecurityDescriptorDacl(
                sd.as_mut_ptr().cast(),
                &mut present,
                &mut dacl,
                &mut defaulted,
            )
        })
        .unwrap();
        assert!(present != 0 && !dacl.is_null(), "the pipe has a DACL");
        // SAFETY: `dacl` is valid while `sd` lives.
        let (kind, mask, sid) = unsafe { only_ace(dacl) };
        // SAFETY: `l.acl` is the ACL the listener built, alive while `l` is.
        let (_, _, user) = unsafe { only_ace(l.acl.as_ptr().cast()) };
        // ACCESS_ALLOWED_ACE_TYPE ("ACE_HEADER" on MSDN).
        assert_eq!(kind, 0);
        assert_eq!(mask, FILE_ALL_ACCESS);
        // SAFETY: both SIDs are valid (in `sd` and in `l.acl`).
        let same = unsafe { EqualSid(sid, user) } != 0;
        assert!(same, "the entry is for this user");
    }
}
