//! Everything the supervisor serves: the REST admin API, the State service
//! plugins call back into, and the gRPC admin endpoint (health, reflection).
//!
//! Architecture invariant: errors are mapped to HTTP and gRPC status codes here
//! and nowhere else; the modules below return typed errors.

mod rest;
mod state_service;

pub use rest::{router, ApiConfig};
pub use state_service::serve_state;

use crate::shutdown::Shutdown;

/// Serves gRPC health and reflection on `addr` (`unix:PATH` or `HOST:PORT`)
/// until shutdown.
pub async fn serve_grpc(addr: String, shutdown: Shutdown) -> anyhow::Result<()> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status("", tonic_health::ServingStatus::Serving).await;
    let reflection = tonic_reflection::server::Builder::configure()
        // Reflection lists only what this endpoint serves.
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let router = tonic::transport::Server::builder().add_service(health_service).add_service(reflection);
    let stop = async move { shutdown.wait().await };
    if let Some(path) = addr.strip_prefix("unix:") {
        let _ = std::fs::remove_file(path);
        let listener = tokio::net::UnixListener::bind(path)?;
        router.serve_with_incoming_shutdown(tokio_stream::wrappers::UnixListenerStream::new(listener), stop).await?;
        let _ = std::fs::remove_file(path);
    } else {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        router.serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), stop).await?;
    }
    Ok(())
}
