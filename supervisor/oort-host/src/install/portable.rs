//! Installing eKuiper's portable plugin packages: a zip (or tar.gz) whose
//! root holds `<name>.json` (the manifest), the executable it names and
//! whatever else the program needs, extracted whole into
//! `<plugins-dir>/portables/<name>/` (see [`crate::catalog::PortableManifest`]).
//!
//! The same rules as for single plugins hold: every entry is checked before
//! anything is written (no absolute paths, `..`, links or install scripts);
//! the manifest and every metadata file under `sources/`, `sinks/` and
//! `functions/` must parse; the package is extracted into a hidden folder,
//! synced, and renamed into place, so a failed install leaves nothing behind;
//! an installed package is never overwritten.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::archive::{entry_components, Archive, EntryType, Flow};
use super::{
    check_name, fetch, io_error, parse_sha256, sync_dir, InstallError, MAX_EXECUTABLE_BYTES, MAX_METADATA_BYTES,
};
use crate::catalog::{Metadata, PortableManifest, PORTABLES_DIR};
use oort_core::names::{fold, hex};

/// An installed portable package.
#[derive(Debug, serde::Serialize)]
pub struct InstalledPortable {
    pub name: String,
    pub dir: PathBuf,
    pub manifest: PortableManifest,
}

/// Installs the portable package at `file` (a path or URL, as for
/// [`super::install`]) as `<plugins_dir>/portables/<name>/`. Blocking.
pub fn install_portable(
    plugins_dir: &Path,
    name: &str,
    file: &str,
    sha256: Option<&str>,
) -> Result<InstalledPortable, InstallError> {
    check_name(name)?;
    let expected = sha256.map(parse_sha256).transpose()?;
    let bytes = fetch(file)?;
    if let Some(expected) = expected {
        let actual = hex(&Sha256::digest(&bytes));
        if actual != expected {
            return Err(InstallError::ChecksumMismatch { file: file.to_owned(), expected, actual });
        }
    }
    let archive = Archive::new(file, &bytes)?;
    let (manifest, files) = plan(&archive, name)?;

    let root = plugins_dir.join(PORTABLES_DIR);
    fs::create_dir_all(&root).map_err(io_error("cannot create plugin folder", &root))?;
    for entry in fs::read_dir(&root).map_err(io_error("cannot read plugin folder", &root))? {
        let entry = entry.map_err(io_error("cannot read plugin folder", &root))?;
        if entry.file_name().to_str().is_some_and(|existing| fold(existing) == fold(name)) {
            return Err(InstallError::PortableExists { path: entry.path() });
        }
    }
    let tmp = TempDir::create(&root)?;
    extract(&archive, &files, &manifest, &tmp.path)?;
    let dir = root.join(name);
    fs::rename(&tmp.path, &dir).map_err(io_error("cannot move the package into place", &dir))?;
    tmp.disarm();
    super::record_source(&root, name, file, sha256);
    sync_dir(&root);
    tracing::info!(name, file, dir = %dir.display(), "portable plugin installed");
    Ok(InstalledPortable { name: name.to_owned(), dir, manifest })
}

/// Deletes the package folder of portable plugin `name`; never stops a
/// running plugin.
pub fn remove_portable(plugins_dir: &Path, name: &str) -> Result<PathBuf, InstallError> {
    check_name(name)?;
    let root = plugins_dir.join(PORTABLES_DIR);
    let not_found = || InstallError::PortableNotFound { name: name.to_owned(), dir: root.clone() };
    let read = match fs::read_dir(&root) {
        Ok(read) => read,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Err(not_found()),
        Err(source) => return Err(InstallError::Io { action: "cannot read plugin folder", path: root, source }),
    };
    for entry in read {
        let entry = entry.map_err(io_error("cannot read plugin folder", &root))?;
        if entry.file_name().to_str().is_some_and(|existing| fold(existing) == fold(name)) {
            let dir = entry.path();
            // Renamed away first, so that a scan never sees half a package.
            let doomed = root.join(format!(".remove-{:016x}", rand::random::<u64>()));
            fs::rename(&dir, &doomed).map_err(io_error("cannot remove plugin package", &dir))?;
            fs::remove_dir_all(&doomed).map_err(io_error("cannot remove plugin package", &doomed))?;
            super::forget_source(&root, name);
            sync_dir(&root);
            tracing::info!(name, dir = %dir.display(), "portable plugin removed");
            return Ok(dir);
        }
    }
    Err(not_found())
}

/// One file of the package: where it is in the archive and where it goes.
struct PackageFile {
    index: usize,
    entry: String,
    parts: Vec<String>,
}

/// Pass 1: checks every entry, parses the manifest and the metadata files,
/// and lists the files to extract. Writes nothing.
fn plan(archive: &Archive<'_>, name: &str) -> Result<(PortableManifest, Vec<PackageFile>), InstallError> {
    let file = archive.file();
    let mut manifest: Option<(String, Vec<u8>)> = None;
    let mut files = Vec::new();
    let mut total: u64 = 0;
    archive.each_entry(|info, data| {
        let parts = entry_components(&info.name).map_err(|reason| archive.unsafe_entry(&info.name, reason))?;
        match info.ty {
            EntryType::Symlink => return Err(archive.unsafe_entry(&info.name, "is a symbolic link")),
            EntryType::HardLink => return Err(archive.unsafe_entry(&info.name, "is a hard link")),
            EntryType::Dir => return Ok(Flow::Continue),
            EntryType::Other => {
                return Err(InstallError::NotRegularFile { file: file.to_owned(), entry: info.name.clone() })
            }
            EntryType::File => {}
        }
        if !info.enclosed {
            return Err(archive.unsafe_entry(&info.name, "leaves the target folder"));
        }
        if parts.last().is_some_and(|last| last.eq_ignore_ascii_case("install.sh")) {
            return Err(InstallError::InstallScript { file: file.to_owned(), entry: info.name.clone() });
        }
        if parts.is_empty() || parts.iter().any(|p| p.starts_with('.')) {
            // Hidden files (.DS_Store, .git) are not part of a package.
            return Ok(Flow::Continue);
        }
        let is_manifest = parts.len() == 1 && fold(parts[0]).strip_suffix(".json") == Some(fold(name).as_str());
        let is_metadata =
            parts.len() == 2 && matches!(parts[0], "sources" | "sinks" | "functions") && parts[1].ends_with(".json");
        if is_manifest || is_metadata {
            let bytes = archive.read_capped(data, &info.name, MAX_METADATA_BYTES)?;
            if is_manifest {
                manifest = Some((info.name.clone(), bytes));
            } else if let Err(err) = serde_json::from_slice::<Metadata>(&bytes) {
                return Err(InstallError::BadMetadata {
                    file: file.to_owned(),
                    entry: info.name.clone(),
                    reason: err.to_string(),
                });
            }
        } else {
            // Counted as read: the second pass enforces the same bound on what it writes.
            total += info.size;
            if total > MAX_EXECUTABLE_BYTES {
                return Err(InstallError::EntryTooLarge {
                    file: file.to_owned(),
                    entry: info.name.clone(),
                    limit: MAX_EXECUTABLE_BYTES,
                });
            }
        }
        files.push(PackageFile {
            index: info.index,
            entry: info.name.clone(),
            parts: parts.iter().map(|p| p.to_string()).collect(),
        });
        Ok(Flow::Continue)
    })?;
    let Some((entry, bytes)) = manifest else {
        return Err(InstallError::MissingManifest { file: file.to_owned(), name: name.to_owned() });
    };
    let manifest = PortableManifest::parse(&bytes).map_err(|reason| InstallError::BadMetadata {
        file: file.to_owned(),
        entry: entry.clone(),
        reason,
    })?;
    let exe: Vec<&str> = manifest.executable.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    if !files.iter().any(|f| f.parts.iter().map(String::as_str).eq(exe.iter().copied())) {
        return Err(InstallError::BadMetadata {
            file: file.to_owned(),
            entry,
            reason: format!("its executable {:?} is not in the archive", manifest.executable),
        });
    }
    Ok((manifest, files))
}

/// Pass 2: writes every planned file under `dir`, synced; the executable
/// with mode 0755, the rest 0644.
fn extract(
    archive: &Archive<'_>,
    files: &[PackageFile],
    manifest: &PortableManifest,
    dir: &Path,
) -> Result<(), InstallError> {
    let exe: Vec<&str> = manifest.executable.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    let mut next = files.iter().peekable();
    let mut written: u64 = 0;
    archive.each_entry(|info, data| {
        let Some(planned) = next.peek().filter(|f| f.index == info.index) else { return Ok(Flow::Continue) };
        let path = planned.parts.iter().fold(dir.to_path_buf(), |p, part| p.join(part));
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_error("cannot create package folder", parent))?;
        }
        let is_exe = planned.parts.iter().map(String::as_str).eq(exe.iter().copied());
        let mut out = open_new(&path, if is_exe { 0o755 } else { 0o644 })?;
        let limit = MAX_EXECUTABLE_BYTES.saturating_sub(written);
        let n = io::copy(&mut data.take(limit + 1), &mut out)
            .map_err(|err| archive.corrupt(format!("entry {:?}: {err}", planned.entry)))?;
        written += n;
        if n > limit {
            return Err(InstallError::EntryTooLarge {
                file: archive.file().to_owned(),
                entry: planned.entry.clone(),
                limit: MAX_EXECUTABLE_BYTES,
            });
        }
        out.sync_all().map_err(io_error("cannot sync package file", &path))?;
        next.next();
        Ok(if next.peek().is_some() { Flow::Continue } else { Flow::Stop })
    })?;
    if let Some(missing) = next.next() {
        return Err(archive.corrupt(format!("entry {:?} disappeared on the second read", missing.entry)));
    }
    Ok(())
}

fn open_new(path: &Path, mode: u32) -> Result<fs::File, InstallError> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io_error("cannot create package file", path))
}

/// A hidden `.install-<random>` folder beside the packages, removed on drop
/// unless it was renamed into place.
struct TempDir {
    path: PathBuf,
    armed: bool,
}

impl TempDir {
    fn create(root: &Path) -> Result<TempDir, InstallError> {
        let path = root.join(format!(".install-{:016x}", rand::random::<u64>()));
        fs::create_dir(&path).map_err(io_error("cannot create temporary folder", &path))?;
        Ok(TempDir { path, armed: true })
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.armed {
            if let Err(err) = fs::remove_dir_all(&self.path) {
                tracing::warn!(path = %self.path.display(), error = %err, "cannot remove a failed install's folder");
            }
        }
    }
}
