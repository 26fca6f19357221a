//! Files only this user may read: the SPMD rendezvous file
//! (`pool/spmd.rs`), which holds a pool's key.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// Creates `path`, which must not exist, for writing; on Unix with mode
/// 0600 (read and write for the owner only, set at creation, so there is
/// no moment at which others may open it; the umask can only take bits
/// away). On Windows the new file gets the access rights it inherits from
/// its directory, as any file created there.
pub(crate) fn create_private(path: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_file_is_new_and_only_its_owner_may_read_it() {
        let path = std::env::temp_dir().join(format!("multiproc-private-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        drop(create_private(&path).unwrap());
        // Never an existing file (one someone else made, say).
        let again = create_private(&path).unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        }
        std::fs::remove_file(&path).unwrap();
    }
}
