//! Everything the supervisor serves: the REST admin API, the State service
//! plugins call back into, and the gRPC admin endpoint (health, reflection).
//!
//! Architecture invariant: errors are mapped to HTTP and gRPC status codes here
//! and nowhere else; the modules below return typed errors.

mod admin;
mod rest;
mod state_service;

pub use rest::{router, ApiConfig};
pub use state_service::serve_state;

use crate::shutdown::Shutdown;

/// Serves the admin API (`oort.admin.v1`), gRPC health and server reflection
/// on `addr` (`unix:PATH` or `HOST:PORT`) until shutdown.
pub async fn serve_grpc(
    addr: String,
    host: std::sync::Arc<crate::host::Host>,
    engine: std::sync::Arc<crate::runtime::Engine>,
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
    let admin = oort_proto::admin::v1::admin_server::AdminServer::new(admin::AdminService { host, engine });
    let router =
        tonic::transport::Server::builder().add_service(health_service).add_service(reflection).add_service(admin);
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
