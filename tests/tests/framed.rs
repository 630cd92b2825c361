//! The framed Exec path (docs/protocol.md, "The framed Exec path") with real
//! Rust plugins: the same answers as over gRPC, batches in order with two in
//! flight, columns, a crash in the middle, and a host set to gRPC only.

use std::sync::Arc;
use std::time::Duration;

use oort_core::RestartStrategy;
use oort_host::{Answer, DataEncoding, FunctionInstance};
use oort_proto::Value;
use oort_tests::{fast_timeouts, kill9, wait_until, PluginsDir, TestHost};

fn plugins() -> PluginsDir {
    let p = PluginsDir::new();
    p.add("functions", "echo", "echo");
    p.add("functions", "accumulateWordCount", "accumulateWordCount");
    p
}

fn host(p: &PluginsDir, framed: bool) -> TestHost {
    TestHost::with_transport(p.path(), fast_timeouts(), DataEncoding::Auto, framed)
}

async fn open(t: &TestHost, rule: &str, function: &str) -> FunctionInstance {
    t.host.open_function(rule, "op0", function, RestartStrategy::default()).await.expect("open")
}

fn words(text: &str) -> Vec<Vec<Value>> {
    vec![vec![Value::from(text), Value::from(" ")]]
}

/// What each path answers to the same calls: small and large batches of
/// every value type, one by one.
async fn answers(t: &TestHost) -> Vec<Vec<Result<Value, String>>> {
    let f = open(t, "r1", "echo").await;
    let values = [
        Value::Null,
        Value::Bool(true),
        Value::Int(-7),
        Value::Float(2.5),
        Value::from("text"),
        Value::Bytes(vec![0, 1, 2]),
        Value::List(vec![Value::Int(1), Value::from("a")]),
    ];
    let mut out = Vec::new();
    for v in &values {
        out.push(f.exec(&[vec![v.clone()]]).await.expect("exec"));
    }
    let big: Vec<Vec<Value>> = (0..500).map(|i| vec![Value::Int(i)]).collect();
    out.push(f.exec(&big).await.expect("exec of 500 rows"));
    t.host.close_function(&f).await;
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_framed_path_answers_as_grpc_does_and_is_used_only_when_on() {
    let p = plugins();
    let framed = host(&p, true);
    let grpc = host(&p, false);
    let (a, b) = (answers(&framed).await, answers(&grpc).await);
    assert_eq!(a, b);
    assert_eq!(a[2], vec![Ok(Value::Int(-7))]);
    assert_eq!(a.last().unwrap().len(), 500);

    // Which path the batches took.
    let on = open(&framed, "r2", "echo").await;
    let off = open(&grpc, "r2", "echo").await;
    for f in [&on, &off] {
        f.exec(&[vec![Value::Int(1)]]).await.unwrap();
    }
    assert_eq!(on.framed_batches(), 1);
    assert_eq!(off.framed_batches(), 0);
    framed.host.shutdown().await;
    grpc.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_batches_in_flight_reach_a_stateful_function_in_order() {
    let p = plugins();
    let t = host(&p, true);
    let f = Arc::new(open(&t, "r1", "accumulateWordCount").await);
    // Each call adds 2 words; started together, they must see the totals in
    // the order they were made.
    let mut calls = Vec::new();
    for _ in 0..20 {
        let f = f.clone();
        calls.push(tokio::spawn(async move { f.exec(&words("a b")).await.unwrap() }));
        tokio::task::yield_now().await;
    }
    let mut totals = Vec::new();
    for c in calls {
        match c.await.unwrap().as_slice() {
            [Ok(Value::Int(n))] => totals.push(*n),
            other => panic!("{other:?}"),
        }
    }
    totals.sort();
    assert_eq!(totals, (1..=20).map(|i| 2 * i).collect::<Vec<_>>(), "every batch counted once");
    assert_eq!(f.framed_batches(), 20);
    t.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn columns_travel_on_the_framed_path() {
    let p = plugins();
    let t = host(&p, true);
    let f = open(&t, "r1", "echo").await;
    let array: oort_proto::columns::ArrayRef =
        Arc::new(oort_proto::columns::arrow_array::Int64Array::from((0..100).collect::<Vec<i64>>()));
    match f.exec_columns(std::slice::from_ref(&array), 100).await.unwrap() {
        Answer::Column(column, errors) => {
            assert!(errors.is_empty());
            assert_eq!(column.as_ref(), array.as_ref());
        }
        Answer::Rows(rows) => panic!("echo answers columns: {rows:?}"),
    }
    assert_eq!((f.framed_batches(), f.columnar_batches()), (1, 1));
    t.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_plugin_is_restarted_and_the_next_batch_keeps_the_state() {
    let p = plugins();
    let t = host(&p, true);
    let f = open(&t, "r1", "accumulateWordCount").await;
    assert_eq!(f.exec(&words("a b c")).await.unwrap(), vec![Ok(Value::Int(3))]);
    let pid = f.pid().unwrap();
    kill9(pid);
    assert!(wait_until(Duration::from_secs(5), || f.pid().is_some_and(|p| p != pid)).await, "no restart");
    // The supervisor's copy of the state goes to the new process, whose
    // framed socket the retry connects to.
    assert_eq!(f.exec(&words("d e")).await.unwrap(), vec![Ok(Value::Int(5))]);
    assert_eq!(f.framed_batches(), 2);
    assert!(f.restarts() >= 1);
    t.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_plugin_is_called_on_its_framed_path_too() {
    // Built by `scripts/build-python.sh`, as `.ci/run` does.
    let exe = oort_tests::bin_dir().join("python/pyecho");
    assert!(exe.exists(), "{} is not built (scripts/build-python.sh)", exe.display());
    let p = PluginsDir::new();
    std::fs::copy(&exe, p.path().join("functions/pyecho")).unwrap();
    std::fs::copy(exe.with_extension("json"), p.path().join("functions/pyecho.json")).unwrap();
    let t = host(&p, true);
    let f = open(&t, "r1", "echo_rows").await;
    assert_eq!(f.exec(&[vec![Value::from("a")]]).await.unwrap(), vec![Ok(Value::from("a"))]);
    let big: Vec<Vec<Value>> = (0..100).map(|i| vec![Value::Int(i)]).collect();
    let answer = f.exec(&big).await.unwrap();
    assert_eq!(answer, big.iter().map(|r| Ok(r[0].clone())).collect::<Vec<_>>());
    assert_eq!(f.framed_batches(), 2);
    t.host.shutdown().await;
}
