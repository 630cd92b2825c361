//! What the host shows about plugins and their processes: `describe`'s
//! [`PluginInfo`] and the process line of a rule's status.

use std::path::PathBuf;

use serde::Serialize;

use crate::catalog::PluginKind;
use crate::process::{Limits, ProcessStatus, Usage};
use crate::Entry;

/// What `describe` reports about a plugin: eKuiper's `{"name","version"}` plus
/// what Oort knows about the file and its processes.
#[derive(Debug, Clone, Serialize)]
pub struct PluginInfo {
    pub name: String,
    /// The version of the file that runs, leading `v` dropped; empty when the
    /// file carries none.
    pub version: String,
    pub kind: PluginKind,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub functions: Vec<String>,
    /// `constructor` or `singleton`, once a process has described itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<&'static str>,
    pub file: PathBuf,
    pub sha256: String,
    pub other_versions: Vec<String>,
    /// Every installed version, newest first, with the rules running each.
    pub versions: Vec<VersionInfo>,
    pub processes: Vec<ProcessInfo>,
    /// eKuiper's metadata `about` (author, helpUrl, description, …), when
    /// the plugin has a `<name>.json`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub about: Option<serde_json::Value>,
    /// eKuiper's metadata `properties`: what the plugin's options mean.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<serde_json::Value>,
    /// Why the plugin's `<name>.json` was not read, when it is there but
    /// invalid: the plugin runs without it (no function list, no limits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata_problem: Option<String>,
    /// The portable package providing the plugin, when one does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub portable: Option<crate::catalog::PortableOrigin>,
}

/// One installed version of a plugin.
#[derive(Debug, Clone, Serialize)]
pub struct VersionInfo {
    /// Leading `v` dropped; empty for a file without a version.
    pub version: String,
    pub file: PathBuf,
    /// Whether new rules without a pin get this version (the newest not
    /// held back).
    pub newest: bool,
    /// Rolled back: no rule starts on it until its file is removed.
    pub held: bool,
    /// The rules with an instance on a process of this version, sorted.
    pub rules: Vec<String>,
}

/// One running process of a plugin.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessInfo {
    /// The file it runs: an older version's while a rule that started on it
    /// runs.
    pub file: PathBuf,
    /// That file's version, leading `v` dropped; empty when it carries none.
    pub version: String,
    pub pid: Option<u32>,
    /// The rule it serves, or `None` for a shared (singleton) process.
    pub rule: Option<String>,
    pub restarts: u32,
    pub status: ProcessStatus,
    pub instances: usize,
    /// The limits it runs with.
    pub limits: Limits,
    /// Its tree's resource use at the last sample.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Why it last ended unexpectedly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
}

/// What a rule status shows about the process serving one of its instances.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessView {
    pub plugin: String,
    pub status: ProcessStatus,
    pub limits: Limits,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
}

impl ProcessView {
    pub(crate) fn of(entry: &Entry) -> ProcessView {
        ProcessView {
            plugin: entry.process.spec().name.clone(),
            status: entry.process.status(),
            limits: entry.process.spec().limits,
            usage: entry.process.usage(),
            last_failure: entry.process.last_failure(),
        }
    }
}
