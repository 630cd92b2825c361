//! The `mqtt` source and sink, after eKuiper's built-in MQTT connector: the
//! source subscribes to the stream's `DATASOURCE` (wildcards allowed) and
//! decodes each message per the stream's `FORMAT` (`json`: an object, or an
//! array of objects, per message; `binary`: the payload as field `self`); the
//! sink publishes each item the supervisor encodes (per the action's
//! `format`, `dataTemplate` and `sendSingle`) to its `topic`.
//!
//! Properties, with eKuiper's names: `server` (default
//! `tcp://127.0.0.1:1883`; `servers`, a list of one, is read too; `ssl://`,
//! `tls://` and `mqtts://` connect over TLS, port 8883 by default), `qos`
//! (0, 1 or 2; default 1), `clientid`/`clientId` (default: one made of the
//! rule and instance), `protocolVersion` (`3.1.1`, the default, also read
//! from `3.1` and `4`; or `5`, also `5.0`), `username`, `password`,
//! `keepAlive` (seconds, default 30); for TLS `rootCaPath` (PEM certificates
//! of the authorities to trust; default: the system's), `certificationPath`
//! and `privateKeyPath` (PEM: the client's certificate chain and key, for a
//! broker that asks for one) and `insecureSkipVerify` (true: accept any
//! server certificate; for tests only, since anyone on the path can then pose
//! as the broker); the sink's `topic` (required), `retained` (default false)
//! and `ackTimeout` (ms, default 4000). An unknown property is an error at
//! open, naming it; so is a server that is not a `tcp://`, `mqtt://` or TLS
//! URL, a TLS property with a server that is not TLS, and a TLS file that
//! cannot be read or holds no usable certificate or key (the files are read
//! at open, so the daemon's trial open refuses the stream or rule).
//!
//! MQTT 3.1.1 and 5 go through the same code: [`Client`] and [`Connection`]
//! wrap rumqttc's two clients and map their events onto the few the plugin
//! acts on ([`Happened`]). Under MQTT 5 a PUBACK, PUBREC or PUBCOMP whose
//! reason code means failure (not authorized, quota exceeded, …) is an error
//! of the sink, never counted as an acknowledgement, and a SUBACK refusing
//! the source's subscription is an exception of the source.
//!
//! The connection is kept by a thread per instance that reconnects with
//! back-off (100 ms doubling to 5 s) while the broker is away; the source
//! subscribes again on every connection, reports a failed connection as an
//! exception (once per outage), and its connection's state as it changes
//! (`Context::set_connection`, eKuiper's `connection_status` in rule status).
//! The daemon's trial open of a rule being created checks the properties and
//! connects to nothing: under the rule's client id it would take over a
//! running instance's session.
//!
//! In a checkpointing rule (qos 1 or 2) a source at MQTT qos 1 or 2 keeps a
//! persistent session (clean session off; under MQTT 5 a session kept for a
//! day) and acknowledges a message only once a checkpoint covers it
//! (`Source::checkpointed`): a `kill -9` of the plugin or of the daemon loses
//! nothing, since the broker delivers again what was not acknowledged, and the
//! daemon restores the rule from that checkpoint when the source's read breaks
//! (`acks_on_checkpoint`). The same holds when the connection comes back after
//! an outage: the source fails its read, and the rule restores. Offsets are
//! `"<epoch>:<n>"`, the number of the last message read by this process, so an
//! earlier process's offset acknowledges nothing. A broker lets only so many
//! messages wait for acknowledgement (mosquitto: `max_inflight_messages`, 20
//! by default, for 3.1.1 clients): when they stop coming the source asks for
//! a checkpoint at once (`Context::request_checkpoint`), so such a rule reads
//! at most that many messages per checkpoint (BENCHMARKS.md, table j).
//!
//! The sink pipelines at qos 1 and 2 in a rule without checkpoints: a batch returns once its messages are
//! queued on the connection and the broker has acknowledged every message of
//! the batches before it, so at most one returned batch is unacknowledged at
//! any time (waiting for the batch itself would stall every batch for an
//! acknowledgement round; see BENCHMARKS.md, table j). The sink keeps a copy
//! of that batch until the broker acknowledges it. If acknowledgements do
//! not come within `ackTimeout` ms (a call must be answered within the
//! daemon's call timeout, 5 s by default) or the broker refuses a message,
//! the connection is made anew, the copy is published again on it, and the
//! batch fails for the supervisor to retry: a message may reach the broker
//! twice, but none that the supervisor saw succeed is dropped while the
//! plugin process lives. At a checkpoint's barrier (its pre-commit) and at
//! close the sink waits for every acknowledgement, so a checkpoint never
//! covers a message the broker has not taken. If the plugin process itself
//! dies, the last returned batch may be lost: at-least-once then rests on
//! the rule restoring from its last checkpoint and its source replaying what
//! followed it (a rewindable source, or one that acknowledges upstream only
//! on checkpoints); the supervisor retries only the failed batch otherwise.
//! Hence in a checkpointing rule every batch waits for its own
//! acknowledgements before it returns.
//!
//! Not yet: websockets.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use oort_plugin::{
    serve, BoxError, ConnectionState, Context, Export, ItemErrors, Plugin, Props, Record, Sink, Source, Value,
};
use oort_plugins::string_prop;
use rumqttc::v5 as mqtt5;
use rumqttc::{QoS, TlsConfiguration, Transport};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

const CONNECTION_PROPS: [&str; 9] =
    ["server", "servers", "qos", "clientid", "clientId", "protocolVersion", "username", "password", "keepAlive"];

const TLS_PROPS: [&str; 4] = ["certificationPath", "privateKeyPath", "rootCaPath", "insecureSkipVerify"];

/// Messages the sink may have published and not yet seen acknowledged: the
/// returned batch and the one being published, 4096 each at most before the
/// request queue holds the rest (rumqttc's default, 100, would bring back the
/// wait for an acknowledgement round within a batch).
const SINK_IN_FLIGHT: u16 = 8192;

/// The sink's request queue: room for two batches of 4096 beside the
/// messages in flight, so that publishing a batch does not wait for the
/// broker. rumqttc's queue grows only as it fills.
const SINK_REQUESTS: usize = 16384;

/// The MQTT versions the plugin speaks.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Version {
    V311,
    V5,
}

/// The qos in rumqttc's MQTT 5 type (the plugin keeps the 3.1.1 one).
fn qos_v5(qos: QoS) -> mqtt5::mqttbytes::QoS {
    match qos {
        QoS::AtMostOnce => mqtt5::mqttbytes::QoS::AtMostOnce,
        QoS::AtLeastOnce => mqtt5::mqttbytes::QoS::AtLeastOnce,
        QoS::ExactlyOnce => mqtt5::mqttbytes::QoS::ExactlyOnce,
    }
}

/// The most acknowledgements a source queues at once on its connection.
const SOURCE_REQUESTS: usize = 1 << 20;

/// How long an MQTT 5 broker keeps a source's persistent session while
/// nobody is connected to it.
const SESSION_EXPIRY_SECS: u32 = 86_400;

/// Whether `ctx` is the daemon's trial open of a rule being created: it checks
/// the properties and connects to nothing (a connection under the rule's
/// client id would take over the session of a running rule's instance).
fn is_trial(ctx: &Context) -> bool {
    ctx.rule_id().starts_with("__validate-")
}

/// What both the source and the sink connect with.
struct Connect {
    host: String,
    port: u16,
    client_id: String,
    qos: QoS,
    credentials: Option<(String, String)>,
    keep_alive: Duration,
    version: Version,
    /// Set for a TLS server: read and checked at open.
    tls: Option<Arc<ClientConfig>>,
    /// A persistent session with manual acknowledgements: a source of a
    /// checkpointing rule, which acknowledges a message only once a
    /// checkpoint covers it.
    persistent: bool,
}

impl Connect {
    fn from_props(ctx: &Context, props: &Props, own: &[&str]) -> Result<Connect, BoxError> {
        let known: Vec<&str> = CONNECTION_PROPS.iter().chain(&TLS_PROPS).chain(own).copied().collect();
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
        let (host, port, secure) = parse_server(&server)?;
        let qos = match props.get("qos") {
            None => QoS::AtLeastOnce,
            Some(v) => match v.as_i64() {
                Some(0) => QoS::AtMostOnce,
                Some(1) => QoS::AtLeastOnce,
                Some(2) => QoS::ExactlyOnce,
                _ => return Err(format!("property qos must be 0, 1 or 2, got {}", v.to_json()).into()),
            },
        };
        let version = match props.get("protocolVersion").map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_json().to_string(),
        }) {
            None => Version::V311,
            Some(v) if ["3.1", "3.1.1", "4"].contains(&v.as_str()) => Version::V311,
            Some(v) if ["5", "5.0"].contains(&v.as_str()) => Version::V5,
            Some(v) => return Err(format!("property protocolVersion must be 3.1.1 or 5, got {v:?}").into()),
        };
        let client_id = match string_prop(props, "clientid")?.or(string_prop(props, "clientId")?) {
            Some(id) if !id.is_empty() => id,
            _ => format!("oort-{}-{}", ctx.rule_id(), ctx.instance_id()),
        };
        let credentials = match (string_prop(props, "username")?, string_prop(props, "password")?) {
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
        let tls = tls_config(props, &server, secure)?;
        Ok(Connect { host, port, client_id, qos, credentials, keep_alive, version, tls, persistent: false })
    }

    /// A client and its connection, not connected yet: the connection
    /// connects when it is first polled. `requests` is the capacity of the
    /// client's request queue, `in_flight` how many qos 1 and 2 messages may
    /// wait for their acknowledgements at once.
    fn client(&self, requests: usize, in_flight: u16) -> (Client, Connection) {
        let transport = || match &self.tls {
            Some(config) => Transport::tls_with_config(TlsConfiguration::Rustls(config.clone())),
            None => Transport::tcp(),
        };
        match self.version {
            Version::V311 => {
                let mut options = rumqttc::MqttOptions::new(self.client_id.clone(), self.host.clone(), self.port);
                options
                    .set_keep_alive(self.keep_alive)
                    .set_max_packet_size(64 << 20, 64 << 20)
                    .set_clean_session(!self.persistent)
                    .set_manual_acks(self.persistent)
                    .set_inflight(in_flight)
                    .set_transport(transport());
                if let Some((user, password)) = &self.credentials {
                    options.set_credentials(user.clone(), password.clone());
                }
                let (client, mut connection) = rumqttc::Client::new(options, requests);
                // Without TCP_NODELAY a batch's last publishes can wait for
                // the broker's acknowledgement of the segment before them,
                // which the broker's kernel delays (up to 40 ms) while the
                // broker, by Nagle's algorithm too, holds its PUBACKs.
                connection.eventloop.network_options.set_tcp_nodelay(true);
                (Client::V3(client), Connection::V3(Box::new(connection)))
            }
            Version::V5 => {
                let mut options = mqtt5::MqttOptions::new(self.client_id.clone(), self.host.clone(), self.port);
                // The limit on messages in flight is the smaller of this and
                // the broker's receive maximum; without it rumqttc would
                // reserve room for 65535.
                options
                    .set_keep_alive(self.keep_alive)
                    .set_max_packet_size(Some(64 << 20))
                    .set_clean_start(!self.persistent)
                    .set_manual_acks(self.persistent)
                    .set_outgoing_inflight_upper_limit(in_flight)
                    .set_transport(transport());
                // TCP_NODELAY as for 3.1.1, above.
                let mut network = rumqttc::NetworkOptions::new();
                network.set_tcp_nodelay(true);
                options.set_network_options(network);
                if let Some((user, password)) = &self.credentials {
                    options.set_credentials(user.clone(), password.clone());
                }
                if self.persistent {
                    // The broker keeps the session (and what it has not
                    // delivered or got acknowledged) for a day without us.
                    options.set_session_expiry_interval(Some(SESSION_EXPIRY_SECS));
                }
                let (client, connection) = mqtt5::Client::new(options, requests);
                (Client::V5(client), Connection::V5(Box::new(connection)))
            }
        }
    }
}

/// `tcp://host:port`, `mqtt://host:port` or `host:port` (port 1883 when
/// left out); `ssl://`, `tls://` or `mqtts://host:port` for TLS (port 8883
/// when left out). Returns the host, the port and whether it is TLS.
fn parse_server(server: &str) -> Result<(String, u16, bool), BoxError> {
    let bad = |why: &str| -> BoxError { format!("property server {server:?}: {why}").into() };
    let (rest, secure) = match server.split_once("://") {
        Some(("tcp" | "mqtt", rest)) => (rest, false),
        Some(("ssl" | "tls" | "mqtts", rest)) => (rest, true),
        Some(("wss" | "ws", _)) => return Err(bad("websockets are not supported by this mqtt plugin yet")),
        Some((scheme, _)) => {
            return Err(bad(&format!("unknown scheme {scheme:?}; use tcp://host:port, or ssl://host:port for TLS")))
        }
        None => (server, false),
    };
    let rest = rest.trim_end_matches('/');
    let default_port = if secure { 8883 } else { 1883 };
    // An IPv6 address is written in brackets, its colons inside them.
    let (host, port) = match rest.rsplit_once(':').filter(|(_, port)| !port.ends_with(']')) {
        Some((host, port)) => (host, port.parse::<u16>().map_err(|_| bad("the port is not a number from 1 to 65535"))?),
        None => (rest, default_port),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 || host.contains(['/', ' ', '@']) {
        return Err(bad("expected tcp://host:port or ssl://host:port"));
    }
    Ok((host.to_string(), port, secure))
}

/// The TLS client configuration eKuiper's properties describe, with `ring`
/// as the crypto provider: `None` for a server that is not TLS. Every file is
/// read and checked here, so that a bad one refuses the stream or rule at its
/// trial open rather than failing each connection attempt later.
fn tls_config(props: &Props, server: &str, secure: bool) -> Result<Option<Arc<ClientConfig>>, BoxError> {
    // eKuiper's configuration files carry these keys with empty values when
    // unused: an empty path is no path.
    let path = |key: &str| -> Result<Option<String>, BoxError> {
        Ok(string_prop(props, key)?.filter(|p| !p.trim().is_empty()))
    };
    let (root_ca, certificate, private_key) =
        (path("rootCaPath")?, path("certificationPath")?, path("privateKeyPath")?);
    let skip_verify = match props.get("insecureSkipVerify") {
        None => false,
        Some(Value::Bool(b)) => *b,
        // A stream's WITH properties arrive as strings.
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
        Some(other) => {
            return Err(format!("property insecureSkipVerify must be true or false, got {}", other.to_json()).into())
        }
    };
    if !secure {
        let set = [("rootCaPath", root_ca.is_some()), ("certificationPath", certificate.is_some())]
            .into_iter()
            .chain([("privateKeyPath", private_key.is_some()), ("insecureSkipVerify", skip_verify)])
            .find(|(_, set)| *set);
        return match set {
            Some((key, _)) => Err(format!(
                "property {key} is for TLS, but server {server:?} is not a TLS server; use ssl://host:port"
            )
            .into()),
            None => Ok(None),
        };
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    // The CA file is read even when verification is skipped: a bad one is
    // still a mistake to report.
    let trusted = match &root_ca {
        Some(file) => Some(read_certificates("rootCaPath", file)?),
        None => None,
    };
    let builder = if skip_verify {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(SkipVerification(provider)))
    } else {
        let mut roots = RootCertStore::empty();
        match (trusted, &root_ca) {
            (Some(certs), Some(file)) => {
                for (i, cert) in certs.into_iter().enumerate() {
                    roots.add(cert).map_err(|e| {
                        format!(
                            "property rootCaPath: certificate {} in {file} is not a valid CA certificate: {e}",
                            i + 1
                        )
                    })?;
                }
            }
            _ => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    return Err(format!(
                        "server {server:?} is TLS, no rootCaPath is given and this system has no CA certificates; \
                         set rootCaPath to the PEM file of the broker's certificate authority"
                    )
                    .into());
                }
            }
        }
        builder.with_root_certificates(roots)
    };
    let config = match (certificate, private_key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(_), None) => {
            return Err("property certificationPath needs privateKeyPath (the key of the certificate)".into())
        }
        (None, Some(_)) => {
            return Err("property privateKeyPath needs certificationPath (the certificate of the key)".into())
        }
        (Some(cert_file), Some(key_file)) => {
            let chain = read_certificates("certificationPath", &cert_file)?;
            let bytes = read_file("privateKeyPath", &key_file)?;
            let key = PrivateKeyDer::from_pem_slice(&bytes)
                .map_err(|e| format!("property privateKeyPath: {key_file} holds no PEM private key ({e})"))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                format!(
                    "properties certificationPath and privateKeyPath: {cert_file} and {key_file} \
                     are not a usable certificate and key: {e}"
                )
            })?
        }
    };
    Ok(Some(Arc::new(config)))
}

fn read_file(key: &str, file: &str) -> Result<Vec<u8>, BoxError> {
    std::fs::read(file).map_err(|e| format!("property {key}: cannot read {file}: {e}").into())
}

/// Every PEM certificate in `file`; at least one.
fn read_certificates(key: &str, file: &str) -> Result<Vec<CertificateDer<'static>>, BoxError> {
    let bytes = read_file(key, file)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("property {key}: {file} is not PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("property {key}: {file} holds no PEM certificate (-----BEGIN CERTIFICATE-----)").into());
    }
    Ok(certs)
}

/// `insecureSkipVerify`: accepts any server certificate for any name. The
/// handshake's signatures are still checked against the certificate the
/// server sent (that proves nothing about who the server is, only that the
/// connection is not garbled).
#[derive(Debug)]
struct SkipVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for SkipVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// rumqttc's blocking client of either MQTT version.
#[derive(Clone)]
enum Client {
    V3(rumqttc::Client),
    V5(mqtt5::Client),
}

impl Client {
    /// Queues one message; false when the request queue is full.
    fn try_publish(&self, topic: &str, qos: QoS, retain: bool, payload: Vec<u8>) -> bool {
        match self {
            Client::V3(c) => c.try_publish(topic, qos, retain, payload).is_ok(),
            Client::V5(c) => c.try_publish(topic, qos_v5(qos), retain, payload).is_ok(),
        }
    }

    fn try_subscribe(&self, filter: &str, qos: QoS) -> Result<(), String> {
        match self {
            Client::V3(c) => c.try_subscribe(filter, qos).map_err(|e| e.to_string()),
            Client::V5(c) => c.try_subscribe(filter, qos_v5(qos)).map_err(|e| e.to_string()),
        }
    }

    /// Acknowledges a received message; false when the request queue is full
    /// (it is acknowledged at the next checkpoint instead).
    fn try_ack(&self, ack: &Ack) -> bool {
        match (self, ack) {
            (Client::V3(c), Ack::V3(p)) => c.try_ack(p).is_ok(),
            (Client::V5(c), Ack::V5(p)) => c.try_ack(p).is_ok(),
            // Cannot happen: a client acknowledges its own messages.
            _ => true,
        }
    }

    /// Asks the connection to end. A full request queue does not keep the
    /// caller from closing: it stops the connection's thread anyway.
    fn try_disconnect(&self) {
        let _queued = match self {
            Client::V3(c) => c.try_disconnect().is_ok(),
            Client::V5(c) => c.try_disconnect().is_ok(),
        };
    }
}

/// rumqttc's connection (event loop) of either MQTT version (boxed: they
/// are large, and moved once, into their thread).
enum Connection {
    V3(Box<rumqttc::Connection>),
    V5(Box<mqtt5::Connection>),
}

/// What acknowledges one received message (its packet, without the payload).
enum Ack {
    V3(rumqttc::Publish),
    V5(mqtt5::mqttbytes::v5::Publish),
}

impl Ack {
    /// The message's packet id and whether the broker sends it again.
    fn id(&self) -> (u16, bool) {
        match self {
            Ack::V3(p) => (p.pkid, p.dup),
            Ack::V5(p) => (p.pkid, p.dup),
        }
    }
}

/// What a connection reported, the same for both versions.
enum Happened {
    /// The broker accepted the connection (CONNACK).
    Connected,
    /// A message arrived on a subscription; at qos 1 and 2 with manual
    /// acknowledgements, with what acknowledges it.
    Message(Vec<u8>, Option<Box<Ack>>),
    /// The broker has taken one published message: its PUBACK at qos 1, its
    /// PUBCOMP at qos 2.
    Acked,
    /// The broker answered one published message with a reason code of
    /// failure (MQTT 5): it will not deliver it.
    Refused(String),
    /// The broker refused a subscription (a SUBACK failure code).
    NotSubscribed(String),
    /// The connection failed; it is attempted again on the next poll.
    Failed(String),
    /// Nothing the plugin acts on happened within the poll's timeout.
    Nothing,
    /// The client is gone: the connection will not be used again.
    Ended,
}

impl Connection {
    /// Waits up to `timeout` for the next event.
    fn next(&mut self, timeout: Duration) -> Happened {
        match self {
            Connection::V3(c) => match c.recv_timeout(timeout) {
                Ok(Ok(event)) => happened_v3(event),
                Ok(Err(e)) => Happened::Failed(e.to_string()),
                Err(rumqttc::RecvTimeoutError::Timeout) => Happened::Nothing,
                Err(rumqttc::RecvTimeoutError::Disconnected) => Happened::Ended,
            },
            Connection::V5(c) => match c.recv_timeout(timeout) {
                Ok(Ok(event)) => happened_v5(event),
                Ok(Err(e)) => Happened::Failed(e.to_string()),
                Err(mqtt5::RecvTimeoutError::Timeout) => Happened::Nothing,
                Err(mqtt5::RecvTimeoutError::Disconnected) => Happened::Ended,
            },
        }
    }
}

fn happened_v3(event: rumqttc::Event) -> Happened {
    use rumqttc::{Event, Packet, SubscribeReasonCode};
    match event {
        Event::Incoming(Packet::ConnAck(_)) => Happened::Connected,
        Event::Incoming(Packet::Publish(mut p)) => {
            let payload = std::mem::take(&mut p.payload).to_vec();
            let ack = (p.qos != rumqttc::QoS::AtMostOnce).then(|| Box::new(Ack::V3(p)));
            Happened::Message(payload, ack)
        }
        Event::Incoming(Packet::PubAck(_) | Packet::PubComp(_)) => Happened::Acked,
        Event::Incoming(Packet::SubAck(s)) if s.return_codes.contains(&SubscribeReasonCode::Failure) => {
            Happened::NotSubscribed("the broker answered with failure code 0x80".into())
        }
        _ => Happened::Nothing,
    }
}

fn happened_v5(event: mqtt5::Event) -> Happened {
    use mqtt5::mqttbytes::v5::{Packet, PubAckReason, PubCompReason, PubRecReason, SubscribeReasonCode};
    let why = |code: String, reason: Option<String>| match reason {
        Some(reason) => format!("{code}: {reason}"),
        None => code,
    };
    let mqtt5::Event::Incoming(packet) = event else { return Happened::Nothing };
    match packet {
        Packet::ConnAck(_) => Happened::Connected,
        Packet::Publish(mut p) => {
            let payload = std::mem::take(&mut p.payload).to_vec();
            let ack = (p.qos != mqtt5::mqttbytes::QoS::AtMostOnce).then(|| Box::new(Ack::V5(p)));
            Happened::Message(payload, ack)
        }
        // "No matching subscribers" is a success: the broker took the message.
        Packet::PubAck(a) => match a.reason {
            PubAckReason::Success | PubAckReason::NoMatchingSubscribers => Happened::Acked,
            code => Happened::Refused(why(format!("{code:?}"), a.properties.and_then(|p| p.reason_string))),
        },
        // At qos 2 a successful PUBREC is followed by the PUBCOMP that counts;
        // a failed one ends the exchange.
        Packet::PubRec(r) => match r.reason {
            PubRecReason::Success | PubRecReason::NoMatchingSubscribers => Happened::Nothing,
            code => Happened::Refused(why(format!("{code:?}"), r.properties.and_then(|p| p.reason_string))),
        },
        Packet::PubComp(c) => match c.reason {
            PubCompReason::Success => Happened::Acked,
            code => Happened::Refused(why(format!("{code:?}"), c.properties.and_then(|p| p.reason_string))),
        },
        Packet::SubAck(s) => match s.return_codes.iter().find(|c| !matches!(c, SubscribeReasonCode::Success(_))) {
            Some(code) => Happened::NotSubscribed(why(
                format!("the broker answered {code:?}"),
                s.properties.and_then(|p| p.reason_string),
            )),
            None => Happened::Nothing,
        },
        _ => Happened::Nothing,
    }
}

/// What a connection's thread tells its instance beside the events: the
/// last connection error, and the news worth an exception of the instance.
#[derive(Default)]
struct Trouble {
    last_error: Mutex<Option<String>>,
    news: Mutex<Vec<String>>,
    /// The connection's state since the instance last looked, if it changed.
    state: Mutex<Option<(ConnectionState, String)>>,
}

impl Trouble {
    fn tell(&self, news: String) {
        let mut all = lock(&self.news);
        // Bounded: nobody may be reading them while the broker is away.
        if all.len() < 16 {
            all.push(news);
        }
    }

    fn take_news(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.news))
    }

    fn last_error(&self) -> Option<String> {
        lock(&self.last_error).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long to wait before reconnecting after `failures` failed attempts.
fn back_off(failures: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << failures.min(6))).min(Duration::from_secs(5))
}

/// Polls a connection on its own thread until `stop`, reconnecting with
/// back-off; `on_event` sees every event but the failures, which go to
/// `trouble`.
fn drive(
    mut connection: Connection,
    stop: Arc<AtomicBool>,
    label: String,
    trouble: Arc<Trouble>,
    mut on_event: impl FnMut(Happened) + Send + 'static,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut failures = 0u32;
        let mut last_warning: Option<Instant> = None;
        while !stop.load(Ordering::Relaxed) {
            match connection.next(Duration::from_millis(200)) {
                Happened::Nothing => {}
                Happened::Ended => return,
                Happened::Failed(e) => {
                    *lock(&trouble.last_error) = Some(e.clone());
                    *lock(&trouble.state) = Some((ConnectionState::Connecting, e.clone()));
                    // One line per outage, not one per attempt.
                    if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(30)) || failures == 0 {
                        eprintln!("{label}: the connection failed: {e}; reconnecting");
                        trouble.tell(format!("{label}: the connection failed: {e}; reconnecting"));
                        last_warning = Some(Instant::now());
                    }
                    let wait = back_off(failures);
                    failures = failures.saturating_add(1);
                    let until = Instant::now() + wait;
                    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(20).min(until - Instant::now()));
                    }
                }
                Happened::Connected => {
                    if failures > 0 {
                        eprintln!("{label}: connected again");
                    }
                    failures = 0;
                    *lock(&trouble.last_error) = None;
                    *lock(&trouble.state) = Some((ConnectionState::Connected, String::new()));
                    on_event(Happened::Connected);
                }
                event => on_event(event),
            }
        }
    })
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    Json,
    Binary,
}

/// A source's received messages that wait for a checkpoint before they are
/// acknowledged, oldest first, by their number.
type Unacknowledged = Arc<Mutex<std::collections::VecDeque<(u64, Ack)>>>;

#[derive(Default)]
struct MqttSource {
    /// Each message with its number (from 1, per instance).
    messages: Option<Receiver<(u64, Vec<u8>)>>,
    client: Option<Client>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    format: Option<Format>,
    trouble: Arc<Trouble>,
    /// Acknowledgements held until a checkpoint covers them (a checkpointing
    /// rule at qos 1 or 2); otherwise rumqttc acknowledges on receipt.
    holding: bool,
    unacknowledged: Unacknowledged,
    /// The number of the last message `read` returned.
    read_through: u64,
    /// Set when the connection came back: the broker delivers again what
    /// was not acknowledged, some of which the rule has already read.
    reconnected: Arc<AtomicBool>,
    /// Tells this process's offsets from an earlier one's.
    epoch: String,
}

/// The state key under which a source keeps the packet ids of the messages
/// it has read and not acknowledged.
const UNACKNOWLEDGED_KEY: &str = "unacknowledged";

impl MqttSource {
    /// Puts the packet ids of the messages read and not acknowledged in the
    /// instance's state, which the next checkpoint stores with the offset.
    fn keep_unacknowledged(&self, ctx: &Context) {
        if !self.holding {
            return;
        }
        let ids: Vec<Value> = lock(&self.unacknowledged)
            .iter()
            .take_while(|(n, _)| *n <= self.read_through)
            .map(|(_, ack)| Value::Int(i64::from(ack.id().0)))
            .collect();
        if let Err(e) = ctx.put_state(UNACKNOWLEDGED_KEY, Value::List(ids)) {
            ctx.report_exception(format!("cannot keep the unacknowledged messages' ids: {e}"));
        }
    }
}

impl Source for MqttSource {
    fn open(&mut self, ctx: &Context, datasource: &str, props: &Props) -> Result<(), BoxError> {
        let mut connect = Connect::from_props(ctx, props, &[])?;
        check_filter(datasource)?;
        let format = match props.get("format") {
            None => Format::Json,
            Some(Value::String(f)) if f.eq_ignore_ascii_case("json") => Format::Json,
            Some(Value::String(f)) if f.eq_ignore_ascii_case("binary") => Format::Binary,
            Some(other) => {
                return Err(format!("the mqtt source reads FORMAT json or binary, not {}", other.to_json()).into())
            }
        };
        self.format = Some(format);
        if is_trial(ctx) {
            return Ok(());
        }
        self.holding = ctx.checkpointing() && connect.qos != QoS::AtMostOnce;
        connect.persistent = self.holding;
        self.epoch = format!("{:016x}", rand::random::<u64>());
        ctx.set_connection(ConnectionState::Connecting, "");
        // The source publishes nothing, but a checkpoint acknowledges every
        // message it covers at once: the request queue (which grows as
        // needed) must hold them all, or some would wait for the next one.
        let (client, connection) = connect.client(SOURCE_REQUESTS, 100);
        // Bounded: a rule that falls behind holds the connection thread, and
        // the broker's flow control holds the publishers.
        let (tx, rx): (SyncSender<(u64, Vec<u8>)>, _) = mpsc::sync_channel(4096);
        let (topic, qos, subscriber) = (datasource.to_string(), connect.qos, client.clone());
        let (stop, trouble, holding) = (self.stop.clone(), self.trouble.clone(), self.holding);
        let (unacknowledged, reconnected) = (self.unacknowledged.clone(), self.reconnected.clone());
        // The messages the restored checkpoint covered and had not had
        // acknowledged: the broker delivers again those whose acknowledgement
        // it did not get, marked as sent before, and they are left out (and
        // acknowledged now). Brokers number a client's messages in turn
        // (mosquitto from 1 to 65535), so an id is not given to another
        // message while fewer than that many wait for acknowledgement.
        let mut covered: std::collections::HashSet<u16> = match ctx.get_state(UNACKNOWLEDGED_KEY) {
            Some(Value::List(ids)) if self.holding => {
                ids.iter().filter_map(|v| v.as_i64()).filter_map(|id| u16::try_from(id).ok()).collect()
            }
            _ => Default::default(),
        };
        let acker = client.clone();
        let label = format!("mqtt source {topic}");
        let mut received = 0u64;
        let mut connections = 0u32;
        let thread = drive(connection, stop.clone(), label, trouble.clone(), move |event| match event {
            // Subscribed on every connection: a clean session forgets, and a
            // persistent one may have been dropped by the broker.
            Happened::Connected => {
                connections += 1;
                if holding && connections > 1 {
                    reconnected.store(true, Ordering::Relaxed);
                }
                if let Err(e) = subscriber.try_subscribe(&topic, qos) {
                    eprintln!("mqtt source: cannot subscribe to {topic}: {e}");
                    trouble.tell(format!("cannot subscribe to {topic}: {e}"));
                }
            }
            Happened::NotSubscribed(why) => {
                eprintln!("mqtt source: the broker refused the subscription to {topic}: {why}");
                trouble.tell(format!("the broker refused the subscription to {topic}: {why}"));
            }
            Happened::Message(mut payload, ack) => {
                if let Some(ack) = ack.as_ref().filter(|a| a.id().1 && covered.remove(&a.id().0)) {
                    acker.try_ack(ack);
                    return;
                }
                received += 1;
                if let Some(ack) = ack.filter(|_| holding) {
                    lock(&unacknowledged).push_back((received, *ack));
                }
                loop {
                    match tx.try_send((received, payload)) {
                        Ok(()) => break,
                        Err(TrySendError::Full((_, back))) if !stop.load(Ordering::Relaxed) => {
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
        Ok(())
    }

    fn read(&mut self, ctx: &Context, out: &mut Vec<Record>, max: usize) -> Result<(), BoxError> {
        for news in self.trouble.take_news() {
            ctx.report_exception(news);
        }
        if let Some((state, why)) = lock(&self.trouble.state).take() {
            ctx.set_connection(state, &why);
        }
        if self.reconnected.load(Ordering::Relaxed) {
            // Reading on would read some messages twice: the rule restores
            // its last checkpoint, and a new instance gets from the broker
            // exactly what that checkpoint did not cover.
            return Err("the connection to the broker was made again; the rule restores its last checkpoint, \
                        and the broker delivers again what it did not cover"
                .into());
        }
        let Some(messages) = &self.messages else { return Err("the source is not open".into()) };
        // Not long: the supervisor's other calls on the instance (a
        // checkpoint's confirmation, close) wait for this read.
        let (mut last, first) = match messages.recv_timeout(Duration::from_millis(20)) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => {
                // A broker lets only so many messages wait for their
                // acknowledgement (mosquitto: 20 by default), then stops
                // sending: a checkpoint now lets it go on.
                let waiting = lock(&self.unacknowledged).front().is_some_and(|(n, _)| *n <= self.read_through);
                if waiting {
                    ctx.request_checkpoint();
                }
                return Ok(());
            }
            Err(RecvTimeoutError::Disconnected) => return Err("the MQTT connection thread ended".into()),
        };
        let now = oort_plugins::now_ms();
        let format = self.format.unwrap_or(Format::Json);
        let mut next = Some(first);
        while let Some(payload) = next.take() {
            decode(ctx, format, payload, now, out);
            if out.len() < max {
                if let Ok((n, payload)) = messages.try_recv() {
                    last = n;
                    next = Some(payload);
                }
            }
        }
        self.read_through = last;
        self.keep_unacknowledged(ctx);
        Ok(())
    }

    fn offset(&self) -> Option<Value> {
        self.holding.then(|| Value::String(format!("{}:{}", self.epoch, self.read_through)))
    }

    fn acks_on_checkpoint(&self) -> bool {
        self.holding
    }

    fn checkpointed(&mut self, ctx: &Context, offset: &Value) -> Result<(), BoxError> {
        // An offset of an earlier process (or none yet) covers nothing here.
        let Value::String(offset) = offset else { return Ok(()) };
        let Some(through) = offset.strip_prefix(&format!("{}:", self.epoch)).and_then(|n| n.parse::<u64>().ok()) else {
            return Ok(());
        };
        let Some(client) = &self.client else { return Ok(()) };
        let mut unacknowledged = lock(&self.unacknowledged);
        while let Some((n, ack)) = unacknowledged.front() {
            if *n > through || !client.try_ack(ack) {
                break;
            }
            unacknowledged.pop_front();
        }
        drop(unacknowledged);
        self.keep_unacknowledged(ctx);
        Ok(())
    }

    fn close(&mut self, _ctx: &Context) -> Result<(), BoxError> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(client) = self.client.take() {
            client.try_disconnect();
        }
        // The thread notices the stop within its 200 ms poll.
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.messages = None;
        Ok(())
    }
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

/// The broker's answers to the messages a sink published on one connection.
#[derive(Default)]
struct Answers {
    counts: Mutex<Counts>,
    arrived: Condvar,
}

#[derive(Default)]
struct Counts {
    /// Acknowledged and refused messages, in the order they were published
    /// (the broker answers in order).
    answered: u64,
    refused: u64,
    /// Why the first refused message was refused.
    why: Option<String>,
}

struct Connected {
    client: Client,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
    answers: Arc<Answers>,
    /// Messages at qos 1 and 2 queued on this connection.
    published: u64,
    /// Whether the broker has accepted the connection at least once.
    up: Arc<AtomicBool>,
    trouble: Arc<Trouble>,
}

impl Connected {
    /// Connects (in the background); the request queue takes at least
    /// `room` messages without waiting, even before the broker answers (a
    /// batch published again on a new connection must not wait for it).
    fn open(connect: &Connect, room: usize) -> Connected {
        let (client, connection) = connect.client(SINK_REQUESTS.max(room + 1), SINK_IN_FLIGHT);
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(Answers::default());
        let up = Arc::new(AtomicBool::new(false));
        let trouble = Arc::new(Trouble::default());
        let (counted, seen_up) = (answers.clone(), up.clone());
        let label = format!("mqtt sink {}:{}", connect.host, connect.port);
        let thread = drive(connection, stop.clone(), label, trouble.clone(), move |event| {
            let mut counts = lock(&counted.counts);
            match event {
                Happened::Connected => seen_up.store(true, Ordering::Relaxed),
                Happened::Acked => counts.answered += 1,
                Happened::Refused(why) => {
                    counts.answered += 1;
                    counts.refused += 1;
                    counts.why.get_or_insert(why);
                }
                _ => return,
            }
            drop(counts);
            counted.arrived.notify_all();
        });
        Connected { client, stop, thread, answers, published: 0, up, trouble }
    }

    /// Queues every payload, waiting until `deadline` for room in the
    /// request queue (which only fills when the broker falls behind).
    fn queue(
        &mut self,
        topic: &str,
        qos: QoS,
        retain: bool,
        payloads: &[Vec<u8>],
        deadline: Instant,
    ) -> Result<(), String> {
        for (i, payload) in payloads.iter().enumerate() {
            while !self.client.try_publish(topic, qos, retain, payload.clone()) {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(format!(
                        "{} of {} could not even be queued: {}",
                        payloads.len() - i,
                        messages(payloads.len() as u64),
                        self.why_not()
                    ));
                }
                // Room is made as acknowledgements arrive; wake on each (or
                // soon, at qos 0, where none arrive).
                let counts = lock(&self.answers.counts);
                let _ = self.answers.arrived.wait_timeout(counts, left.min(Duration::from_millis(5)));
            }
            if qos != QoS::AtMostOnce {
                self.published += 1;
            }
        }
        Ok(())
    }

    /// Waits until the broker has answered the first `target` messages
    /// published on this connection, at most until `deadline`. An error if
    /// they are not all answered, or if the broker refused any message.
    fn wait(&self, target: u64, deadline: Instant) -> Result<(), String> {
        let mut counts = lock(&self.answers.counts);
        while counts.answered < target && counts.refused == 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            counts = self.answers.arrived.wait_timeout(counts, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        if counts.refused > 0 {
            return Err(format!(
                "the broker refused {} ({})",
                messages(counts.refused),
                counts.why.as_deref().unwrap_or("no reason given")
            ));
        }
        if counts.answered < target {
            return Err(format!("{} not acknowledged in time: {}", messages(target - counts.answered), self.why_not()));
        }
        Ok(())
    }

    /// Whether the broker has acknowledged (and refused none of) the first
    /// `count` messages published on this connection.
    fn took(&self, count: u64) -> bool {
        let counts = lock(&self.answers.counts);
        counts.answered >= count && counts.refused == 0
    }

    /// Why the broker does not answer, as far as this side can tell.
    fn why_not(&self) -> String {
        let why = if self.up.load(Ordering::Relaxed) {
            "the broker accepted the connection but did not answer"
        } else {
            "the broker is not reachable"
        };
        match self.trouble.last_error() {
            Some(e) => format!("{why} ({e})"),
            None => why.to_string(),
        }
    }

    fn close(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.client.try_disconnect();
        let _ = self.thread.join();
    }
}

struct MqttSink {
    connect: Option<Connect>,
    connected: Option<Connected>,
    topic: String,
    retained: bool,
    ack_timeout: Duration,
    /// At qos 1 and 2, the last batch that returned: a copy kept until the
    /// broker has acknowledged it, to publish again on a new connection if
    /// this one fails first.
    unacked: Vec<Vec<u8>>,
    /// In a checkpointing rule a batch returns only once the broker has
    /// acknowledged it: should this process die, the supervisor resends only
    /// the batch that failed, so a returned one must be at the broker.
    wait_for_each: bool,
}

impl Default for MqttSink {
    fn default() -> Self {
        MqttSink {
            connect: None,
            connected: None,
            topic: String::new(),
            retained: false,
            ack_timeout: Duration::from_secs(4),
            unacked: Vec::new(),
            wait_for_each: false,
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
        self.wait_for_each = ctx.checkpointing();
        if !is_trial(ctx) {
            self.connected = Some(Connected::open(&connect, 0));
        }
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

    /// A checkpoint's barrier: everything published so far must be at the
    /// broker before the checkpoint may cover it.
    fn pre_commit(&mut self, _ctx: &Context, checkpoint_id: u64) -> Result<Value, BoxError> {
        self.settle().map_err(|why| format!("checkpoint {checkpoint_id}: {why}"))?;
        Ok(Value::Null)
    }

    fn close(&mut self, _ctx: &Context) -> Result<(), BoxError> {
        let (Some(connect), Some(connected)) = (&self.connect, self.connected.take()) else { return Ok(()) };
        let waited = match connect.qos {
            QoS::AtMostOnce => Ok(()),
            _ => connected.wait(connected.published, Instant::now() + self.ack_timeout),
        };
        connected.close();
        self.unacked.clear();
        waited.map_err(|why| format!("closing the mqtt sink to {}: {why}", self.topic).into())
    }
}

impl MqttSink {
    /// Publishes every payload and, at qos 1 and 2, waits for the broker to
    /// acknowledge every earlier message (not this batch's: see the module's
    /// documentation). On a failure the connection is made anew and the
    /// batch fails, for the supervisor to retry.
    fn publish(&mut self, payloads: &[Vec<u8>]) -> Result<(), BoxError> {
        let connect = self.connect.as_ref().ok_or("the sink is not open")?;
        let qos = connect.qos;
        let connected = self.connected.as_mut().ok_or("the sink is not open")?;
        let deadline = Instant::now() + self.ack_timeout;
        let earlier = connected.published;
        let wait_for_each = self.wait_for_each;
        let result = connected.queue(&self.topic, qos, self.retained, payloads, deadline).and_then(|()| match qos {
            QoS::AtMostOnce => Ok(()),
            _ if wait_for_each => connected.wait(connected.published, deadline),
            _ => connected.wait(earlier, deadline),
        });
        match result {
            Ok(()) if wait_for_each => {
                self.unacked.clear();
                Ok(())
            }
            Ok(()) => {
                if qos != QoS::AtMostOnce {
                    self.unacked.clear();
                    self.unacked.extend_from_slice(payloads);
                }
                Ok(())
            }
            Err(why) => {
                // The previous batch needs no second copy if the broker took
                // it (it answers in the order of publishing).
                if connected.took(earlier) {
                    self.unacked.clear();
                }
                let again = self.renew();
                Err(format!(
                    "publishing {} to {} (ackTimeout {} ms): {why}; {again}",
                    messages(payloads.len() as u64),
                    self.topic,
                    self.ack_timeout.as_millis()
                )
                .into())
            }
        }
    }

    /// Waits until the broker has acknowledged everything published; on a
    /// failure the connection is made anew.
    fn settle(&mut self) -> Result<(), String> {
        let (Some(connect), Some(connected)) = (&self.connect, &self.connected) else { return Ok(()) };
        if connect.qos == QoS::AtMostOnce {
            return Ok(());
        }
        match connected.wait(connected.published, Instant::now() + self.ack_timeout) {
            Ok(()) => {
                self.unacked.clear();
                Ok(())
            }
            Err(why) => {
                let again = self.renew();
                Err(format!("{why}; {again}"))
            }
        }
    }

    /// Replaces the connection (its queued and unacknowledged messages go
    /// with it) and publishes the last returned batch again on the new one.
    /// Says what it did, for the error that follows.
    fn renew(&mut self) -> String {
        let Some(connect) = self.connect.as_ref() else { return String::new() };
        let mut fresh = Connected::open(connect, self.unacked.len());
        // The new request queue has room for the whole batch: this does not
        // wait for the broker.
        let queued = fresh.queue(&self.topic, connect.qos, self.retained, &self.unacked, Instant::now());
        if let Some(old) = self.connected.replace(fresh) {
            old.close();
        }
        match (self.unacked.len(), queued) {
            (0, _) => "the connection is made anew".to_string(),
            (n, Ok(())) => format!(
                "the connection is made anew and the previous batch ({}) is published again",
                messages(n as u64)
            ),
            (n, Err(e)) => format!("the connection is made anew; the previous batch ({}): {e}", messages(n as u64)),
        }
    }
}

/// "1 message", "2 messages".
fn messages(n: u64) -> String {
    format!("{n} message{}", if n == 1 { "" } else { "s" })
}

// A source or sink allocates per record (decoded payloads, rows, results):
// mimalloc costs this process about 0.6 MB of memory and saves it a third of
// its CPU per record against glibc's malloc (BENCHMARKS.md, scenario c).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    serve(
        Plugin::new("mqtt", env!("CARGO_PKG_VERSION"))
            .source(Export::shared(MqttSource::default))
            .sink(Export::shared(MqttSink::default)),
    );
}
