//! The plugin catalog: plugin files on disk, their names, versions and metadata. Plain data: it never starts or
//! holds a process.
//!
//! Invariant: nothing in this module spawns, signals, waits for or keeps a handle to a process. A [`Catalog`] is a
//! snapshot of the plugins folder (file names, versions, hashes, parsed metadata) that can be rebuilt or dropped at
//! any time without affecting a running plugin.
//!
//! # Layout
//!
//! ```text
//! <plugins-dir>/
//!   sources/    random@v1.10.0   random@v1.2.0   random.json
//!   sinks/      file
//!   functions/  geohash@1.0.0    geohash.json
//! ```
//!
//! * A plugin is an executable file named `<name>` or `<name>@<version>`. Names follow eKuiper's rule
//!   `^[A-Za-z0-9_-]+$`; the version is everything after the last `@` and must be non-empty (so it cannot contain
//!   `@` or `/`).
//! * `<name>.json` beside it is the plugin's metadata, in eKuiper's format (see [`Metadata`]).
//! * Hidden entries (names starting with `.`) and directories are skipped silently; every other file that is not a
//!   valid plugin or metadata file is reported in [`Catalog::errors`] and otherwise ignored.
//! * As in eKuiper, the first letter of a plugin name may be written in either case: `MySource@v1.0.0` and
//!   `mySource@v2.0.0` are two versions of one plugin, found by either spelling.
//! * When a plugin has several files, the newest one by [`Version`]'s order takes effect; the others are listed in
//!   [`PluginFile::other_versions`].

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

pub use crate::names::is_valid_name;
use crate::names::{fold, hex};

/// The three kinds of plugin, one folder each under the plugins folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    Source,
    Sink,
    Function,
}

impl PluginKind {
    /// Every kind, in the order the catalog scans them.
    pub const ALL: [PluginKind; 3] = [PluginKind::Source, PluginKind::Sink, PluginKind::Function];

    /// The folder holding this kind's plugins (also the REST path segment): `sources`, `sinks` or `functions`.
    pub fn dir_name(self) -> &'static str {
        match self {
            PluginKind::Source => "sources",
            PluginKind::Sink => "sinks",
            PluginKind::Function => "functions",
        }
    }

    /// The inverse of [`PluginKind::dir_name`].
    pub fn from_dir_name(s: &str) -> Option<PluginKind> {
        PluginKind::ALL.into_iter().find(|kind| kind.dir_name() == s)
    }

    /// The singular name used by the CLI: `source`, `sink` or `function`.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Source => "source",
            PluginKind::Sink => "sink",
            PluginKind::Function => "function",
        }
    }

    /// Accepts the singular names (`source`, `sink`, `function`) and the folder names (`sources`, ...).
    pub fn parse(s: &str) -> Option<PluginKind> {
        PluginKind::ALL.into_iter().find(|kind| kind.as_str() == s || kind.dir_name() == s)
    }
}

/// A version string from a plugin file name (`<name>@<version>`).
///
/// The reported string drops one leading `v` or `V` when a digit follows it (`v1.0.0` is reported as `1.0.0`,
/// `vintage` stays `vintage`); the order below works on the reported string.
///
/// # Order
///
/// Versions are totally ordered; among the files of one plugin the greatest one takes effect.
///
/// 1. A version is *structured* when it is
///    * one to three dot-separated runs of ASCII digits (`20200331`, `1.2`, `1.2.3`; leading zeros allowed), read
///      as SemVer by padding the missing parts with `.0`, so a plain number `N` is `N.0.0`; or
///    * otherwise a valid SemVer 2.0 version (`1.0.0-rc.1`, `1.2.3+build.5`).
///
///    Anything else (`alpha`, `vintage`, `1.2.3.4`, `1.0-rc.1`) is *free-form*.
/// 2. Two structured versions compare by SemVer precedence: major, minor, patch numerically (no size limit, so
///    `1.10.0 > 1.9.0` and `20200331 > 9`), then a release is greater than its pre-releases
///    (`1.0.0-rc.1 < 1.0.0`) and pre-releases compare by SemVer's rules. Build metadata takes no part here.
/// 3. A structured version is greater than any free-form one ("structured beats free-form": `1.0.0 > zzz`).
/// 4. Two free-form versions compare by byte order (`beta > alpha`).
/// 5. Finally, versions equal so far compare by the byte order of the reported string, so only identical strings
///    are equal (`1.0.0 < 1.0.0+build`, `01 < 1`).
///
/// A plugin file without any version ranks below every versioned file of the same plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// The version as reported: the file name's text after `@`, minus a leading `v`/`V` before a digit.
    raw: String,
}

impl Version {
    /// Reads a version as written after `@` in a file name. Never fails: any text is a (possibly free-form) version.
    pub fn parse(s: &str) -> Version {
        let bytes = s.as_bytes();
        let drop_v = bytes.len() >= 2 && matches!(bytes[0], b'v' | b'V') && bytes[1].is_ascii_digit();
        Version { raw: if drop_v { s[1..].to_owned() } else { s.to_owned() } }
    }

    /// The reported version string.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The SemVer reading of a structured version, or `None` for a free-form one (see the order above).
    fn structured(&self) -> Option<Structured> {
        let raw = self.raw.as_str();
        if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            let parts: Vec<&str> = raw.split('.').collect();
            if parts.len() > 3 || parts.iter().any(|part| part.is_empty()) {
                return None;
            }
            let mut numbers: [String; 3] = Default::default();
            for (slot, part) in numbers.iter_mut().zip(parts.iter().copied().chain(["0", "0"])) {
                *slot = strip_leading_zeros(part).to_owned();
            }
            return Some(Structured { numbers, pre: semver::Prerelease::EMPTY });
        }
        let parsed = semver::Version::parse(raw).ok()?;
        Some(Structured {
            numbers: [parsed.major.to_string(), parsed.minor.to_string(), parsed.patch.to_string()],
            pre: parsed.pre,
        })
    }
}

/// Major, minor and patch as digit strings without leading zeros (compared by length, then bytes, so any size
/// works), plus the SemVer pre-release.
#[derive(PartialEq, Eq)]
struct Structured {
    numbers: [String; 3],
    pre: semver::Prerelease,
}

impl Ord for Structured {
    fn cmp(&self, other: &Self) -> Ordering {
        self.numbers
            .iter()
            .zip(other.numbers.iter())
            .map(|(a, b)| a.len().cmp(&b.len()).then_with(|| a.as_bytes().cmp(b.as_bytes())))
            .find(|ordering| ordering.is_ne())
            .unwrap_or(Ordering::Equal)
            .then_with(|| self.pre.cmp(&other.pre))
    }
}

impl PartialOrd for Structured {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn strip_leading_zeros(digits: &str) -> &str {
    let stripped = digits.trim_start_matches('0');
    if stripped.is_empty() {
        "0"
    } else {
        stripped
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let primary = match (self.structured(), other.structured()) {
            (Some(a), Some(b)) => a.cmp(&b),
            (Some(_), None) => Ordering::Greater,
            (None, Some(_)) => Ordering::Less,
            (None, None) => Ordering::Equal,
        };
        primary.then_with(|| self.raw.as_bytes().cmp(other.raw.as_bytes()))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.raw)
    }
}

/// One plugin as it will run: the newest of its files on disk.
#[derive(Debug, Clone, Serialize)]
pub struct PluginFile {
    pub kind: PluginKind,
    /// The plugin name as written in the effective file's name.
    pub name: String,
    /// `None` when the file name has no `@`.
    pub version: Option<Version>,
    /// The executable that will run.
    pub path: PathBuf,
    /// Lowercase hex SHA-256 of the executable's bytes.
    pub sha256: String,
    /// The parsed `<name>.json`, when present and valid.
    pub metadata: Option<Metadata>,
    /// Versions present on disk but shadowed by this one, newest first; an unversioned file is reported as `""`.
    pub other_versions: Vec<String>,
}

/// eKuiper's `<name>.json` plugin metadata. Every field is optional and unknown fields are ignored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Metadata {
    #[serde(default)]
    pub about: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub libs: Vec<String>,
    /// The property descriptions. Sinks write them as a list; eKuiper's sources write `{"default": [...]}`, which
    /// is read as that list.
    #[serde(default, deserialize_with = "properties_list")]
    pub properties: Vec<serde_json::Value>,
    /// The SQL functions a function plugin exports.
    #[serde(default, deserialize_with = "null_as_default")]
    pub functions: Vec<FunctionMeta>,
    /// Oort's extension: resource limits of the plugin's processes
    /// (`{"memory": "256MiB", "cpuSeconds": 60, "openFiles": 256, "processes": 32}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<crate::process::Limits>,
}

/// One entry of [`Metadata::functions`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FunctionMeta {
    pub name: String,
    #[serde(default)]
    pub example: Option<String>,
    #[serde(default)]
    pub hint: Option<serde_json::Value>,
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

fn properties_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<serde_json::Value>, D::Error> {
    use serde::de::Error;
    use serde_json::Value;
    match Value::deserialize(deserializer)? {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => Ok(items),
        Value::Object(mut map) => match map.remove("default") {
            Some(Value::Array(items)) => Ok(items),
            Some(Value::Null) | None if map.is_empty() => Ok(Vec::new()),
            _ => Err(D::Error::custom("\"properties\" must be a list or an object with a \"default\" list")),
        },
        _ => Err(D::Error::custom("\"properties\" must be a list or an object with a \"default\" list")),
    }
}

/// A problem found in the plugins folder, or a function name claimed twice.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read plugin folder {path}: {source}")]
    ReadDir { path: PathBuf, source: io::Error },
    #[error("plugin file {path}: invalid name {name:?}: plugin names must match ^[A-Za-z0-9_-]+$")]
    InvalidName { path: PathBuf, name: String },
    #[error("plugin file {path}: empty version after '@'")]
    EmptyVersion { path: PathBuf },
    #[error("plugin file {path} is not executable")]
    NotExecutable { path: PathBuf },
    #[error("metadata file {path} is not valid: {reason}")]
    BadMetadata { path: PathBuf, reason: String },
    #[error("plugin file {path} cannot be read: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("function {function:?} is exported by both {first} and {second}")]
    DuplicateFunction { function: String, first: String, second: String },
}

/// A scan of the plugins folder: every valid plugin (newest version only) plus every problem found.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Keyed by kind and [`fold`]ed name.
    plugins: BTreeMap<(PluginKind, String), PluginFile>,
    errors: Vec<CatalogError>,
    /// Lowercased SQL function name -> folded name of the function plugin exporting it, as found by the scan.
    exported: BTreeMap<String, String>,
    /// Folded function plugin name -> lowercased function names it declared when running.
    registered: BTreeMap<String, Vec<String>>,
    /// The SHA-256 of every effective plugin file, by path, with the file's stamp when it was hashed: a rescan
    /// hashes only files whose stamp changed (a 1 GB executable takes a second to hash).
    hashes: HashMap<PathBuf, (FileStamp, String)>,
    /// How many files this scan hashed (the others came from the previous scan).
    hashed: usize,
}

/// What identifies one version of a file's bytes without reading them: a write changes the size or the
/// modification time, and any change to the inode (including a write that restores the mtime with `touch -d`)
/// changes its ctime, which user space cannot set; a replaced file has a new inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileStamp {
    fn of(meta: &fs::Metadata) -> FileStamp {
        use std::os::unix::fs::MetadataExt;
        FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// A valid plugin file found in a kind folder.
struct Candidate {
    name: String,
    version: Option<Version>,
    path: PathBuf,
    file_name: String,
    stamp: FileStamp,
}

/// What a kind folder entry is.
enum Entry {
    Plugin(Candidate),
    Metadata { name: String, path: PathBuf },
    Skip,
}

impl Catalog {
    /// Scans `<plugins_dir>/{sources,sinks,functions}/`. Never fails as a whole: a missing kind folder is simply
    /// empty, and per-file problems are collected in [`Catalog::errors`].
    pub fn scan(plugins_dir: &Path) -> Catalog {
        Catalog::rescan(plugins_dir, &Catalog::default())
    }

    /// A catalog holding only this one's file hashes: what [`Catalog::rescan`] needs of the previous scan,
    /// cheap to move to another thread.
    pub fn hash_cache(&self) -> Catalog {
        Catalog { hashes: self.hashes.clone(), ..Catalog::default() }
    }

    /// Like [`Catalog::scan`], but takes the hash of every file unchanged since `previous` from it instead of
    /// reading the file again.
    pub fn rescan(plugins_dir: &Path, previous: &Catalog) -> Catalog {
        let mut catalog = Catalog { hashes: previous.hashes.clone(), ..Catalog::default() };
        for kind in PluginKind::ALL {
            catalog.scan_kind(kind, &plugins_dir.join(kind.dir_name()));
        }
        catalog.index_functions();
        // Forget the hashes of files that are gone or no longer effective.
        let effective: std::collections::HashSet<&Path> = catalog.plugins.values().map(|p| p.path.as_path()).collect();
        let hashes = std::mem::take(&mut catalog.hashes);
        catalog.hashes = hashes.into_iter().filter(|(path, _)| effective.contains(path.as_path())).collect();
        tracing::debug!(
            plugins = catalog.plugins.len(),
            errors = catalog.errors.len(),
            dir = %plugins_dir.display(),
            "plugin catalog scanned"
        );
        catalog
    }

    /// How many plugin files this scan read to hash them; the others were unchanged since the previous scan.
    pub fn files_hashed(&self) -> usize {
        self.hashed
    }

    /// Every problem found by the scan, in scan order (kinds in [`PluginKind::ALL`] order, files by name).
    pub fn errors(&self) -> &[CatalogError] {
        &self.errors
    }

    /// The plugin named `name`, matching the first letter in either case (`MySource` finds `mySource`).
    pub fn get(&self, kind: PluginKind, name: &str) -> Option<&PluginFile> {
        self.plugins.get(&(kind, fold(name)))
    }

    /// The plugins of one kind, sorted by name.
    pub fn list(&self, kind: PluginKind) -> Vec<&PluginFile> {
        let mut plugins: Vec<&PluginFile> = self.plugins.values().filter(|plugin| plugin.kind == kind).collect();
        plugins.sort_by(|a, b| a.name.cmp(&b.name));
        plugins
    }

    /// Which function plugin exports SQL function `function` (from metadata `functions`, or when the plugin has no
    /// metadata functions list, a function plugin exports the function named like the plugin itself), including the
    /// names recorded by [`Catalog::register_functions`]. Case-insensitive match on the function name (SQL function
    /// names are case-insensitive).
    pub fn function_owner(&self, function: &str) -> Option<&PluginFile> {
        let wanted = function.to_lowercase();
        let owner = self.exported.get(&wanted).or_else(|| {
            self.registered.iter().find(|(_, functions)| functions.contains(&wanted)).map(|(owner, _)| owner)
        })?;
        self.plugins.get(&(PluginKind::Function, owner.clone()))
    }

    /// Records that a running function plugin declared these function names (from its Describe); returns
    /// DuplicateFunction if another plugin already exports one of them, in which case nothing is recorded.
    /// A later call for the same plugin replaces its earlier declaration; the names found by the scan stay.
    pub fn register_functions(&mut self, plugin: &str, functions: &[String]) -> Result<(), CatalogError> {
        let key = fold(plugin);
        let mut lowered: Vec<String> = Vec::with_capacity(functions.len());
        for function in functions {
            let wanted = function.to_lowercase();
            let other = self.exported.get(&wanted).filter(|owner| **owner != key).or_else(|| {
                self.registered
                    .iter()
                    .find(|(owner, declared)| **owner != key && declared.contains(&wanted))
                    .map(|(owner, _)| owner)
            });
            if let Some(other) = other {
                return Err(CatalogError::DuplicateFunction {
                    function: function.clone(),
                    first: self.display_function_plugin(other),
                    second: plugin.to_owned(),
                });
            }
            if !lowered.contains(&wanted) {
                lowered.push(wanted);
            }
        }
        self.registered.insert(key, lowered);
        Ok(())
    }

    fn display_function_plugin(&self, key: &str) -> String {
        self.plugins
            .get(&(PluginKind::Function, key.to_owned()))
            .map_or_else(|| key.to_owned(), |plugin| plugin.name.clone())
    }

    fn scan_kind(&mut self, kind: PluginKind, dir: &Path) {
        let read = match fs::read_dir(dir) {
            Ok(read) => read,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return,
            Err(source) => {
                self.errors.push(CatalogError::ReadDir { path: dir.to_owned(), source });
                return;
            }
        };
        let mut names: Vec<OsString> = Vec::new();
        for entry in read {
            match entry {
                Ok(entry) => names.push(entry.file_name()),
                Err(source) => self.errors.push(CatalogError::ReadDir { path: dir.to_owned(), source }),
            }
        }
        names.sort();

        let mut candidates: BTreeMap<String, Vec<Candidate>> = BTreeMap::new();
        let mut metadata_files: BTreeMap<String, Vec<(String, PathBuf)>> = BTreeMap::new();
        for file_name in names {
            match classify(dir, file_name) {
                Ok(Entry::Plugin(candidate)) => candidates.entry(fold(&candidate.name)).or_default().push(candidate),
                Ok(Entry::Metadata { name, path }) => metadata_files.entry(fold(&name)).or_default().push((name, path)),
                Ok(Entry::Skip) => {}
                Err(err) => self.errors.push(err),
            }
        }

        for (key, mut versions) in candidates {
            // Newest first; equal versions (`x@v1` and `x@1`, `X` and `x`) fall back to the file name.
            versions.sort_by(|a, b| b.version.cmp(&a.version).then_with(|| b.file_name.cmp(&a.file_name)));
            let mut chosen: Option<(Candidate, String)> = None;
            let mut other_versions = Vec::new();
            for candidate in versions {
                if chosen.is_some() {
                    other_versions.push(candidate.version.map(|v| v.raw).unwrap_or_default());
                    continue;
                }
                match self.hashes.get(&candidate.path).filter(|(stamp, _)| *stamp == candidate.stamp) {
                    Some((_, sha256)) => chosen = Some((candidate, sha256.clone())),
                    None => match sha256_file(&candidate.path) {
                        Ok(sha256) => {
                            self.hashed += 1;
                            self.hashes.insert(candidate.path.clone(), (candidate.stamp, sha256.clone()));
                            chosen = Some((candidate, sha256));
                        }
                        Err(source) => self.errors.push(CatalogError::Io { path: candidate.path, source }),
                    },
                }
            }
            let Some((effective, sha256)) = chosen else { continue };
            let metadata = metadata_files
                .remove(&key)
                .and_then(|files| {
                    let exact = files.iter().position(|(name, _)| *name == effective.name).unwrap_or(0);
                    files.into_iter().nth(exact)
                })
                .and_then(|(_, path)| self.read_metadata(&path));
            let plugin = PluginFile {
                kind,
                name: effective.name,
                version: effective.version,
                path: effective.path,
                sha256,
                metadata,
                other_versions,
            };
            self.plugins.insert((kind, key), plugin);
        }
        for (_, files) in metadata_files {
            for (_, path) in files {
                tracing::debug!(path = %path.display(), "metadata file without a plugin; ignored");
            }
        }
    }

    fn read_metadata(&mut self, path: &Path) -> Option<Metadata> {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(source) => {
                self.errors.push(CatalogError::Io { path: path.to_owned(), source });
                return None;
            }
        };
        match serde_json::from_slice(&bytes) {
            Ok(metadata) => Some(metadata),
            Err(err) => {
                self.errors.push(CatalogError::BadMetadata { path: path.to_owned(), reason: err.to_string() });
                None
            }
        }
    }

    /// Fills `exported` from the function plugins, in name order; a name claimed by two plugins stays with the
    /// first and is reported.
    fn index_functions(&mut self) {
        let mut duplicates = Vec::new();
        for ((kind, key), plugin) in &self.plugins {
            if *kind != PluginKind::Function {
                continue;
            }
            let listed = plugin.metadata.as_ref().map(|m| m.functions.as_slice()).unwrap_or_default();
            let names: Vec<&str> = if listed.is_empty() {
                vec![plugin.name.as_str()]
            } else {
                listed.iter().map(|function| function.name.as_str()).collect()
            };
            for function in names {
                let wanted = function.to_lowercase();
                match self.exported.get(&wanted) {
                    Some(owner) if owner != key => duplicates.push(CatalogError::DuplicateFunction {
                        function: function.to_owned(),
                        first: self.plugins[&(PluginKind::Function, owner.clone())].name.clone(),
                        second: plugin.name.clone(),
                    }),
                    Some(_) => {}
                    None => {
                        self.exported.insert(wanted, key.clone());
                    }
                }
            }
        }
        self.errors.extend(duplicates);
    }
}

/// Sorts one kind folder entry into plugin, metadata, skipped, or an error naming the file.
fn classify(dir: &Path, file_name: OsString) -> Result<Entry, CatalogError> {
    let path = dir.join(&file_name);
    let Some(file_name) = file_name.to_str().map(str::to_owned) else {
        let name = file_name.to_string_lossy().into_owned();
        return Err(CatalogError::InvalidName { path, name });
    };
    if file_name.starts_with('.') {
        return Ok(Entry::Skip);
    }
    let meta = match fs::metadata(&path) {
        Ok(meta) => meta,
        Err(source) => return Err(CatalogError::Io { path, source }),
    };
    if meta.is_dir() {
        return Ok(Entry::Skip);
    }
    if let Some(name) = file_name.strip_suffix(".json").filter(|name| is_valid_name(name)) {
        let name = name.to_owned();
        if !meta.is_file() {
            return Err(not_a_regular_file(path));
        }
        return Ok(Entry::Metadata { name, path });
    }
    let (name, version) = match file_name.rsplit_once('@') {
        Some((name, version)) => (name, Some(version)),
        None => (file_name.as_str(), None),
    };
    if !is_valid_name(name) {
        return Err(CatalogError::InvalidName { name: name.to_owned(), path });
    }
    if version.is_some_and(str::is_empty) {
        return Err(CatalogError::EmptyVersion { path });
    }
    if !meta.is_file() {
        return Err(not_a_regular_file(path));
    }
    if !is_executable(&meta) {
        return Err(CatalogError::NotExecutable { path });
    }
    let stamp = FileStamp::of(&meta);
    Ok(Entry::Plugin(Candidate { name: name.to_owned(), version: version.map(Version::parse), path, file_name, stamp }))
}

fn not_a_regular_file(path: PathBuf) -> CatalogError {
    CatalogError::Io { path, source: io::Error::new(io::ErrorKind::InvalidInput, "not a regular file") }
}

#[cfg(unix)]
fn is_executable(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_meta: &fs::Metadata) -> bool {
    true
}

fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Writes `<root>/<kind dir>/<file>` with `contents` and `mode`.
    fn write(root: &Path, kind: PluginKind, file: &str, contents: &str, mode: u32) -> PathBuf {
        let dir = root.join(kind.dir_name());
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(file);
        fs::write(&path, contents).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn plugin(root: &Path, kind: PluginKind, file: &str) -> PathBuf {
        write(root, kind, file, "#!/bin/sh\n", 0o755)
    }

    fn metadata(root: &Path, kind: PluginKind, file: &str, json: &str) -> PathBuf {
        write(root, kind, file, json, 0o644)
    }

    fn messages(catalog: &Catalog) -> Vec<String> {
        catalog.errors().iter().map(ToString::to_string).collect()
    }

    /// The newest of `versions` (as written after `@`) is reported as `expected`.
    fn check(versions: &[&str], expected: &str) {
        let newest = versions.iter().map(|v| Version::parse(v)).max().unwrap();
        assert_eq!(newest.as_str(), expected, "newest of {versions:?}");
        let reversed = versions.iter().rev().map(|v| Version::parse(v)).max().unwrap();
        assert_eq!(reversed, newest, "newest of {versions:?} depends on the input order");
    }

    #[test]
    fn version_order_table() {
        check(&["1.9.0", "1.10.0"], "1.10.0");
        check(&["v1.9.0", "v1.10.0"], "1.10.0");
        check(&["1.0.0-rc.1", "1.0.0"], "1.0.0");
        check(&["20200331", "9"], "20200331");
        check(&["v1.0.0"], "1.0.0");
        check(&["alpha", "beta"], "beta");
        check(&["1.0.0", "zzz"], "1.0.0");
        check(&["1.2.0", "20200331"], "20200331");
        check(&["1.2", "1.1.9"], "1.2");
        check(&["2", "1.99.99"], "2");
        check(&["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-beta.2", "1.0.0-beta.11"], "1.0.0-beta.11");
        check(&["99999999999999999999999", "99999999999999999999998"], "99999999999999999999999");
        check(&["1.2.3.4", "0.0.1"], "0.0.1");
        check(&["vintage", "v"], "vintage");
    }

    #[test]
    fn leading_v_is_dropped_only_before_a_digit() {
        for (written, reported) in
            [("v1.0.0", "1.0.0"), ("V2", "2"), ("20200331", "20200331"), ("vintage", "vintage"), ("v", "v")]
        {
            assert_eq!(Version::parse(written).as_str(), reported);
            assert_eq!(Version::parse(written).to_string(), reported);
        }
        assert_eq!(Version::parse("vv1").as_str(), "vv1");
    }

    #[test]
    fn version_order_is_total() {
        let written = [
            "1.0.0",
            "1.0.0+build",
            "v1.0.0-rc.1",
            "1.0.0-rc.2",
            "1.10.0",
            "1.9",
            "2",
            "01",
            "1",
            "20200331",
            "99999999999999999999999",
            "alpha",
            "beta",
            "vintage",
            "1.2.3.4",
            "zzz",
        ];
        let versions: Vec<Version> = written.iter().map(|v| Version::parse(v)).collect();
        for a in &versions {
            assert_eq!(a.cmp(a), Ordering::Equal);
            for b in &versions {
                assert_eq!(a.cmp(b), b.cmp(a).reverse(), "antisymmetry of {a} and {b}");
                assert_eq!(a.cmp(b) == Ordering::Equal, a == b, "equality of {a} and {b}");
                for c in &versions {
                    if a <= b && b <= c {
                        assert!(a <= c, "transitivity of {a} <= {b} <= {c}");
                    }
                }
            }
        }
        let mut expected = versions.clone();
        expected.sort();
        for rotation in 0..versions.len() {
            for reverse in [false, true] {
                let mut permuted = versions.clone();
                permuted.rotate_left(rotation);
                if reverse {
                    permuted.reverse();
                }
                permuted.sort();
                assert_eq!(permuted, expected);
            }
        }
        let sorted: Vec<&str> = expected.iter().map(Version::as_str).collect();
        assert_eq!(
            sorted,
            [
                "1.2.3.4",
                "alpha",
                "beta",
                "vintage",
                "zzz",
                "1.0.0-rc.1",
                "1.0.0-rc.2",
                "01",
                "1",
                "1.0.0",
                "1.0.0+build",
                "1.9",
                "1.10.0",
                "2",
                "20200331",
                "99999999999999999999999",
            ]
        );
    }

    #[test]
    fn newest_version_takes_effect() {
        let root = tempfile::tempdir().unwrap();
        plugin(root.path(), PluginKind::Source, "random@v1.2.0");
        plugin(root.path(), PluginKind::Source, "random@v1.10.0");
        let catalog = Catalog::scan(root.path());
        assert!(catalog.errors().is_empty(), "{:?}", messages(&catalog));
        let random = catalog.get(PluginKind::Source, "random").unwrap();
        assert_eq!(random.name, "random");
        assert_eq!(random.version.as_ref().unwrap().as_str(), "1.10.0");
        assert!(random.path.ends_with("random@v1.10.0"), "{}", random.path.display());
        assert_eq!(random.other_versions, ["1.2.0"]);
        assert_eq!(catalog.list(PluginKind::Source).len(), 1);
        assert!(catalog.list(PluginKind::Sink).is_empty());
        assert!(catalog.get(PluginKind::Sink, "random").is_none());
    }

    #[test]
    fn first_letter_of_a_name_matches_either_case() {
        let root = tempfile::tempdir().unwrap();
        plugin(root.path(), PluginKind::Source, "MySource@v1.0.0");
        let catalog = Catalog::scan(root.path());
        assert!(catalog.errors().is_empty(), "{:?}", messages(&catalog));
        for lookup in ["mySource", "MySource"] {
            let found = catalog.get(PluginKind::Source, lookup).unwrap();
            assert_eq!(found.name, "MySource");
            assert_eq!(found.version.as_ref().unwrap().as_str(), "1.0.0");
        }
        assert!(catalog.get(PluginKind::Source, "mysource").is_none());

        let root = tempfile::tempdir().unwrap();
        plugin(root.path(), PluginKind::Source, "MySource@20200331");
        let catalog = Catalog::scan(root.path());
        let found = catalog.get(PluginKind::Source, "mySource").unwrap();
        assert_eq!(found.version.as_ref().unwrap().as_str(), "20200331");

        // Two spellings of one plugin are versions of it.
        let root = tempfile::tempdir().unwrap();
        plugin(root.path(), PluginKind::Source, "MySource@v1.0.0");
        plugin(root.path(), PluginKind::Source, "mySource@v2.0.0");
        let catalog = Catalog::scan(root.path());
        assert_eq!(catalog.list(PluginKind::Source).len(), 1);
        let found = catalog.get(PluginKind::Source, "MySource").unwrap();
        assert_eq!(found.name, "mySource");
        assert_eq!(found.version.as_ref().unwrap().as_str(), "2.0.0");
        assert_eq!(found.other_versions, ["1.0.0"]);
    }

    #[test]
    fn bad_files_are_refused_by_name() {
        let root = tempfile::tempdir().unwrap();
        let ok = plugin(root.path(), PluginKind::Sink, "good_one-2@1.0.0");
        let mut bad = Vec::new();
        for file in ["bad name", "foo.so", "a@", "b@@1", "x.sh", "@1"] {
            bad.push(plugin(root.path(), PluginKind::Sink, file));
        }
        let noexec = write(root.path(), PluginKind::Sink, "noexec", "data", 0o644);
        bad.push(noexec.clone());
        plugin(root.path(), PluginKind::Sink, ".hidden");
        fs::create_dir_all(root.path().join("sinks").join("subdir")).unwrap();

        let catalog = Catalog::scan(root.path());
        let errors = messages(&catalog);
        assert_eq!(errors.len(), bad.len(), "{errors:?}");
        for path in &bad {
            let shown = path.display().to_string();
            assert!(errors.iter().any(|e| e.contains(&shown)), "no error names {shown}: {errors:?}");
        }
        let listed: Vec<&str> = catalog.list(PluginKind::Sink).iter().map(|p| p.name.as_str()).collect();
        assert_eq!(listed, ["good_one-2"]);
        assert_eq!(catalog.get(PluginKind::Sink, "good_one-2").unwrap().path, ok);

        let kinds: Vec<_> = catalog
            .errors()
            .iter()
            .map(|e| match e {
                CatalogError::InvalidName { name, .. } => format!("name {name}"),
                CatalogError::EmptyVersion { .. } => "empty".to_owned(),
                CatalogError::NotExecutable { .. } => "noexec".to_owned(),
                other => panic!("unexpected {other}"),
            })
            .collect();
        // Errors come in file name order.
        assert_eq!(kinds, ["name ", "empty", "name b@", "name bad name", "name foo.so", "noexec", "name x.sh"]);
        let noexec_error = catalog.errors().iter().find(|e| matches!(e, CatalogError::NotExecutable { .. })).unwrap();
        assert_eq!(noexec_error.to_string(), format!("plugin file {} is not executable", noexec.display()));
    }

    #[test]
    fn missing_folders_are_empty() {
        let root = tempfile::tempdir().unwrap();
        let catalog = Catalog::scan(&root.path().join("does-not-exist"));
        assert!(catalog.errors().is_empty());
        for kind in PluginKind::ALL {
            assert!(catalog.list(kind).is_empty());
        }
        // A kind "folder" that is a file cannot be read.
        fs::write(root.path().join("sources"), "").unwrap();
        let catalog = Catalog::scan(root.path());
        assert!(matches!(catalog.errors(), [CatalogError::ReadDir { .. }]), "{:?}", messages(&catalog));
    }

    #[test]
    fn unversioned_and_versioned_files_coexist() {
        let root = tempfile::tempdir().unwrap();
        plugin(root.path(), PluginKind::Sink, "file");
        plugin(root.path(), PluginKind::Sink, "file@0.0.1");
        plugin(root.path(), PluginKind::Sink, "other");
        let catalog = Catalog::scan(root.path());
        assert!(catalog.errors().is_empty(), "{:?}", messages(&catalog));
        let file = catalog.get(PluginKind::Sink, "file").unwrap();
        assert_eq!(file.version.as_ref().unwrap().as_str(), "0.0.1");
        assert!(file.path.ends_with("file@0.0.1"));
        assert_eq!(file.other_versions, [""]);
        let other = catalog.get(PluginKind::Sink, "other").unwrap();
        assert!(other.version.is_none());
        assert!(other.other_versions.is_empty());
        let names: Vec<&str> = catalog.list(PluginKind::Sink).iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["file", "other"]);
    }

    #[test]
    fn sha256_and_json_shape() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), PluginKind::Source, "hello@v1.0.0", "hello", 0o700);
        write(root.path(), PluginKind::Sink, "plain", "", 0o555);
        let catalog = Catalog::scan(root.path());
        let hello = catalog.get(PluginKind::Source, "hello").unwrap();
        assert_eq!(hello.sha256, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        let json = serde_json::to_value(hello).unwrap();
        assert_eq!(json["kind"], "source");
        assert_eq!(json["version"], "1.0.0");
        assert_eq!(json["metadata"], serde_json::Value::Null);
        let plain = serde_json::to_value(catalog.get(PluginKind::Sink, "plain").unwrap()).unwrap();
        assert_eq!(plain["version"], serde_json::Value::Null);
        assert_eq!(plain["sha256"], "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn a_rescan_hashes_only_changed_files() {
        let root = tempfile::tempdir().unwrap();
        let a = write(root.path(), PluginKind::Source, "a@v1.0.0", "one", 0o700);
        write(root.path(), PluginKind::Sink, "b", "two", 0o700);
        let first = Catalog::scan(root.path());
        assert_eq!(first.files_hashed(), 2);
        let second = Catalog::rescan(root.path(), &first);
        assert_eq!(second.files_hashed(), 0, "nothing changed, nothing is read");
        assert_eq!(
            second.get(PluginKind::Source, "a").unwrap().sha256,
            first.get(PluginKind::Source, "a").unwrap().sha256
        );
        // Same size, same mtime: the ctime still tells.
        let mtime = fs::metadata(&a).unwrap().modified().unwrap();
        fs::write(&a, "ONE").unwrap();
        fs::File::options().write(true).open(&a).unwrap().set_modified(mtime).unwrap();
        let third = Catalog::rescan(root.path(), &second);
        assert_eq!(third.files_hashed(), 1);
        assert_ne!(
            third.get(PluginKind::Source, "a").unwrap().sha256,
            second.get(PluginKind::Source, "a").unwrap().sha256
        );
        // A new version is hashed; the shadowed file's hash is forgotten.
        write(root.path(), PluginKind::Source, "a@v2.0.0", "newer", 0o700);
        let fourth = Catalog::rescan(root.path(), &third);
        assert_eq!(fourth.files_hashed(), 1);
        assert_eq!(fourth.hashes.len(), 2);
    }

    #[test]
    fn metadata_is_attached_and_bad_metadata_reported() {
        let root = tempfile::tempdir().unwrap();
        plugin(root.path(), PluginKind::Source, "random@v1.0.0");
        metadata(
            root.path(),
            PluginKind::Source,
            "random.json",
            r#"{"about": {"trial": true}, "libs": [], "unknown": 1,
                "properties": {"default": [{"name": "interval", "default": 1000}]}}"#,
        );
        plugin(root.path(), PluginKind::Sink, "MySink");
        metadata(root.path(), PluginKind::Sink, "mySink.json", r#"{"properties": [{"name": "path"}], "libs": null}"#);
        plugin(root.path(), PluginKind::Sink, "broken");
        let broken_json = metadata(root.path(), PluginKind::Sink, "broken.json", "{not json");
        metadata(root.path(), PluginKind::Sink, "orphan.json", "{}");

        let catalog = Catalog::scan(root.path());
        let random = catalog.get(PluginKind::Source, "random").unwrap().metadata.as_ref().unwrap();
        assert_eq!(random.about.as_ref().unwrap()["trial"], true);
        assert_eq!(random.properties.len(), 1);
        assert_eq!(random.properties[0]["name"], "interval");
        let sink = catalog.get(PluginKind::Sink, "mySink").unwrap().metadata.as_ref().unwrap();
        assert_eq!(sink.properties[0]["name"], "path");
        assert!(sink.libs.is_empty());

        let broken = catalog.get(PluginKind::Sink, "broken").unwrap();
        assert!(broken.metadata.is_none());
        match catalog.errors() {
            [CatalogError::BadMetadata { path, .. }] => assert_eq!(path, &broken_json),
            _ => panic!("{:?}", messages(&catalog)),
        }
        assert!(messages(&catalog)[0].contains(&broken_json.display().to_string()));
    }

    #[test]
    fn function_owner_uses_metadata_and_plugin_names() {
        let root = tempfile::tempdir().unwrap();
        plugin(root.path(), PluginKind::Function, "geohash@1.0.0");
        metadata(
            root.path(),
            PluginKind::Function,
            "geohash.json",
            r#"{"functions": [{"name": "geohashEncode", "example": "geohashEncode(la, lo)", "hint": {"en_US": "x"}},
                              {"name": "geohashDecode"}]}"#,
        );
        plugin(root.path(), PluginKind::Function, "echo");
        plugin(root.path(), PluginKind::Source, "notAFunction");
        let catalog = Catalog::scan(root.path());
        assert!(catalog.errors().is_empty(), "{:?}", messages(&catalog));

        let functions = &catalog.get(PluginKind::Function, "geohash").unwrap().metadata.as_ref().unwrap().functions;
        assert_eq!(functions[0].example.as_deref(), Some("geohashEncode(la, lo)"));
        assert!(functions[1].example.is_none() && functions[1].hint.is_none());

        for function in ["geohashEncode", "GEOHASHENCODE", "geohashdecode"] {
            assert_eq!(catalog.function_owner(function).unwrap().name, "geohash", "{function}");
        }
        assert_eq!(catalog.function_owner("Echo").unwrap().name, "echo");
        // A plugin with a functions list exports exactly that list.
        assert!(catalog.function_owner("geohash").is_none());
        assert!(catalog.function_owner("notAFunction").is_none());
        assert!(catalog.function_owner("nope").is_none());
    }

    #[test]
    fn duplicate_function_across_plugins_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        plugin(root.path(), PluginKind::Function, "alpha");
        metadata(
            root.path(),
            PluginKind::Function,
            "alpha.json",
            r#"{"functions": [{"name": "same"}, {"name": "a"}]}"#,
        );
        plugin(root.path(), PluginKind::Function, "beta");
        metadata(root.path(), PluginKind::Function, "beta.json", r#"{"functions": [{"name": "SAME"}, {"name": "b"}]}"#);
        let catalog = Catalog::scan(root.path());
        match catalog.errors() {
            [CatalogError::DuplicateFunction { function, first, second }] => {
                assert_eq!((function.as_str(), first.as_str(), second.as_str()), ("SAME", "alpha", "beta"));
            }
            _ => panic!("{:?}", messages(&catalog)),
        }
        let message = messages(&catalog).remove(0);
        assert!(message.contains("alpha") && message.contains("beta"), "{message}");
        // The first plugin by name keeps the function; both plugins stay listed.
        assert_eq!(catalog.function_owner("same").unwrap().name, "alpha");
        assert_eq!(catalog.function_owner("b").unwrap().name, "beta");
        assert_eq!(catalog.list(PluginKind::Function).len(), 2);
    }

    #[test]
    fn registered_functions_are_owned_and_not_shared() {
        let root = tempfile::tempdir().unwrap();
        plugin(root.path(), PluginKind::Function, "echo");
        plugin(root.path(), PluginKind::Function, "Math");
        let mut catalog = Catalog::scan(root.path());
        assert!(catalog.errors().is_empty(), "{:?}", messages(&catalog));

        catalog.register_functions("math", &["plusOne".to_owned(), "timesTwo".to_owned()]).unwrap();
        assert_eq!(catalog.function_owner("PLUSONE").unwrap().name, "Math");
        assert_eq!(catalog.function_owner("timestwo").unwrap().name, "Math");

        // Another plugin cannot claim a function already exported, whether found by the scan or registered.
        let err = catalog.register_functions("echo", &["shout".to_owned(), "PlusOne".to_owned()]).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("Math") && message.contains("echo"), "{message}");
        assert!(catalog.function_owner("shout").is_none(), "a refused registration records nothing");
        let err = catalog.register_functions("Math", &["echo".to_owned()]).unwrap_err();
        assert!(matches!(err, CatalogError::DuplicateFunction { ref first, .. } if first == "echo"), "{err}");

        // Registering again replaces the plugin's earlier declaration.
        catalog.register_functions("Math", &["plusOne".to_owned()]).unwrap();
        assert!(catalog.function_owner("timesTwo").is_none());
        catalog.register_functions("echo", &["echo".to_owned(), "timesTwo".to_owned()]).unwrap();
        assert_eq!(catalog.function_owner("timesTwo").unwrap().name, "echo");
    }

    #[test]
    fn kind_names() {
        for kind in PluginKind::ALL {
            assert_eq!(PluginKind::from_dir_name(kind.dir_name()), Some(kind));
            assert_eq!(PluginKind::parse(kind.as_str()), Some(kind));
            assert_eq!(PluginKind::parse(kind.dir_name()), Some(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        assert_eq!(PluginKind::from_dir_name("source"), None);
        assert_eq!(PluginKind::parse("plugins"), None);
        assert_eq!(PluginKind::Function.dir_name(), "functions");
    }
}
