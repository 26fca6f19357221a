//! This process's own executable, taken note of at `init`, so that workers
//! start from the image that is running or the spawn says it can't.
//!
//! Linux starts `/proc/self/exe`, the running image itself, whatever
//! happened to the file at our path. Elsewhere (macOS, the BSDs, a Linux
//! without `/proc`) a process can only be started from a path, so a spawn
//! checks that the file at our path is still the one we were started from
//! (device and inode, as at `init`) and otherwise fails with
//! [`image_gone`]'s error. Not caught there: a new file put at the path
//! between that check and the `posix_spawn` (the build check of the
//! bootstrap still refuses another multiproc build), and a file
//! overwritten in place (same inode; macOS kills a process whose signed
//! pages change under it).

use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
#[cfg(target_os = "linux")]
use std::sync::OnceLock;

use super::spawn::cstring;
use crate::sys::image_gone;

/// This process's executable: the path it was started from and, where the
/// running image can't be started directly, the identity of the file.
pub(crate) struct RunningImage {
    /// `current_exe()` at `init`.
    path: PathBuf,
    /// Device and inode of the file at `path` at `init`; `None` when
    /// spawns start [`proc_self_exe`] instead.
    id: Option<(u64, u64)>,
}

impl RunningImage {
    /// Takes note of this process's executable. Called once, at `init`.
    pub(crate) fn open() -> io::Result<RunningImage> {
        let path = std::env::current_exe()?;
        let id = match proc_self_exe() {
            Some(_) => None,
            None => Some(file_id(&path)?),
        };
        Ok(RunningImage { path, id })
    }

    /// The path this process was started from.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The program a spawn of this executable starts: [`proc_self_exe`],
    /// or our path once its file was found to be still ours;
    /// [`image_gone`]'s error if it isn't.
    pub(super) fn program(&self) -> io::Result<CString> {
        let Some(id) = self.id else {
            if let Some(image) = proc_self_exe() {
                return Ok(image.to_owned());
            }
            return cstring(self.path.as_os_str().as_bytes());
        };
        match file_id(&self.path) {
            Ok(now) if now == id => cstring(self.path.as_os_str().as_bytes()),
            Ok(_) => Err(image_gone(format_args!(
                "the file at {} is another one",
                self.path.display()
            ))),
            Err(e) => Err(image_gone(format_args!(
                "{} can't be found any more: {e}",
                self.path.display()
            ))),
        }
    }
}

/// Device and inode of the file at `path`.
fn file_id(path: &Path) -> io::Result<(u64, u64)> {
    let meta = std::fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

/// The running executable image, if the OS can start a process from it:
/// Linux's `/proc/self/exe` (proc(5)). The new process resolves it before
/// its exec, while it still has our memory map (posix_spawn clones with
/// CLONE_VM, and a fork copies the map's executable file too), so it names
/// our image even after the file at our path was replaced or deleted.
fn proc_self_exe() -> Option<&'static CStr> {
    #[cfg(target_os = "linux")]
    {
        static USABLE: OnceLock<bool> = OnceLock::new();
        let image = c"/proc/self/exe";
        USABLE
            .get_or_init(|| rustix::fs::access(image, rustix::fs::Access::EXEC_OK).is_ok())
            .then_some(image)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The check macOS and the other Unix systems make (here on any Unix):
    // the file at our path is the one seen at `init`, or the spawn is
    // refused with an error that says the executable was replaced.
    #[test]
    fn a_path_whose_file_was_replaced_or_removed_is_refused() {
        let dir = std::env::temp_dir().join(format!("multiproc-exe-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("app");
        std::fs::write(&path, "the running one").unwrap();
        let image = RunningImage {
            id: Some(file_id(&path).unwrap()),
            path: path.clone(),
        };
        assert_eq!(
            image.program().unwrap().as_bytes(),
            path.as_os_str().as_bytes()
        );

        let new = dir.join("app.new");
        std::fs::write(&new, "another one").unwrap();
        std::fs::rename(&new, &path).unwrap();
        let replaced = image.program().unwrap_err().to_string();
        std::fs::remove_file(&path).unwrap();
        let removed = image.program().unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();

        assert!(
            replaced.starts_with("this program's executable was replaced or removed on disk")
                && replaced.contains(&format!("the file at {} is another one", path.display())),
            "{replaced}"
        );
        assert!(
            removed.starts_with("this program's executable was replaced or removed on disk")
                && removed.contains("can't be found any more"),
            "{removed}"
        );
    }
}
