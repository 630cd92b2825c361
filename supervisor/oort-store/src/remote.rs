//! The checkpoint store of cluster mode: where a node puts every completed
//! checkpoint so that another node can restore the rule after a failover,
//! through the `object_store` crate: `--checkpoint-store file:///shared/dir`
//! (a folder every node mounts) or `s3://bucket/prefix` (S3 or an
//! S3-compatible server; credentials, region and endpoint from the usual
//! `AWS_*` environment variables, see [`CheckpointStore::open`]). RocksDB
//! stays each node's local store; this is a copy other nodes can read.
//!
//! Objects are named `<rule>/<checkpoint id>-<node>-<fencing token>`: two
//! nodes that both believed they owned a rule (a paused node and the node
//! that took over) never overwrite each other's object, so the pointer in
//! etcd, which only the owner can move, always names what its owner wrote.

mod http_client;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{BackoffConfig, ObjectStore, ObjectStoreExt as _, PutPayload, RetryConfig};

use crate::StoreError;

/// How long an S3 call is retried. A checkpoint waits for its upload, so a
/// store that is down must fail fast (the checkpoint then completes locally
/// and the next one publishes), not retry for object_store's default three
/// minutes while the rule stands still.
fn retries() -> RetryConfig {
    let backoff =
        BackoffConfig { init_backoff: Duration::from_millis(100), max_backoff: Duration::from_secs(1), base: 2.0 };
    RetryConfig { backoff, max_retries: 2, retry_timeout: Duration::from_secs(5) }
}

/// A shared checkpoint store.
#[derive(Clone)]
pub struct CheckpointStore {
    objects: Arc<dyn ObjectStore>,
    prefix: Path,
    url: String,
}

impl std::fmt::Debug for CheckpointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CheckpointStore({})", self.url)
    }
}

fn remote(op: &'static str, key: impl Into<String>) -> impl FnOnce(object_store::Error) -> StoreError {
    let key = key.into();
    move |e| StoreError::Remote { op, key, reason: e.to_string() }
}

impl CheckpointStore {
    /// Opens the store a URL names:
    ///
    /// - `file:///dir`: a folder every node can reach (NFS, a shared
    ///   volume; created when missing).
    /// - `s3://bucket/prefix`: objects under `prefix` in an S3 bucket. The
    ///   rest comes from the environment, as every AWS tool reads it:
    ///   `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
    ///   `AWS_REGION`; `AWS_ENDPOINT` (with `AWS_ALLOW_HTTP=true` for plain
    ///   HTTP) for an S3-compatible server such as MinIO.
    ///
    /// Nothing is contacted here: an unreachable store shows at the first
    /// upload (the rule's checkpoint completes locally with a warning).
    pub fn open(url: &str) -> Result<CheckpointStore, StoreError> {
        CheckpointStore::open_with(url, std::env::vars())
    }

    /// [`CheckpointStore::open`] with the `AWS_*` settings taken from
    /// `settings` instead of this process's environment.
    pub fn open_with(
        url: &str,
        settings: impl IntoIterator<Item = (String, String)>,
    ) -> Result<CheckpointStore, StoreError> {
        let bad = |reason: String| StoreError::Remote { op: "open", key: url.to_string(), reason };
        let parsed = url::Url::parse(url).map_err(|e| bad(format!("not a URL: {e}")))?;
        let (objects, prefix): (Arc<dyn ObjectStore>, Path) = match parsed.scheme() {
            "file" => {
                let dir = parsed.to_file_path().map_err(|_| bad("not a local folder".into()))?;
                crate::make_private_dir(&dir).map_err(|e| bad(e.to_string()))?;
                let (objects, prefix) = object_store::parse_url(&parsed).map_err(|e| bad(e.to_string()))?;
                (Arc::from(objects), prefix)
            }
            "s3" | "s3a" => {
                let bucket = parsed
                    .host_str()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| bad("no bucket: use s3://bucket/prefix".into()))?;
                let mut builder = AmazonS3Builder::new();
                for (key, value) in settings {
                    // As object_store's `from_env`: AWS_ENDPOINT → "aws_endpoint".
                    if let Some(key) = key.starts_with("AWS_").then(|| key.to_ascii_lowercase().parse().ok()).flatten()
                    {
                        builder = builder.with_config(key, value);
                    }
                }
                let s3 = builder
                    .with_bucket_name(bucket)
                    .with_http_connector(http_client::UreqConnector)
                    .with_retry(retries())
                    .build()
                    .map_err(|e| bad(e.to_string()))?;
                let prefix = Path::parse(parsed.path().trim_matches('/')).map_err(|e| bad(e.to_string()))?;
                (Arc::new(s3), prefix)
            }
            "gs" | "az" | "azure" => {
                return Err(bad(format!(
                    "{}:// is not built into this oort: use s3:// (or an S3-compatible gateway) or file://",
                    parsed.scheme()
                )))
            }
            other => return Err(bad(format!("unsupported scheme {other:?}: use file:// or s3://"))),
        };
        Ok(CheckpointStore { objects, prefix, url: url.to_string() })
    }

    /// Lists a page of the store's objects: whether it can be reached with
    /// the credentials and bucket this node has (the daemon asks at start).
    pub async fn probe(&self) -> Result<(), StoreError> {
        match self.objects.list(Some(&self.prefix)).next().await {
            Some(Err(e)) => Err(remote("list", self.prefix.to_string())(e)),
            _ => Ok(()),
        }
    }

    /// The URL the store was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn rule_dir(&self, rule: &str) -> Path {
        self.prefix.clone().join(rule)
    }

    /// Writes checkpoint `id` of `rule`, taken by `node` under fencing
    /// `token`; returns the object's name, for the pointer.
    pub async fn upload(
        &self,
        rule: &str,
        id: u64,
        node: &str,
        token: u64,
        bytes: Vec<u8>,
    ) -> Result<String, StoreError> {
        let name = format!("{rule}/{id:020}-{node}-{token}");
        let path = self.prefix.clone().join(rule).join(format!("{id:020}-{node}-{token}"));
        self.objects.put(&path, PutPayload::from(bytes)).await.map_err(remote("put", name.clone()))?;
        Ok(name)
    }

    /// Reads the object `name` ([`CheckpointStore::upload`]'s answer).
    pub async fn download(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.object_path(name)?;
        let got = self.objects.get(&path).await.map_err(remote("get", name))?;
        Ok(got.bytes().await.map_err(remote("read", name))?.to_vec())
    }

    /// Deletes the object `name`; a missing one is not an error.
    pub async fn delete(&self, name: &str) -> Result<(), StoreError> {
        let path = self.object_path(name)?;
        match self.objects.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(remote("delete", name)(e)),
        }
    }

    /// Deletes every object of `rule` but `keep` (the ones pointers name).
    pub async fn prune(&self, rule: &str, keep: &[&str]) -> Result<(), StoreError> {
        let dir = self.rule_dir(rule);
        let mut listing = self.objects.list(Some(&dir));
        let mut doomed = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(remote("list", rule))?;
            let name = format!("{rule}/{}", meta.location.filename().unwrap_or_default());
            if !keep.contains(&name.as_str()) {
                doomed.push(meta.location);
            }
        }
        for path in doomed {
            self.objects.delete(&path).await.map_err(remote("delete", path.to_string()))?;
        }
        Ok(())
    }

    fn object_path(&self, name: &str) -> Result<Path, StoreError> {
        let (rule, file) = name.split_once('/').ok_or_else(|| StoreError::Remote {
            op: "get",
            key: name.to_string(),
            reason: "not a checkpoint object name (<rule>/<file>)".into(),
        })?;
        Ok(self.prefix.clone().join(rule).join(file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_checkpoint_round_trips_through_a_folder_and_prunes_to_what_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/shared", dir.path().display());
        let store = CheckpointStore::open(&url).unwrap();
        let first = store.upload("r1", 1, "n1", 7, b"one".to_vec()).await.unwrap();
        let second = store.upload("r1", 2, "n1", 7, b"two".to_vec()).await.unwrap();
        let zombie = store.upload("r1", 2, "n2", 5, b"late".to_vec()).await.unwrap();
        assert_ne!(second, zombie, "two writers of one checkpoint id never share an object");
        assert_eq!(store.download(&second).await.unwrap(), b"two");
        // Another node opening the same URL sees the same objects.
        let other = CheckpointStore::open(&url).unwrap();
        assert_eq!(other.download(&first).await.unwrap(), b"one");
        other.prune("r1", &[second.as_str()]).await.unwrap();
        assert!(store.download(&first).await.is_err());
        assert!(store.download(&zombie).await.is_err());
        assert_eq!(store.download(&second).await.unwrap(), b"two");
        let err = store.download("r1/nothing").await.unwrap_err().to_string();
        assert!(err.contains("r1/nothing"), "{err}");
    }

    #[test]
    fn unsupported_urls_are_refused_with_the_reason() {
        let err = CheckpointStore::open("ftp://x/y").unwrap_err().to_string();
        assert!(err.contains("use file:// or s3://"), "{err}");
        let err = CheckpointStore::open("gs://bucket/prefix").unwrap_err().to_string();
        assert!(err.contains("not built into this oort"), "{err}");
        let err = CheckpointStore::open("s3:///prefix").unwrap_err().to_string();
        assert!(err.contains("no bucket"), "{err}");
        let err = CheckpointStore::open("not a url").unwrap_err().to_string();
        assert!(err.contains("not a URL"), "{err}");
    }
}
