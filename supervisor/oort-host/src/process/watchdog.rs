//! One thread that watches every plugin's process tree.
//!
//! Every [`PERIOD`] it reads `/proc` once and, for each watched plugin:
//! remembers every process seen in its tree (so a child that called `setsid`
//! and whose parent died is still known to be the plugin's), sums resident
//! memory, counts processes and CPU time, and kills the tree of a plugin over
//! its limit, leaving the reason for the plugin's monitor to report.
//!
//! In daemon mode (see [`super::guard`]) it also kills and reaps processes
//! re-parented to the supervisor (it is their subreaper) that it did not
//! spawn, and keeps `<runtime dir>/procs` up to date for the reaper process
//! that cleans up after a SIGKILLed supervisor.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use super::sys;
use super::tree::{self, ProcId, Table};
use oort_core::{format_bytes, Limits};

/// How often the trees are sampled.
pub const PERIOD: Duration = Duration::from_millis(250);

/// Resource use of one plugin tree at the last sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Usage {
    pub rss_bytes: u64,
    pub processes: u64,
    pub cpu_seconds: f64,
}

/// What one process (not its tree) uses right now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessUsage {
    pub rss_bytes: u64,
    pub cpu_seconds: f64,
}

impl ProcessUsage {
    /// Read from `/proc/<pid>/stat`; `None` when the process is gone or
    /// `/proc` is not Linux's.
    pub fn of(pid: u32) -> Option<ProcessUsage> {
        let p = tree::read(pid)?;
        Some(ProcessUsage {
            rss_bytes: p.rss_pages * page_size(),
            cpu_seconds: p.cpu_ticks as f64 / clock_ticks() as f64,
        })
    }
}

/// One watched plugin process.
pub(crate) struct Watched {
    pub root: ProcId,
    name: String,
    limits: Limits,
    known: Mutex<BTreeSet<ProcId>>,
    violation: Mutex<Option<String>>,
    usage: Mutex<Usage>,
}

impl Watched {
    /// Why the watchdog killed the tree, if it did.
    pub fn violation(&self) -> Option<String> {
        lock(&self.violation).clone()
    }

    /// The last sample.
    pub fn usage(&self) -> Usage {
        *lock(&self.usage)
    }

    /// Reads the tree now and remembers its members, so that a stop that
    /// follows can find them even after their parents are gone.
    pub fn refresh(&self) {
        let table = Table::scan();
        let mut known = lock(&self.known);
        for p in table.tree(self.root, &known) {
            known.insert((p.pid, p.start));
        }
    }

    /// Kills the whole tree (see [`tree::kill_tree`]).
    pub fn kill_tree(&self) -> usize {
        let known = lock(&self.known).clone();
        tree::kill_tree(self.root, &known)
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        forget_child(self.root.0);
    }
}

#[derive(Default)]
struct Registry {
    watched: Vec<Weak<Watched>>,
    /// Direct children the supervisor spawned on purpose (plugins, the reaper).
    children: HashSet<u32>,
    /// Set in daemon mode: where the list of plugin processes goes.
    procs_file: Option<PathBuf>,
    reaper: Option<u32>,
    last_written: String,
}

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        std::thread::Builder::new()
            .name("oort-watchdog".into())
            .spawn(run)
            .expect("the watchdog thread can always be created at start-up");
        Mutex::default()
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `spawn` (which forks a child and returns its pid) so that the sweep
/// for unknown children can never see the child before it is registered.
pub(super) fn spawning<T>(spawn: impl FnOnce() -> std::io::Result<(T, u32)>) -> std::io::Result<T> {
    let mut reg = lock(registry());
    let (value, pid) = spawn()?;
    reg.children.insert(pid);
    Ok(value)
}

fn forget_child(pid: u32) {
    lock(registry()).children.remove(&pid);
}

/// Starts watching the process `pid` (a child we spawned).
pub(crate) fn watch(pid: u32, name: &str, limits: Limits) -> Arc<Watched> {
    let start = tree::read(pid).map(|p| p.start).unwrap_or(0);
    let w = Arc::new(Watched {
        root: (pid, start),
        name: name.to_string(),
        limits,
        known: Mutex::default(),
        violation: Mutex::default(),
        usage: Mutex::default(),
    });
    lock(registry()).watched.push(Arc::downgrade(&w));
    w
}

/// Daemon mode: sweep unknown children and keep the list for the reaper.
pub(super) fn enable_daemon_mode(procs_file: PathBuf, reaper: u32) {
    let mut reg = lock(registry());
    reg.procs_file = Some(procs_file);
    reg.reaper = Some(reaper);
}

fn run() {
    loop {
        std::thread::sleep(PERIOD);
        let (watched, daemon) = {
            let mut reg = lock(registry());
            reg.watched.retain(|w| w.strong_count() > 0);
            let watched: Vec<Arc<Watched>> = reg.watched.iter().filter_map(Weak::upgrade).collect();
            (watched, reg.procs_file.is_some())
        };
        if watched.is_empty() && !daemon {
            continue;
        }
        let table = Table::scan();
        for w in &watched {
            check(w, &table);
        }
        if daemon {
            sweep(&table, &watched);
        }
    }
}

/// Samples one plugin's tree and enforces its limits.
fn check(w: &Watched, table: &Table) {
    if lock(&w.violation).is_some() {
        return;
    }
    let members = {
        let mut known = lock(&w.known);
        let members = table.tree(w.root, &known);
        // Forget members that are gone, remember new ones.
        known.retain(|id| table.get(*id).is_some());
        known.extend(members.iter().map(|p| (p.pid, p.start)));
        members
    };
    let live: Vec<_> = members.iter().filter(|p| !p.zombie).collect();
    let usage = Usage {
        rss_bytes: live.iter().map(|p| p.rss_pages).sum::<u64>() * page_size(),
        processes: live.len() as u64,
        cpu_seconds: live.iter().map(|p| p.cpu_ticks).sum::<u64>() as f64 / clock_ticks() as f64,
    };
    *lock(&w.usage) = usage;
    let (name, pid) = (&w.name, w.root.0);
    let over = if let Some(max) = w.limits.memory.filter(|m| usage.rss_bytes > *m) {
        Some(format!(
            "plugin {name} (pid {pid}) exceeded its memory limit of {} (rss {})",
            format_bytes(max),
            format_bytes(usage.rss_bytes)
        ))
    } else if let Some(max) = w.limits.processes.filter(|m| usage.processes > *m) {
        Some(format!("plugin {name} (pid {pid}) exceeded its process limit of {max} ({} processes)", usage.processes))
    } else {
        w.limits.cpu_seconds.filter(|m| usage.cpu_seconds > *m as f64).map(|max| {
            format!("plugin {name} (pid {pid}) exceeded its CPU limit of {max} s ({:.1} s)", usage.cpu_seconds)
        })
    };
    if let Some(reason) = over {
        tracing::warn!(plugin = %name, pid, "{reason}: killing its process tree");
        *lock(&w.violation) = Some(reason);
        w.kill_tree();
    }
}

/// Kills and reaps the supervisor's children it did not spawn (orphans of
/// plugin trees, re-parented to it as their subreaper), and writes the list
/// of plugin processes for the reaper.
fn sweep(table: &Table, watched: &[Arc<Watched>]) {
    let me = std::process::id();
    let mut reg = lock(registry());
    for p in table.procs.values().filter(|p| p.ppid == me) {
        if reg.reaper == Some(p.pid) {
            if p.zombie {
                sys::reap(p.pid);
            }
            continue;
        }
        if reg.children.contains(&p.pid) {
            continue;
        }
        if !p.zombie {
            tracing::warn!(pid = p.pid, "killing an orphan a plugin left behind");
            let _ = sys::signal(p.pid, libc::SIGKILL);
        }
        sys::reap(p.pid);
    }
    let Some(path) = reg.procs_file.clone() else { return };
    let mut text = String::new();
    for w in watched {
        text.push_str(&format!("R {} {}\n", w.root.0, w.root.1));
        for (pid, start) in lock(&w.known).iter() {
            text.push_str(&format!("M {pid} {start}\n"));
        }
    }
    if text != reg.last_written {
        let tmp = path.with_extension("tmp");
        if std::fs::write(&tmp, &text).and_then(|()| std::fs::rename(&tmp, &path)).is_ok() {
            reg.last_written = text;
        }
    }
}

/// Kills every process recorded in a `procs` file that still runs (same pid
/// and start time): the plugin trees of a supervisor that died without
/// stopping them. Returns how many were killed.
pub(crate) fn kill_recorded(procs_file: &std::path::Path) -> usize {
    let Ok(text) = std::fs::read_to_string(procs_file) else { return 0 };
    let mut roots = Vec::new();
    let mut all = BTreeSet::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(kind), Some(pid), Some(start)) = (f.next(), f.next(), f.next()) else { continue };
        let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else { continue };
        if pid == 0 || pid == std::process::id() {
            continue;
        }
        all.insert((pid, start));
        if kind == "R" {
            roots.push((pid, start));
        }
    }
    let mut killed = tree::kill_trees(&roots, &all);
    // Members whose root is gone entirely (its group empty, say).
    let table = Table::scan();
    for id in &all {
        if table.get(*id).is_some_and(|p| !p.zombie) && sys::signal(id.0, libc::SIGKILL).is_ok() {
            killed += 1;
        }
    }
    killed
}

fn page_size() -> u64 {
    static P: OnceLock<u64> = OnceLock::new();
    *P.get_or_init(sys::page_size)
}

fn clock_ticks() -> u64 {
    static T: OnceLock<u64> = OnceLock::new();
    *T.get_or_init(sys::clock_ticks)
}

#[cfg(test)]
mod tests {
    use super::ProcessUsage;

    #[test]
    fn this_process_has_a_resident_set_and_a_gone_one_has_none() {
        let me = ProcessUsage::of(std::process::id()).expect("/proc is readable");
        assert!(me.rss_bytes > 1 << 20 && me.cpu_seconds >= 0.0, "{me:?}");
        assert_eq!(ProcessUsage::of(u32::MAX), None);
    }
}
