//! The IPC floor: length-prefixed frames echoed over a Unix socket by a child
//! process (this same executable in `--echo-server` mode). No protobuf, no
//! HTTP/2, no async runtime: a blocking write and a blocking read per round trip.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

/// `--echo-server <socket>`: answers every frame with itself, on every
/// connection, until killed.
pub fn serve(socket: &Path) -> Result<()> {
    let listener = UnixListener::bind(socket).with_context(|| format!("bind {}", socket.display()))?;
    for conn in listener.incoming() {
        let conn = conn?;
        std::thread::spawn(move || {
            let _ = echo_frames(conn);
        });
    }
    Ok(())
}

fn echo_frames(mut conn: UnixStream) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        let mut len = [0u8; 4];
        conn.read_exact(&mut len)?;
        let n = u32::from_le_bytes(len) as usize;
        buf.resize(4 + n, 0);
        buf[..4].copy_from_slice(&len);
        conn.read_exact(&mut buf[4..])?;
        conn.write_all(&buf)?;
    }
}

/// A running echo server child and a connection to it.
pub struct EchoClient {
    child: Child,
    conn: UnixStream,
    _dir: tempfile::TempDir,
    frame: Vec<u8>,
    back: Vec<u8>,
}

impl Drop for EchoClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl EchoClient {
    /// Starts `<this executable> --echo-server <socket>` (optionally through a
    /// launcher such as `taskset -c 0`) and connects to it.
    pub fn start(launcher: &[&str]) -> Result<EchoClient> {
        let dir = tempfile::tempdir()?;
        let socket: PathBuf = dir.path().join("echo.sock");
        let exe = std::env::current_exe()?;
        let mut cmd = match launcher.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let child = cmd.arg("--echo-server").arg(&socket).stdin(Stdio::null()).spawn().context("spawn echo server")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let conn = loop {
            match UnixStream::connect(&socket) {
                Ok(c) => break c,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
                Err(e) => bail!("the echo server did not listen on {}: {e}", socket.display()),
            }
        };
        Ok(EchoClient { child, conn, _dir: dir, frame: Vec::new(), back: Vec::new() })
    }

    /// The echo server's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sets the payload of the following round trips.
    pub fn set_payload(&mut self, payload: &[u8]) {
        self.frame.clear();
        self.frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        self.frame.extend_from_slice(payload);
        self.back.resize(self.frame.len(), 0);
    }

    /// One frame there and back.
    pub fn round_trip(&mut self) -> Result<()> {
        self.conn.write_all(&self.frame)?;
        self.conn.read_exact(&mut self.back)?;
        Ok(())
    }
}
