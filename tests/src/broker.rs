//! A real mosquitto broker for one test: its own config, port and data dir,
//! started from Debian's package (scripts/setup.sh installs it), never the
//! system service; stopped on drop. Its clients `mosquitto_pub` and
//! `mosquitto_sub` publish and subscribe for the tests, always on the plain
//! listener. A broker may also have a TLS listener with certificates made
//! for it by the `openssl` command, and an ACL file.

use crate::free_port;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running mosquitto on a loopback port.
pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    /// The TLS listener's port, for a broker from [`Broker::start_tls`].
    pub tls_port: Option<u16>,
    require_client_certificate: bool,
    acl: Option<String>,
    dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

fn mosquitto() -> PathBuf {
    ["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("mosquitto"))
}

impl Broker {
    /// Starts a broker on a free loopback port.
    pub fn start() -> Broker {
        Broker::with(None, false, None)
    }

    /// Starts a broker with a plain listener (for the tests' own clients)
    /// and a TLS listener on [`Broker::tls_port`], whose certificate, for
    /// 127.0.0.1 and localhost, is signed by a CA made for this broker. The
    /// files are in the broker's folder ([`Broker::file`]): `ca.pem` (the CA
    /// to trust), `client.pem` and `client.key` (a client certificate the
    /// broker accepts), `server.key` (a key that is not the client's), and
    /// `other-ca.pem` (a CA that signed nothing here: trusting only it, a
    /// client must refuse the broker). With `require_client_certificate` the
    /// TLS listener refuses a client without a certificate from the CA.
    pub fn start_tls(require_client_certificate: bool) -> Broker {
        let dir = tempfile::tempdir().expect("tempdir");
        make_certificates(dir.path());
        Broker::with(Some(dir), require_client_certificate, None)
    }

    /// Starts a broker that allows anonymous clients only what `acl` (the
    /// text of a mosquitto ACL file, e.g. `topic readwrite a/#`) grants.
    pub fn start_with_acl(acl: &str) -> Broker {
        Broker::with(None, false, Some(acl.to_string()))
    }

    fn with(tls_dir: Option<tempfile::TempDir>, require_client_certificate: bool, acl: Option<String>) -> Broker {
        let tls_port = tls_dir.as_ref().map(|_| free_port());
        let dir = tls_dir.unwrap_or_else(|| tempfile::tempdir().expect("tempdir"));
        let mut b = Broker { child: None, port: free_port(), tls_port, require_client_certificate, acl, dir };
        b.restart();
        b
    }

    /// `tcp://127.0.0.1:<port>`, as the mqtt plugin's `server` property.
    pub fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// `ssl://127.0.0.1:<tls port>`, for a broker from [`Broker::start_tls`].
    pub fn tls_url(&self) -> String {
        format!("ssl://127.0.0.1:{}", self.tls_port.expect("a broker started with start_tls"))
    }

    /// The path of a file in the broker's folder (see [`Broker::start_tls`]).
    pub fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// Starts the broker again on the same port (after [`Broker::stop`]).
    pub fn restart(&mut self) {
        let conf = self.dir.path().join("mosquitto.conf");
        let mut text = format!(
            "listener {} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\n",
            self.port
        );
        if self.tls_port.is_some() || self.acl.is_some() {
            // Run as root, mosquitto switches to its own user before it
            // reads the key and the ACL, which are in a folder only root may
            // read; `root` keeps it from switching (when not run as root it
            // has no effect).
            text.push_str("user root\n");
        }
        if let Some(acl) = &self.acl {
            let file = self.dir.path().join("acl");
            std::fs::write(&file, acl).expect("write the broker's ACL");
            text.push_str(&format!("acl_file {}\n", file.display()));
        }
        if let Some(tls_port) = self.tls_port {
            text.push_str(&format!(
                "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate {}\n",
                self.file("ca.pem"),
                self.file("server.pem"),
                self.file("server.key"),
                self.require_client_certificate
            ));
        }
        std::fs::write(&conf, text).expect("write the broker's config");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("mosquitto.log"))
            .expect("broker log");
        let child = Command::new(mosquitto())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start mosquitto (scripts/setup.sh installs it)");
        self.child = Some(child);
        for port in [Some(self.port), self.tls_port].into_iter().flatten() {
            crate::wait_listening(port, "mosquitto", || self.log());
        }
    }

    /// Stops the broker (SIGKILL: an outage, not a shutdown).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// Publishes one message with `mosquitto_pub`.
    pub fn publish(&self, topic: &str, message: &str, qos: u8) {
        let status = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q", &qos.to_string(), "-t", topic, "-m", message])
            .status()
            .expect("mosquitto_pub");
        assert!(status.success(), "mosquitto_pub to {topic} failed");
    }

    /// Publishes many messages over one connection (`mosquitto_pub -l`: one
    /// message per line of its input).
    pub fn publish_lines(&self, topic: &str, lines: &[String], qos: u8) {
        publish_lines(self.port, topic, lines, qos)
    }

    /// Subscribes with `mosquitto_sub` at qos 1 until it has `count`
    /// messages; read them with [`Subscriber::wait`].
    pub fn subscribe(&self, topic: &str, count: usize) -> Subscriber {
        self.subscribe_at(topic, count, 1)
    }

    /// [`Broker::subscribe`] at `qos`.
    pub fn subscribe_at(&self, topic: &str, count: usize, qos: u8) -> Subscriber {
        let out = self.dir.path().join(format!("sub-{}.txt", rand_suffix()));
        let file = std::fs::File::create(&out).expect("subscriber output");
        let (port, qos, count) = (self.port.to_string(), qos.to_string(), count.to_string());
        let child = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &port, "-q", &qos, "-t", topic, "-C", &count])
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub");
        Subscriber { child, out }
    }
}

/// Makes the certificates [`Broker::start_tls`] describes in `dir`, with
/// P-256 keys (quick to make), valid for two days.
fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    for (ca, name) in [("ca", "Oort test CA"), ("other-ca", "Oort untrusted CA")] {
        let (keyout, out, subject) = (format!("{ca}.key"), format!("{ca}.pem"), format!("/CN={name}"));
        openssl(
            &[&["req", "-x509"], &key[..], &["-keyout", &keyout, "-out", &out, "-days", "2", "-subj", &subject]]
                .concat(),
        );
    }
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").expect("write server.ext");
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").expect("write client.ext");
    for (who, subject) in [("server", "/CN=localhost"), ("client", "/CN=oort-test-client")] {
        let (keyout, csr, out, ext) =
            (format!("{who}.key"), format!("{who}.csr"), format!("{who}.pem"), format!("{who}.ext"));
        openssl(&[&["req"], &key[..], &["-keyout", &keyout, "-out", &csr, "-subj", subject]].concat());
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &out,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default()
}

/// A `mosquitto_sub` collecting messages into a file.
pub struct Subscriber {
    child: Child,
    out: PathBuf,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Subscriber {
    /// The messages received so far, one per line.
    pub fn lines(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        // Only whole lines: mosquitto_sub may be in the middle of writing one.
        let whole = text.rfind('\n').map_or("", |end| &text[..end]);
        whole.lines().map(str::to_string).collect()
    }

    /// Whether it got its count and exited.
    pub fn done(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits up to `timeout` for its count; the lines either way.
    pub fn wait(&mut self, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        while !self.done() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.lines()
    }
}

/// [`Broker::publish_lines`] to the broker on `port` (from a thread that
/// does not hold the broker).
pub fn publish_lines(port: u16, topic: &str, lines: &[String], qos: u8) {
    use std::io::Write;
    let mut child = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", &qos.to_string(), "-t", topic, "-l"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("mosquitto_pub");
    let mut stdin = child.stdin.take().expect("stdin");
    for line in lines {
        writeln!(stdin, "{line}").expect("write to mosquitto_pub");
    }
    drop(stdin);
    assert!(child.wait().expect("mosquitto_pub").success(), "mosquitto_pub -l to {topic} failed");
}
