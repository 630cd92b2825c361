//! The data folder holds rules, sink properties and checkpointed state: it is
//! closed to other users whatever the umask (issue 10, defect 9).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use oort_tests::{Daemon, PluginsDir};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_new_data_folder_is_private() {
    let plugins = PluginsDir::new();
    plugins.add("sources", "random", "random");
    let scratch = tempfile::tempdir().unwrap();
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = scratch.path().join("nested").join("data");
    let mut d = Daemon::start_in(plugins.path(), &data, &[]);
    let (status, body) =
        d.http("POST", "/streams", Some(r#"{"sql":"CREATE STREAM s () WITH (TYPE=\"random\", DATASOURCE=\"x\")"}"#));
    assert_eq!(status, 201, "{body}");
    assert_eq!(mode(&data), 0o700, "the data folder");
    assert_eq!(mode(&data.join("db")), 0o700, "the store");
    assert_eq!(mode(&scratch.path().join("nested")), 0o700, "a parent the daemon created");
    d.terminate();
}

#[test]
fn an_open_data_folder_is_closed_at_start_with_a_warning() {
    let plugins = PluginsDir::new();
    let data = tempfile::tempdir().unwrap();
    std::fs::create_dir(data.path().join("db")).unwrap();
    for dir in [data.path().to_path_buf(), data.path().join("db")] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut d = Daemon::start_in(plugins.path(), data.path(), &[]);
    assert_eq!(mode(data.path()), 0o700);
    assert_eq!(mode(&data.path().join("db")), 0o700);
    assert!(d.log().contains("had mode 755, open to other users; changed it to 700"), "{}", d.log());
    d.terminate();
}
