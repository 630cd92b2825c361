//! cgroup v2, where the supervisor may use it: one child cgroup per plugin
//! process, so the kernel enforces its memory limit, nothing it forks can
//! leave it, and `cgroup.kill` ends the whole tree at once.
//!
//! Used only when the supervisor's own cgroup is in a cgroup v2 hierarchy
//! that it can write and that offers the `memory` and `pids` controllers (a
//! delegated subtree: systemd's `Delegate=yes`, a container with its own
//! cgroup namespace). The supervisor then moves itself into a leaf
//! `<its cgroup>/oort-supervisor` (cgroup v2 lets only leaves hold
//! processes once controllers are enabled for children) and creates
//! `<its cgroup>/oort-plugin-<n>` per plugin process. Everywhere else the
//! watchdog and rlimits enforce the limits (see `limits`), with the same
//! reports.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use oort_core::Limits;

/// The delegated cgroup the supervisor creates plugin cgroups in.
#[derive(Debug)]
pub(crate) struct Cgroups {
    base: PathBuf,
    next: AtomicU64,
}

/// One plugin process's cgroup; removed on drop (after a kill).
#[derive(Debug)]
pub(crate) struct PluginCgroup {
    pub dir: PathBuf,
}

static CGROUPS: OnceLock<Option<Cgroups>> = OnceLock::new();

/// The plugin cgroups, when daemon mode enabled them and they work.
pub(crate) fn active() -> Option<&'static Cgroups> {
    CGROUPS.get().and_then(Option::as_ref)
}

/// Detects and prepares cgroup v2, once, in daemon mode (see `guard`): a
/// library user or a test process is never moved between cgroups.
pub(crate) fn enable() {
    CGROUPS.get_or_init(|| match prepare() {
        Ok(c) => {
            tracing::info!(cgroup = %c.base.display(), "plugin limits use cgroup v2");
            Some(c)
        }
        Err(why) => {
            tracing::info!("plugin limits use rlimits and the /proc watchdog (no cgroup v2: {why})");
            None
        }
    });
}

/// Reads `/proc/self/cgroup`'s unified line and `/proc/self/mountinfo`'s
/// cgroup2 mount into the folder of our cgroup.
fn own_cgroup_dir(cgroup: &str, mountinfo: &str) -> Option<PathBuf> {
    let rel = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    let mount = mountinfo.lines().find_map(|l| {
        let (before, after) = l.split_once(" - ")?;
        (after.split_whitespace().next()? == "cgroup2").then(|| before.split_whitespace().nth(4).map(str::to_string))?
    })?;
    Some(Path::new(&mount).join(rel.trim_start_matches('/')))
}

fn prepare() -> Result<Cgroups, String> {
    let read = |p: &str| std::fs::read_to_string(p).map_err(|e| format!("{p}: {e}"));
    let base = own_cgroup_dir(&read("/proc/self/cgroup")?, &read("/proc/self/mountinfo")?)
        .ok_or("not in a cgroup v2 hierarchy")?;
    let controllers = std::fs::read_to_string(base.join("cgroup.controllers")).map_err(|e| e.to_string())?;
    for c in ["memory", "pids"] {
        if !controllers.split_whitespace().any(|x| x == c) {
            return Err(format!("controller {c} not available in {}", base.display()));
        }
    }
    let leaf = base.join("oort-supervisor");
    std::fs::create_dir_all(&leaf).map_err(|e| format!("cannot create {}: {e}", leaf.display()))?;
    // Every process of the supervisor's cgroup must leave it before
    // controllers can be enabled for children; we can move only ourselves.
    let procs = std::fs::read_to_string(base.join("cgroup.procs")).map_err(|e| e.to_string())?;
    let me = std::process::id().to_string();
    if procs.lines().any(|p| p.trim() != me && !p.trim().is_empty()) {
        let _ = std::fs::remove_dir(&leaf);
        return Err(format!("{} holds other processes", base.display()));
    }
    std::fs::write(leaf.join("cgroup.procs"), &me).map_err(|e| format!("cannot move into {}: {e}", leaf.display()))?;
    if let Err(e) = std::fs::write(base.join("cgroup.subtree_control"), "+memory +pids") {
        let _ = std::fs::write(base.join("cgroup.procs"), &me);
        let _ = std::fs::remove_dir(&leaf);
        return Err(format!("cannot enable memory and pids for {}: {e}", base.display()));
    }
    Ok(Cgroups { base, next: AtomicU64::new(1) })
}

impl Cgroups {
    /// A fresh cgroup for one plugin process, with its limits written.
    pub fn create(&self, limits: &Limits) -> std::io::Result<PluginCgroup> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let dir = self.base.join(format!("oort-plugin-{}-{n}", std::process::id()));
        std::fs::create_dir(&dir)?;
        let cg = PluginCgroup { dir };
        if let Some(m) = limits.memory {
            std::fs::write(cg.dir.join("memory.max"), m.to_string())?;
            // No swap: the limit is on memory, not on what can be paged out.
            let _ = std::fs::write(cg.dir.join("memory.swap.max"), "0");
        }
        if let Some(p) = limits.processes {
            // pids.max counts threads too: a backstop with room for threaded
            // runtimes; the watchdog enforces the process count itself.
            std::fs::write(cg.dir.join("pids.max"), p.saturating_mul(64).to_string())?;
        }
        Ok(cg)
    }
}

impl PluginCgroup {
    /// The file the child writes itself into before `exec`.
    pub fn procs_file(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// Kills every process in the cgroup (kernel 5.14+).
    pub fn kill(&self) {
        let _ = std::fs::write(self.dir.join("cgroup.kill"), "1");
    }

    /// How often the kernel's OOM killer struck in it.
    pub fn oom_kills(&self) -> u64 {
        std::fs::read_to_string(self.dir.join("memory.events"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for PluginCgroup {
    fn drop(&mut self) {
        self.kill();
        // rmdir fails while the killed processes are still exiting.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unified_cgroup_folder_is_found() {
        let cgroup = "12:memory:/x\n0::/system.slice/oort.service\n";
        let mountinfo = "30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n\
                         31 23 0:27 / /sys/fs/cgroup/memory rw shared:5 - cgroup cgroup rw,memory\n";
        assert_eq!(own_cgroup_dir(cgroup, mountinfo), Some(PathBuf::from("/sys/fs/cgroup/system.slice/oort.service")));
        assert_eq!(own_cgroup_dir("1:name=systemd:/\n", mountinfo), None);
    }
}
