//! Reading one line a plugin wrote to stderr, so that the supervisor logs it
//! once, at the plugin's own level, instead of nesting the plugin's timestamp
//! and level inside its own.
//!
//! The three SDKs write `<RFC 3339 UTC time> <LEVEL> <message>` (docs/protocol.md
//! §6.5): Rust as `2025-01-01T00:00:00.000000Z  INFO oort_plugin::context: msg rule=r1 instance=i`,
//! Go as `… INFO rule=r1 instance=i: msg`, Python as `… INFO <instance>: msg`.
//! Any other line is kept whole, with the level guessed from its first 48
//! characters as before.

/// A plugin log line's level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// One line, read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct LogLine {
    pub level: Level,
    /// The message without the plugin's timestamp, level, the SDK's own
    /// logger name and the `rule=` tag the supervisor adds itself.
    pub message: String,
}

/// The Rust SDK's instance logger: its target is noise in the supervisor's log.
const SDK_TARGETS: [&str; 2] = ["oort_plugin::context: ", "oort_plugin: "];

/// Reads `line`, a line of the plugin serving `rule` (None for a shared process).
pub(crate) fn parse(line: &str, rule: Option<&str>) -> LogLine {
    match sdk_format(line) {
        Some((level, rest)) => {
            let mut message = rest;
            for target in SDK_TARGETS {
                if let Some(m) = message.strip_prefix(target) {
                    message = m;
                    break;
                }
            }
            LogLine { level, message: without_rule_tag(message, rule) }
        }
        None => LogLine { level: guess_level(line), message: line.to_string() },
    }
}

/// `<timestamp> <LEVEL> <rest>` or `<LEVEL> <rest>`: the level and the rest.
fn sdk_format(line: &str) -> Option<(Level, &str)> {
    let (first, rest) = split_word(line)?;
    let (word, rest) = if is_timestamp(first) { split_word(rest)? } else { (first, rest) };
    Some((level_word(word)?, rest))
}

/// The first whitespace-separated word and what follows it, leading spaces trimmed.
fn split_word(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start();
    if s.is_empty() {
        return None;
    }
    match s.find(char::is_whitespace) {
        Some(i) => Some((&s[..i], s[i..].trim_start())),
        None => Some((s, "")),
    }
}

/// `2025-01-01T00:00:00.000000Z` and the like: a date, a `T`, a time.
fn is_timestamp(word: &str) -> bool {
    let b = word.as_bytes();
    b.len() >= 19
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
}

fn level_word(word: &str) -> Option<Level> {
    Some(match word.to_ascii_uppercase().as_str() {
        "ERROR" | "CRITICAL" | "FATAL" => Level::Error,
        "WARN" | "WARNING" => Level::Warn,
        "INFO" => Level::Info,
        "DEBUG" => Level::Debug,
        "TRACE" => Level::Trace,
        _ => return None,
    })
}

/// The level of a line in no known format: `ERROR` or `WARN` within its
/// first 48 characters, otherwise INFO (docs/protocol.md §6.5).
fn guess_level(line: &str) -> Level {
    let head: String = line.chars().take(48).collect();
    if head.contains("ERROR") {
        Level::Error
    } else if head.contains("WARN") {
        Level::Warn
    } else {
        Level::Info
    }
}

/// Drops the words `rule=<rule>` / `rule="<rule>"` (the supervisor tags every
/// line with the rule itself), keeping everything else as written.
fn without_rule_tag(message: &str, rule: Option<&str>) -> String {
    let Some(rule) = rule else { return message.to_string() };
    let plain = format!("rule={rule}");
    let quoted = format!("rule=\"{rule}\"");
    let mut out = String::with_capacity(message.len());
    let mut removed = false;
    for (i, word) in message.split(' ').enumerate() {
        if !removed && (word == plain || word == quoted) {
            removed = true;
            continue;
        }
        if i > 0 && !(out.is_empty() && removed) {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(level: Level, message: &str) -> LogLine {
        LogLine { level, message: message.into() }
    }

    #[test]
    fn the_sdk_formats_lose_their_timestamp_level_and_rule_tag() {
        let rust =
            "2026-01-02T03:04:05.123456Z  INFO oort_plugin::context: sink result: {\"a\":1} rule=r1 instance=r1/sink_0";
        assert_eq!(parse(rust, Some("r1")), line(Level::Info, "sink result: {\"a\":1} instance=r1/sink_0"));
        let go = "2026-01-02T03:04:05.123456Z  WARN rule=r1 instance=i7: disk almost full";
        assert_eq!(parse(go, Some("r1")), line(Level::Warn, "instance=i7: disk almost full"));
        let python = "2026-01-02T03:04:05.123456Z ERROR r1/fn_0_x: boom";
        assert_eq!(parse(python, Some("r1")), line(Level::Error, "r1/fn_0_x: boom"));
        let debug = "2026-01-02T03:04:05Z DEBUG oort_plugin: serving on /s";
        assert_eq!(parse(debug, None), line(Level::Debug, "serving on /s"));
    }

    #[test]
    fn another_rules_tag_and_free_text_are_kept() {
        let l = "2026-01-02T03:04:05Z  INFO saw rule=r2 and rule=r1";
        assert_eq!(parse(l, Some("r1")), line(Level::Info, "saw rule=r2 and"));
        assert_eq!(parse(l, Some("zz")), line(Level::Info, "saw rule=r2 and rule=r1"));
    }

    #[test]
    fn other_lines_are_kept_whole_with_a_guessed_level() {
        assert_eq!(parse("panic: ERROR in main", Some("r")), line(Level::Error, "panic: ERROR in main"));
        assert_eq!(parse("something WARNs", None), line(Level::Warn, "something WARNs"));
        assert_eq!(parse("hello", None), line(Level::Info, "hello"));
        assert_eq!(parse("", None), line(Level::Info, ""));
        assert_eq!(parse("   ", None), line(Level::Info, "   "));
        assert_eq!(parse("2026-01-02T03:04:05Z", None), line(Level::Info, "2026-01-02T03:04:05Z"));
        assert_eq!(parse("\u{fffd}\u{fffd} not utf-8", None), line(Level::Info, "\u{fffd}\u{fffd} not utf-8"));
        assert_eq!(parse("2026-01-02T03:04:05Z  NOTICE x", None), line(Level::Info, "2026-01-02T03:04:05Z  NOTICE x"));
    }
}
