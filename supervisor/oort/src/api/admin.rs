//! The gRPC admin API (`oort.admin.v1.Admin`): the REST API's plugin and rule
//! reads and start/stop, for tools and for grpcurl.

use std::sync::Arc;

use oort_proto::admin::v1 as pb;
use oort_proto::admin::v1::admin_server::Admin;
use tonic::{Request, Response, Status};

use super::report::{flat_status, process_status_word, rule_state_word};
use oort_engine::{Engine, EngineError, ErrorKind, RunState};
use oort_host::catalog::PluginKind;
use oort_host::Host;

/// The gRPC status of a failed engine request: the one mapping of
/// [`ErrorKind`] to gRPC codes.
fn engine_status(e: EngineError) -> Status {
    {
        let message = e.to_string();
        match e.kind() {
            ErrorKind::Invalid => Status::invalid_argument(message),
            ErrorKind::NotFound => Status::not_found(message),
            ErrorKind::Exists => Status::already_exists(message),
            ErrorKind::Conflict => Status::failed_precondition(message),
            ErrorKind::Internal => Status::internal(message),
        }
    }
}

pub(super) struct AdminService {
    pub host: Arc<Host>,
    pub engine: Arc<Engine>,
    /// In cluster mode, start and stop go to the cluster's definitions.
    pub cluster: Option<Arc<oort_cluster::Membership>>,
}

impl AdminService {
    async fn set_running(&self, id: &str, running: bool) -> Result<(), Status> {
        match &self.cluster {
            Some(c) => super::cluster::set_running(c, id, running).await.map_err(|e| match e {
                super::cluster::SetRunningError::NoRule => Status::not_found(format!("no rule with id {id:?}")),
                super::cluster::SetRunningError::Unavailable(e) => {
                    Status::unavailable(format!("the cluster cannot be reached: {e}"))
                }
            }),
            None if running => self.engine.start_rule(id).await.map_err(engine_status),
            None => self.engine.stop_rule(id).await.map_err(engine_status),
        }
    }
}

fn kind(k: &str) -> Result<PluginKind, Status> {
    PluginKind::parse(k)
        .ok_or_else(|| Status::invalid_argument(format!("unknown plugin kind {k:?}: use source, sink or function")))
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn list_plugins(
        &self,
        req: Request<pb::ListPluginsRequest>,
    ) -> Result<Response<pb::ListPluginsResponse>, Status> {
        let kind = kind(&req.into_inner().kind)?;
        self.host.rescan().await;
        Ok(Response::new(pb::ListPluginsResponse { names: self.host.list(kind) }))
    }

    async fn describe_plugin(
        &self,
        req: Request<pb::DescribePluginRequest>,
    ) -> Result<Response<pb::PluginDescription>, Status> {
        let req = req.into_inner();
        let kind = kind(&req.kind)?;
        let Some(info) = self.host.describe_rescanning(kind, &req.name).await else {
            let why = self.host.catalog_problem(kind, &req.name).map(|p| format!(": {p}")).unwrap_or_default();
            return Err(Status::not_found(format!("no {} plugin named {:?}{why}", kind.as_str(), req.name)));
        };
        Ok(Response::new(pb::PluginDescription {
            name: info.name,
            version: info.version,
            kind: info.kind.as_str().to_string(),
            functions: info.functions,
            mode: info.mode.unwrap_or_default().to_string(),
            file: info.file.display().to_string(),
            sha256: info.sha256,
            other_versions: info.other_versions,
            processes: info
                .processes
                .into_iter()
                .map(|p| pb::PluginProcess {
                    pid: p.pid.unwrap_or_default(),
                    rule: p.rule.unwrap_or_default(),
                    restarts: p.restarts,
                    status: process_status_word(&p.status).to_string(),
                    instances: p.instances as u32,
                    version: p.version,
                    file: p.file.display().to_string(),
                })
                .collect(),
        }))
    }

    async fn list_rules(&self, _: Request<pb::ListRulesRequest>) -> Result<Response<pb::ListRulesResponse>, Status> {
        let rules = self
            .engine
            .list_rules()
            .await
            .into_iter()
            .map(|(id, state)| pb::RuleSummary { id, status: rule_state_word(&state).to_string() })
            .collect();
        Ok(Response::new(pb::ListRulesResponse { rules }))
    }

    async fn get_rule_status(&self, req: Request<pb::RuleRequest>) -> Result<Response<pb::RuleStatus>, Status> {
        let report = self.engine.rule_status(&req.into_inner().id).await.map_err(engine_status)?;
        let text = |v: &serde_json::Value| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
        let mut metrics = flat_status(&report);
        metrics.remove("status");
        metrics.remove("message");
        Ok(Response::new(pb::RuleStatus {
            status: rule_state_word(&report.state).to_string(),
            message: match &report.state {
                RunState::Failed(reason) => reason.clone(),
                _ => String::new(),
            },
            metrics: metrics.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
            plugins: report
                .plugins
                .iter()
                .map(|p| pb::RuleOperatorProcess {
                    operator: p.operator.clone(),
                    pid: p.pid.unwrap_or_default(),
                    restarts: p.restarts,
                })
                .collect(),
        }))
    }

    async fn start_rule(&self, req: Request<pb::RuleRequest>) -> Result<Response<pb::RuleActionResponse>, Status> {
        let id = req.into_inner().id;
        self.set_running(&id, true).await?;
        Ok(Response::new(pb::RuleActionResponse { message: format!("Rule {id} was started.") }))
    }

    async fn stop_rule(&self, req: Request<pb::RuleRequest>) -> Result<Response<pb::RuleActionResponse>, Status> {
        let id = req.into_inner().id;
        self.set_running(&id, false).await?;
        Ok(Response::new(pb::RuleActionResponse { message: format!("Rule {id} was stopped.") }))
    }
}
