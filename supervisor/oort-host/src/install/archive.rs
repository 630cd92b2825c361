//! Reading an archive (zip or gzip-compressed tar): every entry checked before anything is written.

use std::io::{self, Cursor, Read};

use super::temp::TempFile;
use super::{InstallError, MAX_EXECUTABLE_BYTES, MAX_METADATA_BYTES};
use crate::catalog::Metadata;
use oort_core::names::fold;

#[derive(Clone, Copy)]
pub(super) enum Format {
    Zip,
    TarGz,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum EntryType {
    File,
    Dir,
    Symlink,
    HardLink,
    Other,
}

/// One archive entry as seen by [`Archive::each_entry`].
pub(super) struct EntryInfo {
    /// Position in the archive, stable between passes.
    pub(super) index: usize,
    /// The path as stored (lossily decoded when not UTF-8).
    pub(super) name: String,
    pub(super) ty: EntryType,
    /// False when the archive library itself finds the path unsafe (zip's `enclosed_name`).
    pub(super) enclosed: bool,
    /// The size the archive declares for the entry's data.
    pub(super) size: u64,
}

pub(super) enum Flow {
    Continue,
    Stop,
}

/// What pass 1 decided to install.
pub(super) struct Plan {
    pub(super) exe_index: usize,
    pub(super) exe_entry: String,
    pub(super) version: Option<String>,
    pub(super) metadata: Option<Vec<u8>>,
}

/// What a root entry's name means for plugin `name`.
pub(super) enum RootRole {
    Executable(Option<String>),
    Metadata,
    Ignored,
}

pub(super) struct Archive<'a> {
    file: &'a str,
    bytes: &'a [u8],
    format: Format,
}

impl<'a> Archive<'a> {
    pub(super) fn new(file: &'a str, bytes: &'a [u8]) -> Result<Archive<'a>, InstallError> {
        let format = if bytes.starts_with(b"PK\x03\x04") {
            Format::Zip
        } else if bytes.starts_with(&[0x1f, 0x8b]) {
            Format::TarGz
        } else {
            return Err(InstallError::NotAnArchive { file: file.to_owned() });
        };
        Ok(Archive { file, bytes, format })
    }

    /// The archive's name, as the request gave it.
    pub(super) fn file(&self) -> &str {
        self.file
    }

    pub(super) fn corrupt(&self, reason: impl std::fmt::Display) -> InstallError {
        InstallError::BadArchive { file: self.file.to_owned(), reason: reason.to_string() }
    }

    pub(super) fn unsafe_entry(&self, entry: &str, reason: &'static str) -> InstallError {
        InstallError::UnsafeEntry { file: self.file.to_owned(), entry: entry.to_owned(), reason }
    }

    /// Calls `visit` on every entry in archive order, with a reader of its data, until it returns [`Flow::Stop`].
    pub(super) fn each_entry(
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
                    let info =
                        EntryInfo { index, name, ty, enclosed: entry.enclosed_name().is_some(), size: entry.size() };
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
                    let size = entry.header().size().unwrap_or(0);
                    let info = EntryInfo { index, name, ty, enclosed: true, size };
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
    pub(super) fn plan(&self, name: &str) -> Result<Plan, InstallError> {
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
    pub(super) fn root_role(&self, name: &str, root: &str, entry: &str) -> Result<RootRole, InstallError> {
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

    pub(super) fn read_capped(&self, data: &mut dyn Read, entry: &str, limit: u64) -> Result<Vec<u8>, InstallError> {
        let mut bytes = Vec::new();
        data.take(limit + 1).read_to_end(&mut bytes).map_err(|err| self.corrupt(format!("entry {entry:?}: {err}")))?;
        if bytes.len() as u64 > limit {
            return Err(InstallError::EntryTooLarge { file: self.file.to_owned(), entry: entry.to_owned(), limit });
        }
        Ok(bytes)
    }

    /// Pass 2: streams the planned executable into `out`, at most [`MAX_EXECUTABLE_BYTES`].
    pub(super) fn extract(&self, plan: &Plan, out: &mut TempFile) -> Result<(), InstallError> {
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
pub(super) fn entry_components(raw: &str) -> Result<Vec<&str>, &'static str> {
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
