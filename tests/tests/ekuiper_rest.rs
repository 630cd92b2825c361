//! eKuiper's REST API as its clients use it: a recorded session of our own
//! (the calls an eKuiper dashboard or script makes, in eKuiper's shapes and
//! with the status codes eKuiper answers) replayed against the real daemon.

use oort_tests::{Daemon, PluginsDir};
use serde_json::{json, Value as Json};

/// One recorded call: method, path, body, the status eKuiper answers and a
/// fragment its answer contains.
struct Call {
    method: &'static str,
    path: &'static str,
    body: Option<Json>,
    status: u16,
    contains: &'static str,
}

fn call(method: &'static str, path: &'static str, body: Option<Json>, status: u16, contains: &'static str) -> Call {
    Call { method, path, body, status, contains }
}

/// Replays `calls` in order; returns every answer's body.
fn replay(d: &Daemon, calls: Vec<Call>) -> Vec<String> {
    calls
        .into_iter()
        .map(|c| {
            let body = c.body.as_ref().map(Json::to_string);
            let (status, answer) = d.http(c.method, c.path, body.as_deref());
            assert_eq!(status, c.status, "{} {}: {answer}", c.method, c.path);
            assert!(answer.contains(c.contains), "{} {}: {answer} lacks {:?}", c.method, c.path, c.contains);
            answer
        })
        .collect()
}

fn plugins() -> PluginsDir {
    let p = PluginsDir::new();
    p.add("sources", "random", "random");
    p.add("sinks", "log", "log");
    p
}

#[test]
fn a_recorded_ekuiper_session_replays_against_the_daemon() {
    let p = plugins();
    let d = Daemon::start(p.path(), &[]);
    // eKuiper's DDL forms: nested types, a trailing comma, options separated
    // by spaces.
    let stream = "CREATE STREAM demo (temperature FLOAT, tags ARRAY(STRING), pos STRUCT(x FLOAT, y FLOAT),) \
                  WITH (TYPE=\"random\" DATASOURCE=\"demo\" FORMAT=\"json\", interval=\"50\", \
                  pattern='{\"temperature\":21.5,\"tags\":[\"a\"],\"pos\":{\"x\":1,\"y\":2}}')";
    let rule = json!({"id": "rule1", "sql": "SELECT temperature, pos->x AS x FROM demo WHERE temperature > 20",
        "actions": [{"log": {}}]});
    let answers = replay(
        &d,
        vec![
            call("GET", "/", None, 200, "\"version\""),
            call("POST", "/streams", Some(json!({ "sql": stream })), 201, "Stream demo is created."),
            call("POST", "/streams", Some(json!({ "sql": stream })), 400, "already exists"),
            call("GET", "/streams", None, 200, "[\"demo\"]"),
            call("GET", "/streams/demo", None, 200, "\"StreamFields\""),
            call("POST", "/rules", Some(rule.clone()), 201, "Rule rule1 was created successfully."),
            call("POST", "/rules", Some(rule.clone()), 400, "already exists"),
            call("GET", "/rules", None, 200, "\"rule1\""),
            call("GET", "/rules/rule1/topo", None, 200, "\"sources\""),
            call("GET", "/rules/rule1/status", None, 200, "\"lastStartTimestamp\""),
            call("POST", "/rules/rule1/stop", None, 200, "stopped"),
            call("GET", "/rules/rule1/status", None, 200, "canceled manually"),
            call("DELETE", "/streams/demo", None, 409, "used by"),
            call("GET", "/data/export", None, 200, "\"rules\""),
            call("DELETE", "/rules/rule1", None, 200, "Rule rule1 is dropped."),
            call("DELETE", "/streams/demo", None, 200, "dropped"),
            call("GET", "/rules", None, 200, "[]"),
        ],
    );
    let about: Json = serde_json::from_str(&answers[0]).unwrap();
    assert_eq!((about["os"].as_str(), about["arch"].is_string()), (Some(std::env::consts::OS), true), "{about}");
    let topo: Json = serde_json::from_str(&answers[8]).unwrap();
    assert_eq!(
        topo,
        json!({"sources": ["source_demo"],
               "edges": {"source_demo": ["op_1_filter"], "op_1_filter": ["op_2_project"], "op_2_project": ["sink_log_0"]}})
    );
    let export: Json = serde_json::from_str(&answers[13]).unwrap();
    assert_eq!(export["streams"]["demo"].as_str().map(str::trim), Some(stream), "{export}");
    let exported_rule: Json = serde_json::from_str(export["rules"]["rule1"].as_str().unwrap()).unwrap();
    assert_eq!(exported_rule["sql"], rule["sql"]);

    // Import the export into the emptied daemon, as eKuiper's clients send it:
    // the document as text under "content". Everything comes back.
    let content = export.to_string();
    let (status, body) = d.http("POST", "/data/import", Some(&json!({ "content": content }).to_string()));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Json>(&body).unwrap(),
        // The plugins copied into the folder by hand are there already.
        json!({"streams": {"demo": "ok"}, "rules": {"rule1": "ok"},
               "plugins": {"sources_random": "ok", "sinks_log": "ok"}})
    );
    assert_eq!(export["nativePlugins"]["sources_random"], json!({"name": "random", "file": ""}).to_string());
    assert_eq!(d.get_json("/streams"), json!(["demo"]));
    assert_eq!(d.get_json("/rules/rule1")["sql"], rule["sql"]);
    // Importing again replaces in place; a bad rule is reported by name and
    // the rest goes in.
    let mut broken = export.clone();
    broken["rules"]["rule2"] =
        json!(json!({"id": "rule2", "sql": "SELECT FROM", "actions": [{"log": {}}]}).to_string());
    let (status, body) = d.http("POST", "/data/import", Some(&json!({ "content": broken.to_string() }).to_string()));
    assert_eq!(status, 400, "{body}");
    let report: Json = serde_json::from_str(&body).unwrap();
    assert_eq!((&report["rules"]["rule1"], &report["streams"]["demo"]), (&json!("ok"), &json!("ok")), "{report}");
    assert!(report["rules"]["rule2"].as_str().is_some_and(|e| e.contains("invalid SQL")), "{report}");
    for (body, fragment) in [
        (json!({}), "missing field \\\"content\\\""),
        (json!({"file": "file:///etc/passwd"}), "not supported"),
        (json!({"content": "{"}), "content is not valid JSON"),
        (json!({"content": {"tables": {"t": "CREATE TABLE t () WITH (TYPE=\"x\")"}}}), "tables are not supported"),
    ] {
        let (status, answer) = d.http("POST", "/data/import", Some(&body.to_string()));
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer.contains(fragment), "{body}: {answer}");
    }
}

/// eKuiper's plugin metadata endpoints (issue 16, items 3 and 6): a plugin's
/// `about` and `properties` under `/metadata/…` and in `describe`; a metadata
/// file that is not valid is an error naming it in both; `/plugins/udfs` maps
/// each function to its plugin.
#[test]
fn plugin_metadata_and_functions_are_served_as_ekuiper_serves_them() {
    let p = plugins();
    p.add("functions", "echo", "echo");
    let about = json!({"trial": false, "author": {"name": "Oort"}, "description": {"en_US": "random rows"}});
    let properties = json!([{"name": "interval", "default": 1000, "optional": true}]);
    std::fs::write(
        p.path().join("sources/random.json"),
        json!({"about": about, "properties": {"default": properties}}).to_string(),
    )
    .unwrap();
    std::fs::write(
        p.path().join("functions/echo.json"),
        json!({"functions": [{"name": "echo"}, {"name": "echo2"}]}).to_string(),
    )
    .unwrap();
    // Not valid: "functions" must be a list.
    std::fs::write(p.path().join("sinks/log.json"), r#"{"functions": "nope"}"#).unwrap();
    let d = Daemon::start(p.path(), &[]);

    let listed = d.get_json("/metadata/sources");
    assert_eq!(listed, json!([{"name": "random", "about": about}]));
    let meta = d.get_json("/metadata/sources/random");
    assert_eq!((&meta["name"], &meta["about"], &meta["properties"]), (&json!("random"), &about, &properties), "{meta}");
    let described = d.get_json("/plugins/sources/random");
    assert_eq!((&described["about"], &described["properties"]), (&about, &properties), "{described}");

    let (status, body) = d.http("GET", "/metadata/sinks/log", None);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("log.json is not valid"), "{body}");
    let described = d.get_json("/plugins/sinks/log");
    assert!(described["metadata_problem"].as_str().is_some_and(|p| p.contains("log.json is not valid")), "{described}");
    assert_eq!(d.http("GET", "/metadata/sinks/nope", None).0, 404);
    // A function plugin whose metadata does not parse exports no function of
    // its list: a rule calling one is refused with that reason, not a bare
    // "unknown function".
    std::fs::write(p.path().join("functions/echo.json"), r#"{"functions": [{"nom": "echo"}]}"#).unwrap();
    assert_eq!(d.get_json("/plugins/functions"), json!(["echo"]), "a listing rescans the folder");
    assert_eq!(
        d.http("POST", "/streams", Some(&json!({"sql": "CREATE STREAM m () WITH (TYPE=\"random\")"}).to_string())).0,
        201
    );
    let rule = json!({"id": "e", "sql": "SELECT echo2(a) FROM m", "actions": [{"log": {}}]});
    let (status, body) = d.http("POST", "/rules", Some(&rule.to_string()));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("unknown function") && body.contains("echo.json is not valid"), "{body}");
    std::fs::write(
        p.path().join("functions/echo.json"),
        json!({"functions": [{"name": "echo"}, {"name": "echo2"}]}).to_string(),
    )
    .unwrap();
    assert_eq!(d.http("GET", "/metadata/tables", None).0, 404);

    assert_eq!(d.get_json("/plugins/udfs"), json!(["echo", "echo2"]));
    assert_eq!(d.get_json("/plugins/udfs/ECHO2"), json!({"name": "ECHO2", "plugin": "echo"}));
    let (status, body) = d.http("GET", "/plugins/udfs/nope", None);
    assert_eq!(status, 404, "{body}");
    assert!(body.contains(r#"no plugin exports a function named \"nope\""#), "{body}");
}

/// eKuiper's conf keys (issue 16, item 6): `PUT
/// /metadata/sources/{type}/confKeys/{key}` stores a section that a stream's
/// `CONF_KEY` names; the rule's source gets its properties (under the
/// stream's own options); deleting it makes such a stream refuse to start.
#[test]
fn conf_keys_set_over_rest_configure_the_streams_that_name_them() {
    let p = plugins();
    p.add("sinks", "file", "file");
    let out = tempfile::tempdir().unwrap();
    let d = Daemon::start(p.path(), &[]);
    let conf = json!({"interval": 20, "pattern": {"k": "from-conf", "n": 1}});
    let (status, body) = d.http("PUT", "/metadata/sources/random/confKeys/quick", Some(&conf.to_string()));
    assert_eq!(status, 200, "{body}");
    assert_eq!(d.get_json("/metadata/sources/yaml/random"), json!({ "quick": conf }));
    let (status, body) = d.http("PUT", "/metadata/sources/random/confKeys/bad%20key", Some("{}"));
    assert_eq!(status, 400, "{body}");
    let (status, body) = d.http("PUT", "/metadata/sources/random/confKeys/k", Some("[1]"));
    assert_eq!(status, 400, "{body}");

    let stream = r#"CREATE STREAM s () WITH (TYPE="random", CONF_KEY="quick")"#;
    assert_eq!(d.http("POST", "/streams", Some(&json!({ "sql": stream }).to_string())).0, 201);
    let rows = out.path().join("rows.jsonl");
    let rule =
        json!({"id": "r", "sql": "SELECT k, n FROM s", "actions": [{"file": {"path": rows.display().to_string()}}]});
    let (status, body) = d.http("POST", "/rules", Some(&rule.to_string()));
    assert_eq!(status, 201, "{body}");
    let got = d.wait_lines("r", &rows, 3);
    // The random source keeps strings and varies numbers around the pattern's.
    assert!(got.iter().all(|r| r["k"] == "from-conf" && r["n"].is_number()), "{got:?}");

    let (status, body) = d.http("DELETE", "/metadata/sources/random/confKeys/quick", None);
    assert_eq!(status, 200, "{body}");
    let (status, body) = d.http("DELETE", "/metadata/sources/random/confKeys/quick", None);
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no conf key"), "{body}");
    let (status, body) = d.http("POST", "/rules/r/restart", None);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains(r#"CONF_KEY \"quick\" has no section"#), "{body}");
}

/// eKuiper's export and import carry the plugin list and the source
/// configurations (issue 16, item 6): a plugin installed from an archive is
/// exported with the request it came from, and an import into an empty
/// daemon installs it, sets the conf keys, then creates the streams and rules.
#[test]
fn an_export_with_plugins_and_conf_keys_rebuilds_an_empty_daemon() {
    let out = tempfile::tempdir().unwrap();
    let archive = |name: &str, binary: &str| {
        let path = out.path().join(format!("{name}.zip"));
        let exe = std::fs::read(oort_tests::bin(binary)).unwrap();
        std::fs::write(&path, oort_tests::zip_of(&[(name, &exe, 0o755)])).unwrap();
        path.display().to_string()
    };
    let (random, file) = (archive("random", "random"), archive("file", "file"));
    let first = PluginsDir::new();
    let d = Daemon::start(first.path(), &[]);
    for (kind, name, zip) in [("sources", "random", &random), ("sinks", "file", &file)] {
        let (status, body) =
            d.http("POST", &format!("/plugins/{kind}"), Some(&json!({"name": name, "file": zip}).to_string()));
        assert_eq!(status, 201, "{body}");
    }
    let conf = json!({"interval": 20, "pattern": {"k": "conf"}});
    assert_eq!(d.http("PUT", "/metadata/sources/random/confKeys/fast", Some(&conf.to_string())).0, 200);
    let stream = r#"CREATE STREAM s () WITH (TYPE="random", CONF_KEY="fast")"#;
    assert_eq!(d.http("POST", "/streams", Some(&json!({ "sql": stream }).to_string())).0, 201);
    let rows = out.path().join("rows.jsonl");
    let rule =
        json!({"id": "r", "sql": "SELECT k FROM s", "actions": [{"file": {"path": rows.display().to_string()}}]});
    assert_eq!(d.http("POST", "/rules", Some(&rule.to_string())).0, 201);
    let export = d.get_json("/data/export");
    assert_eq!(export["nativePlugins"]["sources_random"], json!({"name": "random", "file": random}).to_string());
    assert_eq!(export["sourceConfig"]["random"], json!({ "fast": conf }).to_string());
    assert_eq!(d.http("POST", "/rules/r/stop", None).0, 200);
    drop(d);

    let second = PluginsDir::new();
    let d = Daemon::start(second.path(), &[]);
    let (status, body) = d.http("POST", "/data/import", Some(&json!({ "content": export.to_string() }).to_string()));
    assert_eq!(status, 200, "{body}\nlog:\n{}", d.log());
    assert_eq!(
        serde_json::from_str::<Json>(&body).unwrap(),
        json!({"streams": {"s": "ok"}, "rules": {"r": "ok"}, "sourceConfig": {"random": "ok"},
               "plugins": {"sources_random": "ok", "sinks_file": "ok"}})
    );
    assert_eq!(d.get_json("/metadata/sources/yaml/random"), json!({ "fast": conf }));
    std::fs::remove_file(&rows).ok();
    let got = d.wait_lines("r", &rows, 2);
    assert!(got.iter().all(|r| r["k"] == "conf"), "{got:?}");

    // What cannot be installed is reported by name, and the rest still goes in.
    let mut partial = export.clone();
    partial["nativePlugins"]["functions_gone"] = json!(json!({"name": "gone", "file": ""}).to_string());
    partial["streams"]["t"] = json!(r#"CREATE STREAM u () WITH (TYPE="random")"#);
    let (status, body) = d.http("POST", "/data/import", Some(&json!({ "content": partial.to_string() }).to_string()));
    assert_eq!(status, 400, "{body}");
    let report: Json = serde_json::from_str(&body).unwrap();
    assert!(
        report["plugins"]["functions_gone"].as_str().is_some_and(|e| e.contains("no file to install it from")),
        "{report}"
    );
    assert!(report["streams"]["t"].as_str().is_some_and(|e| e.contains("creates stream u, not t")), "{report}");
    assert_eq!(report["plugins"]["sources_random"], "ok", "{report}");
    // The mis-named stream was not created.
    assert_eq!(d.get_json("/streams"), json!(["s"]));
}

/// eKuiper's shared connections (issue 16, item 6): `/connections` stores
/// named properties of one plugin type; a stream's source or a rule's sink
/// takes them with `connectionSelector`; the connection reports the rules
/// using it and whether their plugin processes are up, and cannot be deleted
/// while a rule names it.
#[test]
fn connections_are_shared_properties_that_sources_and_sinks_select() {
    let p = plugins();
    p.add("sinks", "file", "file");
    let out = tempfile::tempdir().unwrap();
    let d = Daemon::start(p.path(), &[]);
    let conn = json!({"id": "rnd", "typ": "random", "props": {"interval": 20, "pattern": {"k": "via-conn"}}});
    let (status, body) = d.http("POST", "/connections", Some(&conn.to_string()));
    assert_eq!(status, 201, "{body}");
    assert_eq!(d.http("POST", "/connections", Some(&conn.to_string())).0, 400, "a duplicate id");
    let (status, body) = d.http("POST", "/connections", Some(&json!({"id": "x y", "typ": "random"}).to_string()));
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        d.get_json("/connections"),
        json!([{"id": "rnd", "typ": "random", "props": conn["props"], "status": "unused", "refCount": 0}])
    );

    let stream = r#"CREATE STREAM s () WITH (TYPE="random", connectionSelector="rnd")"#;
    assert_eq!(d.http("POST", "/streams", Some(&json!({ "sql": stream }).to_string())).0, 201);
    let rows = out.path().join("rows.jsonl");
    let rule =
        json!({"id": "r", "sql": "SELECT k FROM s", "actions": [{"file": {"path": rows.display().to_string()}}]});
    assert_eq!(d.http("POST", "/rules", Some(&rule.to_string())).0, 201);
    let got = d.wait_lines("r", &rows, 2);
    assert!(got.iter().all(|r| r["k"] == "via-conn"), "{got:?}");
    let used = d.get_json("/connections/rnd");
    assert_eq!((&used["refCount"], &used["status"]), (&json!(1), &json!("connected")), "{used}");

    let (status, body) = d.http("DELETE", "/connections/rnd", None);
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("used by rules r"), "{body}");
    // A connection of another type is refused by the operator that selects it.
    let wrong = json!({"id": "w", "sql": "SELECT k FROM s",
        "actions": [{"file": {"path": rows.display().to_string(), "connectionSelector": "rnd"}}]});
    let (status, body) = d.http("POST", "/rules", Some(&wrong.to_string()));
    let why = if status == 201 { d.get_json("/rules/w/status")["message"].to_string() } else { body };
    assert!(why.contains("connection rnd is for random, not file"), "{status}: {why}");

    let changed = json!({"typ": "random", "props": {"interval": 20, "pattern": {"k": "changed"}}});
    assert_eq!(d.http("PUT", "/connections/rnd", Some(&changed.to_string())).0, 200);
    assert_eq!(d.http("PUT", "/connections/nope", Some(&changed.to_string())).0, 404);
    assert_eq!(d.http("POST", "/rules/r/restart", None).0, 200);
    std::fs::remove_file(&rows).ok();
    let got = d.wait_lines("r", &rows, 2);
    assert!(got.iter().all(|r| r["k"] == "changed"), "{got:?}");

    for id in ["r", "w"] {
        d.http("DELETE", &format!("/rules/{id}"), None);
    }
    assert_eq!(d.http("DELETE", "/connections/rnd", None).0, 200);
    assert_eq!(d.http("GET", "/connections/rnd", None).0, 404);
}

/// Issue 16, item 4, in the Rust SDK: a sink that asks for payloads (the
/// `log` sink with `payloads: true`) gets the items the daemon encoded per the
/// action's `dataTemplate` and `sendSingle`.
#[test]
fn a_rust_sink_can_take_the_payloads_the_daemon_encodes() {
    let p = plugins();
    let d = Daemon::start(p.path(), &[]);
    let stream = r#"CREATE STREAM s () WITH (TYPE="random", interval="20", pattern='{"name":"sensor"}')"#;
    assert_eq!(d.http("POST", "/streams", Some(&json!({ "sql": stream }).to_string())).0, 201);
    let rules = [
        json!({"id": "tpl", "sql": "SELECT name FROM s",
               "actions": [{"log": {"payloads": true, "sendSingle": true, "dataTemplate": "n={{.name}}"}}]}),
        json!({"id": "list", "sql": "SELECT name FROM s", "actions": [{"log": {"payloads": true}}]}),
    ];
    for rule in &rules {
        let (status, body) = d.http("POST", "/rules", Some(&rule.to_string()));
        assert_eq!(status, 201, "{body}");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let log = d.log();
        if log.contains("sink payload: n=sensor") && log.contains(r#"sink payload: [{"name":"sensor"}]"#) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no payload lines:\n{log}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(!d.log().contains("sink result:"), "records were not sent as well:\n{}", d.log());
}

/// Issue 16, item 2, in the daemon: integers above `i64` in JSON input (a
/// geohash's) stay exact through the file source, SQL comparison and
/// arithmetic (literals too) and the file sink.
#[test]
fn big_integers_in_json_input_stay_exact_end_to_end() {
    let p = plugins();
    p.add("sources", "file", "file");
    p.add("sinks", "file", "file");
    let out = tempfile::tempdir().unwrap();
    let (input, rows) = (out.path().join("in.jsonl"), out.path().join("rows.jsonl"));
    std::fs::write(&input, "{\"h\": 12963433097944239317}\n{\"h\": 12963433097944239316}\n").unwrap();
    let d = Daemon::start(p.path(), &[]);
    let stream = format!(r#"CREATE STREAM s () WITH (TYPE="file", DATASOURCE="{}")"#, input.display());
    assert_eq!(d.http("POST", "/streams", Some(&json!({ "sql": stream }).to_string())).0, 201);
    let rule = json!({"id": "r",
        "sql": "SELECT h, h + 1 AS next, h = 12963433097944239317 AS same FROM s",
        "actions": [{"file": {"path": rows.display().to_string()}}]});
    assert_eq!(d.http("POST", "/rules", Some(&rule.to_string())).0, 201);
    let got = d.wait_text_lines("r", &rows, 2);
    assert_eq!(
        got,
        [
            r#"{"h":12963433097944239317,"next":12963433097944239318,"same":true}"#,
            r#"{"h":12963433097944239316,"next":12963433097944239317,"same":false}"#
        ]
    );
}
