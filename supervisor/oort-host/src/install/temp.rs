//! Temporary files beside their final place: written, synced, renamed into place, removed on every failure.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::{io_error, InstallError};
use crate::catalog::PluginKind;

/// A hidden `.install-<random>` file in the kind folder, removed on drop unless it was renamed into place.
pub(super) struct TempFile {
    path: PathBuf,
    file: Option<fs::File>,
    armed: bool,
}

impl TempFile {
    pub(super) fn create(dir: &Path) -> Result<TempFile, InstallError> {
        let mut last_error = None;
        for _ in 0..16 {
            let path = dir.join(format!(".install-{:016x}", rand::random::<u64>()));
            let mut options = fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            match options.open(&path) {
                Ok(file) => return Ok(TempFile { path, file: Some(file), armed: true }),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => last_error = Some((path, err)),
                Err(source) => return Err(InstallError::Io { action: "cannot create temporary file", path, source }),
            }
        }
        let (path, source) = last_error.expect("the loop ran");
        Err(InstallError::Io { action: "cannot create temporary file", path, source })
    }

    pub(super) fn write_all(&mut self, bytes: &[u8]) -> Result<(), InstallError> {
        let file = self.file.as_mut().expect("written before sealing");
        file.write_all(bytes).map_err(io_error("cannot write temporary file", &self.path))
    }

    /// Sets the final mode, syncs the data to disk and closes the file.
    pub(super) fn seal(&mut self, mode: u32) -> Result<(), InstallError> {
        let file = self.file.take().expect("sealed once");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(io_error("cannot set the mode of temporary file", &self.path))?;
        }
        #[cfg(not(unix))]
        let _ = mode;
        file.sync_all().map_err(io_error("cannot sync temporary file", &self.path))
    }

    /// Gives the file the name `target`, refusing when `target` already exists (a hard link cannot overwrite). The
    /// temporary name is removed on drop.
    pub(super) fn place_new(&mut self, target: &Path, kind: PluginKind) -> Result<(), InstallError> {
        match fs::hard_link(&self.path, target) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                Err(InstallError::AlreadyInstalled { kind, path: target.to_owned() })
            }
            Err(err) => {
                // A file system without hard links: check, then rename.
                tracing::debug!(error = %err, "hard link failed; renaming instead");
                if fs::symlink_metadata(target).is_ok() {
                    return Err(InstallError::AlreadyInstalled { kind, path: target.to_owned() });
                }
                fs::rename(&self.path, target).map_err(io_error("cannot install plugin file", target))?;
                self.armed = false;
                Ok(())
            }
        }
    }

    /// Renames the file to `target`, atomically replacing an existing file.
    pub(super) fn replace(mut self, target: &Path) -> Result<(), InstallError> {
        fs::rename(&self.path, target).map_err(io_error("cannot install plugin file", target))?;
        self.armed = false;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        self.file.take();
        if self.armed {
            if let Err(err) = fs::remove_file(&self.path) {
                if err.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %self.path.display(), error = %err, "cannot remove temporary file");
                }
            }
        }
    }
}
