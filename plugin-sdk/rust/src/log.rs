//! The plugin's log: one stderr line per `tracing` event, in the format the
//! supervisor reads (docs/protocol.md §6.5):
//! `2026-01-02T03:04:05.123456Z  INFO my_plugin: message key=value`.
//!
//! A subscriber of its own rather than `tracing_subscriber::fmt`: that one
//! keeps a span registry and a formatting stack that cost every plugin
//! process about 340 kB of memory (BENCHMARKS.md, "One Rust plugin ≤ 5 MB"),
//! for spans a plugin's log lines never show.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::filter::Targets;

/// Installs the log for this process, with `OORT_LOG`'s levels: per target
/// or for all (`info`, `my_plugin=debug,warn`), `info` when unset or not
/// understood.
pub(crate) fn init() {
    let filter = std::env::var("OORT_LOG").ok().and_then(|s| s.parse::<Targets>().ok());
    let filter = filter.unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let _ = tracing::subscriber::set_global_default(Lines { filter });
}

struct Lines {
    filter: Targets,
}

impl Subscriber for Lines {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if self.enabled(metadata) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.filter.would_enable(metadata.target(), metadata.level())
    }

    // Spans are not shown: every span is the same one, and entering it is free.
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let metadata = event.metadata();
        let mut line = String::with_capacity(128);
        head(&mut line, SystemTime::now(), metadata.level(), metadata.target());
        let mut fields = Fields { line, first: true };
        event.record(&mut fields);
        let mut line = fields.line;
        line.push('\n');
        // One write per line, so that lines of different threads never interleave.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// The message first, then `name=value` for every other field.
struct Fields {
    line: String,
    first: bool,
}

impl Fields {
    fn separate(&mut self) {
        if !self.first {
            self.line.push(' ');
        }
        self.first = false;
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.separate();
        if field.name() != "message" {
            let _ = write!(self.line, "{}=", field.name());
        }
        self.line.push_str(value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.separate();
        if field.name() == "message" {
            let _ = write!(self.line, "{value:?}");
        } else {
            let _ = write!(self.line, "{}={value:?}", field.name());
        }
    }
}

/// What goes before the message: the time, the level right-aligned in five
/// characters, the target.
fn head(out: &mut String, now: SystemTime, level: &tracing::Level, target: &str) {
    timestamp(out, now);
    let _ = write!(out, " {level:>5} {target}: ");
}

/// RFC 3339 in UTC with microseconds, as `tracing_subscriber` writes it.
fn timestamp(out: &mut String, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    oort_proto::time::write_rfc3339(out, since, oort_proto::time::Fraction::Micros);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_holds_level_target_message_and_fields_as_the_supervisor_reads_them() {
        // A real event's fields, recorded by the visitor the subscriber uses.
        let dispatch = tracing::Dispatch::new(Capture(std::sync::Mutex::new(None)));
        tracing::dispatcher::with_default(&dispatch, || {
            tracing::info!(rule = %"r1", instance = %"r1/sink_0", n = 3, "sink result: {}", "{\"a\":1}");
        });
        let fields = dispatch.downcast_ref::<Capture>().unwrap().0.lock().unwrap().take().unwrap();
        assert_eq!(fields, "sink result: {\"a\":1} rule=r1 instance=r1/sink_0 n=3");

        let mut line = String::new();
        head(&mut line, UNIX_EPOCH, &tracing::Level::INFO, "oort_plugin::context");
        assert_eq!(line, "1970-01-01T00:00:00.000000Z  INFO oort_plugin::context: ");
        line.clear();
        head(&mut line, UNIX_EPOCH, &tracing::Level::ERROR, "my_plugin");
        assert_eq!(line, "1970-01-01T00:00:00.000000Z ERROR my_plugin: ");
    }

    /// Records the fields of the one event it sees with [`Fields`].
    struct Capture(std::sync::Mutex<Option<String>>);

    impl Subscriber for Capture {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut fields = Fields { line: String::new(), first: true };
            event.record(&mut fields);
            *self.0.lock().unwrap() = Some(fields.line);
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }
}
