//! The installer against real archives on disk and a real local HTTP server.

use super::*;
use crate::catalog::Catalog;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::io::{Cursor, Write};
use std::net::TcpListener;
#[cfg(unix)]
use std::os::unix::fs::PermissionsExt;

const EXE: &[u8] = b"#!/bin/sh\necho plugin\n";

/// Recognises the expected error.
type Check = fn(&InstallError) -> bool;
const META: &str = r#"{"about": {"trial": true}, "properties": [{"name": "interval"}]}"#;

/// A zip with `(path, data, unix mode)` entries.
fn zip_archive(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data, mode) in entries {
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(*mode);
        writer.start_file(*name, options).unwrap();
        writer.write_all(data).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

enum T<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    HardLink(&'a str, &'a str),
}

/// A tar.gz whose entry names are written raw (the `tar` builder would refuse the unsafe ones).
fn tar_gz(entries: &[T]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    for entry in entries {
        let (name, data, ty, link, mode): (&str, &[u8], _, &str, u32) = match entry {
            T::File(name, data) => (name, data, tar::EntryType::Regular, "", 0o644),
            T::Dir(name) => (name, b"", tar::EntryType::Directory, "", 0o755),
            T::Symlink(name, target) => (name, b"", tar::EntryType::Symlink, target, 0o777),
            T::HardLink(name, target) => (name, b"", tar::EntryType::Link, target, 0o644),
        };
        let mut header = tar::Header::new_gnu();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_entry_type(ty);
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

/// Writes `bytes` as an archive file outside the plugins folder and returns its absolute path.
fn archive_file(scratch: &Path, bytes: &[u8]) -> String {
    let path = scratch.join(format!("archive-{:016x}", rand::random::<u64>()));
    fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_owned()
}

fn request(kind: PluginKind, name: &str, file: &str, sha256: Option<&str>) -> InstallRequest {
    InstallRequest { kind, name: name.to_owned(), file: file.to_owned(), sha256: sha256.map(str::to_owned) }
}

/// Every name in the kind folder (hidden ones included); empty when the folder does not exist.
/// The kind folder's files, temporaries included, install records (checked
/// by their own test) left out.
fn listing(plugins: &Path, kind: PluginKind) -> BTreeSet<String> {
    match fs::read_dir(plugins.join(kind.dir_name())) {
        Ok(read) => read
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| !(name.starts_with('.') && name.ends_with(".install.json")))
            .collect(),
        Err(err) if err.kind() == io::ErrorKind::NotFound => BTreeSet::new(),
        Err(err) => panic!("{err}"),
    }
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

struct Setup {
    _root: tempfile::TempDir,
    plugins: PathBuf,
    scratch: PathBuf,
}

fn setup() -> Setup {
    let root = tempfile::tempdir().unwrap();
    let plugins = root.path().join("plugins");
    let scratch = root.path().join("scratch");
    fs::create_dir_all(&scratch).unwrap();
    Setup { plugins, scratch, _root: root }
}

#[test]
fn zip_install_happy_path() {
    let s = setup();
    let bytes = zip_archive(&[
        ("hello", EXE, 0o644),
        ("hello.json", META.as_bytes(), 0o600),
        ("README.md", b"docs", 0o644),
        ("docs/", b"", 0o755),
        ("docs/hello", b"not the executable", 0o755),
    ]);
    let file = archive_file(&s.scratch, &bytes);
    let installed = install(&s.plugins, &request(PluginKind::Source, "hello", &file, None)).unwrap();
    let dir = s.plugins.join("sources");
    assert_eq!(installed.name, "hello");
    assert_eq!(installed.kind, PluginKind::Source);
    assert_eq!(installed.files, [dir.join("hello"), dir.join("hello.json")]);
    assert_eq!(fs::read(dir.join("hello")).unwrap(), EXE);
    assert_eq!(fs::read_to_string(dir.join("hello.json")).unwrap(), META);
    #[cfg(unix)]
    {
        assert_eq!(mode(&dir.join("hello")), 0o755);
        assert_eq!(mode(&dir.join("hello.json")), 0o644);
    }
    assert_eq!(listing(&s.plugins, PluginKind::Source), set(&["hello", "hello.json"]));
    let json = serde_json::to_value(&installed).unwrap();
    assert_eq!(json["kind"], "source");

    let catalog = Catalog::scan(&s.plugins);
    assert!(catalog.errors().is_empty(), "{:?}", catalog.errors());
    let plugin = catalog.get(PluginKind::Source, "hello").unwrap();
    assert!(plugin.metadata.as_ref().unwrap().about.is_some());
}

#[test]
fn tar_gz_install_with_version() {
    let s = setup();
    let bytes = tar_gz(&[
        T::Dir("./"),
        T::File("./foo@v1.2.0", EXE),
        T::File("./LICENSE", b"Apache-2.0"),
        T::Dir("./src/"),
        T::File("./src/main.go", b"package main"),
    ]);
    let file = format!("file://{}", archive_file(&s.scratch, &bytes));
    let installed = install(&s.plugins, &request(PluginKind::Function, "foo", &file, None)).unwrap();
    let path = s.plugins.join("functions").join("foo@v1.2.0");
    assert_eq!(installed.files, std::slice::from_ref(&path));
    assert_eq!(fs::read(&path).unwrap(), EXE);
    #[cfg(unix)]
    assert_eq!(mode(&path), 0o755, "installed executable whatever the archive's mode");
    assert_eq!(listing(&s.plugins, PluginKind::Function), set(&["foo@v1.2.0"]));
    let catalog = Catalog::scan(&s.plugins);
    assert_eq!(catalog.get(PluginKind::Function, "foo").unwrap().version.as_ref().unwrap().as_str(), "1.2.0");
}

#[test]
fn archive_name_may_differ_in_the_first_letter_case() {
    let s = setup();
    let bytes = zip_archive(&[("MySink@2", EXE, 0o755), ("MySink.json", b"{}", 0o644)]);
    let file = archive_file(&s.scratch, &bytes);
    let installed = install(&s.plugins, &request(PluginKind::Sink, "mySink", &file, None)).unwrap();
    let dir = s.plugins.join("sinks");
    assert_eq!(installed.files, [dir.join("mySink@2"), dir.join("mySink.json")]);
}

#[test]
fn checksum_match_and_mismatch() {
    let s = setup();
    let bytes = zip_archive(&[("sum", EXE, 0o755)]);
    let file = archive_file(&s.scratch, &bytes);
    let good = hex(&Sha256::digest(&bytes));

    let wrong = "0".repeat(64);
    let err = install(&s.plugins, &request(PluginKind::Sink, "sum", &file, Some(&wrong))).unwrap_err();
    assert!(matches!(err, InstallError::ChecksumMismatch { .. }), "{err}");
    assert!(err.is_client_error());
    let message = err.to_string();
    assert!(message.contains(&wrong) && message.contains(&good), "{message}");
    assert!(listing(&s.plugins, PluginKind::Sink).is_empty());

    let err = install(&s.plugins, &request(PluginKind::Sink, "sum", &file, Some("abc"))).unwrap_err();
    assert!(matches!(err, InstallError::InvalidSha256 { .. }), "{err}");

    let upper = good.to_ascii_uppercase();
    let installed = install(&s.plugins, &request(PluginKind::Sink, "sum", &file, Some(&upper))).unwrap();
    assert_eq!(installed.files, [s.plugins.join("sinks").join("sum")]);
}

#[test]
fn escaping_entries_are_refused_before_writing() {
    let s = setup();
    let dir = s.plugins.join("sources");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("existing"), "x").unwrap();
    let before = listing(&s.plugins, PluginKind::Source);

    let mut archives: Vec<(String, Vec<u8>)> = Vec::new();
    for bad in ["../evil", "/abs", "a/../../b", "ok/../../../etc/passwd", "..\\evil"] {
        // The executable comes first, so only the up-front check keeps it from being written.
        archives.push((bad.to_owned(), zip_archive(&[("evil", EXE, 0o755), (bad, b"x", 0o644)])));
        archives.push((bad.to_owned(), tar_gz(&[T::File("evil", EXE), T::File(bad, b"x")])));
    }
    archives.push(("link".to_owned(), tar_gz(&[T::File("evil", EXE), T::Symlink("link", "/etc/passwd")])));
    archives.push(("sub/hard".to_owned(), tar_gz(&[T::File("evil", EXE), T::HardLink("sub/hard", "/etc/x")])));
    archives.push(("evil".to_owned(), tar_gz(&[T::Symlink("evil", "/bin/sh")])));
    let mut zip_link = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    zip_link.start_file("evil", options).unwrap();
    zip_link.write_all(EXE).unwrap();
    zip_link.add_symlink("link", "/etc/passwd", options).unwrap();
    archives.push(("link".to_owned(), zip_link.finish().unwrap().into_inner()));

    for (entry, bytes) in archives {
        let file = archive_file(&s.scratch, &bytes);
        let err = install(&s.plugins, &request(PluginKind::Source, "evil", &file, None)).unwrap_err();
        match &err {
            InstallError::UnsafeEntry { entry: named, .. } => assert_eq!(named, &entry, "{err}"),
            other => panic!("{entry}: expected UnsafeEntry, got {other}"),
        }
        assert!(err.is_client_error());
        assert!(err.to_string().contains(&format!("{entry:?}")), "{err}");
        assert_eq!(listing(&s.plugins, PluginKind::Source), before, "after {entry}");
    }
    assert!(!s.scratch.join("evil").exists() && !s.plugins.join("evil").exists());
}

#[test]
fn bad_plugin_names_are_refused() {
    let s = setup();
    let file = archive_file(&s.scratch, &zip_archive(&[("x", EXE, 0o755)]));
    for name in ["", "bad name", "../x", "a/b", "a@1", "a.json", "ä"] {
        let err = install(&s.plugins, &request(PluginKind::Source, name, &file, None)).unwrap_err();
        assert!(matches!(err, InstallError::InvalidName { .. }), "{name}: {err}");
        assert!(err.is_client_error());
        assert!(err.to_string().contains("^[A-Za-z0-9_-]+$"), "{err}");
    }
    assert!(!s.plugins.exists());
}

#[test]
fn archive_without_the_executable_is_refused() {
    let s = setup();
    let cases = [
        zip_archive(&[("other", EXE, 0o755), ("wrapper/foo", EXE, 0o755), ("foo.json", b"{}", 0o644)]),
        tar_gz(&[T::Dir("foo/"), T::File("foo/foo", EXE)]),
        tar_gz(&[]),
    ];
    for bytes in cases {
        let file = archive_file(&s.scratch, &bytes);
        let err = install(&s.plugins, &request(PluginKind::Sink, "foo", &file, None)).unwrap_err();
        assert!(matches!(err, InstallError::MissingExecutable { .. }), "{err}");
        assert!(err.is_client_error());
    }
    assert!(listing(&s.plugins, PluginKind::Sink).is_empty());
}

#[test]
fn ambiguous_or_invalid_contents_are_refused() {
    let s = setup();
    let cases: [(Vec<u8>, Check); 5] = [
        (
            zip_archive(&[("foo", EXE, 0o755), ("foo@1", EXE, 0o755)]),
            |e| matches!(e, InstallError::MultipleExecutables { entries, .. } if entries.len() == 2),
        ),
        (tar_gz(&[T::File("foo@", EXE)]), |e| matches!(e, InstallError::BadVersion { .. })),
        (zip_archive(&[("foo", EXE, 0o755), ("foo.json", b"{not json", 0o644)]), |e| {
            matches!(e, InstallError::BadMetadata { .. })
        }),
        (tar_gz(&[T::File("foo", EXE), T::File("foo.json", b"{}"), T::File("Foo.json", b"{}")]), |e| {
            matches!(e, InstallError::MultipleMetadata { .. })
        }),
        (tar_gz(&[T::Dir("foo@1/")]), |e| matches!(e, InstallError::MissingExecutable { .. })),
    ];
    for (bytes, expected) in cases {
        let file = archive_file(&s.scratch, &bytes);
        let err = install(&s.plugins, &request(PluginKind::Sink, "foo", &file, None)).unwrap_err();
        assert!(expected(&err), "unexpected {err}");
        assert!(err.is_client_error());
    }
    assert!(listing(&s.plugins, PluginKind::Sink).is_empty());
}

#[test]
fn install_scripts_are_refused() {
    let s = setup();
    for bytes in [
        zip_archive(&[("foo", EXE, 0o755), ("install.sh", b"rm -rf /", 0o755)]),
        tar_gz(&[T::File("foo", EXE), T::File("scripts/install.sh", b"rm -rf /")]),
    ] {
        let file = archive_file(&s.scratch, &bytes);
        let err = install(&s.plugins, &request(PluginKind::Source, "foo", &file, None)).unwrap_err();
        assert!(matches!(err, InstallError::InstallScript { .. }), "{err}");
        assert!(err.to_string().contains("install scripts are not supported"), "{err}");
        assert!(err.is_client_error());
    }
    assert!(listing(&s.plugins, PluginKind::Source).is_empty());
}

#[test]
fn not_an_archive_is_refused() {
    let s = setup();
    let mut gzipped_text = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzipped_text.write_all(&[b'x'; 2048]).unwrap();
    let cases: [(Vec<u8>, Check); 4] = [
        (b"#!/bin/sh\necho not an archive\n".to_vec(), |e| matches!(e, InstallError::NotAnArchive { .. })),
        (Vec::new(), |e| matches!(e, InstallError::NotAnArchive { .. })),
        (b"PK\x03\x04 truncated".to_vec(), |e| matches!(e, InstallError::BadArchive { .. })),
        (gzipped_text.finish().unwrap(), |e| matches!(e, InstallError::BadArchive { .. })),
    ];
    for (bytes, expected) in cases {
        let file = archive_file(&s.scratch, &bytes);
        let err = install(&s.plugins, &request(PluginKind::Source, "foo", &file, None)).unwrap_err();
        assert!(expected(&err), "unexpected {err}");
        assert!(err.is_client_error());
        assert!(err.to_string().contains(&file), "{err}");
    }
    assert!(listing(&s.plugins, PluginKind::Source).is_empty());
}

#[test]
fn unsupported_sources_are_refused() {
    let s = setup();
    let missing = s.scratch.join("missing.zip");
    for file in ["ftp://example.com/a.zip", "relative/a.zip", "a.zip", "file://host/a.zip", "s3://b/a.zip", ""] {
        let err = install(&s.plugins, &request(PluginKind::Sink, "a", file, None)).unwrap_err();
        assert!(matches!(err, InstallError::UnsupportedSource { .. }), "{file}: {err}");
        assert!(err.is_client_error());
    }
    let err = install(&s.plugins, &request(PluginKind::Sink, "a", missing.to_str().unwrap(), None)).unwrap_err();
    assert!(matches!(err, InstallError::ReadFile { .. }) && err.is_client_error(), "{err}");
    assert!(err.to_string().contains("missing.zip"), "{err}");

    // A percent-encoded file URL is decoded.
    let spaced = s.scratch.join("with space.zip");
    fs::write(&spaced, zip_archive(&[("a", EXE, 0o755)])).unwrap();
    let url = format!("file://{}", spaced.to_str().unwrap().replace(' ', "%20"));
    install(&s.plugins, &request(PluginKind::Sink, "a", &url, None)).unwrap();
}

/// Serves one HTTP/1.1 response on 127.0.0.1 and returns the base URL and the request line it received.
fn serve_once(status: &'static str, body: Vec<u8>) -> (String, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut request_line = String::new();
        reader.read_line(&mut request_line).unwrap();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                break;
            }
        }
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(&body).unwrap();
        stream.flush().unwrap();
        request_line.trim_end().to_owned()
    });
    (base, handle)
}

#[test]
fn http_install_and_404() {
    let s = setup();
    let bytes = tar_gz(&[T::File("web@1.0.0", EXE), T::File("web.json", b"{}")]);
    let sha = hex(&Sha256::digest(&bytes));
    let (base, server) = serve_once("200 OK", bytes);
    let url = format!("{base}/plugins/web.tgz");
    let installed = install(&s.plugins, &request(PluginKind::Source, "web", &url, Some(&sha))).unwrap();
    assert_eq!(server.join().unwrap(), "GET /plugins/web.tgz HTTP/1.1");
    let dir = s.plugins.join("sources");
    assert_eq!(installed.files, [dir.join("web@1.0.0"), dir.join("web.json")]);
    assert_eq!(fs::read(dir.join("web@1.0.0")).unwrap(), EXE);

    let (base, server) = serve_once("404 Not Found", b"no such file".to_vec());
    let url = format!("{base}/missing.zip");
    let err = install(&s.plugins, &request(PluginKind::Source, "other", &url, None)).unwrap_err();
    server.join().unwrap();
    assert!(matches!(err, InstallError::HttpStatus { status: 404, .. }), "{err}");
    assert!(err.is_client_error());
    assert!(err.to_string().contains(&url), "{err}");

    // Nothing listens on a port just released.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/a.zip");
    let err = install(&s.plugins, &request(PluginKind::Source, "other", &url, None)).unwrap_err();
    assert!(matches!(err, InstallError::Download { .. }) && err.to_string().contains(&url), "{err}");
    assert_eq!(listing(&s.plugins, PluginKind::Source), set(&["web.json", "web@1.0.0"]));
}

#[test]
fn already_installed_is_refused() {
    let s = setup();
    let first = archive_file(&s.scratch, &zip_archive(&[("dup@1", b"first", 0o755), ("dup.json", b"{}", 0o644)]));
    install(&s.plugins, &request(PluginKind::Sink, "dup", &first, None)).unwrap();
    let second =
        archive_file(&s.scratch, &zip_archive(&[("dup@1", b"second", 0o755), ("dup.json", br#"{"libs": []}"#, 0o644)]));
    for name in ["dup", "Dup"] {
        let err = install(&s.plugins, &request(PluginKind::Sink, name, &second, None)).unwrap_err();
        assert!(matches!(err, InstallError::AlreadyInstalled { .. }), "{err}");
        assert!(err.is_client_error());
        assert!(err.to_string().contains("already installed"), "{err}");
    }
    let dir = s.plugins.join("sinks");
    assert_eq!(fs::read(dir.join("dup@1")).unwrap(), b"first");
    assert_eq!(fs::read(dir.join("dup.json")).unwrap(), b"{}");
    assert_eq!(listing(&s.plugins, PluginKind::Sink), set(&["dup.json", "dup@1"]));

    // A new version installs beside the old one and brings its metadata.
    let newer = archive_file(&s.scratch, &zip_archive(&[("dup@2", b"new", 0o755), ("dup.json", b"[]", 0o644)]));
    install(&s.plugins, &request(PluginKind::Sink, "dup", &newer, None)).unwrap();
    assert_eq!(fs::read(dir.join("dup.json")).unwrap(), b"[]");
    assert_eq!(listing(&s.plugins, PluginKind::Sink), set(&["dup.json", "dup@1", "dup@2"]));
}

#[test]
fn local_failures_are_not_client_errors() {
    let s = setup();
    let file = archive_file(&s.scratch, &zip_archive(&[("x", EXE, 0o755)]));
    // The plugins "folder" is a file: the kind folder cannot be created.
    fs::write(&s.plugins, "").unwrap();
    let err = install(&s.plugins, &request(PluginKind::Sink, "x", &file, None)).unwrap_err();
    assert!(matches!(err, InstallError::Io { .. }), "{err}");
    assert!(!err.is_client_error());
}

#[test]
fn remove_deletes_every_version_and_metadata() {
    let s = setup();
    let dir = s.plugins.join("sources");
    fs::create_dir_all(&dir).unwrap();
    for name in ["MySource@1", "mySource@2", "mySource", "mySource.json", "mySourceX", "other", ".mySource@3"] {
        fs::write(dir.join(name), "x").unwrap();
    }
    fs::create_dir(dir.join("mySource@dir")).unwrap();
    let removed = remove(&s.plugins, PluginKind::Source, "MySource").unwrap();
    assert_eq!(
        removed,
        [dir.join("MySource@1"), dir.join("mySource"), dir.join("mySource@2"), dir.join("mySource.json")]
    );
    assert_eq!(listing(&s.plugins, PluginKind::Source), set(&[".mySource@3", "mySource@dir", "mySourceX", "other"]));

    let err = remove(&s.plugins, PluginKind::Source, "mySource").unwrap_err();
    assert!(matches!(err, InstallError::NotFound { .. }) && err.is_client_error(), "{err}");
    let err = remove(&s.plugins, PluginKind::Source, "unknown").unwrap_err();
    assert!(matches!(err, InstallError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("\"unknown\""), "{err}");
    let err = remove(&s.plugins, PluginKind::Sink, "other").unwrap_err();
    assert!(matches!(err, InstallError::NotFound { .. }), "missing kind folder: {err}");
    let err = remove(&s.plugins, PluginKind::Source, "../other").unwrap_err();
    assert!(matches!(err, InstallError::InvalidName { .. }), "{err}");
}

#[test]
fn install_then_remove_round_trip() {
    let s = setup();
    for version in ["1.0.0", "2.0.0"] {
        let name = format!("rt@{version}");
        let file = archive_file(&s.scratch, &tar_gz(&[T::File(&name, EXE), T::File("rt.json", b"{}")]));
        install(&s.plugins, &request(PluginKind::Function, "rt", &file, None)).unwrap();
    }
    let removed = remove(&s.plugins, PluginKind::Function, "rt").unwrap();
    assert_eq!(removed.len(), 3, "{removed:?}");
    assert!(listing(&s.plugins, PluginKind::Function).is_empty());
}

#[test]
fn an_install_records_its_request_and_a_removal_forgets_it() {
    let s = setup();
    let file = archive_file(&s.scratch, &zip_archive(&[("rec", EXE, 0o755)]));
    install(&s.plugins, &request(PluginKind::Sink, "rec", &file, None)).unwrap();
    let recorded = install_source(&s.plugins, Some(PluginKind::Sink), "rec").expect("recorded");
    assert_eq!((recorded.name.as_str(), recorded.file.as_str(), recorded.sha256), ("rec", file.as_str(), None));
    assert_eq!(install_source(&s.plugins, Some(PluginKind::Source), "rec"), None, "per kind");
    remove(&s.plugins, PluginKind::Sink, "rec").unwrap();
    assert_eq!(install_source(&s.plugins, Some(PluginKind::Sink), "rec"), None);
    assert!(fs::read_dir(s.plugins.join("sinks")).unwrap().next().is_none(), "nothing left");
}
