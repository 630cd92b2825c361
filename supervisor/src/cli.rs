//! The `oort` subcommands that talk to a running daemon over its REST API.

use std::fmt::Write as _;

use anyhow::{bail, Context as _};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value as Json;

use crate::catalog::PluginKind;

/// Where the daemon is and how to talk to it.
#[derive(Debug, Clone)]
pub struct Remote {
    /// e.g. `http://127.0.0.1:9081`.
    pub server: String,
    pub token: Option<String>,
    pub json: bool,
}

impl Remote {
    async fn get(&self, path: &str) -> anyhow::Result<Json> {
        let url = format!("{}{}", self.server.trim_end_matches('/'), path);
        let mut req = hyper::Request::get(&url);
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req.body(Empty::<Bytes>::new()).with_context(|| format!("bad server URL {url:?}"))?;
        let client = Client::builder(TokioExecutor::new()).build_http();
        let resp =
            client.request(req).await.with_context(|| format!("cannot reach the oort daemon at {}", self.server))?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        let json: Json = if body.is_empty() {
            Json::Null
        } else {
            serde_json::from_slice(&body).context("the daemon sent invalid JSON")?
        };
        if !status.is_success() {
            let msg = json.get("error").and_then(Json::as_str).unwrap_or("no message");
            bail!("{} ({status})", msg);
        }
        Ok(json)
    }
}

/// `oort plugin list <kind>`.
pub async fn plugin_list(remote: &Remote, kind: PluginKind) -> anyhow::Result<String> {
    let json = remote.get(&format!("/plugins/{}", kind.dir_name())).await?;
    if remote.json {
        return Ok(json.to_string());
    }
    let names: Vec<&str> = json.as_array().map(|a| a.iter().filter_map(Json::as_str).collect()).unwrap_or_default();
    if names.is_empty() {
        return Ok(format!("no {} plugins", kind.as_str()));
    }
    Ok(names.join("\n"))
}

/// `oort plugin describe <kind> <name>`.
pub async fn plugin_describe(remote: &Remote, kind: PluginKind, name: &str) -> anyhow::Result<String> {
    let json = remote.get(&format!("/plugins/{}/{}", kind.dir_name(), name)).await?;
    if remote.json {
        return Ok(json.to_string());
    }
    let field = |k: &str| {
        json.get(k).map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())).unwrap_or_default()
    };
    let mut out = String::new();
    writeln!(out, "name:      {}", field("name"))?;
    writeln!(out, "version:   {}", field("version"))?;
    writeln!(out, "kind:      {}", field("kind"))?;
    if let Some(f) = json.get("functions").and_then(Json::as_array) {
        let names: Vec<&str> = f.iter().filter_map(Json::as_str).collect();
        writeln!(out, "functions: {}", names.join(", "))?;
    }
    if json.get("mode").is_some() {
        writeln!(out, "mode:      {}", field("mode"))?;
    }
    writeln!(out, "file:      {}", field("file"))?;
    writeln!(out, "sha256:    {}", field("sha256"))?;
    let processes = json.get("processes").and_then(Json::as_array).cloned().unwrap_or_default();
    if processes.is_empty() {
        write!(out, "processes: none running")?;
    } else {
        writeln!(out, "processes:")?;
        writeln!(out, "  {:<8} {:<20} {:<10} {:<9} INSTANCES", "PID", "RULE", "STATUS", "RESTARTS")?;
        for p in processes {
            let s = |k: &str| {
                p.get(k).map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())).unwrap_or_default()
            };
            let status = p.get("status").and_then(|s| s.get("status")).and_then(Json::as_str).unwrap_or("?");
            let rule = p.get("rule").and_then(Json::as_str).unwrap_or("(shared)");
            writeln!(out, "  {:<8} {:<20} {:<10} {:<9} {}", s("pid"), rule, status, s("restarts"), s("instances"))?;
        }
    }
    Ok(out.trim_end().to_string())
}
