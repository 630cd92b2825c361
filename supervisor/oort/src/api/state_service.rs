//! The State service plugins call back into: eKuiper's five calls plus a batch.
//!
//! Each call is authorized by the `oort-token` metadata the process was given
//! at start; the instance id in the request must belong to that process.
//! Writes are staged until their batch is accepted: the optional `oort-seq`
//! metadata names the batch (the `seq` of the `ExecBatch` or `WriteBatch` the
//! plugin is handling); without it a write goes with the instance's next
//! accepted batch (see `oort_host::state`).

use std::path::PathBuf;
use std::sync::Arc;

use oort_proto::state::v1 as pb;
use oort_proto::state::v1::state_server::{State, StateServer};
use oort_proto::Value;
use tonic::{Request, Response, Status};

use crate::shutdown::Shutdown;
use oort_host::state::{StateError, StateRegistry};

/// The gRPC status of a refused State call.
fn state_status(e: StateError) -> Status {
    {
        match e {
            StateError::BadToken => Status::unauthenticated(e.to_string()),
            StateError::NotYours(_) => Status::permission_denied(e.to_string()),
            StateError::NotACounter { .. } | StateError::Overflow(_) => Status::failed_precondition(e.to_string()),
            StateError::TooLarge { .. } | StateError::ReservedKey(_) => Status::invalid_argument(e.to_string()),
            StateError::Abandoned { .. } => Status::failed_precondition(e.to_string()),
            StateError::TooManyStaged(_) => Status::resource_exhausted(e.to_string()),
        }
    }
}

struct Service(Arc<StateRegistry>);

/// The batch a write belongs to, from the `oort-seq` metadata. A value that is
/// not a decimal `u64` is refused rather than silently read as "untagged".
fn batch_of<T>(req: &Request<T>) -> Result<Option<u64>, Status> {
    match req.metadata().get("oort-seq") {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| Status::invalid_argument("oort-seq metadata must be a batch seq (a decimal u64)")),
    }
}

impl Service {
    fn check<T>(&self, req: &Request<T>, instance: &str) -> Result<(), StateError> {
        let token = req.metadata().get("oort-token").and_then(|v| v.to_str().ok()).unwrap_or_default();
        self.0.authorize(token, instance)
    }

    fn op(
        &self,
        token: &str,
        batch: Option<u64>,
        op: pb::state_op::Op,
    ) -> Result<pb::state_result::Result, StateError> {
        use pb::state_op::Op;
        use pb::state_result::Result as R;
        let r = &self.0;
        Ok(match op {
            Op::Put(p) => {
                r.authorize(token, &p.instance_id)?;
                r.put(&p.instance_id, &p.key, p.value.map(Value::from).unwrap_or_default(), batch)?;
                R::Done(pb::Empty {})
            }
            Op::Get(g) => {
                r.authorize(token, &g.instance_id)?;
                R::State(pb::GetStateResponse { value: r.get(&g.instance_id, &g.key).map(Into::into) })
            }
            Op::Delete(d) => {
                r.authorize(token, &d.instance_id)?;
                r.delete(&d.instance_id, &d.key, batch)?;
                R::Done(pb::Empty {})
            }
            Op::Incr(i) => {
                r.authorize(token, &i.instance_id)?;
                R::Count(pb::CounterResponse { count: r.incr(&i.instance_id, &i.key, i.amount, batch)? })
            }
            Op::Counter(c) => {
                r.authorize(token, &c.instance_id)?;
                R::Count(pb::CounterResponse { count: r.counter(&c.instance_id, &c.key)? })
            }
        })
    }
}

#[tonic::async_trait]
impl State for Service {
    async fn put_state(&self, req: Request<pb::PutStateRequest>) -> Result<Response<pb::Empty>, Status> {
        self.check(&req, &req.get_ref().instance_id).map_err(state_status)?;
        let batch = batch_of(&req)?;
        let r = req.into_inner();
        self.0
            .put(&r.instance_id, &r.key, r.value.map(Value::from).unwrap_or_default(), batch)
            .map_err(state_status)?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn get_state(&self, req: Request<pb::GetStateRequest>) -> Result<Response<pb::GetStateResponse>, Status> {
        self.check(&req, &req.get_ref().instance_id).map_err(state_status)?;
        let r = req.into_inner();
        Ok(Response::new(pb::GetStateResponse { value: self.0.get(&r.instance_id, &r.key).map(Into::into) }))
    }

    async fn delete_state(&self, req: Request<pb::DeleteStateRequest>) -> Result<Response<pb::Empty>, Status> {
        self.check(&req, &req.get_ref().instance_id).map_err(state_status)?;
        let batch = batch_of(&req)?;
        let r = req.into_inner();
        self.0.delete(&r.instance_id, &r.key, batch).map_err(state_status)?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn incr_counter(
        &self,
        req: Request<pb::IncrCounterRequest>,
    ) -> Result<Response<pb::CounterResponse>, Status> {
        self.check(&req, &req.get_ref().instance_id).map_err(state_status)?;
        let batch = batch_of(&req)?;
        let r = req.into_inner();
        Ok(Response::new(pb::CounterResponse {
            count: self.0.incr(&r.instance_id, &r.key, r.amount, batch).map_err(state_status)?,
        }))
    }

    async fn get_counter(&self, req: Request<pb::GetCounterRequest>) -> Result<Response<pb::CounterResponse>, Status> {
        self.check(&req, &req.get_ref().instance_id).map_err(state_status)?;
        let r = req.into_inner();
        Ok(Response::new(pb::CounterResponse { count: self.0.counter(&r.instance_id, &r.key).map_err(state_status)? }))
    }

    async fn batch(&self, req: Request<pb::BatchRequest>) -> Result<Response<pb::BatchResponse>, Status> {
        let token = req.metadata().get("oort-token").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let batch = batch_of(&req)?;
        let results = req
            .into_inner()
            .ops
            .into_iter()
            .map(|op| {
                let result = match op.op {
                    None => pb::state_result::Result::Error("empty op".into()),
                    Some(op) => {
                        self.op(&token, batch, op).unwrap_or_else(|e| pb::state_result::Result::Error(e.to_string()))
                    }
                };
                pb::StateResult { result: Some(result) }
            })
            .collect();
        Ok(Response::new(pb::BatchResponse { results }))
    }
}

/// The State service's socket, bound but not yet served. Binding comes before
/// any plugin starts, so that a plugin may call the State service from its
/// first instruction: connections queue until the service runs.
pub struct StateListener {
    listener: tokio::net::UnixListener,
    path: PathBuf,
}

/// Binds the State service's socket (in the runtime directory). Must be called
/// within a tokio runtime.
pub fn bind_state(path: PathBuf) -> std::io::Result<StateListener> {
    let listener = tokio::net::UnixListener::bind(&path)?;
    Ok(StateListener { listener, path })
}

/// Serves the State service on its bound socket until shutdown, then removes
/// the socket.
pub async fn serve_state(
    socket: StateListener,
    registry: Arc<StateRegistry>,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let stop = async move { shutdown.wait().await };
    let result = tonic::transport::Server::builder()
        .add_service(StateServer::new(Service(registry)))
        .serve_with_incoming_shutdown(tokio_stream::wrappers::UnixListenerStream::new(socket.listener), stop)
        .await;
    let _ = std::fs::remove_file(&socket.path);
    result.map_err(std::io::Error::other)
}
