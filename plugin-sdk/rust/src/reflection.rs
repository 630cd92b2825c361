//! gRPC server reflection, built on its first request.
//!
//! Building the reflection service decodes the protocol's descriptor sets
//! into lookup tables: about 300 kB of heap and the code pages of that
//! decoding, held by every plugin process for a service that only a person
//! with grpcurl asks. Built on first use, an idle plugin does not pay for it
//! (BENCHMARKS.md, "One Rust plugin ≤ 5 MB").

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tonic::server::NamedService;
use tower::util::{BoxCloneSyncService, Oneshot};
use tower::{Service, ServiceExt};

type Reflection = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// `grpc.reflection.v1.ServerReflection`, listing `served` and the
/// reflection service itself.
#[derive(Clone)]
pub(crate) struct LazyReflection {
    served: &'static [&'static str],
    built: Arc<OnceLock<Reflection>>,
}

impl LazyReflection {
    pub(crate) fn new(served: &'static [&'static str]) -> LazyReflection {
        LazyReflection { served, built: Arc::default() }
    }

    fn service(&self) -> Reflection {
        self.built.get_or_init(|| build(self.served)).clone()
    }
}

fn build(served: &[&str]) -> Reflection {
    let mut builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(oort_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    // Advertise what this process serves; the State service in the same
    // descriptor set is the supervisor's, not ours.
    for service in served {
        builder = builder.with_service_name(*service);
    }
    match builder.with_service_name(LazyReflection::NAME).build_v1() {
        Ok(service) => BoxCloneSyncService::new(service),
        // The descriptor sets are compiled in, so this is a defect of the
        // SDK (its tests build the service); answer that, not crash.
        Err(e) => {
            tracing::error!("cannot build the gRPC reflection service: {e}");
            let message = format!("reflection is unavailable in this plugin: {e}");
            BoxCloneSyncService::new(tower::service_fn(move |_: Request<Body>| {
                let status = tonic::Status::unimplemented(message.clone());
                std::future::ready(Ok::<_, Infallible>(status.into_http()))
            }))
        }
    }
}

impl NamedService for LazyReflection {
    const NAME: &'static str = "grpc.reflection.v1.ServerReflection";
}

impl Service<Request<Body>> for LazyReflection {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Oneshot<Reflection, Request<Body>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        self.service().oneshot(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_descriptor_sets_build_a_reflection_service_and_only_on_first_use() {
        let lazy = LazyReflection::new(&["oort.plugin.v1.Plugin"]);
        assert!(lazy.built.get().is_none(), "nothing is built before a request");
        // A failed build answers with an UNIMPLEMENTED status; a good one is
        // the reflection server itself. Tell them apart by a request that
        // the real server accepts: a gRPC POST with an empty stream.
        let service = lazy.service();
        assert!(lazy.built.get().is_some());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let response = runtime.block_on(async move {
            let request = Request::builder()
                .method("POST")
                .uri("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo")
                .header("content-type", "application/grpc")
                .body(Body::empty())
                .unwrap();
            service.oneshot(request).await.unwrap()
        });
        let status = tonic::Status::from_header_map(response.headers());
        assert!(status.is_none(), "the built service refused a well-formed call: {status:?}");
    }
}
