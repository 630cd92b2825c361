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
        json!({"streams": {"demo": "ok"}, "rules": {"rule1": "ok"}})
    );
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
