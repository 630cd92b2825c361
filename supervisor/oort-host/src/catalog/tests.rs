//! The catalog against real plugins folders in temporary directories.

use super::*;
use std::cmp::Ordering;
use std::os::unix::fs::PermissionsExt;

/// Writes `<root>/<kind dir>/<file>` with `contents` and `mode`.
fn write(root: &Path, kind: PluginKind, file: &str, contents: &str, mode: u32) -> PathBuf {
    let dir = root.join(kind.dir_name());
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join(file);
    fs::write(&path, contents).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    path
}

fn plugin(root: &Path, kind: PluginKind, file: &str) -> PathBuf {
    write(root, kind, file, "#!/bin/sh\n", 0o755)
}

fn metadata(root: &Path, kind: PluginKind, file: &str, json: &str) -> PathBuf {
    write(root, kind, file, json, 0o644)
}

fn messages(catalog: &Catalog) -> Vec<String> {
    catalog.errors().iter().map(ToString::to_string).collect()
}

/// The newest of `versions` (as written after `@`) is reported as `expected`.
fn check(versions: &[&str], expected: &str) {
    let newest = versions.iter().map(|v| Version::parse(v)).max().unwrap();
    assert_eq!(newest.as_str(), expected, "newest of {versions:?}");
    let reversed = versions.iter().rev().map(|v| Version::parse(v)).max().unwrap();
    assert_eq!(reversed, newest, "newest of {versions:?} depends on the input order");
}

#[test]
fn version_order_table() {
    check(&["1.9.0", "1.10.0"], "1.10.0");
    check(&["v1.9.0", "v1.10.0"], "1.10.0");
    check(&["1.0.0-rc.1", "1.0.0"], "1.0.0");
    check(&["20200331", "9"], "20200331");
    check(&["v1.0.0"], "1.0.0");
    check(&["alpha", "beta"], "beta");
    check(&["1.0.0", "zzz"], "1.0.0");
    check(&["1.2.0", "20200331"], "20200331");
    check(&["1.2", "1.1.9"], "1.2");
    check(&["2", "1.99.99"], "2");
    check(&["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-beta.2", "1.0.0-beta.11"], "1.0.0-beta.11");
    check(&["99999999999999999999999", "99999999999999999999998"], "99999999999999999999999");
    check(&["1.2.3.4", "0.0.1"], "0.0.1");
    check(&["vintage", "v"], "vintage");
}

#[test]
fn leading_v_is_dropped_only_before_a_digit() {
    for (written, reported) in
        [("v1.0.0", "1.0.0"), ("V2", "2"), ("20200331", "20200331"), ("vintage", "vintage"), ("v", "v")]
    {
        assert_eq!(Version::parse(written).as_str(), reported);
        assert_eq!(Version::parse(written).to_string(), reported);
    }
    assert_eq!(Version::parse("vv1").as_str(), "vv1");
}

#[test]
fn version_order_is_total() {
    let written = [
        "1.0.0",
        "1.0.0+build",
        "v1.0.0-rc.1",
        "1.0.0-rc.2",
        "1.10.0",
        "1.9",
        "2",
        "01",
        "1",
        "20200331",
        "99999999999999999999999",
        "alpha",
        "beta",
        "vintage",
        "1.2.3.4",
        "zzz",
    ];
    let versions: Vec<Version> = written.iter().map(|v| Version::parse(v)).collect();
    for a in &versions {
        assert_eq!(a.cmp(a), Ordering::Equal);
        for b in &versions {
            assert_eq!(a.cmp(b), b.cmp(a).reverse(), "antisymmetry of {a} and {b}");
            assert_eq!(a.cmp(b) == Ordering::Equal, a == b, "equality of {a} and {b}");
            for c in &versions {
                if a <= b && b <= c {
                    assert!(a <= c, "transitivity of {a} <= {b} <= {c}");
                }
            }
        }
    }
    let mut expected = versions.clone();
    expected.sort();
    for rotation in 0..versions.len() {
        for reverse in [false, true] {
            let mut permuted = versions.clone();
            permuted.rotate_left(rotation);
            if reverse {
                permuted.reverse();
            }
            permuted.sort();
            assert_eq!(permuted, expected);
        }
    }
    let sorted: Vec<&str> = expected.iter().map(Version::as_str).collect();
    assert_eq!(
        sorted,
        [
            "1.2.3.4",
            "alpha",
            "beta",
            "vintage",
            "zzz",
            "1.0.0-rc.1",
            "1.0.0-rc.2",
            "01",
            "1",
            "1.0.0",
            "1.0.0+build",
            "1.9",
            "1.10.0",
            "2",
            "20200331",
            "99999999999999999999999",
        ]
    );
}

#[test]
fn newest_version_takes_effect() {
    let root = tempfile::tempdir().unwrap();
    plugin(root.path(), PluginKind::Source, "random@v1.2.0");
    plugin(root.path(), PluginKind::Source, "random@v1.10.0");
    let catalog = Catalog::scan(root.path());
    assert!(catalog.errors().is_empty(), "{:?}", messages(&catalog));
    let random = catalog.get(PluginKind::Source, "random").unwrap();
    assert_eq!(random.name, "random");
    assert_eq!(random.version.as_ref().unwrap().as_str(), "1.10.0");
    assert!(random.path.ends_with("random@v1.10.0"), "{}", random.path.display());
    assert_eq!(random.other_versions, ["1.2.0"]);
    assert_eq!(catalog.list(PluginKind::Source).len(), 1);
    assert!(catalog.list(PluginKind::Sink).is_empty());
    assert!(catalog.get(PluginKind::Sink, "random").is_none());
}

#[test]
fn first_letter_of_a_name_matches_either_case() {
    let root = tempfile::tempdir().unwrap();
    plugin(root.path(), PluginKind::Source, "MySource@v1.0.0");
    let catalog = Catalog::scan(root.path());
    assert!(catalog.errors().is_empty(), "{:?}", messages(&catalog));
    for lookup in ["mySource", "MySource"] {
        let found = catalog.get(PluginKind::Source, lookup).unwrap();
        assert_eq!(found.name, "MySource");
        assert_eq!(found.version.as_ref().unwrap().as_str(), "1.0.0");
    }
    assert!(catalog.get(PluginKind::Source, "mysource").is_none());

    let root = tempfile::tempdir().unwrap();
    plugin(root.path(), PluginKind::Source, "MySource@20200331");
    let catalog = Catalog::scan(root.path());
    let found = catalog.get(PluginKind::Source, "mySource").unwrap();
    assert_eq!(found.version.as_ref().unwrap().as_str(), "20200331");

    // Two spellings of one plugin are versions of it.
    let root = tempfile::tempdir().unwrap();
    plugin(root.path(), PluginKind::Source, "MySource@v1.0.0");
    plugin(root.path(), PluginKind::Source, "mySource@v2.0.0");
    let catalog = Catalog::scan(root.path());
    assert_eq!(catalog.list(PluginKind::Source).len(), 1);
    let found = catalog.get(PluginKind::Source, "MySource").unwrap();
    assert_eq!(found.name, "mySource");
    assert_eq!(found.version.as_ref().unwrap().as_str(), "2.0.0");
    assert_eq!(found.other_versions, ["1.0.0"]);
}

#[test]
fn bad_files_are_refused_by_name() {
    let root = tempfile::tempdir().unwrap();
    let ok = plugin(root.path(), PluginKind::Sink, "good_one-2@1.0.0");
    let mut bad = Vec::new();
    for file in ["bad name", "foo.so", "a@", "b@@1", "x.sh", "@1"] {
        bad.push(plugin(root.path(), PluginKind::Sink, file));
    }
    let noexec = write(root.path(), PluginKind::Sink, "noexec", "data", 0o644);
    bad.push(noexec.clone());
    plugin(root.path(), PluginKind::Sink, ".hidden");
    fs::create_dir_all(root.path().join("sinks").join("subdir")).unwrap();

    let catalog = Catalog::scan(root.path());
    let errors = messages(&catalog);
    assert_eq!(errors.len(), bad.len(), "{errors:?}");
    for path in &bad {
        let shown = path.display().to_string();
        assert!(errors.iter().any(|e| e.contains(&shown)), "no error names {shown}: {errors:?}");
    }
    let listed: Vec<&str> = catalog.list(PluginKind::Sink).iter().map(|p| p.name.as_str()).collect();
    assert_eq!(listed, ["good_one-2"]);
    assert_eq!(catalog.get(PluginKind::Sink, "good_one-2").unwrap().path, ok);

    let kinds: Vec<_> = catalog
        .errors()
        .iter()
        .map(|e| match e {
            CatalogError::InvalidName { name, .. } => format!("name {name}"),
            CatalogError::EmptyVersion { .. } => "empty".to_owned(),
            CatalogError::NotExecutable { .. } => "noexec".to_owned(),
            other => panic!("unexpected {other}"),
        })
        .collect();
    // Errors come in file name order.
    assert_eq!(kinds, ["name ", "empty", "name b@", "name bad name", "name foo.so", "noexec", "name x.sh"]);
    let noexec_error = catalog.errors().iter().find(|e| matches!(e, CatalogError::NotExecutable { .. })).unwrap();
    assert_eq!(noexec_error.to_string(), format!("plugin file {} is not executable", noexec.display()));
}

#[test]
fn missing_folders_are_empty() {
    let root = tempfile::tempdir().unwrap();
    let catalog = Catalog::scan(&root.path().join("does-not-exist"));
    assert!(catalog.errors().is_empty());
    for kind in PluginKind::ALL {
        assert!(catalog.list(kind).is_empty());
    }
    // A kind "folder" that is a file cannot be read.
    fs::write(root.path().join("sources"), "").unwrap();
    let catalog = Catalog::scan(root.path());
    assert!(matches!(catalog.errors(), [CatalogError::ReadDir { .. }]), "{:?}", messages(&catalog));
}

#[test]
fn unversioned_and_versioned_files_coexist() {
    let root = tempfile::tempdir().unwrap();
    plugin(root.path(), PluginKind::Sink, "file");
    plugin(root.path(), PluginKind::Sink, "file@0.0.1");
    plugin(root.path(), PluginKind::Sink, "other");
    let catalog = Catalog::scan(root.path());
    assert!(catalog.errors().is_empty(), "{:?}", messages(&catalog));
    let file = catalog.get(PluginKind::Sink, "file").unwrap();
    assert_eq!(file.version.as_ref().unwrap().as_str(), "0.0.1");
    assert!(file.path.ends_with("file@0.0.1"));
    assert_eq!(file.other_versions, [""]);
    let other = catalog.get(PluginKind::Sink, "other").unwrap();
    assert!(other.version.is_none());
    assert!(other.other_versions.is_empty());
    let names: Vec<&str> = catalog.list(PluginKind::Sink).iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["file", "other"]);
}

#[test]
fn sha256_and_json_shape() {
    let root = tempfile::tempdir().unwrap();
    write(root.path(), PluginKind::Source, "hello@v1.0.0", "hello", 0o700);
    write(root.path(), PluginKind::Sink, "plain", "", 0o555);
    let catalog = Catalog::scan(root.path());
    let hello = catalog.get(PluginKind::Source, "hello").unwrap();
    assert_eq!(hello.sha256, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
    let json = serde_json::to_value(hello).unwrap();
    assert_eq!(json["kind"], "source");
    assert_eq!(json["version"], "1.0.0");
    assert_eq!(json["metadata"], serde_json::Value::Null);
    let plain = serde_json::to_value(catalog.get(PluginKind::Sink, "plain").unwrap()).unwrap();
    assert_eq!(plain["version"], serde_json::Value::Null);
    assert_eq!(plain["sha256"], "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

#[test]
fn a_rescan_hashes_only_changed_files() {
    let root = tempfile::tempdir().unwrap();
    let a = write(root.path(), PluginKind::Source, "a@v1.0.0", "one", 0o700);
    write(root.path(), PluginKind::Sink, "b", "two", 0o700);
    let first = Catalog::scan(root.path());
    assert_eq!(first.files_hashed(), 2);
    let second = Catalog::rescan(root.path(), &first);
    assert_eq!(second.files_hashed(), 0, "nothing changed, nothing is read");
    assert_eq!(second.get(PluginKind::Source, "a").unwrap().sha256, first.get(PluginKind::Source, "a").unwrap().sha256);
    // Same size, same mtime: the ctime still tells.
    let mtime = fs::metadata(&a).unwrap().modified().unwrap();
    fs::write(&a, "ONE").unwrap();
    fs::File::options().write(true).open(&a).unwrap().set_modified(mtime).unwrap();
    let third = Catalog::rescan(root.path(), &second);
    assert_eq!(third.files_hashed(), 1);
    assert_ne!(third.get(PluginKind::Source, "a").unwrap().sha256, second.get(PluginKind::Source, "a").unwrap().sha256);
    // A new version is hashed; the older one keeps its hash (a rule may pin
    // it), so the next rescan reads nothing; a removed file's hash goes.
    write(root.path(), PluginKind::Source, "a@v2.0.0", "newer", 0o700);
    let fourth = Catalog::rescan(root.path(), &third);
    assert_eq!(fourth.files_hashed(), 1);
    assert_eq!(fourth.hashes.len(), 3);
    let fifth = Catalog::rescan(root.path(), &fourth);
    assert_eq!(fifth.files_hashed(), 0, "no version is read again");
    fs::remove_file(&a).unwrap();
    let sixth = Catalog::rescan(root.path(), &fifth);
    assert_eq!((sixth.files_hashed(), sixth.hashes.len()), (0, 2));
}

#[test]
fn metadata_is_attached_and_bad_metadata_reported() {
    let root = tempfile::tempdir().unwrap();
    plugin(root.path(), PluginKind::Source, "random@v1.0.0");
    metadata(
        root.path(),
        PluginKind::Source,
        "random.json",
        r#"{"about": {"trial": true}, "libs": [], "unknown": 1,
            "properties": {"default": [{"name": "interval", "default": 1000}]}}"#,
    );
    plugin(root.path(), PluginKind::Sink, "MySink");
    metadata(root.path(), PluginKind::Sink, "mySink.json", r#"{"properties": [{"name": "path"}], "libs": null}"#);
    plugin(root.path(), PluginKind::Sink, "broken");
    let broken_json = metadata(root.path(), PluginKind::Sink, "broken.json", "{not json");
    metadata(root.path(), PluginKind::Sink, "orphan.json", "{}");

    let catalog = Catalog::scan(root.path());
    let random = catalog.get(PluginKind::Source, "random").unwrap().metadata.as_ref().unwrap();
    assert_eq!(random.about.as_ref().unwrap()["trial"], true);
    assert_eq!(random.properties.len(), 1);
    assert_eq!(random.properties[0]["name"], "interval");
    let sink = catalog.get(PluginKind::Sink, "mySink").unwrap().metadata.as_ref().unwrap();
    assert_eq!(sink.properties[0]["name"], "path");
    assert!(sink.libs.is_empty());

    let broken = catalog.get(PluginKind::Sink, "broken").unwrap();
    assert!(broken.metadata.is_none());
    match catalog.errors() {
        [CatalogError::BadMetadata { path, .. }] => assert_eq!(path, &broken_json),
        _ => panic!("{:?}", messages(&catalog)),
    }
    assert!(messages(&catalog)[0].contains(&broken_json.display().to_string()));
}

#[test]
fn function_owner_uses_metadata_and_plugin_names() {
    let root = tempfile::tempdir().unwrap();
    plugin(root.path(), PluginKind::Function, "geohash@1.0.0");
    metadata(
        root.path(),
        PluginKind::Function,
        "geohash.json",
        r#"{"functions": [{"name": "geohashEncode", "example": "geohashEncode(la, lo)", "hint": {"en_US": "x"}},
                          {"name": "geohashDecode"}]}"#,
    );
    plugin(root.path(), PluginKind::Function, "echo");
    plugin(root.path(), PluginKind::Source, "notAFunction");
    let catalog = Catalog::scan(root.path());
    assert!(catalog.errors().is_empty(), "{:?}", messages(&catalog));

    let functions = &catalog.get(PluginKind::Function, "geohash").unwrap().metadata.as_ref().unwrap().functions;
    assert_eq!(functions[0].example.as_deref(), Some("geohashEncode(la, lo)"));
    assert!(functions[1].example.is_none() && functions[1].hint.is_none());

    for function in ["geohashEncode", "GEOHASHENCODE", "geohashdecode"] {
        assert_eq!(catalog.function_owner(function).unwrap().name, "geohash", "{function}");
    }
    assert_eq!(catalog.function_owner("Echo").unwrap().name, "echo");
    // A plugin with a functions list exports exactly that list.
    assert!(catalog.function_owner("geohash").is_none());
    assert!(catalog.function_owner("notAFunction").is_none());
    assert!(catalog.function_owner("nope").is_none());
}

#[test]
fn duplicate_function_across_plugins_is_an_error() {
    let root = tempfile::tempdir().unwrap();
    plugin(root.path(), PluginKind::Function, "alpha");
    metadata(root.path(), PluginKind::Function, "alpha.json", r#"{"functions": [{"name": "same"}, {"name": "a"}]}"#);
    plugin(root.path(), PluginKind::Function, "beta");
    metadata(root.path(), PluginKind::Function, "beta.json", r#"{"functions": [{"name": "SAME"}, {"name": "b"}]}"#);
    let catalog = Catalog::scan(root.path());
    match catalog.errors() {
        [CatalogError::DuplicateFunction { function, first, second }] => {
            assert_eq!((function.as_str(), first.as_str(), second.as_str()), ("SAME", "alpha", "beta"));
        }
        _ => panic!("{:?}", messages(&catalog)),
    }
    let message = messages(&catalog).remove(0);
    assert!(message.contains("alpha") && message.contains("beta"), "{message}");
    // The first plugin by name keeps the function; both plugins stay listed.
    assert_eq!(catalog.function_owner("same").unwrap().name, "alpha");
    assert_eq!(catalog.function_owner("b").unwrap().name, "beta");
    assert_eq!(catalog.list(PluginKind::Function).len(), 2);
}

#[test]
fn registered_functions_are_owned_and_not_shared() {
    let root = tempfile::tempdir().unwrap();
    plugin(root.path(), PluginKind::Function, "echo");
    plugin(root.path(), PluginKind::Function, "Math");
    let mut catalog = Catalog::scan(root.path());
    assert!(catalog.errors().is_empty(), "{:?}", messages(&catalog));

    catalog.register_functions("math", &["plusOne".to_owned(), "timesTwo".to_owned()]).unwrap();
    assert_eq!(catalog.function_owner("PLUSONE").unwrap().name, "Math");
    assert_eq!(catalog.function_owner("timestwo").unwrap().name, "Math");

    // Another plugin cannot claim a function already exported, whether found by the scan or registered.
    let err = catalog.register_functions("echo", &["shout".to_owned(), "PlusOne".to_owned()]).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("Math") && message.contains("echo"), "{message}");
    assert!(catalog.function_owner("shout").is_none(), "a refused registration records nothing");
    let err = catalog.register_functions("Math", &["echo".to_owned()]).unwrap_err();
    assert!(matches!(err, CatalogError::DuplicateFunction { ref first, .. } if first == "echo"), "{err}");

    // Registering again replaces the plugin's earlier declaration.
    catalog.register_functions("Math", &["plusOne".to_owned()]).unwrap();
    assert!(catalog.function_owner("timesTwo").is_none());
    catalog.register_functions("echo", &["echo".to_owned(), "timesTwo".to_owned()]).unwrap();
    assert_eq!(catalog.function_owner("timesTwo").unwrap().name, "echo");
}

#[test]
fn kind_names() {
    for kind in PluginKind::ALL {
        assert_eq!(PluginKind::from_dir_name(kind.dir_name()), Some(kind));
        assert_eq!(PluginKind::parse(kind.as_str()), Some(kind));
        assert_eq!(PluginKind::parse(kind.dir_name()), Some(kind));
        assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
    }
    assert_eq!(PluginKind::from_dir_name("source"), None);
    assert_eq!(PluginKind::parse("plugins"), None);
    assert_eq!(PluginKind::Function.dir_name(), "functions");
}

#[test]
fn every_version_is_kept_and_a_requirement_picks_the_newest_it_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for file in ["echo@v1.8.1", "echo@1.9.0", "echo@1.9.3", "echo@v2.0.0", "echo@nightly", "echo"] {
        plugin(root, PluginKind::Function, file);
    }
    let catalog = Catalog::scan(root);
    let listed: Vec<String> = catalog
        .versions(PluginKind::Function, "echo")
        .iter()
        .map(|f| f.version.as_ref().map(|v| v.as_str().to_string()).unwrap_or_default())
        .collect();
    assert_eq!(listed, ["2.0.0", "1.9.3", "1.9.0", "1.8.1", "nightly", ""]);
    assert_eq!(
        catalog.get(PluginKind::Function, "echo").unwrap().path,
        catalog.versions(PluginKind::Function, "echo")[0].path
    );
    // Each version keeps its own file and hash.
    let hashes: std::collections::HashSet<_> =
        catalog.versions(PluginKind::Function, "echo").iter().map(|f| f.path.clone()).collect();
    assert_eq!(hashes.len(), 6);

    let resolve = |req: &str| {
        let req = semver::VersionReq::parse(req).unwrap();
        catalog.resolve(PluginKind::Function, "echo", &req).map(|f| f.version.as_ref().unwrap().as_str().to_string())
    };
    assert_eq!(resolve("1.9").as_deref(), Some("1.9.3"), "1.9 is ^1.9: the newest 1.x from 1.9 on");
    assert_eq!(resolve("~1.9.0").as_deref(), Some("1.9.3"));
    assert_eq!(resolve("=1.9.0").as_deref(), Some("1.9.0"));
    assert_eq!(resolve("<1.9").as_deref(), Some("1.8.1"));
    assert_eq!(resolve("*").as_deref(), Some("2.0.0"));
    assert_eq!(resolve("3"), None, "no installed version matches");
    // Found by either spelling of the first letter, as `get`.
    assert_eq!(catalog.versions(PluginKind::Function, "Echo").len(), 6);
    assert!(catalog.versions(PluginKind::Function, "absent").is_empty());
}
