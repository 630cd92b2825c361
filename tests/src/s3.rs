//! A real S3-compatible server for one test: `gofakes3` (scripts/setup.sh
//! installs it from the Go module proxy; Debian packages no S3 server), on
//! a loopback port the test chose, its objects in a bolt file of its own
//! folder, stopped on drop. It speaks S3's REST protocol over HTTP: Oort's
//! checkpoint store talks to it exactly as to S3 (gofakes3 does not check
//! signatures; Oort signs every request all the same).

use crate::{free_port, wait_listening};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub struct S3Server {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// The bucket every test server creates.
pub const BUCKET: &str = "oort";

fn gofakes3() -> PathBuf {
    if let Some(p) = std::env::var_os("OORT_GOFAKES3") {
        return p.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache"));
    let installed = cache.join("oort/bin/gofakes3");
    assert!(installed.exists(), "{} is missing: run scripts/setup.sh", installed.display());
    installed
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

impl S3Server {
    /// Starts a server with the bucket [`BUCKET`] and waits until it answers.
    pub fn start() -> S3Server {
        let mut s = S3Server { port: free_port(), dir: tempfile::tempdir().expect("tempdir"), child: None };
        s.restart();
        s
    }

    /// Starts the server again on the same port and objects.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the S3 server is running");
        let log = std::fs::File::create(self.dir.path().join("s3.log")).expect("log file");
        let child = Command::new(gofakes3())
            .args(["-backend", "bolt", "-initialbucket", BUCKET, "-host"])
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("-bolt.db")
            .arg(self.dir.path().join("objects.db"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn gofakes3");
        self.child = Some(child);
        wait_listening(self.port, "gofakes3", || self.log());
    }

    /// Kills the server (SIGKILL); its objects stay for [`S3Server::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("s3.log")).unwrap_or_default()
    }

    /// The endpoint, for `AWS_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment a process needs to use this server as its S3: the
    /// variables every AWS tool reads.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "oort-test".into()),
            ("AWS_SECRET_ACCESS_KEY", "oort-test-secret".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// The keys under `prefix` in [`BUCKET`], read with a plain S3
    /// ListObjectsV2 call (not through Oort's client).
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let url = format!("{}/{BUCKET}?list-type=2&prefix={prefix}", self.endpoint());
        let body = ureq::get(&url).call().expect("list objects").body_mut().read_to_string().expect("listing");
        body.split("<Key>").skip(1).filter_map(|s| s.split_once("</Key>").map(|(k, _)| k.to_string())).collect()
    }
}
