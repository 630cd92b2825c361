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
//!   [`PluginFile::other_versions`] and kept in [`Catalog::versions`], so that a rule may pin one
//!   ([`Catalog::resolve`]).

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

pub use oort_core::names::is_valid_name;
use oort_core::names::{fold, hex};

mod metadata;
mod portable;
#[cfg(test)]
mod tests;
mod version;

pub use metadata::{FunctionMeta, Metadata};
pub use portable::{PortableManifest, PortableOrigin};

/// The folder of portable packages under the plugins folder.
pub const PORTABLES_DIR: &str = "portables";
pub use version::{PluginKind, Version};

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
    /// The portable package providing this plugin, when one does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub portable: Option<PortableOrigin>,
}

impl PluginFile {
    /// Whether a SemVer requirement (a rule's pin) accepts this file's
    /// version; a version that is not SemVer, or none, is never accepted.
    pub fn accepted_by(&self, wanted: &semver::VersionReq) -> bool {
        self.version.as_ref().and_then(Version::semver).is_some_and(|v| wanted.matches(&v))
    }

    /// The version as reported (leading `v` dropped); empty for a file
    /// without one.
    pub fn version_label(&self) -> String {
        self.version.as_ref().map(|v| v.as_str().to_string()).unwrap_or_default()
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
    #[error("portable package {package}: {reason}")]
    BadPortable { package: String, path: PathBuf, reason: String },
    #[error("portable package {package}: its {} {name:?} is already provided by {existing}; the package's is ignored", .kind.as_str())]
    PortableConflict { package: String, kind: PluginKind, name: String, existing: PathBuf },
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
    /// The portable packages found, by name, with their folders.
    packages: BTreeMap<String, (PortableManifest, PathBuf)>,
    /// Every installed version of each plugin, newest first, by kind and folded name (the effective one included).
    versions: BTreeMap<(PluginKind, String), Vec<PluginFile>>,
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
        // After the kind folders: a plain plugin file wins over a package's part of the same name.
        catalog.scan_portables(&plugins_dir.join(PORTABLES_DIR));
        catalog.index_functions();
        // Forget the hashes of files that are gone; every installed version keeps its own (a rule may run it).
        let effective: std::collections::HashSet<&Path> =
            catalog.plugins.values().chain(catalog.versions.values().flatten()).map(|p| p.path.as_path()).collect();
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

    /// Every installed version of a plugin, newest first; the first is [`Catalog::get`]'s.
    pub fn versions(&self, kind: PluginKind, name: &str) -> &[PluginFile] {
        let key = (kind, fold(name));
        match self.versions.get(&key) {
            Some(versions) => versions,
            None => self.plugins.get(&key).map(std::slice::from_ref).unwrap_or_default(),
        }
    }

    /// The newest installed version of a plugin that `wanted` accepts (a SemVer requirement: `1.9` is `^1.9`);
    /// a file whose version is not SemVer (`@alpha`, or none) never matches.
    pub fn resolve(&self, kind: PluginKind, name: &str, wanted: &semver::VersionReq) -> Option<&PluginFile> {
        self.versions(kind, name).iter().find(|file| file.accepted_by(wanted))
    }

    /// The portable packages, sorted by name, with their manifests and folders.
    pub fn portables(&self) -> impl Iterator<Item = (&str, &PortableManifest, &Path)> {
        self.packages.iter().map(|(name, (manifest, dir))| (name.as_str(), manifest, dir.as_path()))
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

    /// Every SQL function name a plugin exports (from metadata, or declared by a running process), lowercased and
    /// sorted, with the name of the function plugin exporting it.
    pub fn functions(&self) -> Vec<(String, String)> {
        let scanned = self.exported.iter().map(|(f, owner)| (f.clone(), owner));
        let declared = self.registered.iter().flat_map(|(owner, fs)| fs.iter().map(move |f| (f.clone(), owner)));
        let by_name: BTreeMap<String, String> = scanned
            .chain(declared)
            .filter_map(|(f, owner)| {
                let plugin = self.plugins.get(&(PluginKind::Function, owner.clone()))?;
                Some((f, plugin.name.clone()))
            })
            .collect();
        by_name.into_iter().collect()
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

    /// The folder's entries; `None` when it is missing (nothing to scan) or
    /// unreadable (reported).
    fn read_folder(&mut self, dir: &Path) -> Option<fs::ReadDir> {
        match fs::read_dir(dir) {
            Ok(read) => Some(read),
            Err(err) if err.kind() == io::ErrorKind::NotFound => None,
            Err(source) => {
                self.errors.push(CatalogError::ReadDir { path: dir.to_owned(), source });
                None
            }
        }
    }

    fn scan_kind(&mut self, kind: PluginKind, dir: &Path) {
        let Some(read) = self.read_folder(dir) else { return };
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
            // Every version is hashed (once per change of its file, see `hashes`): any of them may run, when
            // a rule pins it.
            let mut readable: Vec<(Candidate, String)> = Vec::new();
            for candidate in versions {
                match self.hashes.get(&candidate.path).filter(|(stamp, _)| *stamp == candidate.stamp) {
                    Some((_, sha256)) => {
                        let sha256 = sha256.clone();
                        readable.push((candidate, sha256));
                    }
                    None => match sha256_file(&candidate.path) {
                        Ok(sha256) => {
                            self.hashed += 1;
                            self.hashes.insert(candidate.path.clone(), (candidate.stamp, sha256.clone()));
                            readable.push((candidate, sha256));
                        }
                        Err(source) => self.errors.push(CatalogError::Io { path: candidate.path, source }),
                    },
                }
            }
            let other_versions: Vec<String> = readable
                .iter()
                .skip(1)
                .map(|(candidate, _)| candidate.version.as_ref().map(|v| v.raw.clone()).unwrap_or_default())
                .collect();
            let Some((effective_name, _)) = readable.first().map(|(c, sha)| (c.name.clone(), sha.clone())) else {
                continue;
            };
            let metadata = metadata_files
                .remove(&key)
                .and_then(|files| {
                    let exact = files.iter().position(|(name, _)| *name == effective_name).unwrap_or(0);
                    files.into_iter().nth(exact)
                })
                .and_then(|(_, path)| self.read_metadata(&path));
            let files: Vec<PluginFile> = readable
                .into_iter()
                .enumerate()
                .map(|(i, (candidate, sha256))| PluginFile {
                    kind,
                    name: candidate.name,
                    version: candidate.version,
                    path: candidate.path,
                    sha256,
                    // One metadata file per plugin name, for all its versions.
                    metadata: metadata.clone(),
                    other_versions: if i == 0 { other_versions.clone() } else { Vec::new() },
                    portable: None,
                })
                .collect();
            self.plugins.insert((kind, key.clone()), files[0].clone());
            self.versions.insert((kind, key), files);
        }
        for (_, files) in metadata_files {
            for (_, path) in files {
                tracing::debug!(path = %path.display(), "metadata file without a plugin; ignored");
            }
        }
    }

    /// Every package folder under `portables/`, each part as a plugin of its kind.
    fn scan_portables(&mut self, dir: &Path) {
        let Some(read) = self.read_folder(dir) else { return };
        let mut names: Vec<String> = read
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|name| !name.starts_with('.'))
            .collect();
        names.sort();
        for package in names {
            let path = dir.join(&package);
            if let Err(reason) = self.scan_package(&package, &path) {
                self.errors.push(CatalogError::BadPortable { package, path, reason });
            }
        }
    }

    fn scan_package(&mut self, package: &str, dir: &Path) -> Result<(), String> {
        if !is_valid_name(package) {
            return Err("invalid package name: names must match ^[A-Za-z0-9_-]+$".into());
        }
        let manifest_path = dir.join(format!("{package}.json"));
        let bytes = fs::read(&manifest_path).map_err(|e| format!("cannot read {}: {e}", manifest_path.display()))?;
        let manifest =
            PortableManifest::parse(&bytes).map_err(|e| format!("{} is not valid: {e}", manifest_path.display()))?;
        let exe = dir.join(&manifest.executable);
        let meta = fs::metadata(&exe).map_err(|e| format!("executable {}: {e}", exe.display()))?;
        if !meta.is_file() {
            return Err(format!("executable {} is not a regular file", exe.display()));
        }
        // A script is run by its interpreter; anything else must be executable itself.
        if !manifest.is_python() && !is_executable(&meta) {
            return Err(format!("executable {} is not executable", exe.display()));
        }
        let stamp = FileStamp::of(&meta);
        let sha256 = match self.hashes.get(&exe).filter(|(s, _)| *s == stamp) {
            Some((_, sha)) => sha.clone(),
            None => {
                let sha = sha256_file(&exe).map_err(|e| format!("cannot read {}: {e}", exe.display()))?;
                self.hashed += 1;
                self.hashes.insert(exe.clone(), (stamp, sha.clone()));
                sha
            }
        };
        let origin =
            PortableOrigin { package: package.to_owned(), language: manifest.language.clone(), dir: dir.to_owned() };
        self.packages.insert(package.to_owned(), (manifest.clone(), dir.to_owned()));
        let version = Some(manifest.version.as_str()).filter(|v| !v.is_empty()).map(Version::parse);
        let mut parts: Vec<(PluginKind, String, Option<Metadata>)> = Vec::new();
        for (kind, names) in [(PluginKind::Source, &manifest.sources), (PluginKind::Sink, &manifest.sinks)] {
            for name in names {
                parts.push((kind, name.clone(), self.package_metadata(dir, kind, name)));
            }
        }
        if !manifest.functions.is_empty() {
            // The manifest's list is what the package exports; the metadata file adds about, examples and hints.
            let mut metadata = self.package_metadata(dir, PluginKind::Function, package).unwrap_or_default();
            let described = std::mem::take(&mut metadata.functions);
            metadata.functions = manifest
                .functions
                .iter()
                .map(|f| {
                    described
                        .iter()
                        .find(|d| d.name.eq_ignore_ascii_case(f))
                        .cloned()
                        .unwrap_or_else(|| FunctionMeta { name: f.clone(), ..FunctionMeta::default() })
                })
                .collect();
            parts.push((PluginKind::Function, package.to_owned(), Some(metadata)));
        }
        for (kind, name, metadata) in parts {
            let key = (kind, fold(&name));
            if let Some(existing) = self.plugins.get(&key) {
                self.errors.push(CatalogError::PortableConflict {
                    package: package.to_owned(),
                    kind,
                    name,
                    existing: existing.path.clone(),
                });
                continue;
            }
            let plugin = PluginFile {
                kind,
                name,
                version: version.clone(),
                path: exe.clone(),
                sha256: sha256.clone(),
                metadata,
                other_versions: Vec::new(),
                portable: Some(origin.clone()),
            };
            self.plugins.insert(key, plugin);
        }
        Ok(())
    }

    /// A part's optional metadata file inside its package (`sources/<name>.json`, …).
    fn package_metadata(&mut self, dir: &Path, kind: PluginKind, name: &str) -> Option<Metadata> {
        let path = dir.join(kind.dir_name()).join(format!("{name}.json"));
        path.is_file().then(|| self.read_metadata(&path)).flatten()
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
