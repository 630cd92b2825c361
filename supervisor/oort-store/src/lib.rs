//! The daemon's embedded RocksDB: stream and rule definitions and rule
//! checkpoints, and the private format those checkpoints are stored in
//! ([`checkpoint`], protobuf `oort.store.v1` in this crate's `proto/`).
//!
//! In cluster mode, [`CheckpointStore`] keeps a copy of every checkpoint
//! where other nodes can restore it (a shared folder or S3).
//!
//! Architecture invariant: this is the only crate that depends on `rocksdb`
//! or `object_store`.
//! Everything else sees a small typed key-value API whose keys carry a layout
//! version (`v1/…`), so a later layout can live beside this one.

#![forbid(unsafe_code)]

pub mod checkpoint;
mod remote;

pub use remote::CheckpointStore;

/// The generated `oort.store.v1` messages: a storage format, not part of the
/// plugin contract.
#[allow(clippy::all, missing_docs)]
mod pb {
    include!(concat!(env!("OUT_DIR"), "/oort.store.v1.rs"));
}

use std::path::{Path, PathBuf};

/// What a key belongs to; each namespace is a key prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespace {
    /// Stream definitions, by stream name.
    Streams,
    /// Rule definitions and their desired run state, by rule id.
    Rules,
    /// Plugin versions rolled back, by `<kind dir>/<name>@<version>`.
    HeldVersions,
    /// Plugin versions that refused a rule's state, by
    /// `<rule>/<kind dir>/<name>@<version>`: the rule never starts on them.
    RefusedVersions,
}

/// How many checkpoints of a rule are kept, as in eKuiper.
pub const CHECKPOINTS_KEPT: usize = 3;

impl Namespace {
    fn prefix(self) -> &'static str {
        match self {
            Namespace::Streams => "v1/streams/",
            Namespace::Rules => "v1/rules/",
            Namespace::HeldVersions => "v1/held/",
            Namespace::RefusedVersions => "v1/refused/",
        }
    }
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the RocksDB store at {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("RocksDB {op} of key {key:?} failed: {reason}")]
    Io { op: &'static str, key: String, reason: String },
    #[error("checkpoint store: {op} of {key:?} failed: {reason}")]
    Remote { op: &'static str, key: String, reason: String },
    #[error("cannot make the data folder {path} private (mode 700): {source}")]
    Private { path: PathBuf, source: std::io::Error },
}

/// Creates `dir` and its missing parents with mode 0700, or closes an existing
/// `dir` to other users: the data folder holds rule definitions, sink
/// properties (which may carry credentials) and checkpointed state. Files
/// inside are created by RocksDB with the process umask (often 0644); the
/// folder's mode is what keeps them private, so plugins, which inherit the
/// daemon's umask, keep creating their own files as the user expects.
pub fn make_private_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let private = |source| StoreError::Private { path: dir.to_path_buf(), source };
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(private)?;
    let mode = std::fs::metadata(dir).map_err(private)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o700)).map_err(private)?;
        tracing::warn!(
            "data folder {} had mode {mode:o}, open to other users; changed it to {:o}",
            dir.display(),
            mode & 0o700
        );
    }
    Ok(())
}

/// The daemon's store. Writes go through the write-ahead log.
pub struct Store {
    db: rocksdb::DB,
}

impl Store {
    /// Opens (creating if needed) the store in `dir`, a folder closed to other users.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        make_private_dir(dir).map_err(|e| StoreError::Open { path: dir.to_path_buf(), reason: e.to_string() })?;
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        // A supervisor's store is small: keep RocksDB's memory modest.
        opts.set_write_buffer_size(8 << 20);
        opts.set_max_write_buffer_number(2);
        opts.set_keep_log_file_num(3);
        let db = rocksdb::DB::open(&opts, dir)
            .map_err(|e| StoreError::Open { path: dir.to_path_buf(), reason: e.into_string() })?;
        Ok(Store { db })
    }

    fn key(ns: Namespace, name: &str) -> String {
        format!("{}{name}", ns.prefix())
    }

    /// Stores `value` under `name`, durably (the write is synced).
    pub fn put(&self, ns: Namespace, name: &str, value: &[u8]) -> Result<(), StoreError> {
        let key = Self::key(ns, name);
        let mut w = rocksdb::WriteOptions::default();
        w.set_sync(true);
        self.db.put_opt(key.as_bytes(), value, &w).map_err(|e| StoreError::Io {
            op: "put",
            key,
            reason: e.into_string(),
        })
    }

    /// The value under `name`, if any.
    pub fn get(&self, ns: Namespace, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = Self::key(ns, name);
        self.db.get(key.as_bytes()).map_err(|e| StoreError::Io { op: "get", key, reason: e.into_string() })
    }

    /// Removes `name`; removing an absent name is not an error.
    pub fn delete(&self, ns: Namespace, name: &str) -> Result<(), StoreError> {
        let key = Self::key(ns, name);
        let mut w = rocksdb::WriteOptions::default();
        w.set_sync(true);
        self.db.delete_opt(key.as_bytes(), &w).map_err(|e| StoreError::Io {
            op: "delete",
            key,
            reason: e.into_string(),
        })
    }

    /// Every `(name, value)` of a namespace, in name order.
    pub fn list(&self, ns: Namespace) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let prefix = ns.prefix();
        let mut out = Vec::new();
        for item in self.db.prefix_iterator(prefix.as_bytes()) {
            let (k, v) =
                item.map_err(|e| StoreError::Io { op: "scan", key: prefix.to_string(), reason: e.into_string() })?;
            let Some(name) = k.strip_prefix(prefix.as_bytes()) else { break };
            out.push((String::from_utf8_lossy(name).into_owned(), v.to_vec()));
        }
        Ok(out)
    }
}

impl Store {
    fn checkpoint_prefix(rule: &str) -> String {
        format!("v1/checkpoints/{rule}/")
    }

    /// Writes checkpoint `id` of `rule` and prunes all but the newest
    /// [`CHECKPOINTS_KEPT`], in one synced write batch: a crash leaves either
    /// the old set or the new one.
    pub fn write_checkpoint(&self, rule: &str, id: u64, bytes: &[u8]) -> Result<(), StoreError> {
        let prefix = Self::checkpoint_prefix(rule);
        let existing = self.checkpoint_ids(rule)?;
        let mut batch = rocksdb::WriteBatch::default();
        batch.put(format!("{prefix}{id:020}").as_bytes(), bytes);
        let mut all: Vec<u64> = existing.into_iter().filter(|e| *e != id).collect();
        all.push(id);
        all.sort_unstable();
        let excess = all.len().saturating_sub(CHECKPOINTS_KEPT);
        for old in &all[..excess] {
            batch.delete(format!("{prefix}{old:020}").as_bytes());
        }
        let mut w = rocksdb::WriteOptions::default();
        w.set_sync(true);
        self.db.write_opt(batch, &w).map_err(|e| StoreError::Io {
            op: "write checkpoint",
            key: format!("{prefix}{id:020}"),
            reason: e.into_string(),
        })
    }

    /// The ids of a rule's stored checkpoints, oldest first.
    pub fn checkpoint_ids(&self, rule: &str) -> Result<Vec<u64>, StoreError> {
        let prefix = Self::checkpoint_prefix(rule);
        let mut ids = Vec::new();
        for item in self.db.prefix_iterator(prefix.as_bytes()) {
            let (k, _) =
                item.map_err(|e| StoreError::Io { op: "scan", key: prefix.clone(), reason: e.into_string() })?;
            let Some(id) = k.strip_prefix(prefix.as_bytes()) else { break };
            if let Some(id) = std::str::from_utf8(id).ok().and_then(|s| s.parse().ok()) {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// The newest checkpoint of a rule, if any: its id and bytes.
    pub fn latest_checkpoint(&self, rule: &str) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let Some(id) = self.checkpoint_ids(rule)?.pop() else { return Ok(None) };
        let key = format!("{}{id:020}", Self::checkpoint_prefix(rule));
        let bytes = self.db.get(key.as_bytes()).map_err(|e| StoreError::Io {
            op: "get",
            key: key.clone(),
            reason: e.into_string(),
        })?;
        Ok(bytes.map(|b| (id, b)))
    }

    /// Deletes every checkpoint of a rule.
    pub fn delete_checkpoints(&self, rule: &str) -> Result<(), StoreError> {
        let prefix = Self::checkpoint_prefix(rule);
        let mut batch = rocksdb::WriteBatch::default();
        for id in self.checkpoint_ids(rule)? {
            batch.delete(format!("{prefix}{id:020}").as_bytes());
        }
        let mut w = rocksdb::WriteOptions::default();
        w.set_sync(true);
        self.db.write_opt(batch, &w).map_err(|e| StoreError::Io {
            op: "delete checkpoints",
            key: prefix,
            reason: e.into_string(),
        })
    }

    /// Stores bytes as checkpoint `id` as they are, without pruning: for
    /// repair tools, and for tests of how a corrupt checkpoint is reported.
    pub fn put_checkpoint_raw(&self, rule: &str, id: u64, bytes: &[u8]) -> Result<(), StoreError> {
        let key = format!("{}{id:020}", Self::checkpoint_prefix(rule));
        self.db.put(key.as_bytes(), bytes).map_err(|e| StoreError::Io { op: "put", key, reason: e.into_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_separate_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            s.put(Namespace::Streams, "demo", b"s1").unwrap();
            s.put(Namespace::Streams, "demo2", b"s2").unwrap();
            s.put(Namespace::Rules, "demo", b"r1").unwrap();
            s.delete(Namespace::Streams, "demo2").unwrap();
            s.delete(Namespace::Streams, "never").unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.get(Namespace::Streams, "demo").unwrap(), Some(b"s1".to_vec()));
        assert_eq!(s.get(Namespace::Rules, "demo").unwrap(), Some(b"r1".to_vec()));
        assert_eq!(s.list(Namespace::Streams).unwrap(), vec![("demo".to_string(), b"s1".to_vec())]);
        assert_eq!(s.list(Namespace::Rules).unwrap().len(), 1);
    }

    #[test]
    fn checkpoints_keep_the_newest_three_per_rule_and_delete_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        for id in 1..=5u64 {
            s.write_checkpoint("r", id, format!("c{id}").as_bytes()).unwrap();
        }
        s.write_checkpoint("r2", 9, b"other").unwrap();
        assert_eq!(s.checkpoint_ids("r").unwrap(), vec![3, 4, 5]);
        assert_eq!(s.latest_checkpoint("r").unwrap(), Some((5, b"c5".to_vec())));
        // Ids sort numerically, not as text.
        s.write_checkpoint("r", 10, b"c10").unwrap();
        assert_eq!(s.checkpoint_ids("r").unwrap(), vec![4, 5, 10]);
        s.delete_checkpoints("r").unwrap();
        assert_eq!(s.latest_checkpoint("r").unwrap(), None);
        assert_eq!(s.checkpoint_ids("r2").unwrap(), vec![9], "another rule's checkpoints are untouched");
        assert_eq!(s.latest_checkpoint("nope").unwrap(), None);
    }

    #[test]
    fn an_unopenable_store_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let err = Store::open(&file).err().unwrap().to_string();
        assert!(err.contains("cannot open the RocksDB store at"), "{err}");
    }

    #[test]
    fn a_second_opener_is_refused_while_the_first_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path()).unwrap();
        let err = Store::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("lock"), "{err}");
    }
}
