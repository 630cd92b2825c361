//! The client of the framed Exec path (docs/protocol.md, "The framed Exec
//! path"): `Exec` batches as length-prefixed protobuf frames on the plugin's
//! second socket, for plugins whose `Describe` offers it.
//!
//! It keeps [`BatchStream`]'s promises (requests in `seq` order, one answer
//! each, a deadline per round trip, every waiter failed when the connection
//! breaks, a broken connection never reused) with fewer hand-offs: a caller
//! writes its frame itself and then reads answers itself, taking turns at the
//! read half with the other callers and leaving an answer that is not its own
//! for its caller. No task sits between the socket and the callers, so a
//! one-row call costs one wake-up on each side, as on a raw socket.

use super::*;
use oort_proto::columns::SchemaSent;
use oort_proto::frames;
use oort_proto::wire::EncodedBatch;
use prost::bytes::{Bytes, BytesMut};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use crate::stream::Broken;

/// One function instance's framed connection, opened on first use and after
/// a failure.
pub(super) struct FramedStream {
    plugin: String,
    timeout: std::time::Duration,
    /// Held while writing, so that frames go out in `seq` order.
    open: tokio::sync::Mutex<Option<Conn>>,
    /// How many connections were opened (tests and diagnostics).
    pub(super) conns: AtomicU64,
}

struct Conn {
    id: u64,
    generation: u64,
    writer: OwnedWriteHalf,
    /// Set while a frame is being written: a caller that gives up mid-write
    /// leaves half a frame behind, and the connection with it.
    writing: bool,
    answers: Arc<Answers>,
    /// The Arrow schema last sent on this connection.
    schema_sent: SchemaSent,
}

/// The read half and what the callers share about it.
struct Answers {
    reader: tokio::sync::Mutex<Reader>,
    /// Sequence numbers sent and not yet answered, oldest first, and why the
    /// connection stopped answering, once it has.
    owed: Mutex<(std::collections::VecDeque<u64>, Option<Broken>)>,
}

struct Reader {
    half: OwnedReadHalf,
    buf: BytesMut,
    /// Answers read by a caller for another one.
    kept: HashMap<u64, pb::ExecResult>,
    /// The result schema the plugin sent last on this connection.
    schema: Bytes,
}

impl FramedStream {
    pub(super) fn new(plugin: &str, timeout: std::time::Duration) -> FramedStream {
        FramedStream {
            plugin: plugin.to_string(),
            timeout,
            open: tokio::sync::Mutex::new(None),
            conns: AtomicU64::new(0),
        }
    }

    /// Closes the connection, if one is open.
    pub(super) async fn reset(&self) {
        *self.open.lock().await = None;
    }

    async fn discard(&self, conn: u64) {
        let mut open = self.open.lock().await;
        if open.as_ref().is_some_and(|c| c.id == conn) {
            *open = None;
        }
    }

    /// Sends the batch built for the next sequence number of `seq` and waits
    /// for its answer within the call deadline; `None` when `may_open` is
    /// false and no connection is open (as [`BatchStream::round_trip`]).
    pub(super) async fn round_trip(
        &self,
        live: &Live,
        socket: &std::path::Path,
        seq: &AtomicU64,
        may_open: bool,
        quick: bool,
        request: impl FnOnce(u64, &mut SchemaSent) -> EncodedBatch,
    ) -> Result<Option<pb::ExecResult>, HostError> {
        let failed = |message: String| HostError::Call { plugin: self.plugin.clone(), call: "Exec", message };
        let timed_out = || HostError::Timeout { plugin: self.plugin.clone(), call: "Exec", timeout: self.timeout };
        let deadline = tokio::time::Instant::now() + self.timeout;
        let sent = tokio::time::timeout_at(deadline, self.send(live, socket, seq, may_open, request)).await;
        let (seq, answers, conn) = match sent {
            Ok(Ok(Some(sent))) => sent,
            Ok(Ok(None)) => return Ok(None),
            Ok(Err(message)) => {
                self.reset().await;
                return Err(failed(message));
            }
            Err(_) => {
                self.reset().await;
                return Err(timed_out());
            }
        };
        match tokio::time::timeout_at(deadline, answers.wait(seq, quick)).await {
            Ok(Ok(answer)) => Ok(Some(answer)),
            Ok(Err(Broken::Protocol(reason))) => {
                self.discard(conn).await;
                Err(HostError::Protocol { plugin: self.plugin.clone(), reason })
            }
            Ok(Err(Broken::Call(message))) => {
                self.discard(conn).await;
                Err(failed(message))
            }
            Err(_) => {
                self.discard(conn).await;
                Err(timed_out())
            }
        }
    }

    /// Writes the request on the open connection (opening one first if
    /// allowed) and returns its sequence number, where its answer will be,
    /// and the connection's id.
    async fn send(
        &self,
        live: &Live,
        socket: &std::path::Path,
        seq: &AtomicU64,
        may_open: bool,
        request: impl FnOnce(u64, &mut SchemaSent) -> EncodedBatch,
    ) -> Result<Option<(u64, Arc<Answers>, u64)>, String> {
        let mut open = self.open.lock().await;
        let usable = |c: &Conn| c.generation == live.generation && !c.writing && lock(&c.answers.owed).1.is_none();
        if !open.as_ref().is_some_and(usable) {
            *open = None;
            if !may_open {
                return Ok(None);
            }
            let stream = tokio::net::UnixStream::connect(socket)
                .await
                .map_err(|e| format!("cannot connect to the framed Exec socket {}: {e}", socket.display()))?;
            let (read, write) = stream.into_split();
            let reader = Reader {
                half: read,
                buf: BytesMut::with_capacity(8 << 10),
                kept: HashMap::new(),
                schema: Bytes::new(),
            };
            *open = Some(Conn {
                id: self.conns.fetch_add(1, Ordering::Relaxed),
                generation: live.generation,
                writer: write,
                writing: false,
                answers: Arc::new(Answers { reader: tokio::sync::Mutex::new(reader), owed: Mutex::default() }),
                schema_sent: SchemaSent::default(),
            });
        }
        let Some(conn) = open.as_mut() else { unreachable!("a connection was opened above") };
        let seq = seq.fetch_add(1, Ordering::Relaxed);
        let batch = request(seq, &mut conn.schema_sent);
        // Owed before it is written: the answer may come before this caller
        // looks for it, read by another.
        lock(&conn.answers.owed).0.push_back(seq);
        conn.writing = true;
        write_batch(&mut conn.writer, &batch).await.map_err(|e| format!("cannot send the batch: {e}"))?;
        conn.writing = false;
        Ok(Some((seq, conn.answers.clone(), conn.id)))
    }
}

/// One frame: the prefix, the head and a columnar batch's Arrow message as
/// it is (no copy of the columns), in one vectored write when the socket
/// takes it.
async fn write_batch(writer: &mut OwnedWriteHalf, batch: &EncodedBatch) -> std::io::Result<()> {
    let (head, tail) = batch.parts();
    let prefix = frames::header(head.len() + tail.len());
    let mut parts = [&prefix[..], head, tail];
    let mut first = 0;
    while first < parts.len() {
        let slices: Vec<std::io::IoSlice<'_>> = parts[first..].iter().map(|p| std::io::IoSlice::new(p)).collect();
        let n = writer.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        frames::consume_written(&mut parts, &mut first, n);
    }
    Ok(())
}

impl Answers {
    /// The answer to `seq`: read here, or kept by whoever read it. For a
    /// `quick` call (a few rows) the plugin usually answers within
    /// microseconds: the caller first gives its CPU away once and looks for
    /// the answer before it parks, which on a shared CPU lets the plugin run
    /// at once and saves the round through the runtime's I/O driver.
    async fn wait(&self, seq: u64, quick: bool) -> Result<pb::ExecResult, Broken> {
        let mut guard = self.reader.lock().await;
        let reader = &mut *guard;
        let mut tried = !quick;
        loop {
            if let Some(answer) = reader.kept.remove(&seq) {
                return Ok(answer);
            }
            if let Some(broken) = &lock(&self.owed).1 {
                return Err(broken.clone());
            }
            // Reading into the buffer is cancel-safe: a caller that gives up
            // leaves what it read for the next one.
            let frame = match frames::take_frame(&mut reader.buf) {
                Ok(Some(frame)) => frame,
                Ok(None) if !tried => {
                    tried = true;
                    std::thread::yield_now();
                    match reader.half.try_read_buf(&mut reader.buf) {
                        Ok(0) => return Err(self.broken(Broken::Call("the connection closed".into()))),
                        Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => {
                            return Err(self.broken(Broken::Call(e.to_string())))
                        }
                        _ => continue,
                    }
                }
                Ok(None) => match reader.half.read_buf(&mut reader.buf).await {
                    Ok(0) => return Err(self.broken(Broken::Call("the connection closed".into()))),
                    Ok(_) => continue,
                    Err(e) => return Err(self.broken(Broken::Call(e.to_string()))),
                },
                // Too large is a failed call, as gRPC's decoding limit makes it.
                Err(e @ frames::FrameError::TooLarge { .. }) => return Err(self.broken(Broken::Call(e.to_string()))),
                Err(e) => return Err(self.broken(Broken::Protocol(format!("framed Exec: {e}")))),
            };
            let mut answer = match pb::ExecResult::decode(frame) {
                Ok(answer) => answer,
                Err(e) => return Err(self.broken(Broken::Protocol(format!("framed Exec: undecodable answer: {e}")))),
            };
            if !answer.failure.is_empty() {
                return Err(self.broken(Broken::Call(std::mem::take(&mut answer.failure))));
            }
            function::carry_result_schema(&mut answer, &mut reader.schema);
            let expected = lock(&self.owed).0.pop_front();
            match expected {
                None => {
                    let reason = format!("Exec sent batch {} that nobody asked for", answer.seq);
                    return Err(self.broken(Broken::Protocol(reason)));
                }
                Some(expected) if expected != answer.seq => {
                    let reason = format!("Exec answered batch {expected} with batch {}", answer.seq);
                    return Err(self.broken(Broken::Protocol(reason)));
                }
                Some(_) if answer.seq == seq => return Ok(answer),
                Some(_) => {
                    reader.kept.insert(answer.seq, answer);
                }
            }
        }
    }

    /// Records why the connection stopped answering, for every caller.
    fn broken(&self, why: Broken) -> Broken {
        lock(&self.owed).1.get_or_insert(why).clone()
    }
}

#[cfg(test)]
mod tests {
    //! The framed client against a real Unix socket whose server answers as
    //! each test scripts it.

    use super::*;
    use oort_proto::wire::BatchBody;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    #[derive(Clone, Copy)]
    enum Script {
        /// One answer per batch, in order.
        InOrder,
        /// Holds the first answer and sends it after the second's.
        Swapped,
        /// Answers batch 1 with a whole-batch failure.
        FailsSecond,
        /// Answers with a frame flagged compressed.
        Flagged,
        /// Never answers.
        Silent,
    }

    /// A server with `script` on a fresh socket, and a `Live` that names it.
    async fn serve(script: Script) -> (tempfile::TempDir, Live, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("p.frames");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = BytesMut::new();
                    let mut held: Option<Vec<u8>> = None;
                    loop {
                        let frame = match frames::take_frame(&mut buf).unwrap() {
                            Some(frame) => frame,
                            None => match conn.read_buf(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(_) => continue,
                            },
                        };
                        let batch = pb::ExecBatch::decode(frame).unwrap();
                        let mut answer = pb::ExecResult { seq: batch.seq, ..Default::default() };
                        if matches!(script, Script::FailsSecond) && batch.seq == 1 {
                            answer.failure = "no open function instance \"x\"".into();
                        }
                        let mut out = Vec::new();
                        frames::write_frame(&mut out, &answer, &mut Vec::new()).unwrap();
                        match script {
                            Script::InOrder | Script::FailsSecond => conn.write_all(&out).await.unwrap(),
                            Script::Swapped => match held.take() {
                                None => held = Some(out),
                                Some(first) => {
                                    conn.write_all(&out).await.unwrap();
                                    conn.write_all(&first).await.unwrap();
                                }
                            },
                            Script::Flagged => {
                                out[0] = 1;
                                conn.write_all(&out).await.unwrap();
                            }
                            Script::Silent => {}
                        }
                    }
                });
            }
        });
        let channel = tonic::transport::Endpoint::from_static("http://unused").connect_lazy();
        let live = Live {
            pid: 0,
            generation: 1,
            channel,
            describe: Arc::default(),
            token: String::new(),
            framed: Some(Arc::from(socket.as_path())),
        };
        (dir, live, socket)
    }

    async fn exec(stream: &FramedStream, live: &Live, seq: &AtomicU64) -> Result<Option<pb::ExecResult>, HostError> {
        let socket = live.framed.clone().unwrap();
        stream
            .round_trip(live, &socket, seq, true, true, |seq, _| {
                BatchBody::exec("x", &[vec![Value::Int(1)]]).with_seq(seq)
            })
            .await
    }

    #[tokio::test]
    async fn calls_in_flight_share_a_connection_and_each_gets_its_own_answer() {
        let (_dir, live, _) = serve(Script::InOrder).await;
        let (stream, seq) = (FramedStream::new("p", Duration::from_secs(5)), AtomicU64::new(0));
        // The first opens the connection; the others join it, several at once.
        assert_eq!(exec(&stream, &live, &seq).await.unwrap().unwrap().seq, 0);
        let (a, b, c) =
            tokio::join!(exec(&stream, &live, &seq), exec(&stream, &live, &seq), exec(&stream, &live, &seq));
        let mut got: Vec<u64> = [a, b, c].into_iter().map(|r| r.unwrap().unwrap().seq).collect();
        got.sort();
        assert_eq!(got, vec![1, 2, 3]);
        assert_eq!(stream.conns.load(Ordering::Relaxed), 1, "one connection for every call");
        // A restarted process (a new generation) gets a new connection.
        let restarted = Live { generation: 2, ..live.clone() };
        assert_eq!(exec(&stream, &restarted, &seq).await.unwrap().unwrap().seq, 4);
        assert_eq!(stream.conns.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn answers_out_of_order_fail_every_waiter_and_the_connection_is_replaced() {
        let (_dir, live, _) = serve(Script::Swapped).await;
        let (stream, seq) = (FramedStream::new("p", Duration::from_secs(5)), AtomicU64::new(0));
        let first = exec(&stream, &live, &seq);
        let second = async {
            while seq.load(Ordering::Relaxed) == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            exec(&stream, &live, &seq).await
        };
        let (a, b) = tokio::join!(first, second);
        let a = a.unwrap_err();
        assert!(
            matches!(&a, HostError::Protocol { reason, .. } if reason == "Exec answered batch 0 with batch 1"),
            "{a}"
        );
        assert!(matches!(b, Err(HostError::Protocol { .. })), "{b:?}");
        // The next call opens a new connection (whose answer is held, as
        // scripted, so it times out): the broken one is never reused.
        let short = FramedStream::new("p", Duration::from_millis(200));
        assert!(matches!(exec(&short, &live, &seq).await, Err(HostError::Timeout { .. })));
        let _ = exec(&stream, &live, &seq).await;
        assert_eq!(stream.conns.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_failure_frame_fails_the_batch_with_the_plugins_message() {
        let (_dir, live, _) = serve(Script::FailsSecond).await;
        let (stream, seq) = (FramedStream::new("p", Duration::from_secs(5)), AtomicU64::new(0));
        assert_eq!(exec(&stream, &live, &seq).await.unwrap().unwrap().seq, 0);
        let e = exec(&stream, &live, &seq).await.unwrap_err();
        assert!(matches!(&e, HostError::Call { message, .. } if message == "no open function instance \"x\""), "{e}");
        assert_eq!(exec(&stream, &live, &seq).await.unwrap().unwrap().seq, 2, "a new connection answers");
        assert_eq!(stream.conns.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_bad_frame_is_a_protocol_error_and_silence_a_timeout() {
        let (_dir, live, _) = serve(Script::Flagged).await;
        let (stream, seq) = (FramedStream::new("p", Duration::from_secs(5)), AtomicU64::new(0));
        let e = exec(&stream, &live, &seq).await.unwrap_err();
        assert!(matches!(&e, HostError::Protocol { reason, .. } if reason.contains("flagged 1")), "{e}");

        let (_dir, live, _) = serve(Script::Silent).await;
        let stream = FramedStream::new("p", Duration::from_millis(100));
        let e = exec(&stream, &live, &seq).await.unwrap_err();
        assert!(matches!(e, HostError::Timeout { .. }), "{e}");
    }

    #[tokio::test]
    async fn no_connection_without_may_open_and_a_clear_error_without_a_listener() {
        let (dir, live, socket) = serve(Script::InOrder).await;
        let (stream, seq) = (FramedStream::new("p", Duration::from_secs(5)), AtomicU64::new(0));
        let joined = stream
            .round_trip(&live, &socket, &seq, false, true, |seq, _| BatchBody::exec("x", &[]).with_seq(seq))
            .await;
        assert!(matches!(joined, Ok(None)), "{joined:?}");
        let gone = dir.path().join("gone.frames");
        let e = stream
            .round_trip(&live, &gone, &seq, true, true, |seq, _| BatchBody::exec("x", &[]).with_seq(seq))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("cannot connect to the framed Exec socket"), "{e}");
    }
}
