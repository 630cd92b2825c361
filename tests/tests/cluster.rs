//! Cluster membership on a real etcd (Debian's etcd-server, started by each
//! test on its own loopback ports and data folder): `oort serve --cluster`
//! nodes register under leases and any node lists them (`GET /cluster`, `oort
//! cluster status`); a node killed with SIGKILL drops out within its lease, one
//! that stops cleanly at once; a node id is held by one live node; the nodes
//! outlive an etcd restart and the loss of one member of a three-member etcd.

use std::process::Command;
use std::time::{Duration, Instant};

use oort_tests::{bin, zip_of, Daemon, Etcd, PluginsDir, S3Server};

/// Starts a node of the cluster on `etcd` with a 2 s lease.
fn node(p: &PluginsDir, etcd: &Etcd, id: &str, extra: &[&str]) -> Daemon {
    let endpoints = etcd.endpoints();
    let mut args = vec!["--cluster", &endpoints, "--node-id", id, "--lease-ttl-s", "2"];
    args.extend_from_slice(extra);
    Daemon::start(p.path(), &args)
}

/// Runs `oort serve` for node `id`, which must refuse to start; returns what
/// it said.
fn refused_at_start(p: &PluginsDir, etcd: &Etcd, id: &str, extra: &[&str]) -> String {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(bin("oort"))
        .args(["serve", "--cluster", &etcd.endpoints(), "--node-id", id, "--rest-addr", "127.0.0.1:0"])
        .args(extra)
        .arg("--data-dir")
        .arg(data.path().join("d"))
        .arg("--plugins-dir")
        .arg(p.path())
        .arg("--runtime-dir")
        .arg(data.path().join("rt"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "node {id} started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The ids of the live nodes as `d` lists them, or the error it answers.
fn nodes(d: &Daemon) -> Result<Vec<String>, String> {
    let (status, body) = d.http("GET", "/cluster", None);
    if status != 200 {
        return Err(format!("{status}: {body}"));
    }
    let json: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    Ok(json["nodes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap().to_string()).collect())
}

/// Waits up to `within` for `d` to list exactly `want`; returns how long it took.
fn wait_nodes(d: &Daemon, want: &[&str], within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let now = nodes(d);
        if now.as_deref().is_ok_and(|n| n == want) {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "after {within:?} the cluster lists {now:?}, not {want:?}\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn nodes_see_each_other_a_killed_one_drops_out_within_its_lease_and_ids_are_unique() {
    let etcd = Etcd::start();
    let p = PluginsDir::new();
    let a = node(&p, &etcd, "a", &["--label", "zone=east", "--capacity", "100"]);
    let mut b = node(&p, &etcd, "b", &[]);
    let mut c = node(&p, &etcd, "c", &[]);
    wait_nodes(&a, &["a", "b", "c"], Duration::from_secs(5));
    wait_nodes(&c, &["a", "b", "c"], Duration::from_secs(5));
    let (ok, out, err) = b.cli(&["cluster", "status"]);
    assert!(ok, "{err}");
    assert!(out.contains("b (this node)") && out.contains("zone=east"), "{out}");
    assert_eq!(out.lines().count(), 5, "a header, three nodes and the rule count: {out}");
    assert!(out.trim_end().ends_with("0 rules, 0 waiting for a node"), "{out}");
    let status = a.get_json("/cluster");
    assert_eq!(status["node"], "a");
    assert_eq!(status["nodes"][0]["capacity"], 100);
    assert_eq!(status["nodes"][0]["apiAddr"], a.addr.as_str());
    let ttl = status["nodes"][1]["ttlLeftS"].as_i64().unwrap();
    assert!((0..=2).contains(&ttl), "{status}");

    // A second node under a live node's id is refused at start, with why.
    let said = refused_at_start(&p, &etcd, "a", &[]);
    assert!(said.contains("node id \"a\" is already registered by a live node"), "{said}");

    // kill -9: the node's lease (2 s) runs out and etcd drops it.
    c.child.kill().unwrap();
    c.child.wait().unwrap();
    let took = wait_nodes(&a, &["a", "b"], Duration::from_secs(6));
    assert!(took <= Duration::from_secs(4), "the killed node stayed listed {took:?}");
    // A node that stops cleanly revokes its lease: gone at once.
    assert!(b.terminate().success());
    let took = wait_nodes(&a, &["a"], Duration::from_secs(2));
    assert!(took < Duration::from_secs(1), "the stopped node stayed listed {took:?}");

    // Without --cluster the daemon runs alone and says so.
    let alone = Daemon::start(p.path(), &[]);
    let (status, body) = alone.http("GET", "/cluster", None);
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("does not run in a cluster"), "{body}");
}

#[test]
fn nodes_outlive_an_etcd_restart_and_register_again() {
    let mut etcd = Etcd::start();
    let p = PluginsDir::new();
    let a = node(&p, &etcd, "a", &[]);
    let b = node(&p, &etcd, "b", &[]);
    wait_nodes(&a, &["a", "b"], Duration::from_secs(5));
    etcd.kill();
    // Longer than the lease: the nodes run on and answer, and say that
    // etcd cannot be reached.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(a.http("GET", "/ping", None).0, 200);
    let (status, body) = b.http("GET", "/cluster", None);
    assert_eq!(status, 503, "{body}");
    etcd.restart();
    wait_nodes(&a, &["a", "b"], Duration::from_secs(10));
    wait_nodes(&b, &["a", "b"], Duration::from_secs(10));
}

#[test]
fn a_three_member_etcd_that_loses_a_member_keeps_the_nodes_registered() {
    let mut etcd = Etcd::start_cluster(3);
    let p = PluginsDir::new();
    let a = node(&p, &etcd, "a", &[]);
    let b = node(&p, &etcd, "b", &[]);
    wait_nodes(&a, &["a", "b"], Duration::from_secs(5));
    etcd.kill_member(0);
    // Past the lease: renewed through the two members left.
    std::thread::sleep(Duration::from_secs(3));
    wait_nodes(&a, &["a", "b"], Duration::from_secs(5));
    wait_nodes(&b, &["a", "b"], Duration::from_secs(5));
}

#[test]
fn a_checkpoint_store_that_cannot_work_is_named_when_the_node_starts() {
    let etcd = Etcd::start();
    let p = PluginsDir::new();
    // A kind of store this build has no client for: refused, with the reason.
    let said = refused_at_start(&p, &etcd, "a", &["--checkpoint-store", "gs://bucket/prefix"]);
    assert!(said.contains("gs:// is not built into this oort: use s3://"), "{said}");

    // A bucket the S3 server does not have: the node runs (the store may
    // come later) and its log names the store and S3's answer.
    let s3 = S3Server::start();
    let endpoints = etcd.endpoints();
    let data = tempfile::tempdir().unwrap();
    let args = ["--cluster", &endpoints, "--node-id", "b", "--checkpoint-store", "s3://missing/ckpt"];
    let wrong = Daemon::start_in_with_env(p.path(), &data.path().join("b"), &args, &s3.env());
    let log = wrong.log();
    assert!(log.contains("the checkpoint store s3://missing/ckpt cannot be reached"), "{log}");
    assert!(log.contains("NoSuchBucket"), "S3's own error code is shown: {log}");
    // The right bucket: nothing to say.
    let args = ["--cluster", &endpoints, "--node-id", "c", "--checkpoint-store", "s3://oort/ckpt"];
    let right = Daemon::start_in_with_env(p.path(), &data.path().join("c"), &args, &s3.env());
    assert!(!right.log().contains("cannot be reached"), "{}", right.log());
    // Nor for a new folder.
    let folder = format!("file://{}/new/checkpoints", data.path().display());
    let args = ["--cluster", &endpoints, "--node-id", "d", "--checkpoint-store", &folder];
    let local = Daemon::start_in(p.path(), &data.path().join("d"), &args);
    assert!(!local.log().contains("cannot be reached"), "{}", local.log());
}

#[test]
fn a_plugin_installed_through_one_node_is_installed_on_every_node() {
    let etcd = Etcd::start();
    // a and b have plugins folders of their own; c shares a's.
    let (pa, pb) = (PluginsDir::new(), PluginsDir::new());
    let a = node(&pa, &etcd, "a", &[]);
    let b = node(&pb, &etcd, "b", &[]);
    let c = node(&pa, &etcd, "c", &[]);
    wait_nodes(&a, &["a", "b", "c"], Duration::from_secs(5));
    let dir = tempfile::tempdir().unwrap();
    let exe = std::fs::read(bin("countPlusOne")).unwrap();
    let archive = dir.path().join("count.zip");
    std::fs::write(&archive, zip_of(&[("countPlusOne@v2.0.0", &exe, 0o755)])).unwrap();
    let body = serde_json::json!({"name": "countPlusOne", "file": archive.display().to_string()}).to_string();

    let (status, answer) = b.http("POST", "/plugins/functions", Some(&body));
    assert_eq!(status, 201, "{answer}");
    for d in [&a, &b, &c] {
        let info = d.get_json("/plugins/functions/countPlusOne");
        assert_eq!(info["version"], "2.0.0", "{info}");
    }
    assert!(pa.path().join("functions/countPlusOne@v2.0.0").exists());
    assert!(pb.path().join("functions/countPlusOne@v2.0.0").exists());
    // Again: every node has it, so each refuses, starting with the one asked.
    let (status, answer) = a.http("POST", "/plugins/functions", Some(&body));
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("already installed"), "{answer}");
    // A bad request is refused by the node asked, and goes no further.
    let bad = serde_json::json!({"name": "bad name", "file": archive.display().to_string()}).to_string();
    assert_eq!(c.http("POST", "/plugins/functions", Some(&bad)).0, 400);
}
