//! This process's own executable file, kept open from `init` on, so that
//! workers start from the image that is running even after the file was
//! renamed away and a new one put at its path (how installers and
//! `cargo build` replace a running `.exe`: Windows lets a running image be
//! renamed, not overwritten or deleted).
//!
//! Windows can't start a process from a handle, only from a path, so
//! [`spawn`](super::spawn::spawn) asks where the file is now
//! (`GetFinalPathNameByHandleW` follows renames) and checks after
//! `CreateProcessW`, with the child still suspended, that the file at the
//! path it used is ours (same volume and 128-bit file id). Wine 8 differs:
//! there `GetFinalPathNameByHandleW` keeps returning the name the handle
//! was opened with after a rename, so a renamed image is not found and the
//! spawn fails with [`image_gone`]'s error instead (seen with Wine 8.0; see
//! `tests/test_lifetime.rs`).

use std::ffi::OsString;
use std::io;
use std::mem::size_of;
use std::os::windows::ffi::OsStringExt;
use std::os::windows::io::{AsRawHandle, OwnedHandle};
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::Mutex;

use windows_sys::Win32::Foundation::{ERROR_FILE_NOT_FOUND, ERROR_PATH_NOT_FOUND};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FileIdInfo, GetFileInformationByHandleEx, GetFinalPathNameByHandleW, FILE_ID_INFO,
    FILE_NAME_NORMALIZED, FILE_READ_ATTRIBUTES, FILE_SHARE_DELETE, FILE_SHARE_READ,
    FILE_SHARE_WRITE, OPEN_EXISTING, VOLUME_NAME_DOS,
};

use super::{cvt, is_os_error, owned_or_invalid, to_wide};
use crate::sys::image_gone;

/// This process's executable: the path it was started from, and the file,
/// open.
pub(crate) struct RunningImage {
    /// `current_exe()` at `init` (`GetModuleFileNameW`).
    path: PathBuf,
    /// The file, open for its attributes only and sharing read, write and
    /// delete, so it is in nobody's way: an upgrade can rename or delete
    /// it as if we hadn't opened it.
    file: OwnedHandle,
    /// Its identity.
    id: FileId,
    /// Where workers were last started from: `path` until the file moved.
    last: Mutex<PathBuf>,
}

/// A file's identity: volume serial number and 128-bit file id
/// (`FILE_ID_INFO`; the 64-bit index of `BY_HANDLE_FILE_INFORMATION` is
/// not unique on ReFS).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct FileId {
    volume: u64,
    file: [u8; 16],
}

impl RunningImage {
    /// Opens this process's executable. Called once, at `init`.
    pub(crate) fn open() -> io::Result<RunningImage> {
        let path = std::env::current_exe()?;
        let file = open_attributes(&path)?;
        let id = file_id(&file)?;
        Ok(RunningImage {
            last: Mutex::new(path.clone()),
            path,
            file,
            id,
        })
    }

    /// The path this process was started from.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Where workers were last started from.
    pub(super) fn last_path(&self) -> PathBuf {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Workers start from `path` from now on.
    pub(super) fn set_last_path(&self, path: &Path) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if *last != path {
            *last = path.to_path_buf();
        }
    }

    /// Whether the file at `path` is this executable: `Ok(false)` if it is
    /// another file or there is none; an error if it can't be told (the
    /// file can't be opened for another reason).
    pub(super) fn is_at(&self, path: &Path) -> io::Result<bool> {
        match open_attributes(path) {
            Ok(file) => Ok(file_id(&file)? == self.id),
            Err(e)
                if is_os_error(&e, ERROR_FILE_NOT_FOUND)
                    || is_os_error(&e, ERROR_PATH_NOT_FOUND) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Where this executable is now, checked (see [`RunningImage::is_at`]);
    /// [`image_gone`]'s error if it can't be found.
    pub(super) fn locate(&self) -> io::Result<PathBuf> {
        let now = final_path(&self.file)
            .map_err(|e| image_gone(format_args!("it can't be found any more: {e}")))?;
        match self.is_at(&now) {
            Ok(true) => Ok(now),
            Ok(false) => Err(image_gone(format_args!(
                "the file at its path, {}, is another one",
                now.display()
            ))),
            Err(e) => Err(image_gone(format_args!(
                "it can't be checked at {}: {e}",
                now.display()
            ))),
        }
    }
}

/// Opens `path` for reading its attributes, sharing everything.
fn open_attributes(path: &Path) -> io::Result<OwnedHandle> {
    let wide = to_wide(path.as_os_str())?;
    // SAFETY: `wide` is NUL-terminated and outlives the call; no security
    // attributes, no template; the result is checked below.
    let raw = unsafe {
        CreateFileW(
            wide.as_ptr(),
            FILE_READ_ATTRIBUTES,
            FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
            ptr::null(),
            OPEN_EXISTING,
            0,
            ptr::null_mut(),
        )
    };
    // SAFETY: fresh return value of `CreateFileW`, owned by nobody else.
    unsafe { owned_or_invalid(raw) }
}

/// The identity of the open file `file`.
fn file_id(file: &OwnedHandle) -> io::Result<FileId> {
    let mut info = FILE_ID_INFO::default();
    // SAFETY: `file` is open with FILE_READ_ATTRIBUTES, which FileIdInfo
    // needs; `info` is a FILE_ID_INFO of the size passed, valid for writes
    // during the call.
    let ok = unsafe {
        GetFileInformationByHandleEx(
            file.as_raw_handle(),
            FileIdInfo,
            (&mut info as *mut FILE_ID_INFO).cast(),
            size_of::<FILE_ID_INFO>() as u32,
        )
    };
    cvt(ok)?;
    Ok(FileId {
        volume: info.VolumeSerialNumber,
        file: info.FileId.Identifier,
    })
}

/// The path of the open file `file` as it is now, renames included:
/// `C:\...` for a drive path shorter than `MAX_PATH` (the form the program
/// was started with, and the one every program copes with as its own
/// path), else as the call gives it (`\\?\C:\...`, `\\?\UNC\...`).
fn final_path(file: &OwnedHandle) -> io::Result<PathBuf> {
    let mut buf = vec![0u16; 512];
    loop {
        // SAFETY: `buf` is valid for writes of `buf.len()` UTF-16 units
        // during the call; `file` is open.
        let n = unsafe {
            GetFinalPathNameByHandleW(
                file.as_raw_handle(),
                buf.as_mut_ptr(),
                u32::try_from(buf.len()).unwrap_or(u32::MAX),
                FILE_NAME_NORMALIZED | VOLUME_NAME_DOS,
            )
        } as usize;
        if n == 0 {
            return Err(io::Error::last_os_error());
        }
        // It returns the length written without the NUL, or, if the buffer
        // is too small, the size needed with it.
        if n < buf.len() {
            buf.truncate(n);
            return Ok(OsString::from_wide(strip_verbatim(&buf)).into());
        }
        if n > 32 * 1024 + 8 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "GetFinalPathNameByHandleW asked for more than the longest path",
            ));
        }
        buf.resize(n, 0);
    }
}

/// `\\?\C:\dir\file` without its `\\?\` when the rest is a drive path
/// shorter than `MAX_PATH` (260, with the NUL), which every API takes
/// without the prefix; anything else as it is.
fn strip_verbatim(path: &[u16]) -> &[u16] {
    const SLASH: u16 = b'\\' as u16;
    const COLON: u16 = b':' as u16;
    let Some(rest) = path.strip_prefix(&[SLASH, SLASH, b'?' as u16, SLASH][..]) else {
        return path;
    };
    let drive = matches!(rest, [d, COLON, SLASH, ..]
        if u8::try_from(*d).is_ok_and(|d| d.is_ascii_alphabetic()));
    if drive && rest.len() < 260 {
        rest
    } else {
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wide(s: &str) -> Vec<u16> {
        s.encode_utf16().collect()
    }

    #[test]
    fn only_short_drive_paths_lose_their_verbatim_prefix() {
        let strip = |s: &str| String::from_utf16(strip_verbatim(&wide(s))).unwrap();
        assert_eq!(strip(r"\\?\C:\dir\app.exe"), r"C:\dir\app.exe");
        assert_eq!(
            strip(r"\\?\UNC\host\share\app.exe"),
            r"\\?\UNC\host\share\app.exe"
        );
        assert_eq!(strip(r"C:\dir\app.exe"), r"C:\dir\app.exe");
        let long = format!(r"\\?\C:\{}\app.exe", "d".repeat(260));
        assert_eq!(strip(&long), long);
    }
}
