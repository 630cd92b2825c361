//! The `mqtt` source and sink, after eKuiper's built-in MQTT connector: the
//! source subscribes to the stream's `DATASOURCE` (wildcards allowed) and
//! decodes each message per the stream's `FORMAT` (`json`: an object, or an
//! array of objects, per message; `binary`: the payload as field `self`); the
//! sink publishes each item the supervisor encodes (per the action's
//! `format`, `dataTemplate` and `sendSingle`) to its `topic`.
//!
//! Properties, with eKuiper's names: `server` (default
//! `tcp://127.0.0.1:1883`; `servers`, a list of one, is read too), `qos`
//! (0, 1 or 2; default 1), `clientid`/`clientId` (default: one made of the
//! rule and instance), `protocolVersion` (`3.1.1`, also `3.1` and `4`),
//! `username`, `password`, `keepAlive` (seconds, default 30); the sink's
//! `topic` (required) and `retained` (default false). An unknown property is
//! an error at open, naming it; so is a server that is not a `tcp://` or
//! `mqtt://` URL.
//!
//! The connection is kept by a thread per instance that reconnects with
//! back-off (100 ms doubling to 5 s) while the broker is away; the source
//! subscribes again on every connection. The sink returns from a batch only
//! when the broker has acknowledged every message of it (at qos 1 and 2), so
//! a batch the supervisor saw succeed is at the broker; a batch not
//! acknowledged within `ackTimeout` ms (default 4000: a batch must be answered
//! within the daemon's call timeout, 5 s by default) fails, the connection is
//! made anew, and the supervisor retries the batch.
//!
//! Not yet: TLS (`certificationPath`, `privateKeyPath`, `rootCaPath`,
//! `insecureSkipVerify` are refused with an error rather than ignored), MQTT
//! 5, and acknowledging received messages only once a checkpoint covers them.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use oort_plugin::{serve, BoxError, Context, Export, ItemErrors, Plugin, Props, Record, Sink, Source, Value};
use rumqttc::{Client, Connection, Event, MqttOptions, Packet, QoS};

const CONNECTION_PROPS: [&str; 8] =
    ["server", "servers", "qos", "clientid", "clientId", "protocolVersion", "username", "password"];

const TLS_PROPS: [&str; 4] = ["certificationPath", "privateKeyPath", "rootCaPath", "insecureSkipVerify"];

/// What both the source and the sink connect with.
struct Connect {
    host: String,
    port: u16,
    client_id: String,
    qos: QoS,
    credentials: Option<(String, String)>,
    keep_alive: Duration,
}

impl Connect {
    fn from_props(ctx: &Context, props: &Props, own: &[&str]) -> Result<Connect, BoxError> {
        if let Some(key) = TLS_PROPS.iter().find(|k| props.contains_key(**k)) {
            return Err(format!("property {key}: TLS is not supported by this mqtt plugin yet").into());
        }
        let known: Vec<&str> = CONNECTION_PROPS.iter().chain(own).chain(&["keepAlive"]).copied().collect();
        oort_plugins::refuse_unknown("mqtt", props, &known)?;
        let server = match (props.get("server"), props.get("servers")) {
            (Some(Value::String(s)), _) => s.clone(),
            (Some(other), _) => {
                return Err(format!("property server must be a string, got {}", other.type_name()).into())
            }
            (None, Some(Value::List(list))) => match list.as_slice() {
                [Value::String(s)] => s.clone(),
                _ => return Err("property servers must be a list of one server URL".into()),
            },
            (None, Some(_)) => return Err("property servers must be a list of one server URL".into()),
            (None, None) => "tcp://127.0.0.1:1883".to_string(),
        };
        let (host, port) = parse_server(&server)?;
        let qos = match props.get("qos") {
            None => QoS::AtLeastOnce,
            Some(v) => match v.as_i64() {
                Some(0) => QoS::AtMostOnce,
                Some(1) => QoS::AtLeastOnce,
                Some(2) => QoS::ExactlyOnce,
                _ => return Err(format!("property qos must be 0, 1 or 2, got {}", v.to_json()).into()),
            },
        };
        match props.get("protocolVersion").map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_json().to_string(),
        }) {
            None => {}
            Some(v) if ["3.1", "3.1.1", "4"].contains(&v.as_str()) => {}
            Some(v) if ["5", "5.0"].contains(&v.as_str()) => {
                return Err(
                    "property protocolVersion: MQTT 5 is not supported by this mqtt plugin yet; use 3.1.1".into()
                )
            }
            Some(v) => return Err(format!("property protocolVersion must be 3.1 or 3.1.1, got {v:?}").into()),
        }
        let text = |key: &str| -> Result<Option<String>, BoxError> {
            match props.get(key) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(format!("property {key} must be a string, got {}", other.type_name()).into()),
            }
        };
        let client_id = match text("clientid")?.or(text("clientId")?) {
            Some(id) if !id.is_empty() => id,
            _ => format!("oort-{}-{}", ctx.rule_id(), ctx.instance_id()),
        };
        let credentials = match (text("username")?, text("password")?) {
            (Some(user), password) => Some((user, password.unwrap_or_default())),
            (None, Some(_)) => return Err("property password needs username".into()),
            (None, None) => None,
        };
        let keep_alive = match props.get("keepAlive") {
            None => Duration::from_secs(30),
            Some(v) => match v.as_i64() {
                Some(s) if (5..=65535).contains(&s) => Duration::from_secs(s as u64),
                _ => return Err("property keepAlive must be 5 to 65535 seconds".into()),
            },
        };
        Ok(Connect { host, port, client_id, qos, credentials, keep_alive })
    }

    fn options(&self) -> MqttOptions {
        let mut options = MqttOptions::new(self.client_id.clone(), self.host.clone(), self.port);
        options.set_keep_alive(self.keep_alive).set_max_packet_size(64 << 20, 64 << 20);
        if let Some((user, password)) = &self.credentials {
            options.set_credentials(user.clone(), password.clone());
        }
        options
    }
}

/// `tcp://host:port`, `mqtt://host:port` or `host:port` (port 1883 when
/// left out).
fn parse_server(server: &str) -> Result<(String, u16), BoxError> {
    let bad = |why: &str| -> BoxError { format!("property server {server:?}: {why}").into() };
    let rest = match server.split_once("://") {
        Some(("tcp" | "mqtt", rest)) => rest,
        Some(("ssl" | "tls" | "mqtts" | "wss" | "ws", _)) => {
            return Err(bad("TLS and websockets are not supported by this mqtt plugin yet"))
        }
        Some((scheme, _)) => return Err(bad(&format!("unknown scheme {scheme:?}; use tcp://host:port"))),
        None => server,
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (host, port.parse::<u16>().map_err(|_| bad("the port is not a number from 1 to 65535"))?),
        None => (rest, 1883),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 || host.contains(['/', ' ', '@']) {
        return Err(bad("expected tcp://host:port"));
    }
    Ok((host.to_string(), port))
}

/// Checks an MQTT topic filter: `+` and `#` take a whole level, `#` only the
/// last one.
fn check_filter(topic: &str) -> Result<(), BoxError> {
    let levels: Vec<&str> = topic.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        let wild = level.contains(['+', '#']);
        if wild && level.len() > 1 {
            return Err(format!("topic {topic:?}: a wildcard must take a whole level").into());
        }
        if *level == "#" && i + 1 != levels.len() {
            return Err(format!("topic {topic:?}: # must be the last level").into());
        }
    }
    if topic.is_empty() {
        return Err("the stream's DATASOURCE (the topic) is empty".into());
    }
    Ok(())
}

/// How long to wait before reconnecting after `failures` failed attempts.
fn back_off(failures: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << failures.min(6))).min(Duration::from_secs(5))
}

/// Polls a connection on its own thread until `stop`, reconnecting with
/// back-off; `on_event` sees every event.
fn drive(
    mut connection: Connection,
    stop: Arc<AtomicBool>,
    label: String,
    last_error: Arc<Mutex<Option<String>>>,
    mut on_event: impl FnMut(&Event) + Send + 'static,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut failures = 0u32;
        let mut last_warning: Option<Instant> = None;
        while !stop.load(Ordering::Relaxed) {
            match connection.recv_timeout(Duration::from_millis(200)) {
                Ok(Ok(event)) => {
                    if matches!(event, Event::Incoming(Packet::ConnAck(_))) {
                        if failures > 0 {
                            eprintln!("{label}: connected again");
                        }
                        failures = 0;
                        *last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    }
                    on_event(&event);
                }
                Ok(Err(e)) => {
                    *last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
                    // One line per outage, not one per attempt.
                    if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(30)) || failures == 0 {
                        eprintln!("{label}: the connection failed: {e}; reconnecting");
                        last_warning = Some(Instant::now());
                    }
                    let wait = back_off(failures);
                    failures = failures.saturating_add(1);
                    let until = Instant::now() + wait;
                    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(20).min(until - Instant::now()));
                    }
                }
                Err(RecvTimeoutErrorOrDone::Timeout) => {}
                Err(RecvTimeoutErrorOrDone::Disconnected) => return,
            }
        }
    })
}

/// rumqttc's `recv_timeout` error, renamed so it does not clash with std's.
use rumqttc::RecvTimeoutError as RecvTimeoutErrorOrDone;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    Json,
    Binary,
}

#[derive(Default)]
struct MqttSource {
    messages: Option<Receiver<Vec<u8>>>,
    client: Option<Client>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    format: Option<Format>,
}

impl Source for MqttSource {
    fn open(&mut self, ctx: &Context, datasource: &str, props: &Props) -> Result<(), BoxError> {
        let connect = Connect::from_props(ctx, props, &[])?;
        check_filter(datasource)?;
        let format = match props.get("format") {
            None => Format::Json,
            Some(Value::String(f)) if f.eq_ignore_ascii_case("json") => Format::Json,
            Some(Value::String(f)) if f.eq_ignore_ascii_case("binary") => Format::Binary,
            Some(other) => {
                return Err(format!("the mqtt source reads FORMAT json or binary, not {}", other.to_json()).into())
            }
        };
        let mut options = connect.options();
        options.set_clean_session(true);
        let (client, connection) = Client::new(options, 64);
        // Bounded: a rule that falls behind holds the connection thread, and
        // the broker's flow control holds the publishers.
        let (tx, rx): (SyncSender<Vec<u8>>, _) = mpsc::sync_channel(4096);
        let (topic, qos, subscriber) = (datasource.to_string(), connect.qos, client.clone());
        let stop = self.stop.clone();
        let label = format!("mqtt source {topic}");
        let thread = drive(connection, stop.clone(), label, Arc::default(), move |event| match event {
            // Subscribed on every connection: a clean session forgets.
            Event::Incoming(Packet::ConnAck(_)) => {
                if let Err(e) = subscriber.try_subscribe(topic.clone(), qos) {
                    eprintln!("mqtt source: cannot subscribe to {topic}: {e}");
                }
            }
            Event::Incoming(Packet::Publish(p)) => {
                let mut payload = p.payload.to_vec();
                loop {
                    match tx.try_send(payload) {
                        Ok(()) => break,
                        Err(TrySendError::Full(back)) if !stop.load(Ordering::Relaxed) => {
                            payload = back;
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        Err(_) => break,
                    }
                }
            }
            _ => {}
        });
        self.messages = Some(rx);
        self.client = Some(client);
        self.thread = Some(thread);
        self.format = Some(format);
        Ok(())
    }

    fn read(&mut self, ctx: &Context, out: &mut Vec<Record>, max: usize) -> Result<(), BoxError> {
        let Some(messages) = &self.messages else { return Err("the source is not open".into()) };
        let first = match messages.recv_timeout(Duration::from_millis(100)) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => return Ok(()),
            Err(RecvTimeoutError::Disconnected) => return Err("the MQTT connection thread ended".into()),
        };
        let now = oort_plugins::now_ms();
        let format = self.format.unwrap_or(Format::Json);
        let mut next = Some(first);
        while let Some(payload) = next.take() {
            decode(ctx, format, payload, now, out);
            if out.len() < max {
                next = messages.try_recv().ok();
            }
        }
        Ok(())
    }

    fn close(&mut self, _ctx: &Context) -> Result<(), BoxError> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(client) = self.client.take() {
            let _ = client.try_disconnect();
        }
        // The thread notices the stop within its 200 ms poll.
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.messages = None;
        Ok(())
    }
}

/// One message as records: a JSON object, or an array of objects; bytes as
/// field `self` for FORMAT binary. A message that does not decode is reported
/// and skipped, as eKuiper drops it with an error.
fn decode(ctx: &Context, format: Format, payload: Vec<u8>, now: i64, out: &mut Vec<Record>) {
    if format == Format::Binary {
        let fields = BTreeMap::from([("self".to_string(), Value::Bytes(payload))]);
        out.push(Record { fields, timestamp_ms: now, ..Record::default() });
        return;
    }
    oort_plugins::json_records(ctx, "a message", &payload, now, out);
}

/// The acknowledgements the sink's connection thread counted.
#[derive(Default)]
struct Acks {
    count: Mutex<u64>,
    arrived: Condvar,
}

struct Connected {
    client: Client,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
    acks: Arc<Acks>,
    /// Messages published on this connection that wait for an acknowledgement.
    published: u64,
    /// Whether the broker has accepted the connection at least once.
    up: Arc<AtomicBool>,
    last_error: Arc<Mutex<Option<String>>>,
}

impl Connected {
    fn open(connect: &Connect) -> Connected {
        let (client, connection) = Client::new(connect.options(), 1024);
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Acks::default());
        let up = Arc::new(AtomicBool::new(false));
        let last_error = Arc::new(Mutex::new(None));
        let (counted, seen_up) = (acks.clone(), up.clone());
        let label = format!("mqtt sink {}:{}", connect.host, connect.port);
        let thread = drive(connection, stop.clone(), label, last_error.clone(), move |event| {
            let acked = match event {
                Event::Incoming(Packet::ConnAck(_)) => {
                    seen_up.store(true, Ordering::Relaxed);
                    false
                }
                Event::Incoming(Packet::PubAck(_)) | Event::Incoming(Packet::PubComp(_)) => true,
                _ => false,
            };
            if acked {
                *counted.count.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                counted.arrived.notify_all();
            }
        });
        Connected { client, stop, thread, acks, published: 0, up, last_error }
    }

    fn close(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.client.try_disconnect();
        let _ = self.thread.join();
    }
}

struct MqttSink {
    connect: Option<Connect>,
    connected: Option<Connected>,
    topic: String,
    retained: bool,
    ack_timeout: Duration,
}

impl Default for MqttSink {
    fn default() -> Self {
        MqttSink {
            connect: None,
            connected: None,
            topic: String::new(),
            retained: false,
            ack_timeout: Duration::from_secs(4),
        }
    }
}

impl Sink for MqttSink {
    fn open(&mut self, ctx: &Context, props: &Props) -> Result<(), BoxError> {
        let connect = Connect::from_props(ctx, props, &["topic", "retained", "ackTimeout"])?;
        self.topic = match props.get("topic") {
            Some(Value::String(t)) if !t.is_empty() => t.clone(),
            Some(_) => return Err("property topic must be a non-empty string".into()),
            None => return Err("property topic is required".into()),
        };
        if self.topic.contains(['+', '#']) {
            return Err(format!("property topic {:?}: a published topic has no wildcards", self.topic).into());
        }
        self.retained = match props.get("retained") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(format!("property retained must be true or false, got {}", other.to_json()).into())
            }
        };
        if let Some(v) = props.get("ackTimeout") {
            match v.as_i64() {
                Some(ms) if ms > 0 => self.ack_timeout = Duration::from_millis(ms as u64),
                _ => return Err("property ackTimeout must be a positive number of milliseconds".into()),
            }
        }
        self.connected = Some(Connected::open(&connect));
        self.connect = Some(connect);
        Ok(())
    }

    fn collect(&mut self, _ctx: &Context, records: &[Record]) -> Result<(), BoxError> {
        let payloads: Vec<Vec<u8>> = records.iter().map(|r| r.fields_to_json().to_string().into_bytes()).collect();
        self.publish(&payloads)
    }

    fn wants_payloads(&self) -> bool {
        true
    }

    fn collect_payloads(&mut self, _ctx: &Context, payloads: &[Vec<u8>]) -> Result<ItemErrors, BoxError> {
        self.publish(payloads)?;
        Ok(Vec::new())
    }

    fn close(&mut self, _ctx: &Context) -> Result<(), BoxError> {
        if let Some(c) = self.connected.take() {
            c.close();
        }
        Ok(())
    }
}

impl MqttSink {
    /// Publishes every payload and, at qos 1 and 2, waits for the broker to
    /// acknowledge them all; on a timeout the connection is made anew (its
    /// unacknowledged messages go with it) and the batch fails, for the
    /// supervisor to retry.
    fn publish(&mut self, payloads: &[Vec<u8>]) -> Result<(), BoxError> {
        let connect = self.connect.as_ref().ok_or("the sink is not open")?;
        let qos = connect.qos;
        let connected = self.connected.as_mut().ok_or("the sink is not open")?;
        for payload in payloads {
            connected.client.publish(self.topic.clone(), qos, self.retained, payload.clone())?;
        }
        if qos == QoS::AtMostOnce {
            return Ok(());
        }
        connected.published += payloads.len() as u64;
        let target = connected.published;
        let deadline = Instant::now() + self.ack_timeout;
        let mut count = connected.acks.count.lock().unwrap_or_else(|e| e.into_inner());
        while *count < target {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            count = connected.acks.arrived.wait_timeout(count, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        let acked = *count;
        drop(count);
        if acked >= target {
            return Ok(());
        }
        let why = if connected.up.load(Ordering::Relaxed) {
            "the broker did not acknowledge them in time"
        } else {
            "the broker is not reachable"
        };
        let last = connected.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let fresh = Connected::open(connect);
        if let Some(old) = self.connected.replace(fresh) {
            old.close();
        }
        Err(format!(
            "{} of {} messages to {} not acknowledged within {} ms: {why}{}",
            target - acked,
            payloads.len(),
            self.topic,
            self.ack_timeout.as_millis(),
            last.map(|e| format!(" ({e})")).unwrap_or_default()
        )
        .into())
    }
}

fn main() {
    serve(
        Plugin::new("mqtt", env!("CARGO_PKG_VERSION"))
            .source(Export::shared(MqttSource::default))
            .sink(Export::shared(MqttSink::default)),
    );
}
