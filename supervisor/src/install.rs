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
use std::io::{self, Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::catalog::{Metadata, PluginKind};
use crate::names::{fold, hex, is_valid_name};

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

// ---------------------------------------------------------------------------------------------------------------
// Fetching the archive.

enum Source {
    Local(PathBuf),
    Http(String),
}

fn parse_source(file: &str) -> Result<Source, InstallError> {
    let unsupported = |reason| InstallError::UnsupportedSource { file: file.to_owned(), reason };
    let lower = file.get(..8).unwrap_or(file).to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Ok(Source::Http(file.to_owned()));
    }
    if lower.starts_with("file://") {
        let rest = &file["file://".len()..];
        let rest = rest.strip_prefix("localhost").unwrap_or(rest);
        if !rest.starts_with('/') {
            return Err(unsupported("a file:// URL must hold an absolute path on this machine (file:///path)"));
        }
        let decoded = percent_decode(rest).ok_or_else(|| unsupported("invalid percent-encoding in the file:// URL"))?;
        return Ok(Source::Local(PathBuf::from(decoded)));
    }
    if Path::new(file).is_absolute() {
        return Ok(Source::Local(PathBuf::from(file)));
    }
    let has_scheme = file.split_once(':').is_some_and(|(scheme, _)| {
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    });
    if has_scheme {
        Err(unsupported("only absolute paths and file://, http:// and https:// URLs are supported"))
    } else {
        Err(unsupported(
            "relative paths are not supported; give an absolute path or a file://, http:// or https:// URL",
        ))
    }
}

/// Decodes `%XX` escapes; `None` when an escape is malformed or the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let digits = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(digits, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The archive's bytes, at most [`MAX_ARCHIVE_BYTES`].
fn fetch(file: &str) -> Result<Vec<u8>, InstallError> {
    match parse_source(file)? {
        Source::Local(path) => read_local(file, &path),
        Source::Http(url) => download(&url),
    }
}

fn read_local(file: &str, path: &Path) -> Result<Vec<u8>, InstallError> {
    let read_error = |source| InstallError::ReadFile { path: path.to_owned(), source };
    let opened = fs::File::open(path).map_err(read_error)?;
    let meta = opened.metadata().map_err(read_error)?;
    if !meta.is_file() {
        return Err(read_error(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file")));
    }
    let too_large = || InstallError::TooLarge { file: file.to_owned(), limit: MAX_ARCHIVE_BYTES };
    if meta.len() > MAX_ARCHIVE_BYTES {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    opened.take(MAX_ARCHIVE_BYTES + 1).read_to_end(&mut bytes).map_err(read_error)?;
    if bytes.len() as u64 > MAX_ARCHIVE_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}

fn download(url: &str) -> Result<Vec<u8>, InstallError> {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(DOWNLOAD_TIMEOUT))
        .http_status_as_error(false)
        // The checksum is over the archive as served: no transparent decompression.
        .accept_encoding("identity")
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let failed = |err: ureq::Error| match err {
        ureq::Error::BodyExceedsLimit(_) => InstallError::TooLarge { file: url.to_owned(), limit: MAX_ARCHIVE_BYTES },
        other => InstallError::Download { url: url.to_owned(), reason: other.to_string() },
    };
    let mut response = agent.get(url).call().map_err(failed)?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(InstallError::HttpStatus { url: url.to_owned(), status });
    }
    response.body_mut().with_config().limit(MAX_ARCHIVE_BYTES).read_to_vec().map_err(failed)
}

// ---------------------------------------------------------------------------------------------------------------
// Reading the archive.

#[derive(Clone, Copy)]
enum Format {
    Zip,
    TarGz,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum EntryType {
    File,
    Dir,
    Symlink,
    HardLink,
    Other,
}

/// One archive entry as seen by [`Archive::each_entry`].
struct EntryInfo {
    /// Position in the archive, stable between passes.
    index: usize,
    /// The path as stored (lossily decoded when not UTF-8).
    name: String,
    ty: EntryType,
    /// False when the archive library itself finds the path unsafe (zip's `enclosed_name`).
    enclosed: bool,
}

enum Flow {
    Continue,
    Stop,
}

/// What pass 1 decided to install.
struct Plan {
    exe_index: usize,
    exe_entry: String,
    version: Option<String>,
    metadata: Option<Vec<u8>>,
}

/// What a root entry's name means for plugin `name`.
enum RootRole {
    Executable(Option<String>),
    Metadata,
    Ignored,
}

struct Archive<'a> {
    file: &'a str,
    bytes: &'a [u8],
    format: Format,
}

impl<'a> Archive<'a> {
    fn new(file: &'a str, bytes: &'a [u8]) -> Result<Archive<'a>, InstallError> {
        let format = if bytes.starts_with(b"PK\x03\x04") {
            Format::Zip
        } else if bytes.starts_with(&[0x1f, 0x8b]) {
            Format::TarGz
        } else {
            return Err(InstallError::NotAnArchive { file: file.to_owned() });
        };
        Ok(Archive { file, bytes, format })
    }

    fn corrupt(&self, reason: impl std::fmt::Display) -> InstallError {
        InstallError::BadArchive { file: self.file.to_owned(), reason: reason.to_string() }
    }

    fn unsafe_entry(&self, entry: &str, reason: &'static str) -> InstallError {
        InstallError::UnsafeEntry { file: self.file.to_owned(), entry: entry.to_owned(), reason }
    }

    /// Calls `visit` on every entry in archive order, with a reader of its data, until it returns [`Flow::Stop`].
    fn each_entry(
        &self,
        mut visit: impl FnMut(&EntryInfo, &mut dyn Read) -> Result<Flow, InstallError>,
    ) -> Result<(), InstallError> {
        match self.format {
            Format::Zip => {
                let mut zip = zip::ZipArchive::new(Cursor::new(self.bytes)).map_err(|err| self.corrupt(err))?;
                for index in 0..zip.len() {
                    let mut entry = zip.by_index(index).map_err(|err| self.corrupt(err))?;
                    let name = entry.name().map_err(|err| self.corrupt(err))?.into_owned();
                    let symlink =
                        entry.is_symlink() || entry.unix_mode().is_some_and(|mode| mode & 0o170000 == 0o120000);
                    let ty = if symlink {
                        EntryType::Symlink
                    } else if entry.is_dir() {
                        EntryType::Dir
                    } else {
                        EntryType::File
                    };
                    let info = EntryInfo { index, name, ty, enclosed: entry.enclosed_name().is_some() };
                    if let Flow::Stop = visit(&info, &mut entry)? {
                        break;
                    }
                }
            }
            Format::TarGz => {
                let mut tar = tar::Archive::new(flate2::read::MultiGzDecoder::new(self.bytes));
                let entries = tar.entries().map_err(|err| self.corrupt(err))?;
                for (index, entry) in entries.enumerate() {
                    let mut entry = entry.map_err(|err| self.corrupt(err))?;
                    let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
                    let ty = match entry.header().entry_type() {
                        tar::EntryType::Regular | tar::EntryType::Continuous => EntryType::File,
                        tar::EntryType::Directory => EntryType::Dir,
                        tar::EntryType::Symlink => EntryType::Symlink,
                        tar::EntryType::Link => EntryType::HardLink,
                        _ => EntryType::Other,
                    };
                    let info = EntryInfo { index, name, ty, enclosed: true };
                    if let Flow::Stop = visit(&info, &mut entry)? {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Pass 1: checks every entry and finds the executable and metadata of plugin `name`, reading only the
    /// metadata. Writes nothing.
    fn plan(&self, name: &str) -> Result<Plan, InstallError> {
        let mut executables: Vec<(usize, String, Option<String>)> = Vec::new();
        let mut metadata: Vec<(String, Vec<u8>)> = Vec::new();
        self.each_entry(|info, data| {
            let parts = entry_components(&info.name).map_err(|reason| self.unsafe_entry(&info.name, reason))?;
            match info.ty {
                EntryType::Symlink => return Err(self.unsafe_entry(&info.name, "is a symbolic link")),
                EntryType::HardLink => return Err(self.unsafe_entry(&info.name, "is a hard link")),
                _ => {}
            }
            if !info.enclosed {
                return Err(self.unsafe_entry(&info.name, "leaves the target folder"));
            }
            if parts.last().is_some_and(|last| last.eq_ignore_ascii_case("install.sh")) {
                return Err(InstallError::InstallScript { file: self.file.to_owned(), entry: info.name.clone() });
            }
            let [root] = parts[..] else { return Ok(Flow::Continue) };
            if info.ty == EntryType::Dir {
                return Ok(Flow::Continue);
            }
            let role = self.root_role(name, root, &info.name)?;
            if !matches!(role, RootRole::Ignored) && info.ty != EntryType::File {
                return Err(InstallError::NotRegularFile { file: self.file.to_owned(), entry: info.name.clone() });
            }
            match role {
                RootRole::Executable(version) => executables.push((info.index, info.name.clone(), version)),
                RootRole::Metadata => {
                    let bytes = self.read_capped(data, &info.name, MAX_METADATA_BYTES)?;
                    metadata.push((info.name.clone(), bytes));
                }
                RootRole::Ignored => {}
            }
            Ok(Flow::Continue)
        })?;

        let (exe_index, exe_entry, version) = match executables.len() {
            0 => return Err(InstallError::MissingExecutable { file: self.file.to_owned(), name: name.to_owned() }),
            1 => executables.remove(0),
            _ => {
                let entries = executables.into_iter().map(|(_, entry, _)| entry).collect();
                return Err(InstallError::MultipleExecutables {
                    file: self.file.to_owned(),
                    name: name.to_owned(),
                    entries,
                });
            }
        };
        if metadata.len() > 1 {
            let entries = metadata.into_iter().map(|(entry, _)| entry).collect();
            return Err(InstallError::MultipleMetadata { file: self.file.to_owned(), name: name.to_owned(), entries });
        }
        let metadata = metadata.pop().map(|(entry, bytes)| {
            serde_json::from_slice::<Metadata>(&bytes).map(|_| bytes).map_err(|err| InstallError::BadMetadata {
                file: self.file.to_owned(),
                entry,
                reason: err.to_string(),
            })
        });
        Ok(Plan { exe_index, exe_entry, version, metadata: metadata.transpose()? })
    }

    /// What the root entry called `root` (stored as `entry`) is for plugin `name`; the first letter of the name may
    /// be in either case.
    fn root_role(&self, name: &str, root: &str, entry: &str) -> Result<RootRole, InstallError> {
        let key = fold(name);
        let folded = fold(root);
        if folded == key {
            return Ok(RootRole::Executable(None));
        }
        if folded.strip_suffix(".json") == Some(key.as_str()) {
            return Ok(RootRole::Metadata);
        }
        match folded.strip_prefix(key.as_str()).and_then(|rest| rest.strip_prefix('@')) {
            Some(version) if version.is_empty() || version.contains('@') => {
                Err(InstallError::BadVersion { file: self.file.to_owned(), entry: entry.to_owned() })
            }
            Some(version) => Ok(RootRole::Executable(Some(version.to_owned()))),
            None => Ok(RootRole::Ignored),
        }
    }

    fn read_capped(&self, data: &mut dyn Read, entry: &str, limit: u64) -> Result<Vec<u8>, InstallError> {
        let mut bytes = Vec::new();
        data.take(limit + 1).read_to_end(&mut bytes).map_err(|err| self.corrupt(format!("entry {entry:?}: {err}")))?;
        if bytes.len() as u64 > limit {
            return Err(InstallError::EntryTooLarge { file: self.file.to_owned(), entry: entry.to_owned(), limit });
        }
        Ok(bytes)
    }

    /// Pass 2: streams the planned executable into `out`, at most [`MAX_EXECUTABLE_BYTES`].
    fn extract(&self, plan: &Plan, out: &mut TempFile) -> Result<(), InstallError> {
        let mut found = false;
        self.each_entry(|info, data| {
            if info.index != plan.exe_index {
                return Ok(Flow::Continue);
            }
            found = true;
            let mut buf = vec![0u8; 64 * 1024];
            let mut total: u64 = 0;
            loop {
                let n = match data.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(err) => return Err(self.corrupt(format!("entry {:?}: {err}", plan.exe_entry))),
                };
                total += n as u64;
                if total > MAX_EXECUTABLE_BYTES {
                    return Err(InstallError::EntryTooLarge {
                        file: self.file.to_owned(),
                        entry: plan.exe_entry.clone(),
                        limit: MAX_EXECUTABLE_BYTES,
                    });
                }
                out.write_all(&buf[..n])?;
            }
            Ok(Flow::Stop)
        })?;
        if found {
            Ok(())
        } else {
            Err(self.corrupt(format!("entry {:?} disappeared on the second read", plan.exe_entry)))
        }
    }
}

/// The normal components of an archive path (`.` and empty ones dropped), or why the path is unsafe: absolute, or
/// with a `..` component (both `/` and `\` count as separators here), or with a NUL byte.
fn entry_components(raw: &str) -> Result<Vec<&str>, &'static str> {
    if raw.contains('\0') {
        return Err("contains a NUL byte");
    }
    if raw.starts_with(['/', '\\']) {
        return Err("is an absolute path");
    }
    let mut parts = Vec::new();
    for part in raw.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => return Err("has a '..' component that could leave the target folder"),
            part => parts.push(part),
        }
    }
    Ok(parts)
}

// ---------------------------------------------------------------------------------------------------------------
// Temporary files.

/// A hidden `.install-<random>` file in the kind folder, removed on drop unless it was renamed into place.
struct TempFile {
    path: PathBuf,
    file: Option<fs::File>,
    armed: bool,
}

impl TempFile {
    fn create(dir: &Path) -> Result<TempFile, InstallError> {
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

    fn write_all(&mut self, bytes: &[u8]) -> Result<(), InstallError> {
        let file = self.file.as_mut().expect("written before sealing");
        file.write_all(bytes).map_err(io_error("cannot write temporary file", &self.path))
    }

    /// Sets the final mode, syncs the data to disk and closes the file.
    fn seal(&mut self, mode: u32) -> Result<(), InstallError> {
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
    fn place_new(&mut self, target: &Path, kind: PluginKind) -> Result<(), InstallError> {
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
    fn replace(mut self, target: &Path) -> Result<(), InstallError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use std::collections::BTreeSet;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    #[cfg(unix)]
    use std::os::unix::fs::PermissionsExt;

    const EXE: &[u8] = b"#!/bin/sh\necho plugin\n";

    /// Recognises the expected error.
    type Check = fn(&InstallError) -> bool;
    const META: &str = r#"{"about": {"trial": true}, "properties": [{"name": "interval"}]}"#;

    /// A zip with `(path, data, unix mode)` entries.
    fn zip_archive(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data, mode) in entries {
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .unix_permissions(*mode);
            writer.start_file(*name, options).unwrap();
            writer.write_all(data).unwrap();
        }
        writer.finish().unwrap().into_inner()
    }

    enum T<'a> {
        File(&'a str, &'a [u8]),
        Dir(&'a str),
        Symlink(&'a str, &'a str),
        HardLink(&'a str, &'a str),
    }

    /// A tar.gz whose entry names are written raw (the `tar` builder would refuse the unsafe ones).
    fn tar_gz(entries: &[T]) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        for entry in entries {
            let (name, data, ty, link, mode): (&str, &[u8], _, &str, u32) = match entry {
                T::File(name, data) => (name, data, tar::EntryType::Regular, "", 0o644),
                T::Dir(name) => (name, b"", tar::EntryType::Directory, "", 0o755),
                T::Symlink(name, target) => (name, b"", tar::EntryType::Symlink, target, 0o777),
                T::HardLink(name, target) => (name, b"", tar::EntryType::Link, target, 0o644),
            };
            let mut header = tar::Header::new_gnu();
            header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
            header.set_entry_type(ty);
            header.set_size(data.len() as u64);
            header.set_mode(mode);
            header.set_cksum();
            builder.append(&header, data).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    /// Writes `bytes` as an archive file outside the plugins folder and returns its absolute path.
    fn archive_file(scratch: &Path, bytes: &[u8]) -> String {
        let path = scratch.join(format!("archive-{:016x}", rand::random::<u64>()));
        fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_owned()
    }

    fn request(kind: PluginKind, name: &str, file: &str, sha256: Option<&str>) -> InstallRequest {
        InstallRequest { kind, name: name.to_owned(), file: file.to_owned(), sha256: sha256.map(str::to_owned) }
    }

    /// Every name in the kind folder (hidden ones included); empty when the folder does not exist.
    fn listing(plugins: &Path, kind: PluginKind) -> BTreeSet<String> {
        match fs::read_dir(plugins.join(kind.dir_name())) {
            Ok(read) => read.map(|entry| entry.unwrap().file_name().into_string().unwrap()).collect(),
            Err(err) if err.kind() == io::ErrorKind::NotFound => BTreeSet::new(),
            Err(err) => panic!("{err}"),
        }
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    struct Setup {
        _root: tempfile::TempDir,
        plugins: PathBuf,
        scratch: PathBuf,
    }

    fn setup() -> Setup {
        let root = tempfile::tempdir().unwrap();
        let plugins = root.path().join("plugins");
        let scratch = root.path().join("scratch");
        fs::create_dir_all(&scratch).unwrap();
        Setup { plugins, scratch, _root: root }
    }

    #[test]
    fn zip_install_happy_path() {
        let s = setup();
        let bytes = zip_archive(&[
            ("hello", EXE, 0o644),
            ("hello.json", META.as_bytes(), 0o600),
            ("README.md", b"docs", 0o644),
            ("docs/", b"", 0o755),
            ("docs/hello", b"not the executable", 0o755),
        ]);
        let file = archive_file(&s.scratch, &bytes);
        let installed = install(&s.plugins, &request(PluginKind::Source, "hello", &file, None)).unwrap();
        let dir = s.plugins.join("sources");
        assert_eq!(installed.name, "hello");
        assert_eq!(installed.kind, PluginKind::Source);
        assert_eq!(installed.files, [dir.join("hello"), dir.join("hello.json")]);
        assert_eq!(fs::read(dir.join("hello")).unwrap(), EXE);
        assert_eq!(fs::read_to_string(dir.join("hello.json")).unwrap(), META);
        #[cfg(unix)]
        {
            assert_eq!(mode(&dir.join("hello")), 0o755);
            assert_eq!(mode(&dir.join("hello.json")), 0o644);
        }
        assert_eq!(listing(&s.plugins, PluginKind::Source), set(&["hello", "hello.json"]));
        let json = serde_json::to_value(&installed).unwrap();
        assert_eq!(json["kind"], "source");

        let catalog = Catalog::scan(&s.plugins);
        assert!(catalog.errors().is_empty(), "{:?}", catalog.errors());
        let plugin = catalog.get(PluginKind::Source, "hello").unwrap();
        assert!(plugin.metadata.as_ref().unwrap().about.is_some());
    }

    #[test]
    fn tar_gz_install_with_version() {
        let s = setup();
        let bytes = tar_gz(&[
            T::Dir("./"),
            T::File("./foo@v1.2.0", EXE),
            T::File("./LICENSE", b"Apache-2.0"),
            T::Dir("./src/"),
            T::File("./src/main.go", b"package main"),
        ]);
        let file = format!("file://{}", archive_file(&s.scratch, &bytes));
        let installed = install(&s.plugins, &request(PluginKind::Function, "foo", &file, None)).unwrap();
        let path = s.plugins.join("functions").join("foo@v1.2.0");
        assert_eq!(installed.files, std::slice::from_ref(&path));
        assert_eq!(fs::read(&path).unwrap(), EXE);
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o755, "installed executable whatever the archive's mode");
        assert_eq!(listing(&s.plugins, PluginKind::Function), set(&["foo@v1.2.0"]));
        let catalog = Catalog::scan(&s.plugins);
        assert_eq!(catalog.get(PluginKind::Function, "foo").unwrap().version.as_ref().unwrap().as_str(), "1.2.0");
    }

    #[test]
    fn archive_name_may_differ_in_the_first_letter_case() {
        let s = setup();
        let bytes = zip_archive(&[("MySink@2", EXE, 0o755), ("MySink.json", b"{}", 0o644)]);
        let file = archive_file(&s.scratch, &bytes);
        let installed = install(&s.plugins, &request(PluginKind::Sink, "mySink", &file, None)).unwrap();
        let dir = s.plugins.join("sinks");
        assert_eq!(installed.files, [dir.join("mySink@2"), dir.join("mySink.json")]);
    }

    #[test]
    fn checksum_match_and_mismatch() {
        let s = setup();
        let bytes = zip_archive(&[("sum", EXE, 0o755)]);
        let file = archive_file(&s.scratch, &bytes);
        let good = hex(&Sha256::digest(&bytes));

        let wrong = "0".repeat(64);
        let err = install(&s.plugins, &request(PluginKind::Sink, "sum", &file, Some(&wrong))).unwrap_err();
        assert!(matches!(err, InstallError::ChecksumMismatch { .. }), "{err}");
        assert!(err.is_client_error());
        let message = err.to_string();
        assert!(message.contains(&wrong) && message.contains(&good), "{message}");
        assert!(listing(&s.plugins, PluginKind::Sink).is_empty());

        let err = install(&s.plugins, &request(PluginKind::Sink, "sum", &file, Some("abc"))).unwrap_err();
        assert!(matches!(err, InstallError::InvalidSha256 { .. }), "{err}");

        let upper = good.to_ascii_uppercase();
        let installed = install(&s.plugins, &request(PluginKind::Sink, "sum", &file, Some(&upper))).unwrap();
        assert_eq!(installed.files, [s.plugins.join("sinks").join("sum")]);
    }

    #[test]
    fn escaping_entries_are_refused_before_writing() {
        let s = setup();
        let dir = s.plugins.join("sources");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("existing"), "x").unwrap();
        let before = listing(&s.plugins, PluginKind::Source);

        let mut archives: Vec<(String, Vec<u8>)> = Vec::new();
        for bad in ["../evil", "/abs", "a/../../b", "ok/../../../etc/passwd", "..\\evil"] {
            // The executable comes first, so only the up-front check keeps it from being written.
            archives.push((bad.to_owned(), zip_archive(&[("evil", EXE, 0o755), (bad, b"x", 0o644)])));
            archives.push((bad.to_owned(), tar_gz(&[T::File("evil", EXE), T::File(bad, b"x")])));
        }
        archives.push(("link".to_owned(), tar_gz(&[T::File("evil", EXE), T::Symlink("link", "/etc/passwd")])));
        archives.push(("sub/hard".to_owned(), tar_gz(&[T::File("evil", EXE), T::HardLink("sub/hard", "/etc/x")])));
        archives.push(("evil".to_owned(), tar_gz(&[T::Symlink("evil", "/bin/sh")])));
        let mut zip_link = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default();
        zip_link.start_file("evil", options).unwrap();
        zip_link.write_all(EXE).unwrap();
        zip_link.add_symlink("link", "/etc/passwd", options).unwrap();
        archives.push(("link".to_owned(), zip_link.finish().unwrap().into_inner()));

        for (entry, bytes) in archives {
            let file = archive_file(&s.scratch, &bytes);
            let err = install(&s.plugins, &request(PluginKind::Source, "evil", &file, None)).unwrap_err();
            match &err {
                InstallError::UnsafeEntry { entry: named, .. } => assert_eq!(named, &entry, "{err}"),
                other => panic!("{entry}: expected UnsafeEntry, got {other}"),
            }
            assert!(err.is_client_error());
            assert!(err.to_string().contains(&format!("{entry:?}")), "{err}");
            assert_eq!(listing(&s.plugins, PluginKind::Source), before, "after {entry}");
        }
        assert!(!s.scratch.join("evil").exists() && !s.plugins.join("evil").exists());
    }

    #[test]
    fn bad_plugin_names_are_refused() {
        let s = setup();
        let file = archive_file(&s.scratch, &zip_archive(&[("x", EXE, 0o755)]));
        for name in ["", "bad name", "../x", "a/b", "a@1", "a.json", "ä"] {
            let err = install(&s.plugins, &request(PluginKind::Source, name, &file, None)).unwrap_err();
            assert!(matches!(err, InstallError::InvalidName { .. }), "{name}: {err}");
            assert!(err.is_client_error());
            assert!(err.to_string().contains("^[A-Za-z0-9_-]+$"), "{err}");
        }
        assert!(!s.plugins.exists());
    }

    #[test]
    fn archive_without_the_executable_is_refused() {
        let s = setup();
        let cases = [
            zip_archive(&[("other", EXE, 0o755), ("wrapper/foo", EXE, 0o755), ("foo.json", b"{}", 0o644)]),
            tar_gz(&[T::Dir("foo/"), T::File("foo/foo", EXE)]),
            tar_gz(&[]),
        ];
        for bytes in cases {
            let file = archive_file(&s.scratch, &bytes);
            let err = install(&s.plugins, &request(PluginKind::Sink, "foo", &file, None)).unwrap_err();
            assert!(matches!(err, InstallError::MissingExecutable { .. }), "{err}");
            assert!(err.is_client_error());
        }
        assert!(listing(&s.plugins, PluginKind::Sink).is_empty());
    }

    #[test]
    fn ambiguous_or_invalid_contents_are_refused() {
        let s = setup();
        let cases: [(Vec<u8>, Check); 5] = [
            (
                zip_archive(&[("foo", EXE, 0o755), ("foo@1", EXE, 0o755)]),
                |e| matches!(e, InstallError::MultipleExecutables { entries, .. } if entries.len() == 2),
            ),
            (tar_gz(&[T::File("foo@", EXE)]), |e| matches!(e, InstallError::BadVersion { .. })),
            (zip_archive(&[("foo", EXE, 0o755), ("foo.json", b"{not json", 0o644)]), |e| {
                matches!(e, InstallError::BadMetadata { .. })
            }),
            (tar_gz(&[T::File("foo", EXE), T::File("foo.json", b"{}"), T::File("Foo.json", b"{}")]), |e| {
                matches!(e, InstallError::MultipleMetadata { .. })
            }),
            (tar_gz(&[T::Dir("foo@1/")]), |e| matches!(e, InstallError::MissingExecutable { .. })),
        ];
        for (bytes, expected) in cases {
            let file = archive_file(&s.scratch, &bytes);
            let err = install(&s.plugins, &request(PluginKind::Sink, "foo", &file, None)).unwrap_err();
            assert!(expected(&err), "unexpected {err}");
            assert!(err.is_client_error());
        }
        assert!(listing(&s.plugins, PluginKind::Sink).is_empty());
    }

    #[test]
    fn install_scripts_are_refused() {
        let s = setup();
        for bytes in [
            zip_archive(&[("foo", EXE, 0o755), ("install.sh", b"rm -rf /", 0o755)]),
            tar_gz(&[T::File("foo", EXE), T::File("scripts/install.sh", b"rm -rf /")]),
        ] {
            let file = archive_file(&s.scratch, &bytes);
            let err = install(&s.plugins, &request(PluginKind::Source, "foo", &file, None)).unwrap_err();
            assert!(matches!(err, InstallError::InstallScript { .. }), "{err}");
            assert!(err.to_string().contains("install scripts are not supported"), "{err}");
            assert!(err.is_client_error());
        }
        assert!(listing(&s.plugins, PluginKind::Source).is_empty());
    }

    #[test]
    fn not_an_archive_is_refused() {
        let s = setup();
        let mut gzipped_text = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gzipped_text.write_all(&[b'x'; 2048]).unwrap();
        let cases: [(Vec<u8>, Check); 4] = [
            (b"#!/bin/sh\necho not an archive\n".to_vec(), |e| matches!(e, InstallError::NotAnArchive { .. })),
            (Vec::new(), |e| matches!(e, InstallError::NotAnArchive { .. })),
            (b"PK\x03\x04 truncated".to_vec(), |e| matches!(e, InstallError::BadArchive { .. })),
            (gzipped_text.finish().unwrap(), |e| matches!(e, InstallError::BadArchive { .. })),
        ];
        for (bytes, expected) in cases {
            let file = archive_file(&s.scratch, &bytes);
            let err = install(&s.plugins, &request(PluginKind::Source, "foo", &file, None)).unwrap_err();
            assert!(expected(&err), "unexpected {err}");
            assert!(err.is_client_error());
            assert!(err.to_string().contains(&file), "{err}");
        }
        assert!(listing(&s.plugins, PluginKind::Source).is_empty());
    }

    #[test]
    fn unsupported_sources_are_refused() {
        let s = setup();
        let missing = s.scratch.join("missing.zip");
        for file in ["ftp://example.com/a.zip", "relative/a.zip", "a.zip", "file://host/a.zip", "s3://b/a.zip", ""] {
            let err = install(&s.plugins, &request(PluginKind::Sink, "a", file, None)).unwrap_err();
            assert!(matches!(err, InstallError::UnsupportedSource { .. }), "{file}: {err}");
            assert!(err.is_client_error());
        }
        let err = install(&s.plugins, &request(PluginKind::Sink, "a", missing.to_str().unwrap(), None)).unwrap_err();
        assert!(matches!(err, InstallError::ReadFile { .. }) && err.is_client_error(), "{err}");
        assert!(err.to_string().contains("missing.zip"), "{err}");

        // A percent-encoded file URL is decoded.
        let spaced = s.scratch.join("with space.zip");
        fs::write(&spaced, zip_archive(&[("a", EXE, 0o755)])).unwrap();
        let url = format!("file://{}", spaced.to_str().unwrap().replace(' ', "%20"));
        install(&s.plugins, &request(PluginKind::Sink, "a", &url, None)).unwrap();
    }

    /// Serves one HTTP/1.1 response on 127.0.0.1 and returns the base URL and the request line it received.
    fn serve_once(status: &'static str, body: Vec<u8>) -> (String, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
            }
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(&body).unwrap();
            stream.flush().unwrap();
            request_line.trim_end().to_owned()
        });
        (base, handle)
    }

    #[test]
    fn http_install_and_404() {
        let s = setup();
        let bytes = tar_gz(&[T::File("web@1.0.0", EXE), T::File("web.json", b"{}")]);
        let sha = hex(&Sha256::digest(&bytes));
        let (base, server) = serve_once("200 OK", bytes);
        let url = format!("{base}/plugins/web.tgz");
        let installed = install(&s.plugins, &request(PluginKind::Source, "web", &url, Some(&sha))).unwrap();
        assert_eq!(server.join().unwrap(), "GET /plugins/web.tgz HTTP/1.1");
        let dir = s.plugins.join("sources");
        assert_eq!(installed.files, [dir.join("web@1.0.0"), dir.join("web.json")]);
        assert_eq!(fs::read(dir.join("web@1.0.0")).unwrap(), EXE);

        let (base, server) = serve_once("404 Not Found", b"no such file".to_vec());
        let url = format!("{base}/missing.zip");
        let err = install(&s.plugins, &request(PluginKind::Source, "other", &url, None)).unwrap_err();
        server.join().unwrap();
        assert!(matches!(err, InstallError::HttpStatus { status: 404, .. }), "{err}");
        assert!(err.is_client_error());
        assert!(err.to_string().contains(&url), "{err}");

        // Nothing listens on a port just released.
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}/a.zip");
        let err = install(&s.plugins, &request(PluginKind::Source, "other", &url, None)).unwrap_err();
        assert!(matches!(err, InstallError::Download { .. }) && err.to_string().contains(&url), "{err}");
        assert_eq!(listing(&s.plugins, PluginKind::Source), set(&["web.json", "web@1.0.0"]));
    }

    #[test]
    fn already_installed_is_refused() {
        let s = setup();
        let first = archive_file(&s.scratch, &zip_archive(&[("dup@1", b"first", 0o755), ("dup.json", b"{}", 0o644)]));
        install(&s.plugins, &request(PluginKind::Sink, "dup", &first, None)).unwrap();
        let second = archive_file(
            &s.scratch,
            &zip_archive(&[("dup@1", b"second", 0o755), ("dup.json", br#"{"libs": []}"#, 0o644)]),
        );
        for name in ["dup", "Dup"] {
            let err = install(&s.plugins, &request(PluginKind::Sink, name, &second, None)).unwrap_err();
            assert!(matches!(err, InstallError::AlreadyInstalled { .. }), "{err}");
            assert!(err.is_client_error());
            assert!(err.to_string().contains("already installed"), "{err}");
        }
        let dir = s.plugins.join("sinks");
        assert_eq!(fs::read(dir.join("dup@1")).unwrap(), b"first");
        assert_eq!(fs::read(dir.join("dup.json")).unwrap(), b"{}");
        assert_eq!(listing(&s.plugins, PluginKind::Sink), set(&["dup.json", "dup@1"]));

        // A new version installs beside the old one and brings its metadata.
        let newer = archive_file(&s.scratch, &zip_archive(&[("dup@2", b"new", 0o755), ("dup.json", b"[]", 0o644)]));
        install(&s.plugins, &request(PluginKind::Sink, "dup", &newer, None)).unwrap();
        assert_eq!(fs::read(dir.join("dup.json")).unwrap(), b"[]");
        assert_eq!(listing(&s.plugins, PluginKind::Sink), set(&["dup.json", "dup@1", "dup@2"]));
    }

    #[test]
    fn local_failures_are_not_client_errors() {
        let s = setup();
        let file = archive_file(&s.scratch, &zip_archive(&[("x", EXE, 0o755)]));
        // The plugins "folder" is a file: the kind folder cannot be created.
        fs::write(&s.plugins, "").unwrap();
        let err = install(&s.plugins, &request(PluginKind::Sink, "x", &file, None)).unwrap_err();
        assert!(matches!(err, InstallError::Io { .. }), "{err}");
        assert!(!err.is_client_error());
    }

    #[test]
    fn remove_deletes_every_version_and_metadata() {
        let s = setup();
        let dir = s.plugins.join("sources");
        fs::create_dir_all(&dir).unwrap();
        for name in ["MySource@1", "mySource@2", "mySource", "mySource.json", "mySourceX", "other", ".mySource@3"] {
            fs::write(dir.join(name), "x").unwrap();
        }
        fs::create_dir(dir.join("mySource@dir")).unwrap();
        let removed = remove(&s.plugins, PluginKind::Source, "MySource").unwrap();
        assert_eq!(
            removed,
            [dir.join("MySource@1"), dir.join("mySource"), dir.join("mySource@2"), dir.join("mySource.json")]
        );
        assert_eq!(
            listing(&s.plugins, PluginKind::Source),
            set(&[".mySource@3", "mySource@dir", "mySourceX", "other"])
        );

        let err = remove(&s.plugins, PluginKind::Source, "mySource").unwrap_err();
        assert!(matches!(err, InstallError::NotFound { .. }) && err.is_client_error(), "{err}");
        let err = remove(&s.plugins, PluginKind::Source, "unknown").unwrap_err();
        assert!(matches!(err, InstallError::NotFound { .. }), "{err}");
        assert!(err.to_string().contains("\"unknown\""), "{err}");
        let err = remove(&s.plugins, PluginKind::Sink, "other").unwrap_err();
        assert!(matches!(err, InstallError::NotFound { .. }), "missing kind folder: {err}");
        let err = remove(&s.plugins, PluginKind::Source, "../other").unwrap_err();
        assert!(matches!(err, InstallError::InvalidName { .. }), "{err}");
    }

    #[test]
    fn install_then_remove_round_trip() {
        let s = setup();
        for version in ["1.0.0", "2.0.0"] {
            let name = format!("rt@{version}");
            let file = archive_file(&s.scratch, &tar_gz(&[T::File(&name, EXE), T::File("rt.json", b"{}")]));
            install(&s.plugins, &request(PluginKind::Function, "rt", &file, None)).unwrap();
        }
        let removed = remove(&s.plugins, PluginKind::Function, "rt").unwrap();
        assert_eq!(removed.len(), 3, "{removed:?}");
        assert!(listing(&s.plugins, PluginKind::Function).is_empty());
    }
}
