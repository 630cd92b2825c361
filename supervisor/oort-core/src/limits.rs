//! Resource limits of one plugin process and everything it forks.
//!
//! Set in the plugin's metadata (`"limits"` in `<name>.json`) and overridable
//! per rule (`"options": {"pluginLimits": {"<plugin>": {…}}}`); a field left
//! out falls back to the next level, and finally to [`Limits::defaults`].
//!
//! Enforcement (see `watchdog`): memory and process count are sampled from
//! `/proc` over the whole process tree every [`super::watchdog::PERIOD`] and a
//! tree over its limit is killed and reported; the kernel enforces the rest
//! through rlimits set before `exec` (CPU seconds per process: SIGXCPU; open
//! files per process: EMFILE; private writable memory per process: a backstop
//! at twice the memory limit, at least 512 MiB above it).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One plugin's limits; `None` means "inherit" (and, after
/// [`Limits::resolve`], "unlimited").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    /// Resident memory of the whole tree, in bytes: a number or a string with
    /// a unit (`"256MiB"`, `"1GiB"`, `"500MB"`, `"64k"`).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "size")]
    pub memory: Option<u64>,
    /// CPU seconds of each process over its lifetime (a restart starts anew).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_seconds: Option<u64>,
    /// Open file descriptors per process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_files: Option<u64>,
    /// Processes in the tree, the plugin included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<u64>,
}

/// Default open files of a plugin: more than the traditional 1024, so that a
/// plugin holding a connection per rule does not run out first.
pub const DEFAULT_OPEN_FILES: u64 = 4096;
/// Default process cap of a plugin tree: generous for any plugin that forks
/// helpers, far below what would hurt the machine.
pub const DEFAULT_PROCESSES: u64 = 256;

impl Limits {
    /// What a plugin gets when neither its metadata nor the rule says
    /// otherwise: no memory or CPU limit (only the operator knows a plugin's
    /// needs), 4096 open files, 256 processes.
    pub fn defaults() -> Limits {
        Limits {
            memory: None,
            cpu_seconds: None,
            open_files: Some(DEFAULT_OPEN_FILES),
            processes: Some(DEFAULT_PROCESSES),
        }
    }

    /// `self` with every field `over` sets replaced.
    pub fn overridden_by(self, over: &Limits) -> Limits {
        Limits {
            memory: over.memory.or(self.memory),
            cpu_seconds: over.cpu_seconds.or(self.cpu_seconds),
            open_files: over.open_files.or(self.open_files),
            processes: over.processes.or(self.processes),
        }
    }

    /// The limits a process runs with: defaults, then the metadata's, then
    /// the rule's.
    pub fn resolve(metadata: Option<&Limits>, rule: Option<&Limits>) -> Limits {
        let mut l = Limits::defaults();
        if let Some(m) = metadata {
            l = l.overridden_by(m);
        }
        if let Some(r) = rule {
            l = l.overridden_by(r);
        }
        l
    }
}

/// A byte count for messages: `256 MiB`, `1.5 GiB`, `512 KiB`, `17 B`.
pub fn format_bytes(n: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, size) in UNITS {
        if n >= size {
            return if n.is_multiple_of(size) {
                format!("{} {unit}", n / size)
            } else {
                format!("{:.1} {unit}", n as f64 / size as f64)
            };
        }
    }
    format!("{n} B")
}

/// Parses `"256MiB"`, `"1GiB"`, `"500MB"`, `"64k"`, `"1048576"`.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{text:?} is not a size such as \"256MiB\""))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "kb" => 1_000,
        "m" | "mib" => 1 << 20,
        "mb" => 1_000_000,
        "g" | "gib" => 1 << 30,
        "gb" => 1_000_000_000,
        "t" | "tib" => 1 << 40,
        "tb" => 1_000_000_000_000,
        _ => return Err(format!("{text:?} has an unknown unit (use B, KiB, MiB, GiB, TiB, kB, MB, GB or TB)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("{text:?} is too large"))
}

mod size {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(n) => s.serialize_u64(*n),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        use serde::de::Error;
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Null => Ok(None),
            serde_json::Value::Number(n) => {
                n.as_u64().map(Some).ok_or_else(|| D::Error::custom(format!("memory must be a byte count, got {n}")))
            }
            serde_json::Value::String(s) => parse_bytes(&s).map(Some).map_err(D::Error::custom),
            other => Err(D::Error::custom(format!("memory must be a size such as \"256MiB\", got {other}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!(parse_bytes("256MiB"), Ok(256 << 20));
        assert_eq!(parse_bytes("1 GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("500MB"), Ok(500_000_000));
        assert_eq!(parse_bytes("64k"), Ok(64 << 10));
        assert_eq!(parse_bytes("17"), Ok(17));
        assert!(parse_bytes("12 parsecs").is_err());
        assert!(parse_bytes("MiB").is_err());
        assert!(parse_bytes("99999999999TiB").is_err());
        assert_eq!(format_bytes(256 << 20), "256 MiB");
        assert_eq!(format_bytes(300 * (1 << 20) + (1 << 19)), "300.5 MiB");
        assert_eq!(format_bytes(17), "17 B");
    }

    #[test]
    fn limits_parse_and_layer() {
        let meta: Limits = serde_json::from_str(r#"{"memory":"256MiB","cpuSeconds":60,"openFiles":100}"#).unwrap();
        let rule: Limits = serde_json::from_str(r#"{"memory":1048576,"processes":8}"#).unwrap();
        let l = Limits::resolve(Some(&meta), Some(&rule));
        assert_eq!(
            l,
            Limits { memory: Some(1 << 20), cpu_seconds: Some(60), open_files: Some(100), processes: Some(8) }
        );
        assert_eq!(Limits::resolve(None, None), Limits::defaults());
        assert!(serde_json::from_str::<Limits>(r#"{"memroy":"1GiB"}"#).is_err(), "typos are refused");
        assert!(serde_json::from_str::<Limits>(r#"{"memory":"lots"}"#).is_err());
    }
}
