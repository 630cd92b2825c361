//! eKuiper's `<name>.json` plugin metadata, read leniently as eKuiper does.

use serde::{Deserialize, Deserializer, Serialize};

/// eKuiper's `<name>.json` plugin metadata. Every field is optional and unknown fields are ignored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Metadata {
    #[serde(default)]
    pub about: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub libs: Vec<String>,
    /// The property descriptions. Sinks write them as a list; eKuiper's sources write `{"default": [...]}`, which
    /// is read as that list.
    #[serde(default, deserialize_with = "properties_list")]
    pub properties: Vec<serde_json::Value>,
    /// The SQL functions a function plugin exports.
    #[serde(default, deserialize_with = "null_as_default")]
    pub functions: Vec<FunctionMeta>,
    /// Oort's extension: resource limits of the plugin's processes
    /// (`{"memory": "256MiB", "cpuSeconds": 60, "openFiles": 256, "processes": 32}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<crate::process::Limits>,
}

/// One entry of [`Metadata::functions`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FunctionMeta {
    pub name: String,
    #[serde(default)]
    pub example: Option<String>,
    #[serde(default)]
    pub hint: Option<serde_json::Value>,
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

fn properties_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<serde_json::Value>, D::Error> {
    use serde::de::Error;
    use serde_json::Value;
    match Value::deserialize(deserializer)? {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => Ok(items),
        Value::Object(mut map) => match map.remove("default") {
            Some(Value::Array(items)) => Ok(items),
            Some(Value::Null) | None if map.is_empty() => Ok(Vec::new()),
            _ => Err(D::Error::custom("\"properties\" must be a list or an object with a \"default\" list")),
        },
        _ => Err(D::Error::custom("\"properties\" must be a list or an object with a \"default\" list")),
    }
}
