//! The supervisor's private runtime directory, which holds every socket.
//!
//! Layout: `<root>/sv-<supervisor pid>/` (0700) holding `state.sock`, one
//! `p<n>.sock` per plugin process and, in daemon mode, `procs`: the plugin
//! processes and their descendants (`R|M <pid> <start time>` lines) for the
//! reaper (see `guard`). `<root>` itself must be owned by us and
//! closed to other users, or the supervisor refuses to start.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::sys;

/// Why the runtime directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeDirError {
    #[error("cannot create runtime directory {path}: {source}")]
    Create { path: PathBuf, source: std::io::Error },
    #[error("runtime directory {path} is owned by uid {owner}, not by this user (uid {me})")]
    WrongOwner { path: PathBuf, owner: u32, me: u32 },
    #[error("runtime directory {path} has mode {mode:o}: other users could reach the plugin sockets; chmod 700 it")]
    TooOpen { path: PathBuf, mode: u32 },
}

/// The per-supervisor folder of sockets. Removed on drop.
#[derive(Debug)]
pub struct RuntimeDir {
    dir: PathBuf,
    next: AtomicU64,
}

impl RuntimeDir {
    /// The default root: `$XDG_RUNTIME_DIR/oort`, else `/tmp/oort-<uid>`.
    pub fn default_root() -> PathBuf {
        match std::env::var_os("XDG_RUNTIME_DIR") {
            Some(d) if !d.is_empty() => PathBuf::from(d).join("oort"),
            _ => std::env::temp_dir().join(format!("oort-{}", sys::effective_uid())),
        }
    }

    /// Creates this supervisor's folder under `root`, after removing the
    /// folders of supervisors that are no longer alive.
    pub fn create(root: &Path) -> Result<RuntimeDir, RuntimeDirError> {
        private_dir(root)?;
        check_private(root)?;
        remove_stale(root);
        let dir = root.join(format!("sv-{}", std::process::id()));
        if dir.exists() {
            // Our own pid from an earlier life (pid reuse): nothing in it is live.
            let _ = std::fs::remove_dir_all(&dir);
        }
        private_dir(&dir)?;
        Ok(RuntimeDir { dir, next: AtomicU64::new(1) })
    }

    /// The folder's path.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Where the State service listens.
    pub fn state_socket(&self) -> PathBuf {
        self.dir.join("state.sock")
    }

    /// A fresh socket path for the next plugin process.
    pub fn new_socket_path(&self) -> PathBuf {
        self.dir.join(format!("p{}.sock", self.next.fetch_add(1, Ordering::Relaxed)))
    }
}

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn private_dir(path: &Path) -> Result<(), RuntimeDirError> {
    match std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path) {
        Ok(()) => Ok(()),
        Err(source) => Err(RuntimeDirError::Create { path: path.into(), source }),
    }
}

fn check_private(path: &Path) -> Result<(), RuntimeDirError> {
    let meta = std::fs::metadata(path).map_err(|source| RuntimeDirError::Create { path: path.into(), source })?;
    let me = sys::effective_uid();
    if meta.uid() != me {
        return Err(RuntimeDirError::WrongOwner { path: path.into(), owner: meta.uid(), me });
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(RuntimeDirError::TooOpen { path: path.into(), mode });
    }
    Ok(())
}

/// Removes `sv-<pid>` folders whose supervisor is dead (killed with SIGKILL,
/// so it could not clean up).
fn remove_stale(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("sv-")).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !sys::process_exists(pid) {
            // Its reaper should have killed what it left behind; if the reaper
            // died too, do it now.
            let killed = super::watchdog::kill_recorded(&entry.path().join("procs"));
            if killed > 0 {
                tracing::warn!(
                    folder = %entry.path().display(),
                    "killed {killed} processes a dead supervisor left behind"
                );
            }
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_private_and_removed_on_drop() {
        let root = tempfile::tempdir().unwrap();
        let rt = RuntimeDir::create(&root.path().join("rt")).unwrap();
        let mode = std::fs::metadata(rt.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert_ne!(rt.new_socket_path(), rt.new_socket_path());
        let path = rt.path().to_path_buf();
        drop(rt);
        assert!(!path.exists());
    }

    #[test]
    fn an_open_root_is_refused() {
        let root = tempfile::tempdir().unwrap();
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = RuntimeDir::create(root.path()).unwrap_err();
        assert!(matches!(err, RuntimeDirError::TooOpen { .. }), "{err}");
    }

    #[test]
    fn the_folder_of_a_killed_supervisor_that_is_still_a_zombie_is_removed() {
        // A supervisor killed with SIGKILL stays a zombie until its parent
        // reaps it; signal 0 still reaches it, but it is dead.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        // Not reaped (no wait yet): once it has exited, it is a zombie.
        while super::super::sys::process_exists(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("rt");
        let stale = root.join(format!("sv-{pid}"));
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&stale).unwrap();
        let _rt = RuntimeDir::create(&root).unwrap();
        assert!(!stale.exists(), "the zombie's folder is kept");
        child.wait().unwrap();
    }

    #[test]
    fn folders_of_dead_supervisors_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("rt");
        // pid 2^22+1 is above Linux's pid_max limit, so it is never alive.
        let stale = root.join("sv-4194305");
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&stale).unwrap();
        let _rt = RuntimeDir::create(&root).unwrap();
        assert!(!stale.exists());
    }
}
