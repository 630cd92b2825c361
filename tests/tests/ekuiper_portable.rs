//! eKuiper's portable plugin packages on Oort (issue 16, item 3): a zip as
//! eKuiper builds it — `<name>.json` naming the executable, its language and
//! several sources, sinks and functions, with per-part metadata — installed
//! over eKuiper's `POST /plugins/portables`, each part run through the real
//! daemon; metadata errors fail the install with a message naming them.
//!
//! The Go package (`ekmirror.zip`) comes from `bash scripts/build-go.sh`; the
//! Python one is zipped here from the `ekpy` example, run by the venv's Python
//! that `bash scripts/build-python.sh` links as `$OORT_BIN/python/python3`.

use std::path::{Path, PathBuf};

use oort_tests::{bin_dir, zip_of, Daemon, PluginsDir};
use serde_json::{json, Value as Json};

fn built(dir: &str, name: &str) -> PathBuf {
    let path = bin_dir().join(dir).join(name);
    assert!(path.exists(), "{} is not built: run `bash scripts/build-{dir}.sh` first", path.display());
    path
}

fn post(d: &Daemon, path: &str, body: Json) -> (u16, String) {
    d.http("POST", path, Some(&body.to_string()))
}

fn install(d: &Daemon, name: &str, zip: &Path) -> (u16, String) {
    post(d, "/plugins/portables", json!({"name": name, "file": zip.display().to_string()}))
}

#[test]
fn a_go_portable_package_installs_and_runs_its_source_sink_and_functions() {
    let p = PluginsDir::new();
    let out = tempfile::tempdir().unwrap();
    let d = Daemon::start(p.path(), &[]);
    let (status, body) = install(&d, "ekmirror", &built("go", "ekmirror.zip"));
    assert_eq!(status, 201, "{body}\nlog:\n{}", d.log());

    assert_eq!(
        d.get_json("/plugins/portables"),
        json!([{"name": "ekmirror", "version": "v1.0.0", "language": "go", "executable": "ekmirror",
                "sources": ["ekmirrorsrc"], "sinks": ["ekmirrorsink"], "functions": ["ekreverse", "ekdouble"]}])
    );
    assert_eq!(d.get_json("/plugins/sources"), json!(["ekmirrorsrc"]));
    assert_eq!(d.get_json("/plugins/sinks"), json!(["ekmirrorsink"]));
    assert_eq!(d.get_json("/plugins/udfs"), json!(["ekdouble", "ekreverse"]));
    let source = d.get_json("/plugins/sources/ekmirrorsrc");
    assert_eq!((&source["version"], &source["portable"]["package"]), (&json!("1.0.0"), &json!("ekmirror")), "{source}");
    // Per-part metadata from the package's sinks/ and functions/ folders.
    let sink_meta = d.get_json("/metadata/sinks/ekmirrorsink");
    assert_eq!(sink_meta["properties"][0]["name"], "path", "{sink_meta}");
    let functions = d.get_json("/metadata/functions/ekmirror");
    assert_eq!(functions["about"]["description"]["en_US"], "portable example", "{functions}");

    let stream = r#"CREATE STREAM m () WITH (TYPE="ekmirrorsrc", count="6", interval="10")"#;
    assert_eq!(post(&d, "/streams", json!({ "sql": stream })).0, 201);
    let rows = out.path().join("rows.jsonl");
    let rule = json!({
        "id": "r",
        "sql": "SELECT seq, ekreverse(text) AS back, ekdouble(seq) AS twice FROM m",
        "actions": [{"ekmirrorsink": {"path": rows.display().to_string()}}]
    });
    let (status, body) = post(&d, "/rules", rule);
    assert_eq!(status, 201, "{body}\nlog:\n{}", d.log());
    let got = d.wait_lines("r", &rows, 6);
    for (n, row) in got.iter().enumerate() {
        let back: String = format!("m{n}").chars().rev().collect();
        assert_eq!(row, &json!({"seq": n, "back": back, "twice": 2 * n}), "{got:?}");
    }
    // Each part runs the package's executable, under the part's name.
    let status = d.get_json("/rules/r/status");
    let plugins: Vec<&str> =
        status["plugins"].as_array().unwrap().iter().filter_map(|p| p["plugin"].as_str()).collect();
    for part in ["ekmirrorsrc", "ekmirror", "ekmirrorsink"] {
        assert!(plugins.contains(&part), "{part} not running: {status}");
    }

    // Reinstalling is refused; removing is refused while a rule uses a part.
    let (status, body) = install(&d, "ekmirror", &built("go", "ekmirror.zip"));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("already installed"), "{body}");
    let (status, body) = d.http("DELETE", "/plugins/portables/ekmirror", None);
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("used by rules r"), "{body}");
    assert_eq!(d.http("DELETE", "/rules/r", None).0, 200);
    assert_eq!(d.http("DELETE", "/plugins/portables/ekmirror", None).0, 200);
    assert_eq!(d.get_json("/plugins/portables"), json!([]));
    assert_eq!(d.get_json("/plugins/sources"), json!([]));
    assert!(!p.path().join("portables/ekmirror").exists());
}

#[test]
fn a_python_portable_package_runs_on_the_configured_python() {
    let p = PluginsDir::new();
    let out = tempfile::tempdir().unwrap();
    let python = built("python", "python3");
    let d = Daemon::start(p.path(), &["--python", python.to_str().unwrap()]);
    // eKuiper's Python layout: the manifest, a main script and the function set's metadata.
    let manifest = json!({"version": "v2.1.0", "language": "python", "executable": "main.py",
        "sources": ["ekticker"], "sinks": ["eklines"], "functions": ["shout", "clamp", "spread", "whichrule"]});
    let main = b"import runpy\nrunpy.run_module('oort_plugins.portable', run_name='__main__')\n";
    let metadata = std::fs::read(built("python", "ekpy.json")).unwrap();
    let zip = out.path().join("ekpy.zip");
    std::fs::write(
        &zip,
        zip_of(&[
            ("ekpy.json", manifest.to_string().as_bytes(), 0o644),
            ("main.py", main, 0o644),
            ("functions/ekpy.json", &metadata, 0o644),
        ]),
    )
    .unwrap();
    let (status, body) = install(&d, "ekpy", &zip);
    assert_eq!(status, 201, "{body}");
    let stream = r#"CREATE STREAM t () WITH (TYPE="ekticker", DATASOURCE="w", interval="10", count="5")"#;
    assert_eq!(post(&d, "/streams", json!({ "sql": stream })).0, 201);
    let rows = out.path().join("rows.jsonl");
    let rule = json!({
        "id": "py",
        "sql": "SELECT seq, shout(word) AS loud FROM t",
        "actions": [{"eklines": {"path": rows.display().to_string(), "sendSingle": true}}]
    });
    let (status, body) = post(&d, "/rules", rule);
    assert_eq!(status, 201, "{body}\nlog:\n{}", d.log());
    let got = d.wait_lines("py", &rows, 5);
    for (n, row) in got.iter().enumerate() {
        assert_eq!(row, &json!({"seq": n, "loud": format!("W{n}!")}), "{got:?}");
    }
    let described = d.get_json("/plugins/functions/ekpy");
    assert_eq!(described["version"], "2.1.0", "{described}");
    assert!(described["about"].is_object(), "the package's metadata: {described}");
}

#[test]
fn bad_portable_packages_are_refused_with_what_is_wrong() {
    let p = PluginsDir::new();
    p.add("sources", "random", "random");
    let out = tempfile::tempdir().unwrap();
    let d = Daemon::start(p.path(), &[]);
    let exe: &[u8] = b"#!/bin/sh\nexit 1\n";
    let good = json!({"executable": "prog", "language": "go", "sources": ["s1"]}).to_string();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("nomanifest", zip_of(&[("prog", exe, 0o755)]), "no manifest nomanifest.json at its root"),
        ("badjson", zip_of(&[("badjson.json", b"{", 0o644), ("prog", exe, 0o755)]), "badjson.json\\\" is not valid"),
        (
            "noexe",
            zip_of(&[("noexe.json", good.as_bytes(), 0o644)]),
            "its executable \\\"prog\\\" is not in the archive",
        ),
        (
            "badmeta",
            zip_of(&[
                ("badmeta.json", good.as_bytes(), 0o644),
                ("prog", exe, 0o755),
                ("sources/s1.json", br#"{"properties": 3}"#, 0o644),
            ]),
            "sources/s1.json\\\" is not valid",
        ),
        (
            "badname",
            zip_of(&[("badname.json", br#"{"executable": "prog", "sinks": ["a b"]}"#, 0o644), ("prog", exe, 0o755)]),
            "invalid name \\\"a b\\\"",
        ),
        (
            "script",
            zip_of(&[("script.json", good.as_bytes(), 0o644), ("prog", exe, 0o755), ("install.sh", exe, 0o755)]),
            "install scripts are not supported",
        ),
        (
            "escape",
            zip_of(&[("escape.json", good.as_bytes(), 0o644), ("prog", exe, 0o755), ("../evil", exe, 0o755)]),
            "could leave the target folder",
        ),
    ];
    for (name, bytes, want) in cases {
        let zip = out.path().join(format!("{name}.zip"));
        std::fs::write(&zip, bytes).unwrap();
        let (status, body) = install(&d, name, &zip);
        assert_eq!(status, 400, "{name}: {body}");
        assert!(body.contains(want), "{name}: {body} lacks {want:?}");
    }
    // Nothing was left behind by the failed installs.
    let left: Vec<_> = std::fs::read_dir(p.path().join("portables"))
        .map(|r| r.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");

    // A part named like an installed plugin: the package installs, that part
    // is not taken from it, and the catalog says why.
    let clash = json!({"executable": "prog", "language": "go", "sources": ["random", "other"]}).to_string();
    let zip = out.path().join("clash.zip");
    std::fs::write(&zip, zip_of(&[("clash.json", clash.as_bytes(), 0o644), ("prog", exe, 0o755)])).unwrap();
    assert_eq!(install(&d, "clash", &zip).0, 201);
    let random = d.get_json("/plugins/sources/random");
    assert!(random.get("portable").is_none(), "the plain plugin file still serves random: {random}");
    assert_eq!(d.get_json("/plugins/sources/other")["portable"]["package"], "clash");
    assert!(d.log().contains("its source \"random\" is already provided by"), "{}", d.log());
    let (status, body) = d.http("GET", "/plugins/portables/nope", None);
    assert_eq!(status, 404, "{body}");
}
