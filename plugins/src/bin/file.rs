//! The `file` plugin: one executable that serves both a source and a sink of
//! JSON lines (one JSON object per line).
//!
//! # Sink
//!
//! Appends every record to `path` as one JSON object per line.
//!
//! Properties: `path` (required), `fsync` (bool, default false: when true every
//! batch is fsynced before it is acknowledged). Each batch is one `write(2)`.
//!
//! A `kill -9` can cut that write short (the kernel stops copying pages once a
//! fatal signal is pending), leaving an incomplete last line that was never
//! acknowledged. Open repairs it before appending: an incomplete last line that
//! is valid JSON on its own (a write cut just before its newline) gets its
//! newline; anything else is cut off with a warning naming the bytes removed.
//! The rule re-sends the unacknowledged batch, so no record is lost either way.
//!
//! Two-phase commit (exactly-once with rule option `qos: 2`): pre-commit
//! fsyncs and returns the file's length as the handle; commit truncates the
//! file to that length. Commit changes nothing in normal operation and, after a
//! crash, removes the output written after the restored checkpoint, so the
//! final file equals the one a failure-free run writes, byte for byte.
//!
//! # Source
//!
//! Reads the JSON-lines file named by the stream's `DATASOURCE` and then follows
//! it, like `tail -f`, for lines appended later.
//!
//! Properties: `pollInterval` (ms, default 50, must be positive): how often to
//! look for appended data once at the end of the file. One read call waits at
//! most 100 ms, as the SDK contract asks.
//!
//! - Every complete line (ending with `\n`) is one record. A JSON object becomes
//!   a record whose fields are the object's members; any other JSON value `v`
//!   becomes a record with the single field `value`. The timestamp is the time
//!   the line was read.
//! - Blank lines are skipped. A line that is not valid JSON is skipped with a
//!   warning naming its byte offset.
//! - An incomplete last line (no `\n` yet) is not consumed: it is read once its
//!   newline has been written.
//! - If the file is truncated below the current position (log truncation), the
//!   source logs a warning and starts again from byte 0. The file is opened once;
//!   a file replaced by a rename keeps being read from the old file.
//!
//! The source is rewindable. Its offset is `Int(bytes)`: the byte offset just
//! after the last consumed line (skipped lines count as consumed), 0 before the
//! first read. `rewind` takes such an offset (an `Int`, `0 ≤ offset ≤` the
//! file's current length) and the next record read is the line starting there.
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use oort_plugin::{serve, BoxError, Context, Export, Plugin, Props, Record, Sink, Source, Value};

#[derive(Default)]
struct FileSink {
    out: Option<File>,
    path: String,
    fsync: bool,
    buf: Vec<u8>,
}

impl FileSink {
    fn file(&mut self) -> Result<&mut File, BoxError> {
        self.out.as_mut().ok_or_else(|| "the file sink is not open".into())
    }
}

impl Sink for FileSink {
    fn open(&mut self, ctx: &Context, props: &Props) -> Result<(), BoxError> {
        let path = props.get("path").and_then(Value::as_str).ok_or("the file sink needs a string property `path`")?;
        self.fsync = match props.get("fsync") {
            None => false,
            Some(v) => v.as_bool().ok_or("property fsync must be a bool")?,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("open {path}: {e}"))?;
        repair_torn_tail(ctx, path, &mut file).map_err(|e| format!("repairing the end of {path}: {e}"))?;
        self.out = Some(file);
        self.path = path.to_string();
        Ok(())
    }

    fn collect(&mut self, _ctx: &Context, records: &[Record]) -> Result<(), BoxError> {
        // One write per batch: an acknowledged batch is in the file, not in this
        // process's buffer, and a crash never leaves half a line behind a
        // whole batch.
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        for r in records {
            serde_json::to_writer(&mut buf, &r.fields_to_json())?;
            buf.push(b'\n');
        }
        let fsync = self.fsync;
        let file = self.file()?;
        file.write_all(&buf)?;
        if fsync {
            file.sync_data()?;
        }
        self.buf = buf;
        Ok(())
    }

    fn transactional(&self) -> bool {
        true
    }

    /// Everything written so far becomes durable; the handle is the file's
    /// length, which is what a commit restores.
    fn pre_commit(&mut self, _ctx: &Context, _checkpoint_id: u64) -> Result<Value, BoxError> {
        let file = self.file()?;
        file.sync_data()?;
        Ok(Value::Int(file.metadata()?.len() as i64))
    }

    /// Makes the file exactly as long as it was at the checkpoint's
    /// pre-commit. In normal operation nothing was written since, so this
    /// changes nothing; after a crash it removes the output written after the
    /// checkpoint, which the rewound source is about to produce again.
    fn commit(&mut self, _ctx: &Context, checkpoint_id: u64, handle: &Value) -> Result<(), BoxError> {
        let len = handle
            .as_i64()
            .filter(|l| *l >= 0)
            .ok_or_else(|| format!("checkpoint {checkpoint_id}: bad handle {handle:?}"))? as u64;
        let path = self.path.clone();
        let file = self.file()?;
        let now = file.metadata()?.len();
        if now < len {
            return Err(format!(
                "{path} is {now} bytes but checkpoint {checkpoint_id} made {len} bytes durable: the file was changed behind the sink's back"
            )
            .into());
        }
        if now > len {
            file.set_len(len)?;
            file.sync_data()?;
        }
        Ok(())
    }

    fn close(&mut self, _ctx: &Context) -> Result<(), BoxError> {
        if let Some(out) = self.out.take() {
            out.sync_data()?;
        }
        Ok(())
    }
}

/// Makes `file` end with a complete line (see the module comment): a last line
/// without its newline gets one if it is valid JSON and is cut off otherwise.
fn repair_torn_tail(ctx: &Context, path: &str, file: &mut File) -> std::io::Result<()> {
    let len = file.metadata()?.len();
    // Read backwards, a chunk at a time, until the last newline is found.
    let mut tail: Vec<u8> = Vec::new();
    let mut end = len;
    let line_start = loop {
        if end == 0 {
            break 0;
        }
        let start = end.saturating_sub(CHUNK as u64);
        let mut chunk = vec![0; (end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk)?;
        if end == len && chunk.last() == Some(&b'\n') {
            return Ok(());
        }
        let newline = chunk.iter().rposition(|b| *b == b'\n');
        chunk.extend_from_slice(&tail);
        tail = chunk;
        if let Some(i) = newline {
            tail.drain(..=i);
            break start + i as u64 + 1;
        }
        end = start;
    };
    if tail.is_empty() {
        return Ok(());
    }
    if serde_json::from_slice::<serde_json::Value>(&tail).is_ok() {
        file.write_all(b"\n")?;
    } else {
        ctx.logger().warn(format!(
            "file sink {path}: removed an incomplete last line ({} bytes from offset {line_start}), \
             left by a write that a crash cut short",
            tail.len()
        ));
        file.set_len(line_start)?;
    }
    file.sync_data()
}

/// How much one `read(2)` asks for.
const CHUNK: usize = 128 * 1024;
/// The longest one `Source::read` call may wait, per the SDK contract.
const READ_BUDGET: Duration = Duration::from_millis(100);

struct FileSource {
    path: String,
    file: Option<File>,
    poll: Duration,
    /// Bytes read from the file and not consumed yet: `buf[start..]`.
    buf: Vec<u8>,
    start: usize,
    /// `buf[start..scanned]` is known to hold no newline.
    scanned: usize,
    /// The byte offset in the file of `buf[start]`: just after the last consumed line.
    offset: u64,
    /// Set at the end of the file: when to look for appended data next.
    next_look: Option<Instant>,
}

impl Default for FileSource {
    fn default() -> Self {
        FileSource {
            path: String::new(),
            file: None,
            poll: Duration::from_millis(50),
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            offset: 0,
            next_look: None,
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl FileSource {
    fn file(&mut self) -> Result<&mut File, BoxError> {
        self.file.as_mut().ok_or_else(|| "the file source is not open".into())
    }

    /// Forgets buffered bytes and positions the file at `offset`.
    fn seek_to(&mut self, offset: u64) -> Result<(), BoxError> {
        let path = self.path.clone();
        self.file()?.seek(SeekFrom::Start(offset)).map_err(|e| format!("seek {path} to {offset}: {e}"))?;
        self.buf.clear();
        self.start = 0;
        self.scanned = 0;
        self.offset = offset;
        self.next_look = None;
        Ok(())
    }

    /// The file position: every byte before it has been read into the buffer.
    fn read_pos(&self) -> u64 {
        self.offset + (self.buf.len() - self.start) as u64
    }

    /// Reads one chunk at the end of the buffer; returns how many bytes came.
    fn fill(&mut self) -> Result<usize, BoxError> {
        if self.start > 0 {
            // Keep only the unconsumed tail (at most one partial line).
            self.buf.drain(..self.start);
            self.scanned -= self.start;
            self.start = 0;
        }
        let len = self.buf.len();
        self.buf.resize(len + CHUNK, 0);
        let path = self.path.clone();
        let file = self.file.as_mut().ok_or("the file source is not open")?;
        let n = loop {
            match file.read(&mut self.buf[len..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(len);
                    return Err(format!("read {path}: {e}").into());
                }
            }
        };
        self.buf.truncate(len + n);
        Ok(n)
    }

    /// Moves the complete lines in the buffer to `out`, up to `max` records.
    fn drain_lines(&mut self, ctx: &Context, out: &mut Vec<Record>, max: usize) {
        let ts = now_ms();
        while out.len() < max {
            let Some(i) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') else {
                self.scanned = self.buf.len();
                return;
            };
            let end = self.scanned + i;
            let line = &self.buf[self.start..end];
            let line_offset = self.offset;
            if !line.trim_ascii().is_empty() {
                match serde_json::from_slice::<serde_json::Value>(line) {
                    Ok(json) => {
                        let fields = match Value::from_json(&json) {
                            Value::Map(members) => members,
                            other => [("value".to_string(), other)].into(),
                        };
                        out.push(Record { fields, timestamp_ms: ts, ..Record::default() });
                    }
                    Err(e) => ctx.logger().warn(format!(
                        "file source {}: skipping the line at byte offset {line_offset}: not valid JSON: {e}",
                        self.path
                    )),
                }
            }
            self.offset += (end + 1 - self.start) as u64;
            self.start = end + 1;
            self.scanned = self.start;
        }
    }

    /// At the end of the file: whether the file shrank below what was read, in
    /// which case reading restarts from byte 0.
    fn restart_if_truncated(&mut self, ctx: &Context) -> Result<bool, BoxError> {
        let path = self.path.clone();
        let len = self.file()?.metadata().map_err(|e| format!("stat {path}: {e}"))?.len();
        let pos = self.read_pos();
        if len >= pos {
            return Ok(false);
        }
        ctx.logger().warn(format!(
            "file source {path}: the file was truncated to {len} bytes, below the read position {pos}; \
             starting again from byte 0"
        ));
        self.seek_to(0)?;
        Ok(true)
    }
}

impl Source for FileSource {
    fn open(&mut self, _ctx: &Context, datasource: &str, props: &Props) -> Result<(), BoxError> {
        if datasource.is_empty() {
            return Err("the file source needs the path of a JSON-lines file as its datasource".into());
        }
        self.poll = match props.get("pollInterval") {
            None => Duration::from_millis(50),
            Some(v) => match v.as_i64() {
                Some(ms) if ms > 0 => Duration::from_millis(ms as u64),
                _ => return Err(format!("property pollInterval must be a positive integer (ms), got {v:?}").into()),
            },
        };
        let file = File::open(datasource).map_err(|e| format!("file source: cannot open {datasource}: {e}"))?;
        let meta = file.metadata().map_err(|e| format!("file source: cannot stat {datasource}: {e}"))?;
        if meta.is_dir() {
            return Err(format!("file source: {datasource} is a directory, not a file").into());
        }
        self.path = datasource.to_string();
        self.file = Some(file);
        self.seek_to(0)
    }

    fn read(&mut self, ctx: &Context, out: &mut Vec<Record>, max: usize) -> Result<(), BoxError> {
        let deadline = Instant::now() + READ_BUDGET;
        loop {
            self.drain_lines(ctx, out, max);
            if out.len() >= max {
                return Ok(());
            }
            if let Some(look) = self.next_look {
                // At the end of the file: hand over what we have, or wait for
                // the next look, within this call's budget.
                if !out.is_empty() {
                    return Ok(());
                }
                let now = Instant::now();
                if now < look {
                    if now >= deadline {
                        return Ok(());
                    }
                    std::thread::sleep((look - now).min(deadline - now));
                    if Instant::now() < look {
                        return Ok(());
                    }
                }
            }
            if self.fill()? > 0 {
                self.next_look = None;
            } else if !self.restart_if_truncated(ctx)? {
                self.next_look = Some(Instant::now() + self.poll);
            }
        }
    }

    fn rewindable(&self) -> bool {
        true
    }

    fn offset(&self) -> Option<Value> {
        Some(Value::Int(self.offset as i64))
    }

    fn rewind(&mut self, _ctx: &Context, offset: &Value) -> Result<(), BoxError> {
        let path = self.path.clone();
        let len = self.file()?.metadata().map_err(|e| format!("stat {path}: {e}"))?.len();
        let offset = match *offset {
            Value::Int(i) if i >= 0 => i as u64,
            Value::Int(i) => return Err(format!("the file source's offset must not be negative, got {i}").into()),
            ref other => {
                return Err(format!(
                    "the file source's offset must be an integer byte offset, got {}",
                    other.type_name()
                )
                .into())
            }
        };
        if offset > len {
            return Err(format!("offset {offset} is past the end of {path} ({len} bytes)").into());
        }
        self.seek_to(offset)
    }

    fn close(&mut self, _ctx: &Context) -> Result<(), BoxError> {
        self.file = None;
        self.buf = Vec::new();
        Ok(())
    }
}

fn main() {
    serve(
        Plugin::new("file", env!("CARGO_PKG_VERSION"))
            .source(Export::constructor(FileSource::default))
            .sink(Export::constructor(FileSink::default)),
    );
}
