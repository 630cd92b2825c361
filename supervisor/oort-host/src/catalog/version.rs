//! The plugin kinds and the versions in plugin file names (`random@v1.2.0`), with
//! the order that decides which file takes effect.

use std::cmp::Ordering;
use std::fmt;

use serde::{Serialize, Serializer};

/// The three kinds of plugin, one folder each under the plugins folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    Source,
    Sink,
    Function,
}

impl PluginKind {
    /// Every kind, in the order the catalog scans them.
    pub const ALL: [PluginKind; 3] = [PluginKind::Source, PluginKind::Sink, PluginKind::Function];

    /// The folder holding this kind's plugins (also the REST path segment): `sources`, `sinks` or `functions`.
    pub fn dir_name(self) -> &'static str {
        match self {
            PluginKind::Source => "sources",
            PluginKind::Sink => "sinks",
            PluginKind::Function => "functions",
        }
    }

    /// The inverse of [`PluginKind::dir_name`].
    pub fn from_dir_name(s: &str) -> Option<PluginKind> {
        PluginKind::ALL.into_iter().find(|kind| kind.dir_name() == s)
    }

    /// The singular name used by the CLI: `source`, `sink` or `function`.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Source => "source",
            PluginKind::Sink => "sink",
            PluginKind::Function => "function",
        }
    }

    /// Accepts the singular names (`source`, `sink`, `function`) and the folder names (`sources`, ...).
    pub fn parse(s: &str) -> Option<PluginKind> {
        PluginKind::ALL.into_iter().find(|kind| kind.as_str() == s || kind.dir_name() == s)
    }
}

/// A version string from a plugin file name (`<name>@<version>`).
///
/// The reported string drops one leading `v` or `V` when a digit follows it (`v1.0.0` is reported as `1.0.0`,
/// `vintage` stays `vintage`); the order below works on the reported string.
///
/// # Order
///
/// Versions are totally ordered; among the files of one plugin the greatest one takes effect.
///
/// 1. A version is *structured* when it is
///    * one to three dot-separated runs of ASCII digits (`20200331`, `1.2`, `1.2.3`; leading zeros allowed), read
///      as SemVer by padding the missing parts with `.0`, so a plain number `N` is `N.0.0`; or
///    * otherwise a valid SemVer 2.0 version (`1.0.0-rc.1`, `1.2.3+build.5`).
///
///    Anything else (`alpha`, `vintage`, `1.2.3.4`, `1.0-rc.1`) is *free-form*.
/// 2. Two structured versions compare by SemVer precedence: major, minor, patch numerically (no size limit, so
///    `1.10.0 > 1.9.0` and `20200331 > 9`), then a release is greater than its pre-releases
///    (`1.0.0-rc.1 < 1.0.0`) and pre-releases compare by SemVer's rules. Build metadata takes no part here.
/// 3. A structured version is greater than any free-form one ("structured beats free-form": `1.0.0 > zzz`).
/// 4. Two free-form versions compare by byte order (`beta > alpha`).
/// 5. Finally, versions equal so far compare by the byte order of the reported string, so only identical strings
///    are equal (`1.0.0 < 1.0.0+build`, `01 < 1`).
///
/// A plugin file without any version ranks below every versioned file of the same plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// The version as reported: the file name's text after `@`, minus a leading `v`/`V` before a digit.
    pub(super) raw: String,
}

impl Version {
    /// Reads a version as written after `@` in a file name. Never fails: any text is a (possibly free-form) version.
    pub fn parse(s: &str) -> Version {
        let bytes = s.as_bytes();
        let drop_v = bytes.len() >= 2 && matches!(bytes[0], b'v' | b'V') && bytes[1].is_ascii_digit();
        Version { raw: if drop_v { s[1..].to_owned() } else { s.to_owned() } }
    }

    /// The reported version string.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The version as SemVer, for matching a requirement: a structured version whose numbers fit (`1.2` is
    /// `1.2.0`), `None` for a free-form one.
    pub fn semver(&self) -> Option<semver::Version> {
        let s = self.structured()?;
        let [major, minor, patch] = &s.numbers;
        let number = |n: &String| if n.is_empty() { Some(0) } else { n.parse::<u64>().ok() };
        let mut v = semver::Version::new(number(major)?, number(minor)?, number(patch)?);
        v.pre = s.pre;
        Some(v)
    }

    /// The SemVer reading of a structured version, or `None` for a free-form one (see the order above).
    fn structured(&self) -> Option<Structured> {
        let raw = self.raw.as_str();
        if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            let parts: Vec<&str> = raw.split('.').collect();
            if parts.len() > 3 || parts.iter().any(|part| part.is_empty()) {
                return None;
            }
            let mut numbers: [String; 3] = Default::default();
            for (slot, part) in numbers.iter_mut().zip(parts.iter().copied().chain(["0", "0"])) {
                *slot = strip_leading_zeros(part).to_owned();
            }
            return Some(Structured { numbers, pre: semver::Prerelease::EMPTY });
        }
        let parsed = semver::Version::parse(raw).ok()?;
        Some(Structured {
            numbers: [parsed.major.to_string(), parsed.minor.to_string(), parsed.patch.to_string()],
            pre: parsed.pre,
        })
    }
}

/// Major, minor and patch as digit strings without leading zeros (compared by length, then bytes, so any size
/// works), plus the SemVer pre-release.
#[derive(PartialEq, Eq)]
struct Structured {
    numbers: [String; 3],
    pre: semver::Prerelease,
}

impl Ord for Structured {
    fn cmp(&self, other: &Self) -> Ordering {
        self.numbers
            .iter()
            .zip(other.numbers.iter())
            .map(|(a, b)| a.len().cmp(&b.len()).then_with(|| a.as_bytes().cmp(b.as_bytes())))
            .find(|ordering| ordering.is_ne())
            .unwrap_or(Ordering::Equal)
            .then_with(|| self.pre.cmp(&other.pre))
    }
}

impl PartialOrd for Structured {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn strip_leading_zeros(digits: &str) -> &str {
    let stripped = digits.trim_start_matches('0');
    if stripped.is_empty() {
        "0"
    } else {
        stripped
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let primary = match (self.structured(), other.structured()) {
            (Some(a), Some(b)) => a.cmp(&b),
            (Some(_), None) => Ordering::Greater,
            (None, Some(_)) => Ordering::Less,
            (None, None) => Ordering::Equal,
        };
        primary.then_with(|| self.raw.as_bytes().cmp(other.raw.as_bytes()))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.raw)
    }
}
