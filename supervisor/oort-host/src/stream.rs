//! The pipelined batch transport of `Exec` and `Write`: one long-lived
//! bidirectional stream per instance, requests in `seq` order, exactly one
//! answer per request, a deadline per round trip, and every waiter failed at
//! once when the stream breaks.

use super::*;
use oort_proto::columns::SchemaSent;
use prost::bytes::Bytes;

/// A long-lived stream on which every request gets exactly one response, in
/// order. Several requests may be in flight: a caller sends its batch and
/// waits for its own answer, so the next caller can encode and send while the
/// plugin works (protocol v1 requires answers in request order, which every
/// plugin that handles its stream in a loop gives). Broken or timed-out streams
/// are discarded, never reused: after a failure nobody knows which response
/// comes next, and every request still waiting on that stream fails with it.
pub(super) struct BatchStream<Req, Resp> {
    pub(super) plugin: String,
    pub(super) call_name: &'static str,
    pub(super) timeout: std::time::Duration,
    pub(super) response_seq: fn(&Resp) -> u64,
    /// Completes a response from what its stream sent before: a columnar
    /// answer's schema goes only with the first batch that uses it.
    pub(super) carry_schema: fn(&mut Resp, &mut Bytes),
    /// The open stream; held while sending, so requests go out in `seq` order
    /// and their waiters queue in the same order.
    pub(super) open: tokio::sync::Mutex<Option<Pipe<Req, Resp>>>,
    pub(super) seq: AtomicU64,
    pub(super) pipes: AtomicU64,
}

/// One open stream: its request sender, the answers still owed in order, and
/// the task that reads responses and hands each to its waiter.
pub(super) struct Pipe<Req, Resp> {
    pub(super) id: u64,
    pub(super) tx: mpsc::Sender<Req>,
    pub(super) waiting: Arc<Mutex<Waiting<Resp>>>,
    pub(super) generation: u64,
    pub(super) reader: tokio::task::JoinHandle<()>,
    /// The Arrow schema last sent on this stream.
    pub(super) schema_sent: SchemaSent,
}

impl<Req, Resp> Drop for Pipe<Req, Resp> {
    fn drop(&mut self) {
        // Dropping the waiters' senders fails every request still in flight.
        self.reader.abort();
    }
}

/// The waiters of a stream's requests, oldest first; `closed` once the reader
/// is gone, so that nobody queues behind a stream that will never answer.
pub(super) struct Waiting<Resp> {
    pub(super) queue: std::collections::VecDeque<(u64, tokio::sync::oneshot::Sender<Result<Resp, Broken>>)>,
    pub(super) closed: bool,
}

/// Why a stream stopped answering.
#[derive(Debug, Clone)]
pub(super) enum Broken {
    /// It ended or failed.
    Call(String),
    /// The plugin answered out of order or unasked.
    Protocol(String),
}

impl<Req: Send + 'static, Resp: Send + 'static> BatchStream<Req, Resp> {
    pub(super) fn new(
        plugin: &str,
        call_name: &'static str,
        timeout: std::time::Duration,
        response_seq: fn(&Resp) -> u64,
    ) -> Self {
        BatchStream {
            plugin: plugin.to_string(),
            call_name,
            timeout,
            response_seq,
            carry_schema: |_, _| {},
            open: tokio::sync::Mutex::new(None),
            seq: AtomicU64::new(0),
            pipes: AtomicU64::new(0),
        }
    }

    /// Completes each response with the Arrow schema its stream sent last.
    pub(super) fn carrying_schema(mut self, carry: fn(&mut Resp, &mut Bytes)) -> Self {
        self.carry_schema = carry;
        self
    }

    /// Ends the stream, if one is open.
    pub(super) async fn reset(&self) {
        *self.open.lock().await = None;
    }

    /// Ends the stream if it is still the one with this id.
    pub(super) async fn discard(&self, pipe: u64) {
        let mut open = self.open.lock().await;
        if open.as_ref().is_some_and(|p| p.id == pipe) {
            *open = None;
        }
    }

    /// Sends the request built for the next sequence number and waits for its
    /// response, all within the call deadline. The first request is queued
    /// before the call starts, so a server that sends its response headers only
    /// with its first response (grpc-go's default) cannot deadlock us.
    ///
    /// With `may_open` false a caller only joins a stream that is open: the
    /// answer is `None` when there is none (see [`FunctionInstance::exec`]).
    pub(super) async fn round_trip<Fut>(
        &self,
        live: &Live,
        may_open: bool,
        request: impl FnOnce(u64, &mut SchemaSent) -> Req,
        start: impl FnOnce(tonic::transport::Channel, tokio_stream::wrappers::ReceiverStream<Req>) -> Fut,
    ) -> Result<Option<Resp>, HostError>
    where
        Fut: std::future::Future<Output = Result<tonic::Response<Streaming<Resp>>, tonic::Status>>,
    {
        let (plugin, call_name, timeout) = (self.plugin.as_str(), self.call_name, self.timeout);
        let failed = |message: String| HostError::Call { plugin: plugin.to_string(), call: call_name, message };
        let deadline = tokio::time::Instant::now() + timeout;
        let timed_out = || HostError::Timeout { plugin: plugin.to_string(), call: call_name, timeout };
        let (answer, pipe) = match tokio::time::timeout_at(deadline, self.send(live, may_open, request, start)).await {
            Ok(Ok(Some(sent))) => sent,
            Ok(Ok(None)) => return Ok(None),
            Ok(Err(message)) => return Err(failed(message)),
            Err(_) => {
                self.reset().await;
                return Err(timed_out());
            }
        };
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(Ok(response))) => Ok(Some(response)),
            Ok(Ok(Err(Broken::Protocol(reason)))) => {
                self.discard(pipe).await;
                Err(HostError::Protocol { plugin: plugin.to_string(), reason })
            }
            Ok(Ok(Err(Broken::Call(message)))) => {
                self.discard(pipe).await;
                Err(failed(message))
            }
            Ok(Err(_)) => Err(failed("stream closed".into())),
            Err(_) => {
                self.discard(pipe).await;
                Err(timed_out())
            }
        }
    }

    /// Queues a waiter and sends the request, opening the stream first if
    /// needed and allowed. Returns the waiter's receiver and the id of the
    /// stream used.
    pub(super) async fn send<Fut>(
        &self,
        live: &Live,
        may_open: bool,
        request: impl FnOnce(u64, &mut SchemaSent) -> Req,
        start: impl FnOnce(tonic::transport::Channel, tokio_stream::wrappers::ReceiverStream<Req>) -> Fut,
    ) -> Result<Option<(tokio::sync::oneshot::Receiver<Result<Resp, Broken>>, u64)>, String>
    where
        Fut: std::future::Future<Output = Result<tonic::Response<Streaming<Resp>>, tonic::Status>>,
    {
        let mut open = self.open.lock().await;
        let usable = |p: &Pipe<Req, Resp>| p.generation == live.generation && !lock(&p.waiting).closed;
        if !open.as_ref().is_some_and(usable) {
            *open = None;
            if !may_open {
                return Ok(None);
            }
        }
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let (answer_tx, answer) = tokio::sync::oneshot::channel();
        if let Some(pipe) = open.as_mut() {
            // Reserve first: between queueing the waiter and sending there is
            // no await, so a caller that gives up cannot leave a waiter
            // behind for a request that was never sent.
            let permit = pipe.tx.reserve().await.map_err(|_| "stream closed".to_string())?;
            lock(&pipe.waiting).queue.push_back((seq, answer_tx));
            permit.send(request(seq, &mut pipe.schema_sent));
            return Ok(Some((answer, pipe.id)));
        }
        let (tx, rx) = mpsc::channel(4);
        let mut schema_sent = SchemaSent::default();
        tx.send(request(seq, &mut schema_sent)).await.map_err(|_| "stream closed".to_string())?;
        let responses = start(live.channel.clone(), tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .map_err(|s| s.message().to_string())?
            .into_inner();
        let waiting = Arc::new(Mutex::new(Waiting { queue: [(seq, answer_tx)].into(), closed: false }));
        let reader = tokio::spawn(read_answers(
            responses,
            waiting.clone(),
            self.response_seq,
            self.carry_schema,
            self.call_name,
        ));
        let id = self.pipes.fetch_add(1, Ordering::Relaxed);
        *open = Some(Pipe { id, tx, waiting, generation: live.generation, reader, schema_sent });
        Ok(Some((answer, id)))
    }
}

/// Hands each response of a stream to the oldest waiter; on the first broken
/// promise (the stream ends or fails, or answers out of order) fails every
/// waiter and closes.
pub(super) async fn read_answers<Resp>(
    mut responses: Streaming<Resp>,
    waiting: Arc<Mutex<Waiting<Resp>>>,
    response_seq: fn(&Resp) -> u64,
    carry_schema: fn(&mut Resp, &mut Bytes),
    call_name: &'static str,
) {
    let mut schema = Bytes::new();
    let failure = loop {
        let response = match responses.message().await {
            Ok(Some(mut r)) => {
                carry_schema(&mut r, &mut schema);
                r
            }
            Ok(None) => break Broken::Call("stream ended".into()),
            Err(s) => break Broken::Call(s.message().to_string()),
        };
        let next = lock(&waiting).queue.pop_front();
        let Some((seq, waiter)) = next else {
            break Broken::Protocol(format!(
                "{call_name} sent batch {} that nobody asked for",
                response_seq(&response)
            ));
        };
        if response_seq(&response) != seq {
            let broken =
                Broken::Protocol(format!("{call_name} answered batch {seq} with batch {}", response_seq(&response)));
            let _ = waiter.send(Err(broken.clone()));
            break broken;
        }
        let _ = waiter.send(Ok(response));
    };
    let mut waiting = lock(&waiting);
    waiting.closed = true;
    for (_, waiter) in waiting.queue.drain(..) {
        let _ = waiter.send(Err(failure.clone()));
    }
}

#[cfg(test)]
mod tests {
    //! The transport against a real gRPC server on a Unix socket whose `Exec`
    //! answers as each test scripts it.

    use super::*;
    use std::pin::Pin;
    use std::time::Duration;
    use tokio_stream::{Stream, StreamExt};
    use tonic::{Request, Response, Status};

    #[derive(Clone, Copy, PartialEq)]
    enum Script {
        /// One answer per batch, in order.
        InOrder,
        /// Holds the first answer and sends it after the second's.
        Swapped,
        /// Never answers.
        Silent,
        /// Fails the stream when batch 1 comes; answers every other batch.
        DiesAtSecond,
    }

    struct Scripted(Script);

    type Answers = Pin<Box<dyn Stream<Item = Result<pb::ExecResult, Status>> + Send>>;

    #[tonic::async_trait]
    impl pb::function_server::Function for Scripted {
        async fn validate(&self, _: Request<pb::ValidateRequest>) -> Result<Response<pb::ValidateResponse>, Status> {
            Err(Status::unimplemented("validate"))
        }
        async fn open(&self, _: Request<pb::OpenFunctionRequest>) -> Result<Response<pb::OpenResponse>, Status> {
            Err(Status::unimplemented("open"))
        }
        type ExecStream = Answers;
        async fn exec(&self, request: Request<Streaming<pb::ExecBatch>>) -> Result<Response<Answers>, Status> {
            let mut batches = request.into_inner();
            let script = self.0;
            let (tx, rx) = mpsc::channel(8);
            tokio::spawn(async move {
                let mut held = None;
                while let Some(Ok(batch)) = batches.next().await {
                    let answer = pb::ExecResult { seq: batch.seq, ..Default::default() };
                    match script {
                        Script::InOrder => {
                            let _ = tx.send(Ok(answer)).await;
                        }
                        Script::Swapped => match held.take() {
                            None => held = Some(answer),
                            Some(first) => {
                                let _ = tx.send(Ok(answer)).await;
                                let _ = tx.send(Ok(first)).await;
                            }
                        },
                        Script::Silent => held = Some(answer),
                        Script::DiesAtSecond if answer.seq == 1 => {
                            let _ = tx.send(Err(Status::unavailable("the plugin died"))).await;
                            return;
                        }
                        Script::DiesAtSecond => {
                            let _ = tx.send(Ok(answer)).await;
                        }
                    }
                }
            });
            Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
        }
        async fn close(&self, _: Request<pb::CloseRequest>) -> Result<Response<pb::CloseResponse>, Status> {
            Err(Status::unimplemented("close"))
        }
    }

    /// A server with `script` and a transport to it with `timeout`.
    async fn serve(
        script: Script,
        timeout: Duration,
    ) -> (tempfile::TempDir, Live, Arc<BatchStream<pb::ExecBatch, pb::ExecResult>>) {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("plugin.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let service = pb::function_server::FunctionServer::new(Scripted(script));
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
        );
        let channel = crate::process::connect_unix(&socket).await.unwrap();
        let live =
            Live { pid: 0, generation: 1, channel, describe: Arc::default(), token: String::new(), framed: None };
        let stream = Arc::new(BatchStream::new("scripted", "Exec", timeout, |r: &pb::ExecResult| r.seq));
        (dir, live, stream)
    }

    /// One round trip of an empty batch.
    async fn exec(
        stream: &BatchStream<pb::ExecBatch, pb::ExecResult>,
        live: &Live,
    ) -> Result<Option<pb::ExecResult>, HostError> {
        stream
            .round_trip(
                live,
                true,
                |seq, _| pb::ExecBatch { seq, ..Default::default() },
                |channel, input| async move { pb::function_client::FunctionClient::new(channel).exec(input).await },
            )
            .await
    }

    /// Two overlapping round trips on one stream.
    async fn two(
        stream: &Arc<BatchStream<pb::ExecBatch, pb::ExecResult>>,
        live: &Live,
    ) -> (Result<Option<pb::ExecResult>, HostError>, Result<Option<pb::ExecResult>, HostError>) {
        // The first opens the stream; the second joins it once it is open,
        // while the first waits for its answer.
        let before = stream.pipes.load(Ordering::Relaxed);
        let first = exec(stream, live);
        let second = async {
            while stream.pipes.load(Ordering::Relaxed) == before {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            exec(stream, live).await
        };
        tokio::join!(first, second)
    }

    #[tokio::test]
    async fn overlapping_calls_share_one_stream_and_each_gets_its_own_answer() {
        let (_dir, live, stream) = serve(Script::InOrder, Duration::from_secs(5)).await;
        let (a, b) = two(&stream, &live).await;
        assert_eq!(a.unwrap().unwrap().seq, 0);
        assert_eq!(b.unwrap().unwrap().seq, 1);
        assert_eq!(stream.pipes.load(Ordering::Relaxed), 1, "one stream for both calls");
        assert_eq!(exec(&stream, &live).await.unwrap().unwrap().seq, 2);
        assert_eq!(stream.pipes.load(Ordering::Relaxed), 1, "the stream is reused");
    }

    #[tokio::test]
    async fn answers_out_of_order_fail_every_waiter_and_the_stream_is_replaced() {
        let (_dir, live, stream) = serve(Script::Swapped, Duration::from_secs(5)).await;
        let (a, b) = two(&stream, &live).await;
        let a = a.unwrap_err();
        assert!(
            matches!(&a, HostError::Protocol { reason, .. } if reason == "Exec answered batch 0 with batch 1"),
            "{a}"
        );
        assert!(matches!(b, Err(HostError::Protocol { .. })), "{b:?}");
        // The broken stream is never reused: the next call opens another.
        let (c, d) = two(&stream, &live).await;
        assert!(c.is_err() && d.is_err());
        assert_eq!(stream.pipes.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_silent_plugin_times_out_within_the_deadline() {
        let timeout = Duration::from_millis(300);
        let (_dir, live, stream) = serve(Script::Silent, timeout).await;
        let started = std::time::Instant::now();
        let (a, b) = two(&stream, &live).await;
        assert!(matches!(a, Err(HostError::Timeout { call: "Exec", .. })), "{a:?}");
        assert!(b.is_err(), "{b:?}");
        assert!(started.elapsed() < timeout * 3, "took {:?}", started.elapsed());
        assert!(stream.open.lock().await.is_none(), "a timed-out stream is discarded");
    }

    #[tokio::test]
    async fn a_peer_that_dies_fails_the_calls_still_waiting_and_the_next_call_reopens() {
        let (_dir, live, stream) = serve(Script::DiesAtSecond, Duration::from_secs(5)).await;
        let (a, b) = two(&stream, &live).await;
        assert_eq!(a.unwrap().unwrap().seq, 0, "the answer sent before dying arrives");
        match b {
            Err(HostError::Call { call: "Exec", message, .. }) => {
                assert!(message.contains("the plugin died"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(exec(&stream, &live).await.unwrap().unwrap().seq, 2, "a new stream serves the next call");
        assert_eq!(stream.pipes.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_call_that_may_not_open_joins_only_an_open_stream() {
        let (_dir, live, stream) = serve(Script::InOrder, Duration::from_secs(5)).await;
        let joined = stream
            .round_trip(
                &live,
                false,
                |seq, _| pb::ExecBatch { seq, ..Default::default() },
                |channel, input| async move { pb::function_client::FunctionClient::new(channel).exec(input).await },
            )
            .await
            .unwrap();
        assert!(joined.is_none(), "nothing was open to join");
        assert_eq!(stream.pipes.load(Ordering::Relaxed), 0);
        // A process restart (a new generation) retires the open stream.
        exec(&stream, &live).await.unwrap();
        let restarted = Live { generation: 2, ..live.clone() };
        exec(&stream, &restarted).await.unwrap();
        assert_eq!(stream.pipes.load(Ordering::Relaxed), 2);
    }
}
