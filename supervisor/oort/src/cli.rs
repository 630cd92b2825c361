//! The `oort` subcommands that talk to a running daemon over its REST API.
//! Each returns the text to print; an error becomes one line on stderr and a
//! non-zero exit in `main`.

use std::fmt::Write as _;

use anyhow::{bail, Context as _};
use serde_json::Value as Json;

/// Where the daemon is and how to talk to it.
#[derive(Debug, Clone)]
pub struct Remote {
    /// e.g. `http://127.0.0.1:9081`.
    pub server: String,
    pub token: Option<String>,
    /// Print JSON instead of tables.
    pub json: bool,
}

/// A successful answer: JSON when the daemon sent JSON, else its text.
enum Answer {
    Json(Json),
    Text(String),
}

impl Remote {
    async fn request(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> anyhow::Result<Answer> {
        let url = format!("{}{}", self.server.trim_end_matches('/'), path);
        let mut req = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(body.unwrap_or_default()).with_context(|| format!("bad server URL {url:?}"))?;
        let server = self.server.clone();
        // ureq (also the installer's client) blocks: one request, off the runtime.
        let (status, bytes) = tokio::task::spawn_blocking(move || -> anyhow::Result<(u16, Vec<u8>)> {
            let config = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(std::time::Duration::from_secs(120)))
                .build();
            let agent = ureq::Agent::new_with_config(config);
            let mut resp = agent.run(req).with_context(|| format!("cannot reach the oort daemon at {server}"))?;
            let bytes = resp.body_mut().with_config().limit(64 << 20).read_to_vec()?;
            Ok((resp.status().as_u16(), bytes))
        })
        .await??;
        let json = serde_json::from_slice::<Json>(&bytes).ok();
        if !(200..300).contains(&status) {
            let msg = json.as_ref().and_then(|j| j.get("error")).and_then(Json::as_str).map(str::to_string);
            let reason = ureq::http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason().map(|r| format!("{status} {r}")))
                .unwrap_or_else(|| status.to_string());
            bail!("{} ({reason})", msg.unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_string()));
        }
        Ok(match json {
            Some(j) => Answer::Json(j),
            None => Answer::Text(String::from_utf8_lossy(&bytes).trim().to_string()),
        })
    }

    async fn get(&self, path: &str) -> anyhow::Result<Json> {
        match self.request("GET", path, None).await? {
            Answer::Json(j) => Ok(j),
            Answer::Text(t) => bail!("the daemon sent text where JSON was expected: {t}"),
        }
    }

    /// A request whose answer is a message to show.
    async fn act(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> anyhow::Result<String> {
        Ok(match self.request(method, path, body).await? {
            Answer::Text(t) => {
                if self.json {
                    serde_json::json!({ "message": t }).to_string()
                } else {
                    t
                }
            }
            Answer::Json(j) => j.to_string(),
        })
    }

    fn show(&self, json: &Json, table: impl FnOnce(&Json) -> anyhow::Result<String>) -> anyhow::Result<String> {
        if self.json {
            Ok(json.to_string())
        } else {
            table(json)
        }
    }
}

fn text(v: &Json) -> String {
    v.as_str().map(str::to_string).unwrap_or_else(|| if v.is_null() { String::new() } else { v.to_string() })
}

fn lines(json: &Json, empty: &str) -> anyhow::Result<String> {
    let names: Vec<String> = json.as_array().map(|a| a.iter().map(text).collect()).unwrap_or_default();
    Ok(if names.is_empty() { empty.to_string() } else { names.join("\n") })
}

// ----- plugins -----

/// `oort plugin list <kind>` (`kind` as in the REST path: sources, sinks,
/// functions or portables).
pub async fn plugin_list(remote: &Remote, kind: &str) -> anyhow::Result<String> {
    let json = remote.get(&format!("/plugins/{kind}")).await?;
    // Portable packages are listed as objects: their names are what a list shows.
    let json = match json {
        Json::Array(items) => Json::Array(items.into_iter().map(|i| i.get("name").cloned().unwrap_or(i)).collect()),
        other => other,
    };
    remote.show(&json, |j| lines(j, &format!("no {kind} plugins")))
}

/// `oort plugin describe <kind> <name>`.
pub async fn plugin_describe(remote: &Remote, kind: &str, name: &str) -> anyhow::Result<String> {
    let json = remote.get(&format!("/plugins/{kind}/{name}")).await?;
    remote.show(&json, |json| {
        let field = |k: &str| json.get(k).map(text).unwrap_or_default();
        let list =
            |k: &str| json.get(k).and_then(Json::as_array).map(|a| a.iter().map(text).collect::<Vec<_>>().join(", "));
        let mut out = String::new();
        writeln!(out, "name:      {}", field("name"))?;
        writeln!(out, "version:   {}", field("version"))?;
        if kind == "portables" {
            writeln!(out, "language:  {}", field("language"))?;
            writeln!(out, "program:   {}", field("executable"))?;
            for part in ["sources", "sinks", "functions"] {
                writeln!(out, "{:<10} {}", format!("{part}:"), list(part).unwrap_or_default())?;
            }
            return Ok(out.trim_end().to_string());
        }
        writeln!(out, "kind:      {}", field("kind"))?;
        if let Some(about) = json.get("about") {
            // eKuiper's about: a description per language; English when there is one.
            let description = about.pointer("/description/en_US").or_else(|| about.get("description"));
            if let Some(d) = description {
                writeln!(out, "about:     {}", text(d))?;
            }
        }
        if let Some(problem) = json.get("metadata_problem") {
            writeln!(out, "metadata:  {}", text(problem))?;
        }
        if let Some(f) = json.get("functions").and_then(Json::as_array) {
            let names: Vec<String> = f.iter().map(text).collect();
            writeln!(out, "functions: {}", names.join(", "))?;
        }
        if json.get("mode").is_some() {
            writeln!(out, "mode:      {}", field("mode"))?;
        }
        writeln!(out, "file:      {}", field("file"))?;
        writeln!(out, "sha256:    {}", field("sha256"))?;
        let versions = json.get("versions").and_then(Json::as_array).cloned().unwrap_or_default();
        if versions.len() > 1
            || versions.iter().any(|v| v.get("rules").and_then(Json::as_array).is_some_and(|r| !r.is_empty()))
        {
            writeln!(out, "versions:")?;
            for v in &versions {
                let version = v.get("version").map(text).filter(|v| !v.is_empty()).unwrap_or_else(|| "(none)".into());
                let rules: Vec<String> =
                    v.get("rules").and_then(Json::as_array).map(|r| r.iter().map(text).collect()).unwrap_or_default();
                let newest = match (v.get("newest").and_then(Json::as_bool), v.get("held").and_then(Json::as_bool)) {
                    (Some(true), _) => " (newest)",
                    (_, Some(true)) => " (held back)",
                    _ => "",
                };
                let runs = if rules.is_empty() { "no rule".to_string() } else { format!("rules {}", rules.join(", ")) };
                writeln!(out, "  {version}{newest}: {runs}")?;
            }
        }
        let processes = json.get("processes").and_then(Json::as_array).cloned().unwrap_or_default();
        if processes.is_empty() {
            write!(out, "processes: none running")?;
        } else {
            writeln!(out, "processes:")?;
            let header = ("PID", "VERSION", "RULE", "STATUS", "RESTARTS");
            writeln!(
                out,
                "  {:<8} {:<10} {:<20} {:<10} {:<9} INSTANCES",
                header.0, header.1, header.2, header.3, header.4
            )?;
            for p in processes {
                let s = |k: &str| p.get(k).map(text).unwrap_or_default();
                let status = p.get("status").and_then(|s| s.get("status")).and_then(Json::as_str).unwrap_or("?");
                let rule = p.get("rule").and_then(Json::as_str).unwrap_or("(shared)");
                let version = match s("version") {
                    v if v.is_empty() => "-".to_string(),
                    v => v,
                };
                writeln!(
                    out,
                    "  {:<8} {:<10} {:<20} {:<10} {:<9} {}",
                    s("pid"),
                    version,
                    rule,
                    status,
                    s("restarts"),
                    s("instances")
                )?;
            }
        }
        Ok(out.trim_end().to_string())
    })
}

/// `oort plugin install <kind> <name> <file> [--sha256 HEX]`.
pub async fn plugin_install(
    remote: &Remote,
    kind: &str,
    name: &str,
    file: &str,
    sha256: Option<&str>,
) -> anyhow::Result<String> {
    // A relative path means the caller's folder, not the daemon's.
    let file = if file.contains("://") || file.starts_with('/') {
        file.to_string()
    } else {
        std::env::current_dir()?.join(file).display().to_string()
    };
    let body = serde_json::json!({ "name": name, "file": file, "sha256": sha256 });
    remote.act("POST", &format!("/plugins/{kind}"), Some(body.to_string().into_bytes())).await
}

/// `oort plugin upgrade <kind> <name>`.
pub async fn plugin_upgrade(remote: &Remote, kind: &str, name: &str) -> anyhow::Result<String> {
    remote.act("POST", &format!("/plugins/{kind}/{name}/upgrade"), None).await
}

/// `oort plugin rollback <kind> <name>`.
pub async fn plugin_rollback(remote: &Remote, kind: &str, name: &str) -> anyhow::Result<String> {
    remote.act("POST", &format!("/plugins/{kind}/{name}/rollback"), None).await
}

/// `oort plugin remove <kind> <name> [--version <v>]`.
pub async fn plugin_remove(remote: &Remote, kind: &str, name: &str, version: Option<&str>) -> anyhow::Result<String> {
    match version {
        Some(v) => remote.act("DELETE", &format!("/plugins/{kind}/{name}?version={v}"), None).await,
        None => remote.act("DELETE", &format!("/plugins/{kind}/{name}"), None).await,
    }
}

// ----- streams -----

/// `oort stream create "<CREATE STREAM …>"`.
pub async fn stream_create(remote: &Remote, sql: &str) -> anyhow::Result<String> {
    let body = serde_json::json!({ "sql": sql });
    remote.act("POST", "/streams", Some(body.to_string().into_bytes())).await
}

/// `oort stream list`.
pub async fn stream_list(remote: &Remote) -> anyhow::Result<String> {
    let json = remote.get("/streams").await?;
    remote.show(&json, |j| lines(j, "no streams"))
}

/// `oort stream describe <name>`.
pub async fn stream_describe(remote: &Remote, name: &str) -> anyhow::Result<String> {
    let json = remote.get(&format!("/streams/{name}")).await?;
    remote.show(&json, |j| {
        let mut out = String::new();
        writeln!(out, "name:      {}", j.get("Name").map(text).unwrap_or_default())?;
        let fields = j.get("StreamFields").and_then(Json::as_array).cloned().unwrap_or_default();
        if fields.is_empty() {
            writeln!(out, "fields:    (schemaless)")?;
        } else {
            writeln!(out, "fields:")?;
            for f in fields {
                let name = f.get("Name").map(text).unwrap_or_default();
                let ty = f.get("FieldType").map(text).unwrap_or_default();
                writeln!(out, "  {name:<20} {ty}")?;
            }
        }
        writeln!(out, "options:")?;
        if let Some(opts) = j.get("Options").and_then(Json::as_object) {
            for (k, v) in opts {
                writeln!(out, "  {k:<20} {}", text(v))?;
            }
        }
        Ok(out.trim_end().to_string())
    })
}

/// `oort stream drop <name>`.
pub async fn stream_drop(remote: &Remote, name: &str) -> anyhow::Result<String> {
    remote.act("DELETE", &format!("/streams/{name}"), None).await
}

// ----- rules -----

/// `oort rule create (--file F | JSON)`.
pub async fn rule_create(remote: &Remote, rule_json: &str) -> anyhow::Result<String> {
    serde_json::from_str::<Json>(rule_json).context("the rule is not valid JSON")?;
    remote.act("POST", "/rules", Some(rule_json.as_bytes().to_vec())).await
}

/// `oort rule list`.
pub async fn rule_list(remote: &Remote) -> anyhow::Result<String> {
    let json = remote.get("/rules").await?;
    remote.show(&json, |j| {
        let rules = j.as_array().cloned().unwrap_or_default();
        if rules.is_empty() {
            return Ok("no rules".into());
        }
        let mut out = format!("{:<24} STATUS\n", "ID");
        for r in rules {
            writeln!(
                out,
                "{:<24} {}",
                r.get("id").map(text).unwrap_or_default(),
                r.get("status").map(text).unwrap_or_default()
            )?;
        }
        Ok(out.trim_end().to_string())
    })
}

/// `oort cluster status`: the live nodes of the daemon's cluster, with the
/// seconds left on each one's lease.
pub async fn cluster_status(remote: &Remote) -> anyhow::Result<String> {
    let json = remote.get("/cluster").await?;
    remote.show(&json, |j| {
        let me = j.get("node").map(text).unwrap_or_default();
        let mut out = format!("{:<20} {:<24} {:>9} {:>6}  LABELS\n", "NODE", "ADDRESS", "LEASE TTL", "RULES");
        for n in j.get("nodes").and_then(|n| n.as_array()).cloned().unwrap_or_default() {
            let id = n.get("id").map(text).unwrap_or_default();
            let ttl = n.get("ttlLeftS").and_then(|t| t.as_i64()).map_or("-".to_string(), |t| format!("{t} s"));
            let labels = n
                .get("labels")
                .and_then(|l| l.as_object())
                .map(|l| l.iter().map(|(k, v)| format!("{k}={}", text(v))).collect::<Vec<_>>().join(","))
                .unwrap_or_default();
            let marker = if id == me { " (this node)" } else { "" };
            writeln!(
                out,
                "{:<20} {:<24} {:>9} {:>6}  {labels}",
                format!("{id}{marker}"),
                n.get("apiAddr").map(text).unwrap_or_default(),
                ttl,
                n.get("rules").and_then(|r| r.as_u64()).unwrap_or(0),
            )?;
        }
        let count = |k: &str| j.get(k).and_then(|r| r.as_u64()).unwrap_or(0);
        writeln!(out, "{} rules, {} waiting for a node", count("rules"), count("unassigned"))?;
        Ok(out.trim_end().to_string())
    })
}

/// `oort rule describe <id>`: the rule's JSON, pretty-printed.
pub async fn rule_describe(remote: &Remote, id: &str) -> anyhow::Result<String> {
    let json = remote.get(&format!("/rules/{id}")).await?;
    remote.show(&json, |j| Ok(serde_json::to_string_pretty(j)?))
}

/// `oort rule status <id>`: one line per metric.
pub async fn rule_status(remote: &Remote, id: &str) -> anyhow::Result<String> {
    let json = remote.get(&format!("/rules/{id}/status")).await?;
    remote.show(&json, |j| {
        let mut out = String::new();
        if let Some(obj) = j.as_object() {
            // The run state first, then the metrics in name order.
            for key in ["status", "message"] {
                if let Some(v) = obj.get(key) {
                    writeln!(out, "{key:<48} {}", text(v))?;
                }
            }
            for (k, v) in obj {
                if matches!(k.as_str(), "plugins" | "status" | "message") {
                    continue;
                }
                writeln!(out, "{k:<48} {}", text(v))?;
            }
            if let Some(plugins) = obj.get("plugins").and_then(Json::as_array) {
                writeln!(out, "{:<24} {:<8} RESTARTS", "PLUGIN OPERATOR", "PID")?;
                for p in plugins {
                    let s = |k: &str| p.get(k).map(text).unwrap_or_default();
                    writeln!(out, "{:<24} {:<8} {}", s("operator"), s("pid"), s("restarts"))?;
                }
            }
        }
        Ok(out.trim_end().to_string())
    })
}

/// `oort rule start|stop|restart <id>`.
pub async fn rule_action(remote: &Remote, id: &str, action: &str) -> anyhow::Result<String> {
    remote.act("POST", &format!("/rules/{id}/{action}"), None).await
}

/// `oort rule delete <id>`.
pub async fn rule_delete(remote: &Remote, id: &str) -> anyhow::Result<String> {
    remote.act("DELETE", &format!("/rules/{id}"), None).await
}
