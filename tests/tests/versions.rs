//! Several versions of one plugin side by side, through the real daemon:
//! rules pin versions (`options.plugins`, SemVer requirements), `describe`
//! lists every installed version and the rules running each, a pin that
//! matches nothing or names a plugin the rule does not use is refused at
//! creation, and a version that a rule runs or pins cannot be removed.

use std::io::Write;
use std::path::Path;

use oort_tests::{Daemon, PluginsDir};
use serde_json::{json, Value};

fn rule(id: &str, out: &Path, pins: Option<Value>) -> Value {
    let mut rule = json!({
        "id": id,
        "sql": "SELECT echo(n) AS e FROM s",
        "actions": [{"file": {"path": out.display().to_string()}}],
    });
    if let Some(pins) = pins {
        rule["options"] = json!({ "plugins": pins });
    }
    rule
}

/// The versions `describe` lists, as (version, newest, rules).
fn versions(d: &Daemon) -> Vec<(String, bool, Vec<String>)> {
    let info = d.get_json("/plugins/functions/echo");
    info["versions"]
        .as_array()
        .unwrap_or_else(|| panic!("no versions in {info}"))
        .iter()
        .map(|v| {
            let rules = v["rules"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()).collect();
            (v["version"].as_str().unwrap().to_string(), v["newest"].as_bool().unwrap(), rules)
        })
        .collect()
}

/// The message of an error answer (`{"error": "…"}`), or the body as it is.
fn message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.to_string())
}

/// Waits (up to 10 s) until `describe` lists `want`, then checks it: a rule
/// that moved opens its instances on the new version as its run starts.
fn wait_versions(d: &Daemon, want: &[(&str, bool, &[&str])]) {
    let want = owned(want);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while versions(d) != want && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(versions(d), want);
}

fn owned(v: &[(&str, bool, &[&str])]) -> Vec<(String, bool, Vec<String>)> {
    v.iter().map(|(v, n, r)| (v.to_string(), *n, r.iter().map(|r| r.to_string()).collect())).collect()
}

#[test]
fn rules_pin_versions_describe_shows_who_runs_which_and_a_used_version_stays() {
    let p = PluginsDir::new();
    p.add("sources", "file", "file");
    p.add("sinks", "file", "file");
    for file in ["echo@v1.8.1", "echo@1.9.3", "echo@2.0.0"] {
        p.add("functions", file, "echo");
    }
    let d = Daemon::start(p.path(), &["--plugin-scan-interval-ms", "100"]);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let mut f = std::fs::File::create(&input).unwrap();
    for n in 0..20 {
        writeln!(f, "{}", json!({ "n": n })).unwrap();
    }
    drop(f);
    let sql = format!(r#"CREATE STREAM s () WITH (TYPE="file", DATASOURCE="{}")"#, input.display());
    assert_eq!(d.http("POST", "/streams", Some(&json!({ "sql": sql }).to_string())).0, 201);
    let out = |id: &str| dir.path().join(format!("{id}.jsonl"));
    for (id, pins) in
        [("latest", None), ("minor19", Some(json!({"echo": "1.9"}))), ("before19", Some(json!({"echo": "<1.9"})))]
    {
        let (code, body) = d.http("POST", "/rules", Some(&rule(id, &out(id), pins).to_string()));
        assert_eq!(code, 201, "{id}: {body}");
    }
    for id in ["latest", "minor19", "before19"] {
        let lines = d.wait_lines(id, &out(id), 20);
        assert_eq!(lines[19]["e"], 19, "{id}: {lines:?}");
    }
    // `1.9` is `^1.9`: the newest 1.x from 1.9 on; `<1.9` the newest before it.
    assert_eq!(
        versions(&d),
        owned(&[("2.0.0", true, &["latest"]), ("1.9.3", false, &["minor19"]), ("1.8.1", false, &["before19"])])
    );
    let (ok, shown, err) = d.cli(&["plugin", "describe", "function", "echo"]);
    assert!(ok, "{err}");
    assert!(shown.contains("2.0.0 (newest): rules latest"), "{shown}");
    assert!(shown.contains("1.9.3: rules minor19"), "{shown}");

    // Pins that cannot hold are refused when the rule is created.
    for (id, pins, expected) in [
        ("three", json!({"echo": "3"}), "no installed version matches (installed: 2.0.0, 1.9.3, 1.8.1)"),
        ("words", json!({"echo": "newest please"}), "is not a version requirement"),
        ("other", json!({"countPlusOne": "1"}), "the rule uses no plugin named \"countPlusOne\" (it uses echo, file)"),
        ("badname", json!({"e/cho": "1"}), "is not a plugin name"),
    ] {
        let (code, body) = d.http("POST", "/rules", Some(&rule(id, &out(id), Some(pins)).to_string()));
        assert_eq!(code, 400, "{id}: {body}");
        assert!(message(&body).contains(expected), "{id}: {body}");
    }

    // A version a rule pins, or runs, stays.
    let (code, body) = d.http("DELETE", "/plugins/functions/echo?version=1.9.3", None);
    assert_eq!(code, 409, "{body}");
    assert!(message(&body).contains("echo@1.9.3 is the version pinned by rules minor19"), "{body}");
    let (ok, _, err) = d.cli(&["plugin", "remove", "function", "echo", "--version", "v1.8.1"]);
    assert!(!ok);
    assert!(err.contains("pinned by rules before19"), "{err}");
    let (code, body) = d.http("DELETE", "/plugins/functions/echo?version=2.0.0", None);
    assert_eq!(code, 409, "{body}");
    assert!(message(&body).contains("still runs for rules latest"), "{body}");
    let (code, body) = d.http("DELETE", "/plugins/functions/echo?version=7", None);
    assert_eq!(code, 404, "{body}");
    assert!(message(&body).contains("has no version \"7\" (installed: 2.0.0, 1.9.3, 1.8.1)"), "{body}");

    // Once no rule needs it, it goes, and only it.
    assert_eq!(d.http("DELETE", "/rules/before19", None).0, 200);
    let (ok, said, err) = d.cli(&["plugin", "remove", "function", "echo", "--version", "1.8.1"]);
    assert!(ok, "{said} {err}");
    assert!(!p.path().join("functions/echo@v1.8.1").exists());
    assert!(p.path().join("functions/echo@1.9.3").exists());
    assert_eq!(versions(&d), owned(&[("2.0.0", true, &["latest"]), ("1.9.3", false, &["minor19"])]));

    // A newer file dropped in: under the default `--upgrade manual` the
    // running rules keep their versions until `oort plugin upgrade` moves
    // them; the pinned one stays on 1.9.3.
    p.add("functions", "echo@2.1.0", "echo");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while versions(&d)[0].0 != "2.1.0" && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let before = versions(&d);
    assert_eq!(before[0], ("2.1.0".to_string(), true, vec![]), "{before:?}");
    let (ok, said, err) = d.cli(&["plugin", "upgrade", "function", "echo"]);
    assert!(ok, "{err}");
    assert!(said.contains("Rules latest moved"), "{said}");
    let (ok, said, _) = d.cli(&["plugin", "upgrade", "function", "echo"]);
    assert!(ok && said.contains("No rule"), "{said}");
    wait_versions(&d, &[("2.1.0", true, &["latest"]), ("2.0.0", false, &[]), ("1.9.3", false, &["minor19"])]);
    assert_eq!(d.http("DELETE", "/plugins/functions/echo?version=2.0.0", None).0, 200);
}

/// Rows `{"n": i, "text": "a b"}` for `i` in `from..to`, appended to `path`.
fn append_rows(path: &Path, from: u64, to: u64) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    let mut text = String::new();
    for n in from..to {
        text.push_str(&json!({ "n": n, "text": "a b" }).to_string());
        text.push('\n');
    }
    f.write_all(text.as_bytes()).unwrap();
}

#[test]
fn under_load_at_qos_2_a_new_version_takes_over_with_the_state_and_nothing_lost_or_repeated() {
    let p = PluginsDir::new();
    p.add("sources", "file", "file");
    p.add("sinks", "file", "file");
    p.add("functions", "accumulateWordCount@1.0.0", "accumulateWordCount");
    let d = Daemon::start(p.path(), &["--upgrade", "immediate", "--plugin-scan-interval-ms", "100"]);
    let dir = tempfile::tempdir().unwrap();
    let (input, out) = (dir.path().join("in.jsonl"), dir.path().join("out.jsonl"));
    append_rows(&input, 0, 5_000);
    let sql = format!(r#"CREATE STREAM s () WITH (TYPE="file", DATASOURCE="{}")"#, input.display());
    assert_eq!(d.http("POST", "/streams", Some(&json!({ "sql": sql }).to_string())).0, 201);
    let rule = json!({
        "id": "words",
        "sql": "SELECT n, accumulateWordCount(text, ' ') AS total FROM s",
        "actions": [{"file": {"path": out.display().to_string()}}],
        "options": {"qos": 2, "checkpointInterval": 100},
    });
    let (code, body) = d.http("POST", "/rules", Some(&rule.to_string()));
    assert_eq!(code, 201, "{body}");
    d.wait_lines("words", &out, 5_000);
    // While rows keep coming, version 2.0.0 is copied in: the daemon moves
    // the rule to it by itself.
    let mut next = 5_000;
    for round in 0..20 {
        if round == 5 {
            p.add("functions", "accumulateWordCount@2.0.0", "accumulateWordCount");
        }
        append_rows(&input, next, next + 1_000);
        next += 1_000;
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let lines = d.wait_lines("words", &out, next as usize);
    // Every row once, and the count of words went on from where version 1
    // left it: after row n, 2 (n + 1) words.
    assert_eq!(lines.len(), next as usize, "rows repeated");
    let mut seen = vec![false; next as usize];
    for line in &lines {
        let n = line["n"].as_u64().unwrap();
        assert!(!seen[n as usize], "row {n} twice");
        seen[n as usize] = true;
        assert_eq!(line["total"].as_u64(), Some(2 * (n + 1)), "{line}");
    }
    let info = d.get_json("/plugins/functions/accumulateWordCount");
    let runs: Vec<(String, Vec<Value>)> = info["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_str().unwrap().to_string(), v["rules"].as_array().unwrap().clone()))
        .collect();
    assert_eq!(runs, vec![("2.0.0".to_string(), vec![json!("words")]), ("1.0.0".to_string(), vec![])]);
    assert!(d.log().contains("rules moved to a new plugin version"), "{}", d.log());
}

#[test]
fn a_rollback_holds_the_version_back_across_a_restart_until_its_file_is_removed() {
    let p = PluginsDir::new();
    p.add("sources", "file", "file");
    p.add("sinks", "file", "file");
    p.add("functions", "echo@1.0.0", "echo");
    p.add("functions", "echo@2.0.0", "echo");
    let data = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_in(p.path(), data.path(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    append_rows(&input, 0, 10);
    let sql = format!(r#"CREATE STREAM s () WITH (TYPE="file", DATASOURCE="{}")"#, input.display());
    assert_eq!(d.http("POST", "/streams", Some(&json!({ "sql": sql }).to_string())).0, 201);
    let out = |id: &str| dir.path().join(format!("{id}.jsonl"));
    assert_eq!(d.http("POST", "/rules", Some(&rule("r", &out("r"), None).to_string())).0, 201);
    d.wait_lines("r", &out("r"), 10);
    assert_eq!(versions(&d), owned(&[("2.0.0", true, &["r"]), ("1.0.0", false, &[])]));

    let (ok, said, err) = d.cli(&["plugin", "rollback", "function", "echo"]);
    assert!(ok, "{err}");
    assert!(said.contains("Version 2.0.0 of plugin echo is held back; rules r moved to 1.0.0"), "{said}");
    wait_versions(&d, &[("2.0.0", false, &[]), ("1.0.0", true, &["r"])]);
    assert_eq!(d.get_json("/plugins/functions/echo")["versions"][0]["held"], true);
    // New rules get the version before it, and there is none before 1.0.0.
    assert_eq!(d.http("POST", "/rules", Some(&rule("r2", &out("r2"), None).to_string())).0, 201);
    d.wait_lines("r2", &out("r2"), 10);
    let (code, body) = d.http("POST", "/plugins/functions/echo/rollback", None);
    assert_eq!(code, 409, "{body}");
    assert!(message(&body).contains("has no version before 1.0.0 to roll back to"), "{body}");
    // A pin that only the held version matches is refused like one that matches nothing.
    let (code, body) = d.http("POST", "/rules", Some(&rule("r3", &out("r3"), Some(json!({"echo": "2"}))).to_string()));
    assert_eq!(code, 400, "{body}");

    // The hold outlives the daemon.
    assert!(d.terminate().success());
    let d = Daemon::start_in(p.path(), data.path(), &[]);
    wait_versions(&d, &[("2.0.0", false, &[]), ("1.0.0", true, &["r", "r2"])]);

    // Removing the held file ends the hold: a fixed 2.0.1 is the newest.
    let (ok, said, err) = d.cli(&["plugin", "remove", "function", "echo", "--version", "2.0.0"]);
    assert!(ok, "{said} {err}");
    p.add("functions", "echo@2.0.1", "echo");
    let (ok, said, err) = d.cli(&["plugin", "upgrade", "function", "echo"]);
    assert!(ok, "{err}");
    assert!(said.contains("Rules r, r2 moved"), "{said}");
    wait_versions(&d, &[("2.0.1", true, &["r", "r2"]), ("1.0.0", false, &[])]);
}
