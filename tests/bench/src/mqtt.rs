//! Scenario j: MQTT through Oort next to the broker alone, in one run, on a
//! mosquitto the harness starts (its own port and config). N messages are
//! published with one `mosquitto_pub -l` and counted by one `mosquitto_sub
//! -C N`: first straight through the broker (its own ceiling with these
//! clients), then through a rule, `mqtt` source → `countPlusOne(l)` → `mqtt`
//! sink (`sendSingle`: one message per record). The qos is the subscribers'
//! (the rule's source, `mosquitto_sub`) and the rule's sink's; the publisher
//! sends at qos 0 in both rows, since `mosquitto_pub -l` at qos 1 waits for
//! each acknowledgement (about 300 messages/s here).

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use oort_tests::{Broker, Daemon};
use serde_json::{json, Value as Json};

use crate::report::{rate, Table};
use crate::{plugins_with, Opts};

fn subscriber(broker: &Broker, topic: &str, qos: u8, n: usize, out: &std::path::Path) -> Result<Child> {
    let file = std::fs::File::create(out)?;
    let child = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string(), "-q", &qos.to_string(), "-t", topic])
        .args(["-C", &n.to_string()])
        .stdout(file)
        .stderr(Stdio::null())
        .spawn()
        .context("mosquitto_sub (scripts/setup.sh installs it)")?;
    // Subscribed well before the first message.
    std::thread::sleep(Duration::from_millis(300));
    Ok(child)
}

fn publish(broker: &Broker, topic: &str, qos: u8, n: usize, from: usize) -> Result<()> {
    let mut child = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string(), "-q", &qos.to_string(), "-t", topic, "-l"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("mosquitto_pub")?;
    let mut stdin = std::io::BufWriter::new(child.stdin.take().context("stdin")?);
    for i in from..from + n {
        writeln!(stdin, r#"{{"n":{i},"l":[{i}]}}"#)?;
    }
    drop(stdin);
    if !child.wait()?.success() {
        bail!("mosquitto_pub failed");
    }
    Ok(())
}

/// Waits for the subscriber to exit (it got its count) for up to `limit`;
/// the time since `start` and how many messages it wrote.
fn finish(mut sub: Child, out: &std::path::Path, start: Instant, limit: Duration) -> Result<(Duration, usize)> {
    while start.elapsed() < limit {
        if sub.try_wait()?.is_some() {
            let took = start.elapsed();
            return Ok((took, std::fs::read_to_string(out)?.lines().count()));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = sub.kill();
    let _ = sub.wait();
    Ok((start.elapsed(), std::fs::read_to_string(out)?.lines().count()))
}

fn rest(d: &Daemon, method: &str, path: &str, body: &Json) -> Result<()> {
    let (code, text) = oort_tests::http(&d.addr, method, path, None, Some(&body.to_string()))
        .with_context(|| format!("{method} {path}: no answer"))?;
    if !(200..300).contains(&code) {
        bail!("{method} {path}: {code} {text}");
    }
    Ok(())
}

pub fn mqtt(opts: &Opts) -> Result<Json> {
    let n = if opts.quick { 10_000 } else { 100_000 };
    let limit = Duration::from_secs(if opts.quick { 30 } else { 120 });
    let broker = Broker::start();
    let plugins = plugins_with(&[("sources", "mqtt"), ("sinks", "mqtt"), ("functions", "countPlusOne")]);
    let d = Daemon::start(plugins.path(), &[]);
    let dir = tempfile::tempdir()?;
    let mut table = Table::new(
        &format!("j. MQTT through a rule vs the broker alone ({n} messages of ~20 bytes, one mosquitto_pub -l at qos 0 → one mosquitto_sub -C {n} at the row's qos, local mosquitto)"),
        &[("path", false), ("qos", true), ("messages/s", true), ("received", true), ("vs broker alone", true)],
    );
    let mut rows = Vec::new();
    for qos in [0u8, 1] {
        // The broker alone: publisher straight to the subscriber.
        let out = dir.path().join(format!("alone{qos}.txt"));
        let sub = subscriber(&broker, &format!("alone/{qos}"), qos, n, &out)?;
        let start = Instant::now();
        publish(&broker, &format!("alone/{qos}"), 0, n, 0)?;
        let (took, got) = finish(sub, &out, start, limit)?;
        let alone = got as f64 / took.as_secs_f64();

        // Through a rule.
        let stream = format!("in{qos}");
        let sql = format!(
            r#"CREATE STREAM {stream} (n bigint, l array(bigint)) WITH (DATASOURCE="oort/in/{qos}", TYPE="mqtt", server="{}", qos="{qos}")"#,
            broker.url()
        );
        rest(&d, "POST", "/streams", &json!({ "sql": sql }))?;
        let rule = json!({"id": format!("r{qos}"), "sql": format!("SELECT countPlusOne(l) AS c, n FROM {stream} WHERE n >= 0"),
            "actions": [{"mqtt": {"server": broker.url(), "topic": format!("oort/out/{qos}"), "qos": qos, "sendSingle": true}}],
            "options": {"bufferLength": 4096}});
        rest(&d, "POST", "/rules", &rule)?;
        // Wait until the rule's source has subscribed: probes (n < 0, which
        // WHERE drops) until its status counts one in.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            broker.publish(&format!("oort/in/{qos}"), r#"{"n":-1,"l":[]}"#, qos);
            let (_, status) = oort_tests::http(&d.addr, "GET", &format!("/rules/r{qos}/status"), None, None)
                .context("rule status")?;
            let status: Json = serde_json::from_str(&status)?;
            let taken = status.as_object().and_then(|o| {
                o.iter()
                    .find(|(k, _)| k.starts_with("source_") && k.ends_with("_records_in_total"))
                    .and_then(|(_, v)| v.as_u64())
            });
            if taken.unwrap_or(0) > 0 {
                break;
            }
            if Instant::now() > deadline {
                bail!("the mqtt source of rule r{qos} took nothing in 30 s: {status}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = dir.path().join(format!("oort{qos}.txt"));
        let sub = subscriber(&broker, &format!("oort/out/{qos}"), qos, n, &out)?;
        let start = Instant::now();
        publish(&broker, &format!("oort/in/{qos}"), 0, n, 0)?;
        let (took, got_oort) = finish(sub, &out, start, limit)?;
        let through = got_oort as f64 / took.as_secs_f64();
        table.row(vec!["broker alone".into(), qos.to_string(), rate(alone), format!("{got} of {n}"), "".into()]);
        table.row(vec![
            "mqtt → countPlusOne → mqtt".into(),
            qos.to_string(),
            rate(through),
            format!("{got_oort} of {n}"),
            format!("{:.0} %", 100.0 * through / alone),
        ]);
        rows.push(json!({"qos": qos, "alone_per_s": alone, "alone_received": got, "oort_per_s": through, "oort_received": got_oort}));
    }
    println!("{}", table.render());
    println!(
        "Timed from the first message published until the subscriber has its {n}th; the probe messages that \
         wait for the rule's subscription (n < 0) are dropped by its WHERE. At qos 0 the broker may drop \
         messages a slow subscriber cannot take (\"received\").\n"
    );
    Ok(json!({ "messages": n, "rows": rows }))
}
