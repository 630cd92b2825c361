//! A real mosquitto broker for one test: its own config, port and data dir,
//! started from Debian's package (scripts/setup.sh installs it), never the
//! system service; stopped on drop. Its clients `mosquitto_pub` and
//! `mosquitto_sub` publish and subscribe for the tests.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running mosquitto on a loopback port.
pub struct Broker {
    child: Option<Child>,
    pub port: u16,
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
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let mut b = Broker { child: None, port, dir: tempfile::tempdir().expect("tempdir") };
        b.restart();
        b
    }

    /// `tcp://127.0.0.1:<port>`, as the mqtt plugin's `server` property.
    pub fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// Starts the broker again on the same port (after [`Broker::stop`]).
    pub fn restart(&mut self) {
        let conf = self.dir.path().join("mosquitto.conf");
        let text = format!(
            "listener {} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\n",
            self.port
        );
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
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not listen on {}: {}", self.port, self.log());
            std::thread::sleep(Duration::from_millis(20));
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
        use std::io::Write;
        let mut child = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q", &qos.to_string(), "-t", topic, "-l"])
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

    /// Subscribes with `mosquitto_sub` until it has `count` messages; read
    /// them with [`Subscriber::wait`].
    pub fn subscribe(&self, topic: &str, count: usize) -> Subscriber {
        let out = self.dir.path().join(format!("sub-{}.txt", rand_suffix()));
        let file = std::fs::File::create(&out).expect("subscriber output");
        let child = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q", "1", "-t", topic, "-C", &count.to_string()])
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub");
        Subscriber { child, out }
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
        std::fs::read_to_string(&self.out).unwrap_or_default().lines().map(str::to_string).collect()
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
