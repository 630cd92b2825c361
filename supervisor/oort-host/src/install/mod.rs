//! Plugin installation: installs and removes plugin files; never starts a process; never leaves a partial install
//! behind.
//!
//! Invariant: nothing in this module spawns, signals or waits for a process, and a failed [`install`] leaves the
//! plugins folder as it found it (apart from creating an empty kind folder). Every file is first written to a hidden
//! temporary (`.install-<random>`, skipped by the [catalog](crate::catalog)) beside its final place, synced, and only
//! then renamed into place; the temporaries are removed on every failure.
//!
//! # What an install accepts
//!
//! This is Oort's version of eKuiper's `POST /plugins/{sources|sinks|functions}` with `{"name", "file", "sha256"}`:
//!
//! * `name` follows eKuiper's rule `^[A-Za-z0-9_-]+$`.
//! * `file` is an absolute local path, a `file://` URL, or an `http://`/`https://` URL (fetched with a
//!   [`DOWNLOAD_TIMEOUT`] timeout). The archive may not exceed [`MAX_ARCHIVE_BYTES`].
//! * The archive is a zip or a gzip-compressed tar, recognised by its first bytes, not by its name. When `sha256` is
//!   given, the archive's bytes must have that SHA-256.
//! * At the archive root there is exactly one regular file named `<name>` or `<name>@<version>` (the executable,
//!   installed with mode 0755) and optionally `<name>.json` (eKuiper metadata, which must parse; installed with
//!   mode 0644, replacing an older metadata file). As in the catalog, the first letter of the name may be written in
//!   either case inside the archive; the files are installed under the requested spelling. Other entries are ignored
//!   and not extracted.
//! * The whole archive is checked before anything is written: an entry with an absolute path or a `..` component, a
//!   symbolic or hard link, or an install script (`install.sh`, which eKuiper would run) refuses the archive.
//! * An existing file with the executable's name (first letter in either case) is never overwritten: reinstalling
//!   the same version needs a [`remove`] first; a new version has a new `@version` file name.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::catalog::PluginKind;
use oort_core::names::{fold, hex, is_valid_name};

mod archive;
mod fetch;
mod portable;
mod temp;
#[cfg(test)]
mod tests;

use archive::Archive;
use fetch::fetch;
pub use portable::{install_portable, remove_portable, InstalledPortable};
use temp::TempFile;

/// The largest archive accepted, downloaded or local: 256 MiB.
pub const MAX_ARCHIVE_BYTES: u64 = 256 << 20;
/// The largest executable extracted from an archive: 1 GiB.
pub const MAX_EXECUTABLE_BYTES: u64 = 1 << 30;
/// The largest metadata file extracted from an archive: 4 MiB.
pub const MAX_METADATA_BYTES: u64 = 4 << 20;
/// The end-to-end timeout of an archive download.
pub const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// What to install, as in eKuiper's `POST /plugins/{kind}` body.
#[derive(Debug, Clone)]
pub struct InstallRequest {
    pub kind: PluginKind,
    /// The plugin name, `^[A-Za-z0-9_-]+$`.
    pub name: String,
    /// Where the archive is: an absolute path, a `file://` URL, or an `http://`/`https://` URL.
    pub file: String,
    /// The expected SHA-256 of the archive, in hex (either case).
    pub sha256: Option<String>,
}

/// The result of a successful [`install`].
#[derive(Debug, serde::Serialize)]
pub struct Installed {
    pub name: String,
    pub kind: PluginKind,
    /// The installed files: the executable first, then the metadata file if the archive had one.
    pub files: Vec<PathBuf>,
}

/// Why an install or removal failed. [`InstallError::is_client_error`] tells the request's fault from a local one.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("invalid plugin name {name:?}: plugin names must match ^[A-Za-z0-9_-]+$")]
    InvalidName { name: String },
    #[error("invalid sha256 {given:?}: expected 64 hexadecimal digits")]
    InvalidSha256 { given: String },
    #[error("unsupported plugin file {file:?}: {reason}")]
    UnsupportedSource { file: String, reason: &'static str },
    #[error("cannot read plugin archive {path}: {source}")]
    ReadFile { path: PathBuf, source: io::Error },
    #[error("cannot download plugin archive {url}: {reason}")]
    Download { url: String, reason: String },
    #[error("cannot download plugin archive {url}: HTTP status {status}, expected 200")]
    HttpStatus { url: String, status: u16 },
    #[error("plugin archive {file} is larger than the limit of {limit} bytes")]
    TooLarge { file: String, limit: u64 },
    #[error("sha256 mismatch for plugin archive {file}: expected {expected}, actual {actual}")]
    ChecksumMismatch { file: String, expected: String, actual: String },
    #[error("plugin file {file} is not a zip or tar.gz archive (judged by its first bytes)")]
    NotAnArchive { file: String },
    #[error("plugin archive {file} is corrupt: {reason}")]
    BadArchive { file: String, reason: String },
    #[error("plugin archive {file}: entry {entry:?} {reason}; refusing to install")]
    UnsafeEntry { file: String, entry: String, reason: &'static str },
    #[error(
        "plugin archive {file} contains the install script {entry:?}: install scripts are not supported, for \
         security (they would run arbitrary commands)"
    )]
    InstallScript { file: String, entry: String },
    #[error(
        "plugin archive {file} has no executable named {name:?} or \"{name}@<version>\" at its root (entries inside \
         a folder are not looked at)"
    )]
    MissingExecutable { file: String, name: String },
    #[error("plugin archive {file} has {} executables for {name:?} at its root, expected exactly one: {entries:?}", .entries.len())]
    MultipleExecutables { file: String, name: String, entries: Vec<String> },
    #[error("plugin archive {file} has {} metadata files for {name:?} at its root, expected at most one: {entries:?}", .entries.len())]
    MultipleMetadata { file: String, name: String, entries: Vec<String> },
    #[error("plugin archive {file}: entry {entry:?} has an empty version or an '@' in its version")]
    BadVersion { file: String, entry: String },
    #[error("plugin archive {file}: entry {entry:?} is not a regular file")]
    NotRegularFile { file: String, entry: String },
    #[error("plugin archive {file}: entry {entry:?} is larger than the limit of {limit} bytes")]
    EntryTooLarge { file: String, entry: String, limit: u64 },
    #[error("plugin archive {file}: metadata {entry:?} is not valid: {reason}")]
    BadMetadata { file: String, entry: String, reason: String },
    #[error("{} plugin file {path} is already installed; remove the plugin first to reinstall the same version", .kind.as_str())]
    AlreadyInstalled { kind: PluginKind, path: PathBuf },
    #[error("{} plugin {name:?} is not installed: no {name}, {name}@<version> or {name}.json in {dir}", .kind.as_str())]
    NotFound { kind: PluginKind, name: String, dir: PathBuf },
    #[error("portable plugin package {path} is already installed; remove it first to reinstall")]
    PortableExists { path: PathBuf },
    #[error("portable plugin {name:?} is not installed: no package folder {name} in {dir}")]
    PortableNotFound { name: String, dir: PathBuf },
    #[error(
        "plugin archive {file} has no manifest {name}.json at its root (a portable plugin package is eKuiper's zip: \
         {name}.json naming the executable, sources, sinks and functions)"
    )]
    MissingManifest { file: String, name: String },
    #[error("{action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: io::Error },
}

impl InstallError {
    /// True when the request caused the failure (bad name, unreachable or bad archive, checksum mismatch, unsafe
    /// entries, already installed, not installed, ...), false for a local I/O failure in the plugins folder. The REST
    /// layer maps these to 400 and 500.
    pub fn is_client_error(&self) -> bool {
        match self {
            InstallError::Io { .. } => false,
            InstallError::ReadFile { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::NotFound
                    | io::ErrorKind::PermissionDenied
                    | io::ErrorKind::InvalidInput
                    | io::ErrorKind::IsADirectory
                    | io::ErrorKind::NotADirectory
            ),
            _ => true,
        }
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> InstallError {
    let path = path.to_owned();
    move |source| InstallError::Io { action, path, source }
}

/// Installs the plugin archive described by `req` into `<plugins_dir>/<kind dir>/` (created if missing). Blocking:
/// it may download the archive. See the module documentation for what is accepted.
pub fn install(plugins_dir: &Path, req: &InstallRequest) -> Result<Installed, InstallError> {
    check_name(&req.name)?;
    let expected = req.sha256.as_deref().map(parse_sha256).transpose()?;
    let bytes = fetch(&req.file)?;
    if let Some(expected) = expected {
        let actual = hex(&Sha256::digest(&bytes));
        if actual != expected {
            return Err(InstallError::ChecksumMismatch { file: req.file.clone(), expected, actual });
        }
    }
    let archive = Archive::new(&req.file, &bytes)?;
    let plan = archive.plan(&req.name)?;

    let dir = plugins_dir.join(req.kind.dir_name());
    fs::create_dir_all(&dir).map_err(io_error("cannot create plugin folder", &dir))?;
    let exe_name = match &plan.version {
        Some(version) => format!("{}@{version}", req.name),
        None => req.name.clone(),
    };
    check_not_installed(&dir, req.kind, &exe_name)?;

    // Write and sync every temporary before anything takes its final name.
    let mut exe_tmp = TempFile::create(&dir)?;
    archive.extract(&plan, &mut exe_tmp)?;
    exe_tmp.seal(0o755)?;
    let meta_tmp = match &plan.metadata {
        Some(metadata) => {
            let mut tmp = TempFile::create(&dir)?;
            tmp.write_all(metadata)?;
            tmp.seal(0o644)?;
            Some(tmp)
        }
        None => None,
    };

    let exe_path = dir.join(&exe_name);
    exe_tmp.place_new(&exe_path, req.kind)?;
    let mut files = vec![exe_path.clone()];
    if let Some(meta_tmp) = meta_tmp {
        let meta_path = dir.join(format!("{}.json", req.name));
        if let Err(err) = meta_tmp.replace(&meta_path) {
            // Roll back: the executable must not stay without the metadata it came with.
            if let Err(undo) = fs::remove_file(&exe_path) {
                tracing::error!(path = %exe_path.display(), error = %undo, "cannot roll back a failed plugin install");
            }
            return Err(err);
        }
        // A metadata file spelled with the other first-letter case belongs to the same plugin and is now stale.
        if let Some(other) = other_first_letter_case(&req.name) {
            let stale = dir.join(format!("{other}.json"));
            match fs::remove_file(&stale) {
                Ok(()) => tracing::info!(path = %stale.display(), "removed superseded plugin metadata"),
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => tracing::warn!(path = %stale.display(), error = %err, "cannot remove superseded metadata"),
            }
        }
        files.push(meta_path);
    }
    record_source(&dir, &req.name, &req.file, req.sha256.as_deref());
    sync_dir(&dir);
    tracing::info!(kind = req.kind.as_str(), name = %req.name, file = %req.file, files = ?files, "plugin installed");
    Ok(Installed { name: req.name.clone(), kind: req.kind, files })
}

/// Deletes every file of plugin `name` in the `kind` folder: `<name>`, `<name>@*` and `<name>.json`, the first
/// letter of the name in either case (`MySource` = `mySource`). Returns the removed paths, executables first, then
/// the metadata file; [`InstallError::NotFound`] when there was nothing to remove. Never stops a running plugin.
pub fn remove(plugins_dir: &Path, kind: PluginKind, name: &str) -> Result<Vec<PathBuf>, InstallError> {
    check_name(name)?;
    let dir = plugins_dir.join(kind.dir_name());
    let not_found = || InstallError::NotFound { kind, name: name.to_owned(), dir: dir.clone() };
    let read = match fs::read_dir(&dir) {
        Ok(read) => read,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Err(not_found()),
        Err(source) => return Err(InstallError::Io { action: "cannot read plugin folder", path: dir, source }),
    };
    let key = fold(name);
    let mut matched: Vec<(bool, PathBuf)> = Vec::new();
    for entry in read {
        let entry = entry.map_err(io_error("cannot read plugin folder", &dir))?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else { continue };
        if file_name.starts_with('.') {
            continue;
        }
        let Some(is_metadata) = belongs_to(&key, file_name) else { continue };
        let path = entry.path();
        let file_type = entry.file_type().map_err(io_error("cannot inspect plugin file", &path))?;
        if !file_type.is_dir() {
            matched.push((is_metadata, path));
        }
    }
    if matched.is_empty() {
        return Err(not_found());
    }
    matched.sort();
    forget_source(&dir, name);
    let mut removed = Vec::with_capacity(matched.len());
    for (_, path) in matched {
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(InstallError::Io { action: "cannot remove plugin file", path, source }),
        }
        removed.push(path);
    }
    sync_dir(&dir);
    tracing::info!(kind = kind.as_str(), name, files = ?removed, "plugin removed");
    Ok(removed)
}

/// Removes the file of one version of a plugin (`file`, as the catalog lists it: `<name>@<version>` in its kind
/// folder); its other versions, its metadata and its install record stay.
pub fn remove_version(plugins_dir: &Path, kind: PluginKind, name: &str, file: &Path) -> Result<(), InstallError> {
    check_name(name)?;
    let dir = plugins_dir.join(kind.dir_name());
    let belongs = file.parent() == Some(dir.as_path())
        && file.file_name().and_then(|f| f.to_str()).and_then(|f| belongs_to(&fold(name), f)) == Some(false);
    if !belongs {
        return Err(InstallError::NotFound { kind, name: name.to_owned(), dir });
    }
    fs::remove_file(file).map_err(io_error("cannot remove plugin file", file))?;
    sync_dir(&dir);
    tracing::info!(kind = kind.as_str(), name, file = %file.display(), "plugin version removed");
    Ok(())
}

/// Where an installed plugin came from: eKuiper's install request
/// (`{"name", "file", "sha256"}`), kept beside the plugin as a hidden
/// `.<name>.install.json` so that `/data/export` can list it as eKuiper does.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InstallSource {
    pub name: String,
    pub file: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

fn source_record(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{}.install.json", fold(name)))
}

/// Written after the plugin is in place: losing it loses only the export's
/// `file`, so a failure is logged, not returned.
pub(super) fn record_source(dir: &Path, name: &str, file: &str, sha256: Option<&str>) {
    let record = InstallSource { name: name.to_owned(), file: file.to_owned(), sha256: sha256.map(str::to_owned) };
    let path = source_record(dir, name);
    let text = serde_json::to_vec(&record).expect("an install source serializes");
    if let Err(err) = fs::write(&path, text) {
        tracing::warn!(path = %path.display(), error = %err, "cannot record where a plugin was installed from");
    }
}

pub(super) fn forget_source(dir: &Path, name: &str) {
    match fs::remove_file(source_record(dir, name)) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => tracing::warn!(name, error = %err, "cannot remove a plugin's install record"),
    }
}

/// Where plugin `name` of `kind` (or the portable package `name` when `kind`
/// is `None`) was installed from, when it was installed by [`install`] or
/// [`install_portable`] rather than copied in.
pub fn install_source(plugins_dir: &Path, kind: Option<PluginKind>, name: &str) -> Option<InstallSource> {
    let dir = plugins_dir.join(kind.map_or(crate::catalog::PORTABLES_DIR, PluginKind::dir_name));
    let bytes = fs::read(source_record(&dir, name)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Whether `file_name` is a file of the plugin whose [`fold`]ed name is `key`: `Some(true)` for its metadata,
/// `Some(false)` for an executable, `None` otherwise.
fn belongs_to(key: &str, file_name: &str) -> Option<bool> {
    let folded = fold(file_name);
    if folded == key || folded.strip_prefix(key).is_some_and(|rest| rest.starts_with('@')) {
        Some(false)
    } else if folded.strip_suffix(".json") == Some(key) {
        Some(true)
    } else {
        None
    }
}

/// Refuses when a file with the executable's name, first letter in either case, is already in the kind folder.
fn check_not_installed(dir: &Path, kind: PluginKind, exe_name: &str) -> Result<(), InstallError> {
    let key = fold(exe_name);
    for entry in fs::read_dir(dir).map_err(io_error("cannot read plugin folder", dir))? {
        let entry = entry.map_err(io_error("cannot read plugin folder", dir))?;
        if entry.file_name().to_str().is_some_and(|existing| fold(existing) == key) {
            return Err(InstallError::AlreadyInstalled { kind, path: entry.path() });
        }
    }
    Ok(())
}

/// eKuiper's plugin name rule, with the error this module reports.
fn check_name(name: &str) -> Result<(), InstallError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(InstallError::InvalidName { name: name.to_owned() })
    }
}

/// `name` with the case of its first letter swapped, when that makes a different name.
fn other_first_letter_case(name: &str) -> Option<String> {
    let first = name.chars().next()?;
    let swapped = if first.is_ascii_lowercase() { first.to_ascii_uppercase() } else { first.to_ascii_lowercase() };
    (swapped != first).then(|| format!("{swapped}{}", &name[first.len_utf8()..]))
}

fn parse_sha256(given: &str) -> Result<String, InstallError> {
    if given.len() == 64 && given.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(given.to_ascii_lowercase())
    } else {
        Err(InstallError::InvalidSha256 { given: given.to_owned() })
    }
}

/// Persists the renames in `dir`; a failure is only logged, the files themselves are already synced.
fn sync_dir(dir: &Path) {
    if let Err(err) = fs::File::open(dir).and_then(|dir| dir.sync_all()) {
        tracing::warn!(dir = %dir.display(), error = %err, "cannot sync plugin folder");
    }
}
