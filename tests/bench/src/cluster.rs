//! Scenario l: what a cluster asks of etcd, measured against a real one
//! (Debian's etcd-server, started here on its own ports, its data on disk):
//! the per-operation costs docs/cluster.md's load estimate rests on, and how
//! long the other nodes take to see a node killed with SIGKILL gone.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp};
use serde_json::{json, Value as Json};

use crate::report::{self, Table};
use crate::Opts;

/// Rules per batched pointer transaction: under etcd's default
/// `--max-txn-ops` of 128.
const BATCH: usize = 100;

pub fn cluster(opts: &Opts) -> Result<Json> {
    let etcd = oort_tests::Etcd::start();
    let endpoints = etcd.endpoints();
    let n = if opts.quick { 200 } else { 2000 };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let measured = rt.block_on(operations(&endpoints, n))?;
    let mut table = Table::new(
        &format!("l1. etcd operations of a cluster (one etcd member, data on disk; {n} sequential calls each)"),
        &[("operation", false), ("p50", true), ("p99", true), ("calls/s, one client", true), ("per rule", true)],
    );
    let mut results = serde_json::Map::new();
    for (name, key, mut times, rules_per_call) in measured.sequential {
        times.sort();
        let total: Duration = times.iter().sum();
        let per_second = times.len() as f64 / total.as_secs_f64();
        let (p50, p99) = (report::quantile(&times, 0.5), report::quantile(&times, 0.99));
        let per_rule = match rules_per_call {
            1 => String::new(),
            k => format!("{:.0} µs", p50.as_secs_f64() * 1e6 / k as f64),
        };
        table.row(vec![name.to_string(), ms(p50), ms(p99), report::rate(per_second), per_rule]);
        results.insert(
            key.to_string(),
            json!({ "p50_ms": p50.as_secs_f64() * 1e3, "p99_ms": p99.as_secs_f64() * 1e3,
                    "calls_per_s": per_second, "rules_per_call": rules_per_call }),
        );
    }
    table.print();
    println!(
        "Fenced pointer moves from {} clients at once (each its own rules): **{} moves/s**. A node record is \
         ~150 bytes, a pointer ~40; every write is fsynced by etcd before it answers.\n",
        measured.concurrent_clients,
        report::rate(measured.concurrent_rate)
    );
    results.insert(
        "concurrent_pointer_moves".into(),
        json!({ "clients": measured.concurrent_clients, "per_s": measured.concurrent_rate }),
    );

    let trials = if opts.quick { 1 } else { 3 };
    let lease_s = 5;
    let detections = detect(&etcd, lease_s, trials)?;
    let mut sorted = detections.clone();
    sorted.sort();
    let median = report::quantile(&sorted, 0.5);
    let mut t2 = Table::new(
        &format!(
            "l2. A node killed with SIGKILL, until another node's GET /cluster no longer lists it ({trials} trials)"
        ),
        &[("lease", false), ("median", true), ("trials", false), ("bound: lease + a third of it", false)],
    );
    let bound = Duration::from_secs(lease_s) + Duration::from_millis(lease_s * 1000 / 3);
    t2.row(vec![
        format!("{lease_s} s"),
        ms(median),
        detections.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", "),
        report::met(sorted.last().is_some_and(|m| *m <= bound + Duration::from_millis(500))),
    ]);
    t2.print();
    println!(
        "The killed node renewed its lease a third of the TTL apart, so etcd drops its key between TTL − TTL/3 and \
         TTL after the kill (plus etcd's expiry check, every 500 ms).\n"
    );
    results.insert(
        "failure_detection".into(),
        json!({ "lease_s": lease_s, "median_ms": median.as_secs_f64() * 1e3,
                "trials_ms": detections.iter().map(|d| d.as_secs_f64() * 1e3).collect::<Vec<_>>() }),
    );

    let rules = if opts.quick { 60 } else { 300 };
    let (recovered, per_node) = failover(rules, lease_s as u32)?;
    let mut t3 = Table::new(
        &format!(
            "l3. Failover: {rules} rules at qos 2 on three nodes, one killed with SIGKILL, until every rule runs on \
             the other two (GET /rules), outputs then checked equal to the input"
        ),
        &[("lease", false), ("recovered after", true), ("rules per survivor", false), ("target ≤ 10 s", false)],
    );
    t3.row(vec![
        format!("{lease_s} s"),
        ms(recovered),
        format!("{per_node:?}"),
        report::met(recovered <= Duration::from_secs(10)),
    ]);
    t3.print();
    println!(
        "Recovery = the lease running out (l2) + placement, taking the owner keys, downloading and installing each \
         rule's published checkpoint, and restarting the rule from it; every output file equals the input.\n"
    );
    results.insert(
        "failover".into(),
        json!({ "rules": rules, "lease_s": lease_s, "recovered_ms": recovered.as_secs_f64() * 1e3,
                "per_survivor": per_node }),
    );

    let n = if opts.quick { 200 } else { 1000 };
    let dir = tempfile::tempdir()?;
    let s3 = oort_tests::S3Server::start();
    let aws: Vec<(String, String)> = s3.env().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    let stores = [
        ("file:// (local disk)", oort_store::CheckpointStore::open(&format!("file://{}/ckpt", dir.path().display()))?),
        ("s3:// (gofakes3, loopback)", oort_store::CheckpointStore::open_with("s3://oort/ckpt", aws)?),
    ];
    let mut t4 = Table::new(
        &format!("l4. Checkpoint store: one object per checkpoint, {n} sequential calls per size"),
        &[
            ("store", false),
            ("checkpoint size", false),
            ("upload p50", true),
            ("upload p99", true),
            ("download p50", true),
        ],
    );
    let mut up = serde_json::Map::new();
    for (label, store) in &stores {
        let mut per_size = serde_json::Map::new();
        for (size, mut puts, mut gets) in rt.block_on(uploads(store, n))? {
            puts.sort();
            gets.sort();
            let (p50, p99, g50) =
                (report::quantile(&puts, 0.5), report::quantile(&puts, 0.99), report::quantile(&gets, 0.5));
            t4.row(vec![label.to_string(), format!("{size} B"), ms(p50), ms(p99), ms(g50)]);
            per_size.insert(
                size.to_string(),
                json!({ "upload_p50_ms": p50.as_secs_f64() * 1e3, "upload_p99_ms": p99.as_secs_f64() * 1e3,
                        "download_p50_ms": g50.as_secs_f64() * 1e3 }),
            );
        }
        let key = if label.starts_with("s3") { "s3" } else { "file" };
        up.insert(key.into(), Json::Object(per_size));
    }
    t4.print();
    println!(
        "A checkpoint is published by one upload and one fenced pointer move (l1); a node publishes the \
         checkpoints of its rules that complete together in one etcd transaction. The S3 row is a signed \
         S3 REST call over HTTP to a local S3-compatible server: the client's own cost plus loopback, not \
         a cloud region's latency (a region adds its network round trips to every call).\n"
    );
    results.insert("checkpoint_store".into(), Json::Object(up));
    Ok(Json::Object(results))
}

/// Starts a three-node cluster with `rules` rules, kills one node, and
/// times until every rule runs on the other two.
fn failover(rules: usize, lease_s: u32) -> Result<(Duration, Vec<usize>)> {
    use oort_tests::cluster::{wait_written, Cluster, Writer, IDS};
    let mut c = Cluster::start(oort_tests::Etcd::start(), lease_s);
    let writer = Writer::start(&c.input(), 5);
    let ids = c.create_rules(rules);
    c.wait_running(rules, &IDS, Duration::from_secs(120));
    // A while of normal running: leases renewed, checkpoints published.
    wait_written(&writer, writer.written() + 30);
    let mut victim = c.nodes[2].take().expect("node c");
    victim.child.kill()?;
    let t = Instant::now();
    victim.child.wait()?;
    let (_, per_node) = c.wait_running(rules, &IDS[..2], Duration::from_secs(60));
    let recovered = t.elapsed();
    drop(victim);
    let lines = writer.finish();
    c.check_outputs(&ids, lines, Duration::from_secs(120));
    Ok((recovered, per_node))
}

/// Upload and download times of checkpoint objects of three sizes.
async fn uploads(store: &oort_store::CheckpointStore, n: usize) -> Result<Vec<(usize, Vec<Duration>, Vec<Duration>)>> {
    let mut out = Vec::new();
    for size in [256usize, 4096, 65536] {
        let (mut puts, mut gets) = (Vec::new(), Vec::new());
        for i in 0..n {
            let t = Instant::now();
            let name = store.upload("bench", i as u64, "n1", 1, vec![7u8; size]).await?;
            puts.push(t.elapsed());
            let t = Instant::now();
            store.download(&name).await?;
            gets.push(t.elapsed());
            if i >= 2 {
                store.delete(&format!("bench/{:020}-n1-1", i - 2)).await?;
            }
        }
        store.prune("bench", &[]).await?;
        out.push((size, puts, gets));
    }
    Ok(out)
}

fn ms(d: Duration) -> String {
    if d < Duration::from_millis(10) {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    } else {
        report::ms(d)
    }
}

struct Measured {
    /// (label, JSON key, call times, rules per call).
    sequential: Vec<(&'static str, &'static str, Vec<Duration>, usize)>,
    concurrent_clients: usize,
    concurrent_rate: f64,
}

async fn operations(endpoints: &str, n: usize) -> Result<Measured> {
    let mut c = Client::connect([endpoints], None).await?;
    let lease = c.lease_grant(600, None).await?.id();
    let mut sequential = Vec::new();

    let (mut keeper, mut answers) = c.lease_keep_alive(lease).await?;
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        keeper.keep_alive().await?;
        if answers.message().await?.is_none() {
            bail!("etcd ended the keep-alive stream");
        }
        times.push(t.elapsed());
    }
    sequential.push(("lease keep-alive (a node, every TTL/3)", "keep_alive", times, 1));

    let record = vec![b'x'; 150];
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        c.put(format!("/bench/nodes/{i}"), record.clone(), Some(PutOptions::new().with_lease(lease))).await?;
        times.push(t.elapsed());
    }
    sequential.push(("put with lease (a node record)", "put_with_lease", times, 1));

    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let key = format!("/bench/owners/r{i}");
        let txn = Txn::new().when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)]).and_then([TxnOp::put(
            key,
            "node-1",
            Some(PutOptions::new().with_lease(lease)),
        )]);
        let t = Instant::now();
        if !c.txn(txn).await?.succeeded() {
            bail!("an owner key existed already");
        }
        times.push(t.elapsed());
    }
    sequential.push(("create-if-absent txn (take a rule's owner key)", "take_owner", times, 1));

    // The owner keys' revisions are the fencing tokens.
    let revisions: Vec<i64> = {
        let mut revs = Vec::with_capacity(BATCH);
        for i in 0..BATCH {
            let resp = c.get(format!("/bench/owners/r{i}"), None).await?;
            revs.push(resp.kvs().first().map(|kv| kv.mod_revision()).unwrap_or(0));
        }
        revs
    };
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let txn = fenced_moves(&revisions[..1], 0, i);
        let t = Instant::now();
        if !c.txn(txn).await?.succeeded() {
            bail!("a fenced pointer move failed its compare");
        }
        times.push(t.elapsed());
    }
    sequential.push(("fenced pointer move txn (1 rule: compare owner revision, put)", "pointer_move", times, 1));

    let rounds = (n / 10).max(20);
    let mut times = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let txn = fenced_moves(&revisions, 0, i);
        let t = Instant::now();
        if !c.txn(txn).await?.succeeded() {
            bail!("a batched pointer move failed its compare");
        }
        times.push(t.elapsed());
    }
    sequential.push(("fenced pointer moves, batched (100 rules per txn)", "pointer_move_batched", times, BATCH));

    // Concurrency: clients moving pointers of their own rules at once.
    let clients = 8;
    let per_client = n / 2;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (k, &rev) in revisions.iter().enumerate().take(clients) {
        let mut c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_client {
                let txn = fenced_moves(&[rev], k, i);
                c.txn(txn).await?;
            }
            Ok::<(), etcd_client::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let concurrent_rate = (clients * per_client) as f64 / start.elapsed().as_secs_f64();
    Ok(Measured { sequential, concurrent_clients: clients, concurrent_rate })
}

/// A transaction moving the checkpoint pointers of rules `first..` whose
/// owner keys still have `revisions`: the fenced publish of a checkpoint.
fn fenced_moves(revisions: &[i64], first: usize, round: usize) -> Txn {
    let compares: Vec<Compare> = revisions
        .iter()
        .enumerate()
        .map(|(i, rev)| Compare::mod_revision(format!("/bench/owners/r{}", first + i), CompareOp::Equal, *rev))
        .collect();
    let puts: Vec<TxnOp> = (0..revisions.len())
        .map(|i| TxnOp::put(format!("/bench/checkpoints/r{}", first + i), format!("file:///ckpt/{round}"), None))
        .collect();
    Txn::new().when(compares).and_then(puts)
}

/// Starts two nodes, kills one with SIGKILL and times until the other no
/// longer lists it, `trials` times.
fn detect(etcd: &oort_tests::Etcd, lease_s: u64, trials: usize) -> Result<Vec<Duration>> {
    let plugins = oort_tests::PluginsDir::new();
    let endpoints = etcd.endpoints();
    let lease = lease_s.to_string();
    let node = |id: &str| {
        oort_tests::Daemon::start(plugins.path(), &["--cluster", &endpoints, "--node-id", id, "--lease-ttl-s", &lease])
    };
    let listed = |d: &oort_tests::Daemon| -> usize {
        let (status, body) = d.http("GET", "/cluster", None);
        if status != 200 {
            return usize::MAX;
        }
        serde_json::from_str::<Json>(&body).ok().and_then(|j| j["nodes"].as_array().map(Vec::len)).unwrap_or(usize::MAX)
    };
    let survivor = node("survivor");
    let mut times = Vec::new();
    for trial in 0..trials {
        let mut victim = node(&format!("victim{trial}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while listed(&survivor) != 2 {
            if Instant::now() > deadline {
                bail!("the victim never joined:\n{}", survivor.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Let it renew at least once, as a node that ran a while has.
        std::thread::sleep(Duration::from_secs(lease_s / 2 + 1));
        victim.child.kill()?;
        let t = Instant::now();
        victim.child.wait()?;
        while listed(&survivor) != 1 {
            if t.elapsed() > Duration::from_secs(lease_s * 3) {
                bail!("the killed node stayed listed:\n{}", survivor.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        times.push(t.elapsed());
    }
    Ok(times)
}
