//! The `file` plugin's source: JSON lines read, followed and rewound, against
//! the real plugin process.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use oort_host::process::RestartStrategy;
use oort_host::{HostError, SourceBatch};
use oort_proto::plugin::v1 as pb;
use oort_proto::plugin::v1::source_client::SourceClient;
use oort_proto::{Record, Value};
use oort_tests::{fast_timeouts, wait_until, PluginsDir, TestHost};
use tokio::sync::mpsc::Receiver;

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// Everything logged in this test process, plugin output included (the host
/// forwards it), so that a test can look for a warning.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let _ = tracing_subscriber::fmt().with_ansi(false).with_writer(move || LogWriter(sink.clone())).try_init();
        logs
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn props(poll_ms: i64) -> HashMap<String, Value> {
    HashMap::from([("pollInterval".to_string(), Value::Int(poll_ms))])
}

/// Receives batches until `want` records have arrived in total (bounded by a
/// 5 s deadline), returning the records and the offset of every batch that
/// has records; returns the exceptions the source reported on the way.
async fn collect(
    rx: &mut Receiver<Result<SourceBatch, HostError>>,
    records: &mut Vec<Record>,
    offsets: &mut Vec<i64>,
    want: usize,
) -> Vec<String> {
    let mut exceptions = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while records.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        let batch = match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(batch)) => batch.unwrap(),
            Ok(None) => panic!("the source stream ended after {} records", records.len()),
            Err(_) => panic!("only {} of {want} records arrived within 5 s: {records:?}", records.len()),
        };
        assert!(!batch.records.is_empty() || !batch.exceptions.is_empty(), "an empty batch was sent");
        exceptions.extend(batch.exceptions);
        if batch.records.is_empty() {
            continue;
        }
        match batch.offset {
            Some(Value::Int(o)) => offsets.push(o),
            other => panic!("a batch without an Int offset: {other:?}"),
        }
        records.extend(batch.records);
    }
    exceptions
}

fn n(r: &Record) -> i64 {
    r.fields["n"].as_i64().unwrap_or_else(|| panic!("no int n in {r:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_file_source_reads_every_line_in_order_and_skips_malformed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.jsonl");
    let text = concat!(
        "{\"n\":1,\"s\":\"a\"}\n",
        "{\"n\":2,\"nested\":{\"x\":[1,2.5,null]}}\n",
        "{\"n\": this is not json\n",
        "\n",
        "42\n",
        "{\"n\":3}\n",
        "{\"n\":4}\n",
        "{\"n\":5,\"s\":\"last\"}\n",
    );
    std::fs::write(&path, text).unwrap();
    let malformed_at = text.find("{\"n\": this").unwrap();
    let logs = captured_logs();

    let plugins = PluginsDir::new();
    plugins.add("sources", "file", "file");
    let t = TestHost::new(plugins.path(), fast_timeouts());
    let s =
        t.host.open_source("r1", "file", path.to_str().unwrap(), props(10), RestartStrategy::default()).await.unwrap();
    let mut rx = s.read(2).await.unwrap();
    let (mut records, mut offsets) = (Vec::new(), Vec::new());
    let exceptions = collect(&mut rx, &mut records, &mut offsets, 6).await;

    assert_eq!(records.len(), 6, "{records:?}");
    assert_eq!(n(&records[0]), 1);
    assert_eq!(records[0].fields["s"], Value::from("a"));
    assert_eq!(n(&records[1]), 2);
    assert_eq!(
        records[1].fields["nested"],
        Value::Map([("x".to_string(), Value::List(vec![Value::Int(1), Value::Float(2.5), Value::Null]))].into())
    );
    // A JSON value that is not an object is one field named `value`.
    assert_eq!(records[2].fields, [("value".to_string(), Value::Int(42))].into());
    assert_eq!(records[3..].iter().map(n).collect::<Vec<_>>(), vec![3, 4, 5]);
    assert!(records.iter().all(|r| r.timestamp_ms > 0));
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "offsets do not increase: {offsets:?}");
    assert_eq!(*offsets.last().unwrap(), text.len() as i64, "{offsets:?}");
    // The skipped line is reported with its byte offset.
    let warning = format!("file source {}: skipping the line at byte offset {malformed_at}", path.display());
    let logged = wait_until(Duration::from_secs(5), || {
        String::from_utf8_lossy(&logs.lock().unwrap()).lines().any(|l| l.contains("WARN") && l.contains(&warning))
    })
    .await;
    assert!(logged, "no warning {warning:?} in the logs:\n{}", String::from_utf8_lossy(&logs.lock().unwrap()));
    // And it travels with the stream, for the rule status.
    assert_eq!(exceptions.len(), 1, "{exceptions:?}");
    assert!(exceptions[0].starts_with(&format!("{warning}: not valid JSON")), "{exceptions:?}");

    t.host.close_source(&s).await;
    t.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_file_source_follows_appended_lines_and_waits_for_a_partial_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.jsonl");
    std::fs::write(&path, "{\"n\":1}\n{\"n\":2}\n").unwrap();

    let plugins = PluginsDir::new();
    plugins.add("sources", "file", "file");
    let t = TestHost::new(plugins.path(), fast_timeouts());
    let s =
        t.host.open_source("r1", "file", path.to_str().unwrap(), props(10), RestartStrategy::default()).await.unwrap();
    let mut rx = s.read(100).await.unwrap();
    let (mut records, mut offsets) = (Vec::new(), Vec::new());
    collect(&mut rx, &mut records, &mut offsets, 2).await;

    // Appended after the reader reached the end, with an incomplete last line.
    append(&path, "{\"n\":3}\n{\"n\":4}\n{\"n\":");
    collect(&mut rx, &mut records, &mut offsets, 4).await;
    assert_eq!(records.iter().map(n).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    let complete = "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n{\"n\":4}\n".len() as i64;
    assert_eq!(*offsets.last().unwrap(), complete);
    // The partial line is not delivered while it has no newline...
    let early = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await;
    assert!(early.is_err(), "a partial line was delivered: {early:?}");

    // ...and is, whole, once it has one.
    append(&path, "5,\"s\":\"x\"}\n");
    collect(&mut rx, &mut records, &mut offsets, 5).await;
    assert_eq!(records.len(), 5);
    assert_eq!(n(&records[4]), 5);
    assert_eq!(records[4].fields["s"], Value::from("x"));
    assert_eq!(*offsets.last().unwrap(), std::fs::metadata(&path).unwrap().len() as i64);

    t.host.close_source(&s).await;
    t.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_file_is_read_again_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.jsonl");
    std::fs::write(&path, "{\"n\":1,\"pad\":\"xxxxxxxx\"}\n{\"n\":2,\"pad\":\"xxxxxxxx\"}\n").unwrap();

    let plugins = PluginsDir::new();
    plugins.add("sources", "file", "file");
    let t = TestHost::new(plugins.path(), fast_timeouts());
    let s =
        t.host.open_source("r1", "file", path.to_str().unwrap(), props(10), RestartStrategy::default()).await.unwrap();
    let mut rx = s.read(100).await.unwrap();
    let (mut records, mut offsets) = (Vec::new(), Vec::new());
    collect(&mut rx, &mut records, &mut offsets, 2).await;

    // Truncated in place and rewritten shorter than what was already read.
    std::fs::write(&path, "{\"n\":3}\n").unwrap();
    collect(&mut rx, &mut records, &mut offsets, 3).await;
    assert_eq!(records.iter().map(n).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(*offsets.last().unwrap(), "{\"n\":3}\n".len() as i64);

    t.host.close_source(&s).await;
    t.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_file_source_rewinds_to_a_byte_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.jsonl");
    let lines: Vec<String> = (1..=5).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    std::fs::write(&path, lines.concat()).unwrap();
    let line3 = (lines[0].len() + lines[1].len()) as i64;
    let len = lines.concat().len() as i64;
    let path_str = path.to_str().unwrap().to_string();

    let plugins = PluginsDir::new();
    plugins.add("sources", "file", "file");
    let t = TestHost::new(plugins.path(), fast_timeouts());
    let s = t.host.open_source("r1", "file", &path_str, props(10), RestartStrategy::default()).await.unwrap();

    // The host does not expose Rewind yet: talk to the plugin process directly.
    let socket = oort_tests::plugin_sockets(t.host.runtime_dir()).into_iter().next().unwrap();
    let channel = oort_host::process::connect_unix(&socket).await.unwrap();
    let mut client = SourceClient::new(channel);
    let id = "direct/source".to_string();
    let opened = client
        .open(pb::OpenSourceRequest {
            instance: Some(pb::InstanceSpec {
                instance_id: id.clone(),
                symbol: "file".into(),
                rule_id: "direct".into(),
                operator_id: "source".into(),
                state: vec![],
                checkpointing: false,
                state_version: 0,
                fencing_token: 0,
            }),
            datasource: path_str.clone(),
            props: Default::default(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(opened.rewindable);

    let rewind = |offset: Value| pb::RewindRequest { instance_id: id.clone(), offset: Some(offset.into()) };
    let past = client.rewind(rewind(Value::Int(len + 1))).await.err().unwrap();
    assert!(
        past.message().contains(&format!("offset {} is past the end of {path_str} ({len} bytes)", len + 1)),
        "{past:?}"
    );
    let negative = client.rewind(rewind(Value::Int(-1))).await.err().unwrap();
    assert!(negative.message().contains("must not be negative"), "{negative:?}");
    let not_int = client.rewind(rewind(Value::from("3"))).await.err().unwrap();
    assert!(not_int.message().contains("must be an integer byte offset"), "{not_int:?}");

    client.rewind(rewind(Value::Int(line3))).await.unwrap();
    let mut stream = client
        .read(pb::ReadRequest { instance_id: id.clone(), max_batch: 100, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let mut records: Vec<Record> = Vec::new();
    let mut offset = None;
    let deadline = Instant::now() + Duration::from_secs(5);
    while records.len() < 3 {
        let left = deadline.saturating_duration_since(Instant::now());
        let batch = tokio::time::timeout(left, stream.message()).await.expect("records within 5 s").unwrap().unwrap();
        records.extend(batch.records.into_iter().map(Record::from));
        offset = batch.offset.map(Value::from);
    }
    assert_eq!(records.iter().map(n).collect::<Vec<_>>(), vec![3, 4, 5]);
    assert_eq!(offset, Some(Value::Int(len)));
    drop(stream);
    client.close(pb::CloseRequest { instance_id: id }).await.unwrap();

    t.host.close_source(&s).await;
    t.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_file_is_a_clear_open_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nowhere.jsonl");
    let plugins = PluginsDir::new();
    plugins.add("sources", "file", "file");
    let t = TestHost::new(plugins.path(), fast_timeouts());
    let err = t
        .host
        .open_source("r1", "file", path.to_str().unwrap(), HashMap::new(), RestartStrategy::default())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains(&format!("cannot open {}", path.display())), "{err}");
    assert!(err.contains("No such file"), "{err}");

    let bad = t
        .host
        .open_source("r2", "file", path.to_str().unwrap(), props(0), RestartStrategy::default())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(bad.contains("pollInterval must be a positive integer"), "{bad}");
    t.host.shutdown().await;
}

/// The resident set of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_line_is_skipped_in_bounded_memory() {
    let logs = captured_logs();
    let plugins = PluginsDir::new();
    plugins.add("sources", "file", "file");
    let t = TestHost::new(plugins.path(), fast_timeouts());
    let s = t.host.open_source("r1", "file", "/dev/zero", props(10), RestartStrategy::default()).await.unwrap();
    let pid = s.pid().unwrap();
    let mut rx = s.read(100).await.unwrap();
    // /dev/zero never ends its line: for two seconds the plugin reads as fast
    // as it can (gigabytes) and must produce nothing and keep nothing.
    let mut peak = 0;
    let mut exceptions = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if let Ok(Some(batch)) = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
            let batch = batch.unwrap();
            assert!(batch.records.is_empty(), "a record came out of /dev/zero: {batch:?}");
            exceptions.extend(batch.exceptions);
        }
        peak = peak.max(rss(pid));
    }
    assert!(peak < 64 << 20, "the file source grew to {} MiB", peak >> 20);
    let warning =
        "file source /dev/zero: skipping the line at byte offset 0: longer than maxLineLength (1048576 bytes)";
    let logged =
        wait_until(Duration::from_secs(5), || String::from_utf8_lossy(&logs.lock().unwrap()).contains(warning)).await;
    assert!(logged, "no warning {warning:?} in the logs");
    // The same report travels with the stream, for the rule status.
    assert!(exceptions.first().is_some_and(|e| e.starts_with(warning)), "{exceptions:?}");
    t.host.close_source(&s).await;
    t.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_over_long_line_between_good_lines_is_skipped_and_offsets_stay_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.jsonl");
    let long = format!("{{\"n\":99,\"pad\":\"{}\"}}\n", "x".repeat(300_000));
    let text = format!("{{\"n\":1}}\n{long}{{\"n\":2}}\n{long}{long}{{\"n\":3}}\n");
    std::fs::write(&path, &text).unwrap();
    let logs = captured_logs();
    let plugins = PluginsDir::new();
    plugins.add("sources", "file", "file");
    let t = TestHost::new(plugins.path(), fast_timeouts());
    let mut p = props(10);
    p.insert("maxLineLength".into(), Value::Int(1000));
    let s = t.host.open_source("r1", "file", path.to_str().unwrap(), p, RestartStrategy::default()).await.unwrap();
    let mut rx = s.read(1).await.unwrap();
    let (mut records, mut offsets) = (Vec::new(), Vec::new());
    let exceptions = collect(&mut rx, &mut records, &mut offsets, 3).await;
    assert_eq!(records.iter().map(n).collect::<Vec<_>>(), vec![1, 2, 3]);
    let second_end = format!("{{\"n\":1}}\n{long}{{\"n\":2}}\n").len() as i64;
    assert_eq!(offsets, vec![8, second_end, text.len() as i64], "offsets count the skipped lines as consumed");
    let warning = format!(
        "file source {}: skipping the line at byte offset 8: longer than maxLineLength (1000 bytes)",
        path.display()
    );
    let logged = wait_until(Duration::from_secs(5), || {
        let logs = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
        logs.contains(&warning) && logs.contains("3 over-long line(s) skipped so far")
    })
    .await;
    assert!(logged, "no warning {warning:?} in the logs");
    assert_eq!(exceptions.len(), 3, "one exception per skipped line: {exceptions:?}");
    assert!(exceptions[0].starts_with(&warning), "{exceptions:?}");
    drop(rx);

    // A rewind to just after the first line skips the long line again.
    s.rewind(Value::Int(8)).await.unwrap();
    let mut rx = s.read(10).await.unwrap();
    let (mut again, mut offsets) = (Vec::new(), Vec::new());
    collect(&mut rx, &mut again, &mut offsets, 2).await;
    assert_eq!(again.iter().map(n).collect::<Vec<_>>(), vec![2, 3]);
    drop(rx);
    t.host.close_source(&s).await;
    t.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_max_line_length_is_refused() {
    let plugins = PluginsDir::new();
    plugins.add("sources", "file", "file");
    let t = TestHost::new(plugins.path(), fast_timeouts());
    let mut p = props(10);
    p.insert("maxLineLength".into(), Value::Int(0));
    let err = t.host.open_source("r1", "file", "/dev/null", p, RestartStrategy::default()).await.err().unwrap();
    assert!(err.to_string().contains("property maxLineLength must be a positive integer"), "{err}");
    t.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_from_an_offset_after_a_restart_starts_there_not_at_the_reopened_start() {
    // A restarted process reopens the source at its start (byte 0 for a
    // file). The rule's read after a break rewinds on the process it reads
    // from, so a restart between the rewind and the read cannot make it
    // read the file again from the top.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.jsonl");
    let text: String = (1..=6).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    std::fs::write(&path, &text).unwrap();
    let plugins = PluginsDir::new();
    plugins.add("sources", "file", "file");
    let t = TestHost::new(plugins.path(), fast_timeouts());
    let s =
        t.host.open_source("r1", "file", path.to_str().unwrap(), props(10), RestartStrategy::default()).await.unwrap();
    let mut rx = s.read_from(None, 2).await.unwrap();
    let (mut records, mut offsets) = (Vec::new(), Vec::new());
    collect(&mut rx, &mut records, &mut offsets, 3).await;
    drop(rx);
    let after_third = Value::Int("{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n".len() as i64);
    let pid = s.pid().unwrap();
    oort_tests::kill9(pid);
    assert!(wait_until(Duration::from_secs(5), || s.pid().is_some_and(|p| p != pid)).await, "no restart");
    let mut rx = s.read_from(Some(after_third), 10).await.unwrap();
    let (mut rest, mut offsets) = (Vec::new(), Vec::new());
    collect(&mut rx, &mut rest, &mut offsets, 3).await;
    assert_eq!(rest.iter().map(n).collect::<Vec<_>>(), vec![4, 5, 6]);
    drop(rx);
    t.host.close_source(&s).await;
    t.host.shutdown().await;
}
