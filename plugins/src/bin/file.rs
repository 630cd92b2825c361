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
//! Fencing (cluster mode, where another node may take the rule over and write
//! the same file): when the instance carries a fencing token
//! (`Context::fencing_token`, above 0), the sink keeps `<path>.fence` beside
//! the file, holding the highest token that opened it. Open refuses a token
//! lower than the one there and writes its own; every write, pre-commit and
//! commit then re-reads it under an exclusive `flock` and is refused once a
//! higher token arrived. A node that lost the rule (paused past its lease,
//! say) thus cannot append to, or truncate, the output of the node that took
//! it over; what it wrote before the new owner opened the file lies past the
//! restored checkpoint, and the new owner's recover-and-commit removes it.
//!
//! # Source
//!
//! Reads the JSON-lines file named by the stream's `DATASOURCE` and then follows
//! it, like `tail -f`, for lines appended later.
//!
//! Properties: `pollInterval` (ms, default 50, must be positive): how often to
//! look for appended data once at the end of the file. One read call waits at
//! most 100 ms, as the SDK contract asks. `maxLineLength` (bytes, default
//! 1 048 576, must be positive): the longest line read; see below.
//!
//! - Every complete line (ending with `\n`) is one record. A JSON object becomes
//!   a record whose fields are the object's members; any other JSON value `v`
//!   becomes a record with the single field `value`. The timestamp is the time
//!   the line was read.
//! - Blank lines are skipped. A line that is not valid JSON is skipped with a
//!   warning naming its byte offset.
//! - A line longer than `maxLineLength` bytes (newline not counted) is skipped
//!   with a warning naming its byte offset and how many such lines were skipped
//!   so far, as soon as it is seen to be too long: the source streams through
//!   it up to its newline without keeping it, so memory stays bounded (about
//!   `maxLineLength` plus one 128 KiB read) even for `DATASOURCE="/dev/zero"`.
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
    fence: Option<Fence>,
}

/// `<path>.fence`: the highest fencing token that opened the file (see the
/// module comment).
struct Fence {
    file: File,
    path: String,
    token: u64,
}

impl Fence {
    /// Takes the fence for `token`, refusing when a higher token holds it.
    fn take(path: &str, token: u64) -> Result<Fence, BoxError> {
        let path = format!("{path}.fence");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| format!("open {path}: {e}"))?;
        let fence = Fence { file, path, token };
        fence.holding(|file| {
            let mut f = file;
            f.set_len(0)?;
            f.seek(SeekFrom::Start(0))?;
            f.write_all(token.to_string().as_bytes())?;
            f.sync_data()?;
            Ok(())
        })?;
        Ok(fence)
    }

    /// Runs `f` under the fence's lock, if no higher token took it.
    fn holding<T>(&self, f: impl FnOnce(&File) -> Result<T, BoxError>) -> Result<T, BoxError> {
        self.file.lock().map_err(|e| format!("lock {}: {e}", self.path))?;
        let result = self.highest().and_then(|highest| {
            if highest > self.token {
                return Err(format!(
                    "fenced: a node with fencing token {highest} has taken this rule's output over \
                     ({}); this node's token is {}, so it no longer writes here",
                    self.path, self.token
                )
                .into());
            }
            f(&self.file)
        });
        let _ = self.file.unlock();
        result
    }

    fn highest(&self) -> Result<u64, BoxError> {
        let mut text = String::new();
        (&self.file).seek(SeekFrom::Start(0))?;
        (&self.file).read_to_string(&mut text)?;
        let text = text.trim();
        if text.is_empty() {
            return Ok(0);
        }
        Ok(text.parse().map_err(|_| format!("{} holds {text:?}, not a fencing token", self.path))?)
    }
}

impl FileSink {
    /// Runs `f` under the fence when the rule is fenced, else just runs it.
    fn fenced<T>(&self, f: impl FnOnce() -> Result<T, BoxError>) -> Result<T, BoxError> {
        match &self.fence {
            Some(fence) => fence.holding(|_| f()),
            None => f(),
        }
    }
}

impl FileSink {
    fn out(&self) -> Result<&File, BoxError> {
        self.out.as_ref().ok_or_else(|| "the file sink is not open".into())
    }
}

impl Sink for FileSink {
    fn open(&mut self, ctx: &Context, props: &Props) -> Result<(), BoxError> {
        let path = props.get("path").and_then(Value::as_str).ok_or("the file sink needs a string property `path`")?;
        self.fsync = match props.get("fsync") {
            None => false,
            Some(v) => v.as_bool().ok_or("property fsync must be a bool")?,
        };
        // The fence first: a node that lost the rule must not even repair the tail.
        self.fence = match ctx.fencing_token() {
            0 => None,
            token => Some(Fence::take(path, token)?),
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

    /// Columns are welcome: the SDK turns them into the records `collect`
    /// writes, in this process rather than in the supervisor's.
    fn takes_columns(&self) -> bool {
        true
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
        let file = self.out()?;
        let written = self.fenced(|| {
            let mut f = file;
            f.write_all(&buf)?;
            if fsync {
                f.sync_data()?;
            }
            Ok(())
        });
        self.buf = buf;
        written
    }

    fn transactional(&self) -> bool {
        true
    }

    /// Everything written so far becomes durable; the handle is the file's
    /// length, which is what a commit restores.
    fn pre_commit(&mut self, _ctx: &Context, _checkpoint_id: u64) -> Result<Value, BoxError> {
        let file = self.out()?;
        self.fenced(|| {
            file.sync_data()?;
            Ok(Value::Int(file.metadata()?.len() as i64))
        })
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
        let path = &self.path;
        let file = self.out()?;
        self.fenced(|| {
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
        })
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

/// The default of the source's `maxLineLength` property.
const DEFAULT_MAX_LINE: usize = 1 << 20;

/// Splits the bytes of a file, appended a read at a time, into lines of at
/// most `max_line` bytes, tracking the file offset of each. A longer line is
/// reported once and then dropped as it streams by, so the buffer never holds
/// much more than `max_line` bytes plus one read. Pure: no I/O.
struct Lines {
    max_line: usize,
    /// Bytes appended and not consumed yet: `buf[start..]`.
    buf: Vec<u8>,
    start: usize,
    /// `buf[start..scanned]` is known to hold no newline.
    scanned: usize,
    /// The file offset of `buf[start]` (or of the over-long line being
    /// skipped): just after the last consumed line.
    offset: u64,
    /// While an over-long line is skipped: how many of its bytes were dropped.
    skipped: Option<u64>,
}

/// What [`Lines::next`] found.
#[derive(Debug, PartialEq)]
enum Piece<'a> {
    /// A complete line, without its newline, starting at file offset `offset`.
    Line { offset: u64, bytes: &'a [u8] },
    /// The line starting at `offset` is longer than the maximum: it is skipped.
    TooLong { offset: u64 },
}

impl Lines {
    fn new(max_line: usize) -> Lines {
        Lines { max_line, buf: Vec::new(), start: 0, scanned: 0, offset: 0, skipped: None }
    }

    /// Forgets everything buffered; the next byte appended is at `offset`.
    fn reset(&mut self, offset: u64) {
        self.buf.clear();
        self.start = 0;
        self.scanned = 0;
        self.offset = offset;
        self.skipped = None;
    }

    /// The file offset just after the last consumed line.
    fn offset(&self) -> u64 {
        self.offset
    }

    /// The file offset of the next byte to append.
    fn read_pos(&self) -> u64 {
        self.offset + self.skipped.unwrap_or(0) + (self.buf.len() - self.start) as u64
    }

    /// Appends up to `want` bytes that `read` writes into the slice it gets,
    /// returning how many it wrote.
    fn append_with<E>(&mut self, want: usize, read: impl FnOnce(&mut [u8]) -> Result<usize, E>) -> Result<usize, E> {
        if self.start > 0 {
            // Keep only the unconsumed tail (at most one partial line).
            self.buf.drain(..self.start);
            self.scanned -= self.start;
            self.start = 0;
        }
        let len = self.buf.len();
        self.buf.resize(len + want, 0);
        let result = read(&mut self.buf[len..]);
        let n = *result.as_ref().unwrap_or(&0);
        self.buf.truncate(len + n.min(want));
        result
    }

    /// The next complete line or over-long line, if the bytes appended so far hold one.
    fn next(&mut self) -> Option<Piece<'_>> {
        loop {
            let Some(i) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') else {
                self.scanned = self.buf.len();
                let pending = self.buf.len() - self.start;
                if self.skipped.is_none() && pending <= self.max_line {
                    return None;
                }
                // Too long already: drop what is buffered and stream on to the newline.
                let first = self.skipped.is_none();
                *self.skipped.get_or_insert(0) += pending as u64;
                self.buf.clear();
                self.start = 0;
                self.scanned = 0;
                return first.then_some(Piece::TooLong { offset: self.offset });
            };
            let (start, end) = (self.start, self.scanned + i);
            let offset = self.offset;
            self.start = end + 1;
            self.scanned = self.start;
            if let Some(dropped) = self.skipped.take() {
                // The newline that ends a line already reported as too long.
                self.offset += dropped + (end - start) as u64 + 1;
                continue;
            }
            self.offset += (end - start) as u64 + 1;
            if end - start > self.max_line {
                return Some(Piece::TooLong { offset });
            }
            return Some(Piece::Line { offset, bytes: &self.buf[start..end] });
        }
    }
}

struct FileSource {
    path: String,
    file: Option<File>,
    poll: Duration,
    lines: Lines,
    /// How many over-long lines were skipped.
    too_long: u64,
    /// Set at the end of the file: when to look for appended data next.
    next_look: Option<Instant>,
}

impl Default for FileSource {
    fn default() -> Self {
        FileSource {
            path: String::new(),
            file: None,
            poll: Duration::from_millis(50),
            lines: Lines::new(DEFAULT_MAX_LINE),
            too_long: 0,
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
        self.lines.reset(offset);
        self.next_look = None;
        Ok(())
    }

    /// Reads one chunk at the end of the buffer; returns how many bytes came.
    fn fill(&mut self) -> Result<usize, BoxError> {
        let path = self.path.clone();
        let file = self.file.as_mut().ok_or("the file source is not open")?;
        let n = self.lines.append_with(CHUNK, |buf| loop {
            match file.read(buf) {
                Ok(n) => break Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(format!("read {path}: {e}")),
            }
        })?;
        Ok(n)
    }

    /// Moves the complete lines in the buffer to `out`, up to `max` records.
    fn drain_lines(&mut self, ctx: &Context, out: &mut Vec<Record>, max: usize) {
        let ts = now_ms();
        while out.len() < max {
            match self.lines.next() {
                None => return,
                Some(Piece::TooLong { offset }) => {
                    self.too_long += 1;
                    let problem = format!(
                        "file source {}: skipping the line at byte offset {offset}: longer than maxLineLength \
                         ({} bytes); {} over-long line(s) skipped so far",
                        self.path, self.lines.max_line, self.too_long
                    );
                    ctx.logger().warn(&problem);
                    ctx.report_exception(problem);
                }
                Some(Piece::Line { bytes, .. }) if bytes.trim_ascii().is_empty() => {}
                Some(Piece::Line { offset, bytes }) => match serde_json::from_slice::<serde_json::Value>(bytes) {
                    Ok(json) => {
                        let fields = match Value::from_json(&json) {
                            Value::Map(members) => members,
                            other => [("value".to_string(), other)].into(),
                        };
                        out.push(Record { fields, timestamp_ms: ts, ..Record::default() });
                    }
                    Err(e) => {
                        let problem = format!(
                            "file source {}: skipping the line at byte offset {offset}: not valid JSON: {e}",
                            self.path
                        );
                        ctx.logger().warn(&problem);
                        ctx.report_exception(problem);
                    }
                },
            }
        }
    }

    /// At the end of the file: whether the file shrank below what was read, in
    /// which case reading restarts from byte 0.
    fn restart_if_truncated(&mut self, ctx: &Context) -> Result<bool, BoxError> {
        let path = self.path.clone();
        let len = self.file()?.metadata().map_err(|e| format!("stat {path}: {e}"))?.len();
        let pos = self.lines.read_pos();
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
        let max_line = match props.get("maxLineLength") {
            None => DEFAULT_MAX_LINE,
            Some(v) => match v.as_i64() {
                Some(n) if n > 0 => usize::try_from(n).unwrap_or(usize::MAX),
                _ => return Err(format!("property maxLineLength must be a positive integer (bytes), got {v:?}").into()),
            },
        };
        self.lines = Lines::new(max_line);
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
            // A file that never ends a line (`/dev/zero`) must not hold the call forever.
            if out.len() >= max || Instant::now() >= deadline {
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
        Some(Value::Int(self.lines.offset() as i64))
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
        self.lines = Lines::new(self.lines.max_line);
        Ok(())
    }
}

// A source or sink allocates per record (decoded payloads, rows, results):
// mimalloc costs this process about 0.6 MB of memory and saves it a third of
// its CPU per record against glibc's malloc (BENCHMARKS.md, scenario c).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    serve(
        Plugin::new("file", env!("CARGO_PKG_VERSION"))
            .source(Export::shared(FileSource::default))
            .sink(Export::shared(FileSink::default)),
    );
}

#[cfg(test)]
mod tests {
    use super::{Lines, Piece};
    use rand::{Rng, SeedableRng};

    /// A line's offset and its bytes, `None` when it is too long.
    type Found = Vec<(u64, Option<Vec<u8>>)>;

    /// What splitting `data` must give: every complete line (or its being too
    /// long), then an incomplete last line only if it is already too long.
    fn expected(data: &[u8], max: usize) -> (Found, u64) {
        let mut out = Vec::new();
        let mut offset = 0u64;
        let mut rest = data;
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            out.push((offset, (i <= max).then(|| rest[..i].to_vec())));
            offset += i as u64 + 1;
            rest = &rest[i + 1..];
        }
        if rest.len() > max {
            out.push((offset, None));
        }
        (out, offset)
    }

    fn drain(lines: &mut Lines, got: &mut Found) {
        while let Some(piece) = lines.next() {
            got.push(match piece {
                Piece::Line { offset, bytes } => (offset, Some(bytes.to_vec())),
                Piece::TooLong { offset } => (offset, None),
            });
        }
        assert!(lines.buf.len() - lines.start <= lines.max_line, "the buffer holds at most one short partial line");
    }

    #[test]
    fn splitting_any_bytes_in_any_chunks_matches_the_model() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(10);
        for case in 0..3000 {
            let max = rng.random_range(1..40usize);
            let len = rng.random_range(0..400usize);
            let newline_every = rng.random_range(1..60u32);
            let data: Vec<u8> = (0..len)
                .map(|_| if rng.random_ratio(1, newline_every) { b'\n' } else { rng.random_range(b'a'..=b'z') })
                .collect();
            let mut lines = Lines::new(max);
            let mut got = Vec::new();
            let mut fed = 0;
            while fed < data.len() {
                let chunk = rng.random_range(1..=64usize).min(data.len() - fed);
                let n = lines
                    .append_with::<()>(chunk, |buf| {
                        buf.copy_from_slice(&data[fed..fed + chunk]);
                        Ok(chunk)
                    })
                    .unwrap();
                fed += n;
                assert_eq!(lines.read_pos(), fed as u64, "case {case}");
                drain(&mut lines, &mut got);
            }
            let (want, offset) = expected(&data, max);
            assert_eq!(got, want, "case {case}: max {max}, data {:?}", String::from_utf8_lossy(&data));
            assert_eq!(lines.offset(), offset, "case {case}");
        }
    }

    #[test]
    fn an_endless_line_is_reported_once_and_never_buffered() {
        let mut lines = Lines::new(1000);
        let mut got = Vec::new();
        for _ in 0..1000 {
            lines.append_with::<()>(4096, |buf| Ok(buf.len())).unwrap();
            drain(&mut lines, &mut got);
        }
        assert_eq!(got, vec![(0, None)]);
        assert_eq!(lines.offset(), 0, "nothing was consumed: a rewind there skips it again");
        assert_eq!(lines.read_pos(), 4096 * 1000);
        lines
            .append_with::<()>(3, |buf| {
                buf.copy_from_slice(b"\n1\n");
                Ok(3)
            })
            .unwrap();
        drain(&mut lines, &mut got);
        assert_eq!(got, vec![(0, None), (4096 * 1000 + 1, Some(b"1".to_vec()))]);
        assert_eq!(lines.offset(), 4096 * 1000 + 3);
    }
}
