//! eKuiper's portable plugins: one package folder, one executable, any number
//! of sources, sinks and functions.
//!
//! ```text
//! <plugins-dir>/portables/<name>/
//!   <name>.json                 the manifest (eKuiper's portable plugin JSON)
//!   <executable>                named by the manifest; for language python a script
//!   sources/<source>.json       optional metadata per source (about, properties)
//!   sinks/<sink>.json           optional metadata per sink
//!   functions/<name>.json       optional metadata of the function set
//!   …                           anything else the program needs
//! ```
//!
//! Oort runs the executable once per part, as it runs any plugin file: for a
//! source or a sink of that name, or, with the package's name, for its
//! functions. `OORT_PLUGIN_NAME` tells the program which part to serve.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::is_valid_name;

/// The manifest of a portable package, as eKuiper writes it:
/// `{"version": "v1.0.0", "language": "go", "executable": "mirror",
/// "sources": ["random"], "sinks": ["file"], "functions": ["echo"]}`.
/// Unknown fields are ignored, as eKuiper does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PortableManifest {
    /// eKuiper's optional `name`; the package folder's name is what counts.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default)]
    pub version: String,
    /// `go`, `python`, or anything else for a native executable.
    #[serde(default)]
    pub language: String,
    /// The program, a path relative to the package folder.
    pub executable: String,
    #[serde(default)]
    pub sources: Vec<String>,
    #[serde(default)]
    pub sinks: Vec<String>,
    #[serde(default)]
    pub functions: Vec<String>,
}

impl PortableManifest {
    /// Parses and checks a manifest: an executable path inside the package,
    /// valid symbol names, at least one symbol, no name listed twice.
    pub fn parse(bytes: &[u8]) -> Result<PortableManifest, String> {
        let manifest: PortableManifest = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        manifest.check()?;
        Ok(manifest)
    }

    fn check(&self) -> Result<(), String> {
        let exe = Path::new(&self.executable);
        if self.executable.is_empty() {
            return Err("\"executable\" is empty".into());
        }
        if !exe.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(format!("\"executable\" {:?} must be a relative path inside the package", self.executable));
        }
        if self.sources.is_empty() && self.sinks.is_empty() && self.functions.is_empty() {
            return Err("it lists no sources, sinks or functions".into());
        }
        for (what, names) in [("sources", &self.sources), ("sinks", &self.sinks), ("functions", &self.functions)] {
            for (i, name) in names.iter().enumerate() {
                if !is_valid_name(name) {
                    return Err(format!("{what}: invalid name {name:?}: names must match ^[A-Za-z0-9_-]+$"));
                }
                if names[..i].iter().any(|n| n.eq_ignore_ascii_case(name)) {
                    return Err(format!("{what}: {name:?} is listed twice"));
                }
            }
        }
        Ok(())
    }

    /// Whether the program is a Python script, run by the supervisor's Python.
    pub fn is_python(&self) -> bool {
        self.language.eq_ignore_ascii_case("python")
    }
}

/// Where a plugin of the catalog comes from when a portable package provides it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PortableOrigin {
    /// The package's name (its folder under `portables/`).
    pub package: String,
    pub language: String,
    /// The package folder: the program's working directory.
    pub dir: PathBuf,
}

impl PortableOrigin {
    pub fn is_python(&self) -> bool {
        self.language.eq_ignore_ascii_case("python")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_parse_as_ekuiper_writes_them_and_bad_ones_say_why() {
        let m = PortableManifest::parse(
            br#"{"version":"v1.0.0","language":"go","executable":"mirror","sources":["random"],"sinks":["file"],
                 "functions":["echo"],"extra":1}"#,
        )
        .unwrap();
        assert_eq!((m.executable.as_str(), m.sources.len(), m.is_python()), ("mirror", 1, false));
        for (text, want) in [
            (r#"{"sources":["a"]}"#, "missing field `executable`"),
            (r#"{"executable":"","sources":["a"]}"#, "\"executable\" is empty"),
            (r#"{"executable":"../x","sources":["a"]}"#, "relative path inside the package"),
            (r#"{"executable":"/bin/sh","sources":["a"]}"#, "relative path inside the package"),
            (r#"{"executable":"x"}"#, "lists no sources, sinks or functions"),
            (r#"{"executable":"x","sinks":["a b"]}"#, "sinks: invalid name \"a b\""),
            (r#"{"executable":"x","functions":["f","F"]}"#, "\"F\" is listed twice"),
            (r#"{"executable":"x","sources":"a"}"#, "invalid type"),
        ] {
            let err = PortableManifest::parse(text.as_bytes()).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
