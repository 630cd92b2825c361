//! The framed Exec path (docs/protocol.md, "The framed Exec path"): `Exec`
//! batches as length-prefixed protobuf frames on a second Unix socket.
//!
//! Each connection gets one thread that reads a batch, runs the function
//! inline and writes the answer: one wake-up per call on each side, where
//! the gRPC path passes a batch through HTTP/2 connection tasks, a stream
//! task and `spawn_blocking` on both sides. Answers go in request order, as
//! on a gRPC stream; a whole-batch failure is answered with `failure` and
//! ends the connection, as a gRPC stream ends with a status.

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;

use oort_proto::columns::{BatchDecoder, SchemaSent};
use oort_proto::frames;
use oort_proto::plugin::v1 as pb;
use prost::Message;

use crate::server::{clear_stale, exec_batch, Served};

/// Listens on `path` and serves every connection on its own thread.
pub(crate) fn listen(path: &Path, served: Arc<Served>) -> std::io::Result<()> {
    clear_stale(path)?;
    let listener = UnixListener::bind(path)?;
    // A function may use the plugin's async runtime from `exec`, as it may
    // on the gRPC path (`Handle::current().block_on(..)`, say): the
    // connection threads run inside its context.
    let runtime = tokio::runtime::Handle::current();
    std::thread::Builder::new().name("oort-framed-accept".into()).spawn(move || {
        for conn in listener.incoming() {
            let conn = match conn {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!("framed Exec path: accept failed: {e}");
                    continue;
                }
            };
            let (served, runtime) = (served.clone(), runtime.clone());
            let spawned = std::thread::Builder::new().name("oort-framed".into()).spawn(move || {
                let _context = runtime.enter();
                serve(conn, &served)
            });
            if let Err(e) = spawned {
                tracing::warn!("framed Exec path: cannot start a connection's thread: {e}");
            }
        }
    })?;
    Ok(())
}

/// Answers the batches of one connection until the supervisor closes it.
fn serve(conn: UnixStream, served: &Served) {
    // Per connection, as per gRPC stream: the last Arrow schema received, and
    // the last one sent.
    let mut decoder = BatchDecoder::default();
    let mut sent = SchemaSent::default();
    let mut out = Vec::new();
    let mut input = frames::FrameReader::default();
    loop {
        let message = match input.next(&mut &conn) {
            Ok(Some(message)) => message,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!("framed Exec path: {e}; closing the connection");
                return;
            }
        };
        let (result, last) = match pb::ExecBatch::decode(message) {
            Ok(batch) => {
                let seq = batch.seq;
                match exec_batch(served, batch, &mut decoder, &mut sent) {
                    Ok(result) => (result, false),
                    Err(status) => (failed(seq, status.message()), true),
                }
            }
            Err(e) => (failed(0, &format!("undecodable ExecBatch: {e}")), true),
        };
        if frames::write_result(&mut &conn, result, &mut out).is_err() || last {
            return;
        }
        // A large batch's buffers are not kept for the small ones after it.
        if out.capacity() > 1 << 20 {
            out = Vec::new();
        }
        input.shrink();
    }
}

fn failed(seq: u64, message: &str) -> pb::ExecResult {
    pb::ExecResult { seq, failure: message.to_string(), ..Default::default() }
}
