//! A cluster that loses nodes keeps every rule, exactly once: a real etcd,
//! three `oort serve --cluster` nodes with their own data folders, one shared
//! checkpoint store (`--checkpoint-store file://…`), and rules at qos 2 that
//! copy a growing JSON-lines file into one output file each
//! (`oort_tests::cluster`). Whatever happens to the nodes (kill -9 and
//! rejoin, a rolling restart, a node paused past its lease and resumed, an
//! etcd member lost, etcd restarted), every output file must end up exactly
//! the input: nothing lost, nothing repeated.

use std::time::{Duration, Instant};

use oort_tests::cluster::{signal, wait_written, Cluster, Writer, IDS};
use oort_tests::{Etcd, S3Server};

#[test]
fn three_hundred_rules_survive_a_killed_node_its_rejoin_and_a_rolling_restart_exactly_once() {
    let mut c = Cluster::start(Etcd::start(), 5);
    let writer = Writer::start(&c.input(), 5);
    let rules = c.create_rules(300);
    let (took, per_node) = c.wait_running(300, &IDS, Duration::from_secs(60));
    println!("300 rules running on three nodes after {took:?}: {per_node:?}");
    assert!(per_node.iter().all(|n| (75..=125).contains(n)), "placement is balanced by count: {per_node:?}");
    let status = c.node(1).get_json("/cluster");
    assert_eq!(status["rules"], 300, "{status}");
    assert_eq!(status["unassigned"], 0, "{status}");

    // Any node answers for any rule: a status call is forwarded to the owner.
    let owned_by_c = c.rules(c.node(0)).into_iter().find(|r| r.2.as_deref() == Some("c")).unwrap().0;
    let remote = c.node(0).get_json(&format!("/rules/{owned_by_c}/status"));
    assert_eq!(remote["status"], "running", "{remote}");

    // kill -9 one node while records flow: its rules run again on the others.
    wait_written(&writer, writer.written() + 20);
    let mut killed = c.nodes[2].take().unwrap();
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    let (took, per_node) = c.wait_running(300, &["a", "b"], Duration::from_secs(30));
    println!("after kill -9 of c: all 300 rules running on a and b after {took:?}: {per_node:?}");
    drop(killed);

    // It rejoins, and takes its share again.
    c.start_node(2);
    let (took, per_node) = c.wait_running(300, &IDS, Duration::from_secs(30));
    println!("c rejoined: rebalanced after {took:?}: {per_node:?}");
    assert!(per_node[2] >= 50, "the node that rejoined runs its share again: {per_node:?}");

    // A rolling restart: each node stops cleanly and comes back.
    for i in 0..3 {
        assert!(c.nodes[i].as_mut().unwrap().terminate().success());
        c.nodes[i] = None;
        let others: Vec<&str> = (0..3).filter(|j| *j != i).map(|j| IDS[j]).collect();
        c.wait_running(300, &others, Duration::from_secs(30));
        c.start_node(i);
        c.wait_running(300, &IDS, Duration::from_secs(30));
    }
    let lines = writer.finish();
    c.check_outputs(&rules, lines, Duration::from_secs(60));
}

#[test]
fn a_node_paused_past_its_lease_writes_nothing_more_and_rules_survive_an_etcd_restart() {
    // A three-member etcd, which also loses one member on the way.
    let mut c = Cluster::start(Etcd::start_cluster(3), 2);
    let writer = Writer::start(&c.input(), 5);
    let rules = c.create_rules(30);
    c.wait_running(30, &IDS, Duration::from_secs(30));
    let paused: Vec<String> =
        c.rules(c.node(0)).into_iter().filter(|r| r.2.as_deref() == Some("c")).map(|r| r.0).collect();
    assert!(!paused.is_empty());

    // SIGSTOP past the lease: the others take its rules over while it sleeps.
    signal(c.node(2), "-STOP");
    let (took, _) = c.wait_running(30, &["a", "b"], Duration::from_secs(20));
    println!("c paused: its rules running on a and b after {took:?}");
    wait_written(&writer, writer.written() + 30);
    // It wakes up still running them: its sinks are fenced, its checkpoints
    // refused, and it gives them up.
    signal(c.node(2), "-CONT");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !paused.iter().all(|r| c.node(2).log().contains(&format!("rule given up rule={r} "))) {
        assert!(Instant::now() < deadline, "the resumed node kept its lost rules:\n{}", c.node(2).log());
        std::thread::sleep(Duration::from_millis(100));
    }
    c.wait_running(30, &IDS, Duration::from_secs(30));
    // It gave every one of them up without releasing (it no longer owned
    // them); what it did meanwhile was refused (its sinks' fences, its
    // checkpoints' pointer moves), as the outputs below prove.
    let log = c.node(2).log();
    for r in &paused {
        assert!(log.contains(&format!("rule given up rule={r} released=false")), "{r}:\n{log}");
    }

    // One etcd member lost: the other two keep quorum, and the cluster goes
    // on placing rules.
    c.etcd.kill_member(0);
    let late = serde_json::json!({"id": "late", "sql": "SELECT n FROM s",
        "actions": [{"file": {"path": c.output("late").display().to_string()}}], "options": {"qos": 2}});
    let (status, body) = c.node(1).http("POST", "/rules", Some(&late.to_string()));
    assert_eq!(status, 201, "{body}");
    c.wait_running(31, &IDS, Duration::from_secs(30));
    assert_eq!(c.node(0).http("DELETE", "/rules/late", None).0, 200);
    c.etcd.restart();
    c.wait_running(30, &IDS, Duration::from_secs(30));

    // etcd goes away: the rules run on (records keep flowing to the
    // outputs); when it is back, the nodes coordinate again.
    c.etcd.kill();
    let before: Vec<u64> = rules.iter().map(|r| std::fs::metadata(c.output(r)).map_or(0, |m| m.len())).collect();
    std::thread::sleep(Duration::from_secs(4));
    let grown =
        rules.iter().zip(&before).filter(|(r, b)| std::fs::metadata(c.output(r)).map_or(0, |m| m.len()) > **b).count();
    assert_eq!(grown, rules.len(), "every rule kept writing while etcd was down");
    assert_eq!(c.node(0).http("GET", "/rules", None).0, 503);
    c.etcd.restart();
    c.wait_running(30, &IDS, Duration::from_secs(30));
    let lines = writer.finish();
    c.check_outputs(&rules, lines, Duration::from_secs(60));
    // The output files of the paused node's rules carry the new owners' fences.
    for r in &paused {
        let fence = std::fs::read_to_string(format!("{}.fence", c.output(r).display())).unwrap();
        assert!(fence.trim().parse::<u64>().unwrap() > 0, "{r}: {fence}");
    }
}

#[test]
fn any_node_answers_for_every_rule_and_definitions_live_in_the_cluster() {
    let c = Cluster::start(Etcd::start(), 2);
    let rules = c.create_rules(6);
    c.wait_running(6, &IDS, Duration::from_secs(30));
    let (a, b, n3) = (c.node(0), c.node(1), c.node(2));
    // A duplicate is refused wherever it is sent, as eKuiper refuses it.
    let sink = serde_json::json!([{"file": {"path": c.output("other").display().to_string()}}]);
    let dup = serde_json::json!({"id": "r000", "sql": "SELECT n FROM s", "actions": sink});
    let (status, body) = n3.http("POST", "/rules", Some(&dup.to_string()));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("already exists"), "{body}");
    // A bad rule is refused by the node that receives it, before etcd sees it.
    let bad = serde_json::json!({"id": "bad", "sql": "SELECT n FROM nowhere", "actions": sink});
    let (status, body) = a.http("POST", "/rules", Some(&bad.to_string()));
    assert_eq!(status, 400, "{body}");
    assert_eq!(c.rules(b).len(), 6);

    // Definitions from etcd; status, restart and topology from the owner.
    assert_eq!(n3.get_json("/rules/r001")["sql"], "SELECT n FROM s");
    for id in &rules {
        for d in [a, b, n3] {
            assert_eq!(d.get_json(&format!("/rules/{id}/status"))["status"], "running", "{id}");
        }
    }
    let (status, body) = b.http("POST", "/rules/r003/restart", None);
    assert_eq!(status, 200, "{body}");
    let topo = n3.get_json("/rules/r003/topo");
    assert!(topo["sources"].as_array().is_some_and(|s| !s.is_empty()), "{topo}");

    // Stop and start through any node: the owner follows.
    assert_eq!(n3.http("POST", "/rules/r001/stop", None).0, 200);
    wait_state(&c, "r001", "stopped");
    assert_eq!(a.http("POST", "/rules/r001/start", None).0, 200);
    wait_state(&c, "r001", "running");

    // A new definition through one node reaches the owner, which restarts
    // the rule with it.
    let edges = |d: &oort_tests::Daemon| d.get_json("/rules/r002/topo")["edges"].as_object().map_or(0, |e| e.len());
    assert_eq!(edges(n3), 2, "source → project → sink before: {}", n3.get_json("/rules/r002/topo"));
    let mut updated = n3.get_json("/rules/r002");
    updated["sql"] = "SELECT n FROM s WHERE n >= 0".into();
    let (status, body) = a.http("PUT", "/rules/r002", Some(&updated.to_string()));
    assert_eq!(status, 200, "{body}");
    assert_eq!(b.get_json("/rules/r002")["sql"], "SELECT n FROM s WHERE n >= 0");
    let deadline = Instant::now() + Duration::from_secs(10);
    while edges(n3) != 3 {
        assert!(
            Instant::now() < deadline,
            "the owner still runs the old definition: {}",
            n3.get_json("/rules/r002/topo")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_state(&c, "r002", "running");

    // A stream rules read is not dropped without force.
    let (status, body) = b.http("DELETE", "/streams/s", None);
    assert_eq!(status, 400, "{body}");
    // A deleted rule stops on its node and is gone everywhere.
    assert_eq!(n3.http("DELETE", "/rules/r005", None).0, 200);
    assert_eq!(a.http("GET", "/rules/r005/status", None).0, 404);
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.rules(b).len() != 5 || [a, b, n3].iter().any(|d| d.http("GET", "/rules", None).1.contains("r005")) {
        assert!(Instant::now() < deadline, "r005 is still listed");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(a.http("DELETE", "/rules/r005", None).0, 404);

    // A rule that asks for a label no node carries waits for a node.
    let mars = serde_json::json!({"id": "mars", "sql": "SELECT n FROM s", "actions": sink,
                                  "options": {"nodeLabels": {"zone": "mars"}}});
    assert_eq!(b.http("POST", "/rules", Some(&mars.to_string())).0, 201);
    wait_state(&c, "mars", "waiting for a node");
    assert_eq!(a.get_json("/cluster")["unassigned"], 1);
    assert_eq!(a.http("DELETE", "/rules/mars", None).0, 200);
    let typo = serde_json::json!({"id": "typo", "sql": "SELECT n FROM s", "actions": sink,
                                  "options": {"nodeLabels": ["zone"]}});
    assert_eq!(b.http("POST", "/rules", Some(&typo.to_string())).0, 400);

    let (status, body) = a.http("POST", "/data/import", Some(r#"{"content": "{}"}"#));
    assert_eq!(status, 501, "{body}");
    let (ok, out, err) = b.cli(&["cluster", "status"]);
    assert!(ok, "{err}");
    assert!(out.contains("RULES") && out.contains("5 rules, 0 waiting for a node"), "{out}");
}

#[test]
fn checkpoints_on_s3_restore_a_killed_nodes_rules_even_when_the_store_was_down_meanwhile() {
    let mut s3 = S3Server::start();
    let mut c = Cluster::start_on_s3(Etcd::start(), 2, &s3, "prod/checkpoints");
    let writer = Writer::start(&c.input(), 5);
    let rules = c.create_rules(30);
    c.wait_running(30, &IDS, Duration::from_secs(30));
    // Every rule's checkpoints reach the bucket, under the URL's prefix,
    // named by the node that wrote them.
    let deadline = Instant::now() + Duration::from_secs(20);
    let published = loop {
        let keys = s3.keys("prod/checkpoints/");
        if rules.iter().all(|r| keys.iter().any(|k| k.starts_with(&format!("prod/checkpoints/{r}/")))) {
            break keys;
        }
        assert!(Instant::now() < deadline, "not every rule published to S3: {keys:?}\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(published.iter().all(|k| IDS.iter().any(|n| k.contains(&format!("-{n}-")))), "{published:?}");

    // The store goes down: checkpoints complete locally, rules keep writing.
    s3.stop();
    let sizes =
        || -> Vec<u64> { rules.iter().map(|r| std::fs::metadata(c.output(r)).map_or(0, |m| m.len())).collect() };
    let before = sizes();
    std::thread::sleep(Duration::from_secs(3));
    let grown = sizes().iter().zip(&before).filter(|(now, then)| now > then).count();
    assert_eq!(grown, rules.len(), "every rule kept writing while the store was down");
    assert!(c.node(0).log().contains("the checkpoint was not published"), "{}", c.node(0).log());

    // A node dies while the store is down: its rules wait for the store (a
    // survivor cannot download their checkpoints yet), then restore from it.
    let lost: Vec<String> =
        c.rules(c.node(1)).into_iter().filter(|r| r.2.as_deref() == Some("a")).map(|r| r.0).collect();
    assert!(!lost.is_empty());
    let mut killed = c.nodes[0].take().unwrap();
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    drop(killed);
    let waited = |log: &str| {
        lost.iter()
            .any(|r| log.lines().any(|l| l.contains("cannot download checkpoint") && l.contains(&format!("rule={r}"))))
    };
    eventually(Duration::from_secs(15), || waited(&c.logs()));
    assert!(waited(&c.logs()), "{}", c.logs());
    s3.restart();
    let (took, per_node) = c.wait_running(30, &["b", "c"], Duration::from_secs(30));
    println!("the store is back: all 30 rules running on b and c after {took:?}: {per_node:?}");
    let log = c.logs();
    for r in &lost {
        assert!(log.contains(&format!("rule taken over rule={r} ")), "{r}:\n{log}");
    }
    let lines = writer.finish();
    c.check_outputs(&rules, lines, Duration::from_secs(60));
}

/// Polls `cond` every 100 ms for up to `within`; whether it came true.
fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while !cond() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

fn wait_state(c: &Cluster, id: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rules = c.rules(c.any());
        if rules.iter().any(|r| r.0 == id && r.1 == want) {
            return;
        }
        assert!(Instant::now() < deadline, "{id} is not {want}: {rules:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
