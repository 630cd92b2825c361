//! Installing and removing plugins over REST and the CLI, with hostile archives.

use std::path::Path;

use oort_tests::{bin, json, zip_of, Daemon, PluginsDir};
use sha2::Digest;

/// A tar.gz with one symlink entry pointing outside.
fn tar_gz_with_symlink() -> Vec<u8> {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    b.append_link(&mut h, "countPlusOne", "/etc/passwd").unwrap();
    b.into_inner().unwrap().finish().unwrap()
}

fn install(d: &Daemon, name: &str, file: &Path, sha256: Option<&str>) -> (u16, String) {
    let body = serde_json::json!({"name": name, "file": file.display().to_string(), "sha256": sha256});
    d.http("POST", "/plugins/functions", Some(&body.to_string()))
}

#[test]
fn plugins_install_and_remove_and_hostile_archives_are_refused() {
    let plugins = PluginsDir::new();
    let d = Daemon::start(plugins.path(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::fs::read(bin("countPlusOne")).unwrap();
    let meta = br#"{"about":{"description":{"en_US":"counts"}},"functions":[{"name":"countPlusOne"}]}"#;
    let good = dir.path().join("good.zip");
    std::fs::write(&good, zip_of(&[("countPlusOne@v2.0.0", &exe, 0o755), ("countPlusOne.json", meta, 0o644)])).unwrap();
    let sha = format!("{:x}", sha2::Sha256::digest(std::fs::read(&good).unwrap()));

    // Hostile or broken requests: 4xx, nothing installed.
    let escaping = dir.path().join("escape.zip");
    std::fs::write(&escaping, zip_of(&[("../countPlusOne", &exe, 0o755)])).unwrap();
    let symlink = dir.path().join("link.tar.gz");
    std::fs::write(&symlink, tar_gz_with_symlink()).unwrap();
    let not_archive = dir.path().join("plain.zip");
    std::fs::write(&not_archive, b"hello").unwrap();
    let bad_sha = "0".repeat(64);
    let cases: Vec<(&str, &Path, Option<&str>, &str)> = vec![
        ("countPlusOne", &escaping, None, "../countPlusOne"),
        ("countPlusOne", &symlink, None, "countPlusOne"),
        ("countPlusOne", &not_archive, None, "not a zip or tar.gz archive"),
        ("countPlusOne", &good, Some(bad_sha.as_str()), &sha),
        ("bad name", &good, None, "bad name"),
        ("countPlusOne", Path::new("/nonexistent/x.zip"), None, "/nonexistent/x.zip"),
    ];
    for (name, file, sha256, mention) in cases {
        let (status, body) = install(&d, name, file, sha256);
        assert_eq!(status, 400, "{name} {}: {body}", file.display());
        let msg = json(&body)["error"].as_str().unwrap().to_string();
        assert!(msg.contains(mention), "{msg} should mention {mention}");
        assert_eq!(d.get_json("/plugins/functions"), serde_json::json!([]), "{msg}: something was installed");
    }
    let leftovers: Vec<_> = std::fs::read_dir(plugins.path().join("functions")).unwrap().flatten().collect();
    assert!(leftovers.is_empty(), "partial files left: {leftovers:?}");

    // The real thing, with its checksum, through the CLI.
    let (ok, out, err) =
        d.cli(&["plugin", "install", "function", "countPlusOne", good.to_str().unwrap(), "--sha256", &sha]);
    assert!(ok, "{err}");
    assert!(out.contains("countPlusOne"), "{out}");
    let info = d.get_json("/plugins/functions/countPlusOne");
    assert_eq!(info["version"], "2.0.0");
    assert_eq!(info["functions"], serde_json::json!(["countPlusOne"]));
    let (status, body) = install(&d, "countPlusOne", &good, None);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("already installed"), "{body}");

    // In use by a rule: refused; once the rule is gone: removed.
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"l\":[1,2]}\n").unwrap();
    plugins.add("sources", "file", "file");
    plugins.add("sinks", "log", "log");
    let sql = format!(r#"CREATE STREAM s () WITH (TYPE="file", DATASOURCE="{}")"#, input.display());
    assert_eq!(d.http("POST", "/streams", Some(&serde_json::json!({"sql": sql}).to_string())).0, 201);
    let rule = serde_json::json!({"id": "r", "sql": "SELECT countPlusOne(l) FROM s", "actions": [{"log": {}}]});
    let (status, body) = d.http("POST", "/rules", Some(&rule.to_string()));
    assert_eq!(status, 201, "{body}");
    let (status, body) = d.http("DELETE", "/plugins/functions/countPlusOne", None);
    assert_eq!(status, 409, "{body}");
    assert_eq!(d.http("DELETE", "/rules/r", None).0, 200);
    let (ok, _, err) = d.cli(&["plugin", "remove", "function", "countPlusOne"]);
    assert!(ok, "{err}");
    assert_eq!(d.http("GET", "/plugins/functions/countPlusOne", None).0, 404);
    assert!(std::fs::read_dir(plugins.path().join("functions")).unwrap().next().is_none());
}
