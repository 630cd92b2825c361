//! The framing of the framed Exec path (docs/protocol.md, "The framed Exec
//! path"): each frame is one protobuf message prefixed exactly as gRPC
//! prefixes a message inside HTTP/2 DATA frames: one flag byte (0: not
//! compressed) and the message's length as a 4-byte big-endian integer. A
//! frame is what gRPC would carry, minus HTTP/2 and its task hand-offs.

use std::io::{Read, Write};

use prost::bytes::{Buf, Bytes, BytesMut};

/// The flag byte and the length.
pub const HEADER_LEN: usize = 5;

/// The largest message a frame may carry, as the gRPC path's decoding limit.
pub const MAX_FRAME: usize = 64 << 20;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("a message of {len} bytes is too large (the limit is {MAX_FRAME} bytes)")]
    TooLarge { len: usize },
    #[error("a frame is flagged {flag}, not 0: the framed path does not compress")]
    Flagged { flag: u8 },
    #[error("the connection ended inside a frame")]
    Truncated,
    #[error("undecodable message: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The prefix of a message of `len` bytes.
pub fn header(len: usize) -> [u8; HEADER_LEN] {
    let [a, b, c, d] = (len as u32).to_be_bytes();
    [0, a, b, c, d]
}

/// The message length a prefix announces, checked.
fn announced(prefix: &[u8]) -> Result<usize, FrameError> {
    if prefix[0] != 0 {
        return Err(FrameError::Flagged { flag: prefix[0] });
    }
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge { len });
    }
    Ok(len)
}

/// Takes one whole frame's message off the front of `buf` when one is there;
/// `None` while the frame is still incomplete.
pub fn take_frame(buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = announced(&buf[..HEADER_LEN])?;
    if buf.len() < HEADER_LEN + len {
        buf.reserve(HEADER_LEN + len - buf.len());
        return Ok(None);
    }
    buf.advance(HEADER_LEN);
    Ok(Some(buf.split_to(len).freeze()))
}

/// Reads one frame's message, blocking; `None` when the peer closed the
/// connection between frames.
pub fn read_frame(r: &mut impl Read) -> Result<Option<Bytes>, FrameError> {
    let mut prefix = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match r.read(&mut prefix[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(FrameError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = announced(&prefix)?;
    let mut message = BytesMut::zeroed(len);
    r.read_exact(&mut message).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => FrameError::Truncated,
        _ => FrameError::Io(e),
    })?;
    Ok(Some(message.freeze()))
}

/// Reads frames from a blocking stream with one `read(2)` per small frame:
/// a frame's prefix and message usually arrive together, and reading them
/// into a buffer takes one system call where reading the prefix and then the
/// message takes two (for a one-row call, a tenth of its round trip). A
/// message too large for the buffer is read straight into memory of its own,
/// which the next large one reuses once the previous is dropped.
pub struct FrameReader {
    buf: Box<[u8]>,
    /// The unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    large: BytesMut,
}

impl Default for FrameReader {
    /// 4 kB: a call of up to a few dozen rows; a process serving a thousand
    /// rules holds a thousand of these.
    fn default() -> FrameReader {
        FrameReader::with_capacity(4 << 10)
    }
}

impl FrameReader {
    /// A reader whose buffer holds frames of up to `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> FrameReader {
        FrameReader {
            buf: vec![0; capacity.max(HEADER_LEN)].into_boxed_slice(),
            start: 0,
            end: 0,
            large: BytesMut::new(),
        }
    }

    /// The next frame's message; `None` when the peer closed the connection
    /// between frames.
    pub fn next(&mut self, r: &mut impl Read) -> Result<Option<Bytes>, FrameError> {
        loop {
            let unread = &self.buf[self.start..self.end];
            if unread.len() >= HEADER_LEN {
                let len = announced(&unread[..HEADER_LEN])?;
                if unread.len() >= HEADER_LEN + len {
                    let message = Bytes::copy_from_slice(&unread[HEADER_LEN..HEADER_LEN + len]);
                    self.start += HEADER_LEN + len;
                    return Ok(Some(message));
                }
                if HEADER_LEN + len > self.buf.len() {
                    return self.read_large(r, len).map(Some);
                }
            }
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            match r.read(&mut self.buf[self.end..]) {
                Ok(0) if self.end == 0 => return Ok(None),
                Ok(0) => return Err(FrameError::Truncated),
                Ok(n) => self.end += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A message of `len` bytes, larger than the buffer, of which the buffer
    /// holds the prefix and the beginning.
    fn read_large(&mut self, r: &mut impl Read, len: usize) -> Result<Bytes, FrameError> {
        let have = &self.buf[self.start + HEADER_LEN..self.end];
        self.large.clear();
        // Takes the whole allocation back when nothing else holds a part of it.
        self.large.reserve(len);
        self.large.extend_from_slice(have);
        let got = have.len();
        self.large.resize(len, 0);
        (self.start, self.end) = (0, 0);
        r.read_exact(&mut self.large[got..]).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => FrameError::Truncated,
            _ => FrameError::Io(e),
        })?;
        Ok(self.large.split().freeze())
    }

    /// Lets go of a large message's memory (after a large batch, so that
    /// small ones do not keep it).
    pub fn shrink(&mut self) {
        if self.large.capacity() > 1 << 20 {
            self.large = BytesMut::new();
        }
    }
}

/// Writes `message` as one frame, blocking, with one `write(2)` when it fits
/// the socket buffer; `buf` is scratch space kept between calls.
pub fn write_frame(w: &mut impl Write, message: &impl prost::Message, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let len = message.encoded_len();
    buf.clear();
    buf.reserve(HEADER_LEN + len);
    buf.extend_from_slice(&header(len));
    message.encode_raw(buf);
    w.write_all(buf)
}

/// Writes an `ExecResult` as one frame without copying its Arrow message:
/// the other fields are encoded into `buf`, the Arrow field's key and length
/// close it, and the message goes from where it is, in one vectored write
/// when the socket takes it. (Protobuf fields may come in any order.)
pub fn write_result(
    w: &mut impl Write,
    mut result: crate::plugin::v1::ExecResult,
    buf: &mut Vec<u8>,
) -> std::io::Result<()> {
    use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
    use prost::Message;
    let arrow = std::mem::take(&mut result.arrow);
    let arrow_field = if arrow.is_empty() { 0 } else { key_len(5) + encoded_len_varint(arrow.len() as u64) };
    let head = result.encoded_len() + arrow_field;
    buf.clear();
    buf.reserve(HEADER_LEN + head);
    buf.extend_from_slice(&header(head + arrow.len()));
    result.encode_raw(buf);
    if !arrow.is_empty() {
        encode_key(5, WireType::LengthDelimited, buf);
        encode_varint(arrow.len() as u64, buf);
    }
    write_all_parts(w, &[buf, &arrow])
}

/// Writes every byte of `parts`, in order, with vectored writes.
pub fn write_all_parts(w: &mut impl Write, parts: &[&[u8]]) -> std::io::Result<()> {
    let mut parts: Vec<&[u8]> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
    let mut first = 0;
    while first < parts.len() {
        let slices: Vec<std::io::IoSlice<'_>> = parts[first..].iter().map(|p| std::io::IoSlice::new(p)).collect();
        let n = match w.write_vectored(&slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        consume_written(&mut parts, &mut first, n);
    }
    Ok(())
}

/// After a vectored write of `parts[*first..]` took `n` bytes: moves `first`
/// past the parts written whole (and empty ones) and trims the one written
/// in part, for the next write. Shared by the blocking and async writers.
pub fn consume_written<'a>(parts: &mut [&'a [u8]], first: &mut usize, mut n: usize) {
    while *first < parts.len() && n >= parts[*first].len() {
        n -= parts[*first].len();
        *first += 1;
    }
    if n > 0 {
        let part: &'a [u8] = parts[*first];
        parts[*first] = &part[n..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::v1 as pb;
    use prost::Message;

    fn framed(m: &pb::ExecResult) -> Vec<u8> {
        let mut out = Vec::new();
        write_frame(&mut out, m, &mut Vec::new()).unwrap();
        out
    }

    #[test]
    fn frames_round_trip_whole_and_in_pieces() {
        let a = pb::ExecResult { seq: 7, failure: "no".into(), ..Default::default() };
        let b = pb::ExecResult { seq: 8, ..Default::default() };
        let mut bytes = framed(&a);
        bytes.extend(framed(&b));
        // Blocking reads, then EOF between frames.
        let mut r = &bytes[..];
        assert_eq!(pb::ExecResult::decode(read_frame(&mut r).unwrap().unwrap()).unwrap(), a);
        assert_eq!(pb::ExecResult::decode(read_frame(&mut r).unwrap().unwrap()).unwrap(), b);
        assert!(read_frame(&mut r).unwrap().is_none());
        // Byte by byte into a buffer: a frame comes out once it is whole.
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for byte in &bytes {
            buf.extend_from_slice(&[*byte]);
            while let Some(m) = take_frame(&mut buf).unwrap() {
                got.push(pb::ExecResult::decode(m).unwrap());
            }
        }
        assert_eq!(got, vec![a, b]);
        assert!(buf.is_empty());
    }

    #[test]
    fn a_frame_reader_reads_small_frames_whole_and_large_ones_into_reused_memory() {
        let small = pb::ExecResult { seq: 1, failure: "x".repeat(10), ..Default::default() };
        let big = pb::ExecResult { seq: 2, failure: "y".repeat(1000), ..Default::default() };
        let mut bytes = Vec::new();
        for m in [&small, &big, &big, &small, &big, &small] {
            bytes.extend(framed(m));
        }
        // A buffer of 100 bytes: `big` does not fit, `small` does.
        let mut reader = FrameReader::with_capacity(100);
        let mut r = &bytes[..];
        let next = |reader: &mut FrameReader, r: &mut &[u8]| reader.next(r).unwrap().unwrap();
        assert_eq!(pb::ExecResult::decode(next(&mut reader, &mut r)).unwrap(), small);
        let first = next(&mut reader, &mut r);
        let at = first.as_ptr();
        // Still held: the next large frame cannot take its memory.
        let second = next(&mut reader, &mut r);
        assert_ne!(second.as_ptr(), at);
        assert_eq!(pb::ExecResult::decode(first).unwrap(), big);
        let at = second.as_ptr();
        assert_eq!(pb::ExecResult::decode(second).unwrap(), big);
        assert_eq!(pb::ExecResult::decode(next(&mut reader, &mut r)).unwrap(), small);
        let third = next(&mut reader, &mut r);
        assert_eq!(third.as_ptr(), at, "the dropped frame's memory was not reused");
        assert_eq!(pb::ExecResult::decode(third).unwrap(), big);
        assert_eq!(pb::ExecResult::decode(next(&mut reader, &mut r)).unwrap(), small);
        assert!(reader.next(&mut r).unwrap().is_none());

        // One byte at a time, as a slow peer sends it, and a cut frame.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.len().min(1).min(b.len());
                b[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut reader = FrameReader::with_capacity(100);
        let mut t = Trickle(&bytes);
        let mut got = Vec::new();
        while let Some(m) = reader.next(&mut t).unwrap() {
            got.push(pb::ExecResult::decode(m).unwrap().seq);
        }
        assert_eq!(got, vec![1, 2, 2, 1, 2, 1]);
        let cut = &bytes[..bytes.len() - 3];
        let mut reader = FrameReader::with_capacity(100);
        let mut r = cut;
        let results: Vec<_> = std::iter::from_fn(|| Some(reader.next(&mut r))).take(6).collect();
        assert!(matches!(results.last(), Some(Err(FrameError::Truncated))), "{results:?}");
    }

    #[test]
    fn a_result_written_in_parts_decodes_as_the_whole_message() {
        let result = pb::ExecResult {
            seq: 3,
            arrow: Bytes::from(vec![7u8; 100_000]),
            arrow_schema: Bytes::from_static(b"schema"),
            errors: vec![pb::RowError { row: 2, message: "bad".into() }],
            ..Default::default()
        };
        let mut out = Vec::new();
        write_result(&mut out, result.clone(), &mut Vec::new()).unwrap();
        let mut r = &out[..];
        assert_eq!(pb::ExecResult::decode(read_frame(&mut r).unwrap().unwrap()).unwrap(), result);
        assert!(r.is_empty());
        // A writer that takes a few bytes at a time gets every byte in order.
        struct Trickle(Vec<u8>);
        impl Write for Trickle {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                let n = b.len().min(7);
                self.0.extend_from_slice(&b[..n]);
                Ok(n)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut trickle = Trickle(Vec::new());
        write_all_parts(&mut trickle, &[b"abc", b"", b"defghijklmnop", b"q"]).unwrap();
        assert_eq!(trickle.0, b"abcdefghijklmnopq");
    }

    #[test]
    fn bad_prefixes_and_cut_frames_are_errors() {
        let mut big = BytesMut::from(&header(MAX_FRAME + 1)[..]);
        assert!(matches!(take_frame(&mut big), Err(FrameError::TooLarge { .. })));
        let mut flagged = BytesMut::from(&[1u8, 0, 0, 0, 0][..]);
        assert!(matches!(take_frame(&mut flagged), Err(FrameError::Flagged { flag: 1 })));
        let whole = framed(&pb::ExecResult { seq: 1, ..Default::default() });
        let mut cut = &whole[..whole.len() - 1];
        assert!(matches!(read_frame(&mut cut), Err(FrameError::Truncated)));
        let mut half_prefix = &whole[..2];
        assert!(matches!(read_frame(&mut half_prefix), Err(FrameError::Truncated)));
    }
}
