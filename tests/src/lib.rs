//! Test support: locating the built binaries, laying out plugin folders, and
//! starting real supervisors. Nothing here is mocked.
#![forbid(unsafe_code)]

mod broker;
pub mod cluster;
mod daemon;
mod etcd;
mod http_server;
mod s3;
pub use broker::{publish_lines, Broker, Subscriber};
pub use daemon::{http, json, json_lines, Daemon};
pub use etcd::Etcd;
pub use http_server::{HttpServer, Received};
pub use s3::S3Server;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oort_host::process::{RuntimeDir, Timeouts};
use oort_host::state::StateRegistry;
use oort_host::{DataEncoding, Host, HostConfig};

/// A loopback port nothing listens on right now (the OS picks it), for a
/// daemon, broker or etcd a test starts.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Waits up to 10 s for something a test started to listen on `port`;
/// `log` explains a failure.
pub(crate) fn wait_listening(port: u16, what: &str, log: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}: {}", log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The folder holding the workspace's binaries (`oort`, the plugins, the fixture).
pub fn bin_dir() -> PathBuf {
    // Test executables live in <target>/<profile>/deps/.
    let exe = std::env::current_exe().expect("current exe");
    exe.parent().and_then(Path::parent).expect("target/<profile>").to_path_buf()
}

/// The path of a workspace binary, checking it was built.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(path.exists(), "{} is not built: run `cargo build --release --workspace --bins` first", path.display());
    path
}

/// A temporary plugins folder with `sources/`, `sinks/` and `functions/`.
pub struct PluginsDir {
    pub dir: tempfile::TempDir,
}

impl Default for PluginsDir {
    fn default() -> Self {
        Self::new()
    }
}

impl PluginsDir {
    pub fn new() -> PluginsDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for k in ["sources", "sinks", "functions"] {
            std::fs::create_dir(dir.path().join(k)).expect("mkdir");
        }
        PluginsDir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Installs a copy of workspace binary `binary` as `<kind>/<file_name>`.
    pub fn add(&self, kind: &str, file_name: &str, binary: &str) -> PathBuf {
        let dest = self.path().join(kind).join(file_name);
        std::fs::copy(bin(binary), &dest).expect("copy plugin");
        dest
    }

    /// Installs the fixture under `file_name`, set to behave per `env`.
    pub fn add_fixture(&self, kind: &str, file_name: &str, env: &[(&str, &str)]) -> PathBuf {
        self.add_with_env(kind, file_name, "oort-fixture", env)
    }

    /// Installs `binary` under `file_name` as a wrapper script that sets `env`.
    pub fn add_with_env(&self, kind: &str, file_name: &str, binary: &str, env: &[(&str, &str)]) -> PathBuf {
        let dest = self.path().join(kind).join(file_name);
        let mut script = String::from("#!/bin/sh\n");
        for (k, v) in env {
            script.push_str(&format!("export {k}='{v}'\n"));
        }
        script.push_str(&format!("exec '{}' \"$@\"\n", bin(binary).display()));
        std::fs::write(&dest, script).expect("write wrapper");
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        dest
    }
}

/// A supervisor's host in this test process, over a private runtime folder.
pub struct TestHost {
    pub host: Arc<Host>,
    pub runtime_root: tempfile::TempDir,
}

impl TestHost {
    pub fn new(plugins: &Path, timeouts: Timeouts) -> TestHost {
        TestHost::with_encoding(plugins, timeouts, DataEncoding::Auto)
    }

    /// A host that sends function batches per `data_encoding`.
    pub fn with_encoding(plugins: &Path, timeouts: Timeouts, data_encoding: DataEncoding) -> TestHost {
        TestHost::with_transport(plugins, timeouts, data_encoding, true)
    }

    /// A host that sends function batches per `data_encoding`, on a plugin's
    /// framed path when `framed_exec` and the plugin offers one.
    pub fn with_transport(
        plugins: &Path,
        timeouts: Timeouts,
        data_encoding: DataEncoding,
        framed_exec: bool,
    ) -> TestHost {
        let runtime_root = tempfile::tempdir().expect("tempdir");
        let runtime = Arc::new(RuntimeDir::create(&runtime_root.path().join("rt")).expect("runtime dir"));
        let state = Arc::new(StateRegistry::default());
        let host = Arc::new(Host::new(
            HostConfig {
                plugins_dir: plugins.to_path_buf(),
                timeouts,
                python: "python3".into(),
                data_encoding,
                framed_exec,
            },
            runtime.clone(),
            state.clone(),
        ));
        // Serve the State service on the runtime socket, as the daemon does.
        let shutdown = oort::shutdown::Shutdown::default();
        let socket = oort::api::bind_state(runtime.state_socket()).expect("bind the State socket");
        tokio::spawn(oort::api::serve_state(socket, state, shutdown));
        TestHost { host, runtime_root }
    }
}

/// Short timeouts so that misbehaving plugins fail fast in tests.
pub fn fast_timeouts() -> Timeouts {
    Timeouts { start: Duration::from_secs(5), call: Duration::from_secs(2), stop_grace: Duration::from_millis(500) }
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes.
pub async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

/// Sends SIGKILL to a pid.
pub fn kill9(pid: u32) {
    let status = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().expect("kill");
    assert!(status.success(), "kill -9 {pid} failed");
}

/// Whether a pid is alive and not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

/// Every socket file under a folder, recursively.
pub fn sockets_under(dir: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_socket() {
                out.push(e.path());
            }
        }
    }
    out
}

/// The plugins' gRPC sockets under `dir`: not the State socket, and not the
/// framed Exec sockets (`.frames`) that Rust plugins listen on beside them.
pub fn plugin_sockets(dir: &Path) -> Vec<PathBuf> {
    sockets_under(dir)
        .into_iter()
        .filter(|p| !p.ends_with("state.sock") && p.extension().is_some_and(|e| e == "sock"))
        .collect()
}

/// The services a gRPC server on a Unix socket advertises through reflection, sorted.
pub async fn list_services(socket: &Path) -> Vec<String> {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let channel = oort_host::process::connect_unix(socket).await.expect("connect");
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut client = ServerReflectionClient::new(channel);
    let mut answers =
        client.server_reflection_info(tokio_stream::iter(vec![req])).await.expect("reflection").into_inner();
    let mut services = match answers.message().await.expect("answer").expect("one answer").message_response {
        Some(MessageResponse::ListServicesResponse(l)) => l.service.into_iter().map(|s| s.name).collect::<Vec<_>>(),
        other => panic!("unexpected reflection answer {other:?}"),
    };
    services.sort();
    services
}

/// A zip with the given (name, bytes, mode) entries, in order.
pub fn zip_of(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes, mode) in entries {
        let opts = zip::write::SimpleFileOptions::default().unix_permissions(*mode);
        w.start_file(*name, opts).unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap().into_inner()
}
