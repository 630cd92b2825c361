//! Fetching an archive: a local path, a `file://` URL or an HTTP(S) download, bounded in size and time.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::{InstallError, DOWNLOAD_TIMEOUT, MAX_ARCHIVE_BYTES};

pub(super) enum Source {
    Local(PathBuf),
    Http(String),
}

pub(super) fn parse_source(file: &str) -> Result<Source, InstallError> {
    let unsupported = |reason| InstallError::UnsupportedSource { file: file.to_owned(), reason };
    let lower = file.get(..8).unwrap_or(file).to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Ok(Source::Http(file.to_owned()));
    }
    if lower.starts_with("file://") {
        let rest = &file["file://".len()..];
        let rest = rest.strip_prefix("localhost").unwrap_or(rest);
        if !rest.starts_with('/') {
            return Err(unsupported("a file:// URL must hold an absolute path on this machine (file:///path)"));
        }
        let decoded = percent_decode(rest).ok_or_else(|| unsupported("invalid percent-encoding in the file:// URL"))?;
        return Ok(Source::Local(PathBuf::from(decoded)));
    }
    if Path::new(file).is_absolute() {
        return Ok(Source::Local(PathBuf::from(file)));
    }
    let has_scheme = file.split_once(':').is_some_and(|(scheme, _)| {
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    });
    if has_scheme {
        Err(unsupported("only absolute paths and file://, http:// and https:// URLs are supported"))
    } else {
        Err(unsupported(
            "relative paths are not supported; give an absolute path or a file://, http:// or https:// URL",
        ))
    }
}

/// Decodes `%XX` escapes; `None` when an escape is malformed or the result is not UTF-8.
pub(super) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let digits = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(digits, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The archive's bytes, at most [`MAX_ARCHIVE_BYTES`].
pub(super) fn fetch(file: &str) -> Result<Vec<u8>, InstallError> {
    match parse_source(file)? {
        Source::Local(path) => read_local(file, &path),
        Source::Http(url) => download(&url),
    }
}

pub(super) fn read_local(file: &str, path: &Path) -> Result<Vec<u8>, InstallError> {
    let read_error = |source| InstallError::ReadFile { path: path.to_owned(), source };
    let opened = fs::File::open(path).map_err(read_error)?;
    let meta = opened.metadata().map_err(read_error)?;
    if !meta.is_file() {
        return Err(read_error(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file")));
    }
    let too_large = || InstallError::TooLarge { file: file.to_owned(), limit: MAX_ARCHIVE_BYTES };
    if meta.len() > MAX_ARCHIVE_BYTES {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    opened.take(MAX_ARCHIVE_BYTES + 1).read_to_end(&mut bytes).map_err(read_error)?;
    if bytes.len() as u64 > MAX_ARCHIVE_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}

pub(super) fn download(url: &str) -> Result<Vec<u8>, InstallError> {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(DOWNLOAD_TIMEOUT))
        .http_status_as_error(false)
        // The checksum is over the archive as served: no transparent decompression.
        .accept_encoding("identity")
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let failed = |err: ureq::Error| match err {
        ureq::Error::BodyExceedsLimit(_) => InstallError::TooLarge { file: url.to_owned(), limit: MAX_ARCHIVE_BYTES },
        other => InstallError::Download { url: url.to_owned(), reason: other.to_string() },
    };
    let mut response = agent.get(url).call().map_err(failed)?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(InstallError::HttpStatus { url: url.to_owned(), status });
    }
    response.body_mut().with_config().limit(MAX_ARCHIVE_BYTES).read_to_vec().map_err(failed)
}
