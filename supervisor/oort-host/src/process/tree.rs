//! Process trees read from `/proc`: who descends from a plugin, how much
//! memory and CPU the whole tree uses, and killing all of it.
//!
//! A process is named by its pid *and* its start time (clock ticks since
//! boot), so that a pid the kernel has handed to an unrelated process since
//! is never signalled.

use std::collections::{BTreeSet, HashMap};

use super::sys;

/// One process as `/proc/<pid>/stat` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Proc {
    pub pid: u32,
    pub ppid: u32,
    pub pgid: u32,
    pub start: u64,
    /// User plus system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// Resident pages.
    pub rss_pages: u64,
    pub zombie: bool,
}

/// A process identity that survives pid reuse: (pid, start time).
pub(crate) type ProcId = (u32, u64);

/// Parses one `/proc/<pid>/stat` line. The command name is in parentheses and
/// may itself hold spaces and parentheses, so fields are counted from the last
/// `)`.
pub(crate) fn parse_stat(text: &str) -> Option<Proc> {
    let pid = text.split(' ').next()?.parse().ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    // Fields after the name, from 3 (state) on: see proc(5).
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { f.get(n - 3)?.parse().ok() };
    Some(Proc {
        pid,
        ppid: field(4)? as u32,
        pgid: field(5)? as u32,
        cpu_ticks: field(14)? + field(15)?,
        start: field(22)?,
        rss_pages: field(24)?,
        zombie: f.first().is_some_and(|s| *s == "Z" || *s == "X"),
    })
}

/// One process, if it exists.
pub(crate) fn read(pid: u32) -> Option<Proc> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Every process on the machine that we can see, by pid.
#[derive(Debug, Default)]
pub(crate) struct Table {
    pub procs: HashMap<u32, Proc>,
    children: HashMap<u32, Vec<u32>>,
}

impl Table {
    pub fn scan() -> Table {
        let mut procs = HashMap::new();
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for entry in dir.flatten() {
                let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
                if let Some(p) = read(pid) {
                    procs.insert(pid, p);
                }
            }
        }
        Table::from_procs(procs)
    }

    pub fn from_procs(procs: HashMap<u32, Proc>) -> Table {
        let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
        for p in procs.values() {
            children.entry(p.ppid).or_default().push(p.pid);
        }
        Table { procs, children }
    }

    /// The process with this identity, if it still runs.
    pub fn get(&self, id: ProcId) -> Option<&Proc> {
        self.procs.get(&id.0).filter(|p| p.start == id.1)
    }

    /// Every descendant of `pid` (not `pid` itself), by parent links.
    pub fn descendants(&self, pid: u32) -> Vec<&Proc> {
        let mut out = Vec::new();
        let mut stack = vec![pid];
        while let Some(p) = stack.pop() {
            for c in self.children.get(&p).into_iter().flatten() {
                if let Some(proc) = self.procs.get(c) {
                    out.push(proc);
                    stack.push(*c);
                }
            }
        }
        out
    }

    /// A plugin's tree: the plugin itself (when it still runs), members of its
    /// process group (created after it, so not a reused group id), processes
    /// seen in its tree before (`known`), and every descendant of those.
    pub fn tree(&self, root: ProcId, known: &BTreeSet<ProcId>) -> Vec<Proc> {
        let mut ids: BTreeSet<u32> = BTreeSet::new();
        let mut seeds: Vec<u32> = Vec::new();
        if self.get(root).is_some() {
            seeds.push(root.0);
        }
        // A group id names our group unless a different process now holds
        // the leader's pid (then the id was reused).
        if self.procs.get(&root.0).is_none_or(|p| p.start == root.1) {
            seeds.extend(self.procs.values().filter(|p| p.pgid == root.0 && p.start >= root.1).map(|p| p.pid));
        }
        seeds.extend(known.iter().filter(|id| self.get(**id).is_some()).map(|id| id.0));
        for seed in seeds {
            if ids.insert(seed) {
                for d in self.descendants(seed) {
                    ids.insert(d.pid);
                }
            }
        }
        ids.iter().filter_map(|pid| self.procs.get(pid).copied()).collect()
    }
}

/// Kills a plugin's whole tree (see [`Table::tree`]). Returns how many
/// processes were killed.
pub(crate) fn kill_tree(root: ProcId, known: &BTreeSet<ProcId>) -> usize {
    kill_trees(&[root], known)
}

/// Kills the trees of several plugins at once. Every member is stopped first
/// and the trees read again until no new member appears, so that nothing
/// forks its way out between the read and the kill; then all are killed.
pub(crate) fn kill_trees(roots: &[ProcId], known: &BTreeSet<ProcId>) -> usize {
    // Each group first, while its leader runs (so the id is surely ours): one
    // signal reaches every member, including children forked meanwhile.
    for root in roots {
        if root.0 != 0 && read(root.0).is_some_and(|p| p.start == root.1) {
            let _ = sys::signal_group(root.0, libc::SIGKILL);
        }
    }
    let me = std::process::id();
    let mut stopped: BTreeSet<ProcId> = BTreeSet::new();
    for _ in 0..50 {
        let table = Table::scan();
        let mut new = 0;
        for root in roots {
            for p in table.tree(*root, known) {
                if p.pid == me || p.zombie {
                    continue;
                }
                if stopped.insert((p.pid, p.start)) {
                    new += 1;
                    let _ = sys::signal(p.pid, libc::SIGSTOP);
                }
            }
        }
        if new == 0 {
            break;
        }
    }
    if stopped.is_empty() {
        return 0;
    }
    let table = Table::scan();
    let mut killed = 0;
    for id in &stopped {
        if table.get(*id).is_some() && sys::signal(id.0, libc::SIGKILL).is_ok() {
            killed += 1;
        }
    }
    killed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names_parse() {
        let line = "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 1 0 0 0 7 3 0 0 20 0 1 0 123456 1000 55 \
                    18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let p = parse_stat(line).unwrap();
        assert_eq!((p.pid, p.ppid, p.pgid, p.cpu_ticks, p.start, p.rss_pages), (4242, 1, 4242, 10, 123456, 55));
        assert!(!p.zombie);
    }

    #[test]
    fn our_own_stat_parses() {
        let me = read(std::process::id()).unwrap();
        assert_eq!(me.pid, std::process::id());
        assert!(me.rss_pages > 0);
    }

    #[test]
    fn trees_follow_parents_groups_and_known_members() {
        let p = |pid, ppid, pgid, start| Proc { pid, ppid, pgid, start, cpu_ticks: 0, rss_pages: 1, zombie: false };
        let procs = [
            p(10, 1, 10, 100), // the plugin
            p(11, 10, 10, 101),
            p(12, 11, 12, 102), // setsid grandchild
            p(13, 1, 10, 103),  // group member re-parented to init
            p(14, 1, 14, 104),  // setsid child of a dead child, known from an earlier read
            p(15, 14, 14, 105),
            p(16, 1, 16, 50), // unrelated
            p(17, 1, 10, 50), // same group id but older than the plugin: not ours
        ];
        let table = Table::from_procs(procs.iter().map(|p| (p.pid, *p)).collect());
        let known = BTreeSet::from([(14, 104), (16, 999)]);
        let mut got: Vec<u32> = table.tree((10, 100), &known).iter().map(|p| p.pid).collect();
        got.sort();
        assert_eq!(got, vec![10, 11, 12, 13, 14, 15]);
    }
}
