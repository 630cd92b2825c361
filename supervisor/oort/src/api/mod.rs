//! Everything the supervisor serves: the REST admin API, the State service
//! plugins call back into, and the gRPC admin endpoint (health, reflection).
//!
//! Architecture invariant: errors are mapped to HTTP and gRPC status codes here
//! and nowhere else; the modules below return typed errors.
//!
//! With `--api-token`, every admin request must carry `Authorization: Bearer
//! <token>`: every REST path but `/ping`, and every `oort.admin.v1.Admin` call.
//! gRPC health and reflection stay open, like `/ping`: they reveal that the
//! daemon is up and the shape of its public API, nothing about its rules.

mod admin;
mod cluster;
mod ekuiper;
mod metrics;
mod report;
mod rest;
mod state_service;

pub use rest::{router, ApiConfig};
pub use state_service::{bind_state, serve_state, StateListener};

use crate::shutdown::Shutdown;

/// A bound gRPC listener: bound before the daemon reports ready, so that a
/// client that saw `/ping` answer can connect at once.
pub enum GrpcListener {
    Unix(tokio::net::UnixListener, std::path::PathBuf),
    Tcp(tokio::net::TcpListener),
}

/// Binds `addr` (`unix:PATH` or `HOST:PORT`) for [`serve_grpc`].
pub async fn bind_grpc(addr: &str) -> anyhow::Result<GrpcListener> {
    use anyhow::Context as _;
    Ok(match addr.strip_prefix("unix:") {
        Some(path) => {
            let _ = std::fs::remove_file(path);
            let listener = tokio::net::UnixListener::bind(path).with_context(|| format!("cannot listen on {addr}"))?;
            GrpcListener::Unix(listener, path.into())
        }
        None => GrpcListener::Tcp(
            tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?,
        ),
    })
}

/// Whether a presented bearer token is the configured one. Both sides are
/// hashed first and the digests compared without an early exit, so the time
/// taken reveals neither a matching prefix nor the token's length.
pub(crate) fn token_matches(given: Option<&str>, expected: &str) -> bool {
    use sha2::{Digest, Sha256};
    let Some(given) = given else { return false };
    let (a, b) = (Sha256::digest(given.as_bytes()), Sha256::digest(expected.as_bytes()));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The bearer token of an `authorization` header or gRPC metadata value.
pub(crate) fn bearer(value: Option<&str>) -> Option<&str> {
    value.and_then(|v| v.strip_prefix("Bearer "))
}

/// The gRPC twin of the REST API's token check, for `oort.admin.v1.Admin`.
#[derive(Clone)]
struct RequireToken(Option<std::sync::Arc<str>>);

impl tonic::service::Interceptor for RequireToken {
    fn call(&mut self, req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(expected) = &self.0 {
            let given = bearer(req.metadata().get("authorization").and_then(|v| v.to_str().ok()));
            if !token_matches(given, expected) {
                return Err(tonic::Status::unauthenticated("missing or wrong bearer token"));
            }
        }
        Ok(req)
    }
}

/// Serves the admin API (`oort.admin.v1`), gRPC health and server reflection
/// on a bound listener until shutdown. With a token, every admin call must
/// carry `authorization: Bearer <token>` metadata; health and reflection are
/// open (see the module documentation).
pub async fn serve_grpc(
    listener: GrpcListener,
    host: std::sync::Arc<oort_host::Host>,
    engine: std::sync::Arc<oort_engine::Engine>,
    cluster: Option<std::sync::Arc<oort_cluster::Membership>>,
    token: Option<String>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status("", tonic_health::ServingStatus::Serving).await;
    health.set_service_status("oort.admin.v1.Admin", tonic_health::ServingStatus::Serving).await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(oort_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        // Reflection advertises only what this endpoint serves; the descriptor
        // set also holds the plugin-side services.
        .with_service_name("oort.admin.v1.Admin")
        .with_service_name("grpc.health.v1.Health")
        .with_service_name("grpc.reflection.v1.ServerReflection")
        .build_v1()?;
    let admin = oort_proto::admin::v1::admin_server::AdminServer::with_interceptor(
        admin::AdminService { host, engine, cluster },
        RequireToken(token.map(std::sync::Arc::from)),
    );
    let router =
        tonic::transport::Server::builder().add_service(health_service).add_service(reflection).add_service(admin);
    let stop = async move { shutdown.wait().await };
    match listener {
        GrpcListener::Unix(listener, path) => {
            router
                .serve_with_incoming_shutdown(tokio_stream::wrappers::UnixListenerStream::new(listener), stop)
                .await?;
            let _ = std::fs::remove_file(path);
        }
        GrpcListener::Tcp(listener) => {
            router.serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), stop).await?;
        }
    }
    Ok(())
}
