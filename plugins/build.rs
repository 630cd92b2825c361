//! Links the bundled plugins with packed relative relocations (DT_RELR) when
//! the toolchain can: a position-independent executable otherwise carries a
//! 24-byte relocation record per pointer in its tables (600 kB in `echo`)
//! that the loader reads at every start, in every plugin process. Needs GNU
//! ld ≥ 2.38 and glibc ≥ 2.36; elsewhere the binaries link as before.

use std::process::{Command, Stdio};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") || !links_with_relr() {
        return;
    }
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
}

/// Whether the C compiler that links Rust binaries here builds and runs a
/// program with the option (a linker that does not know it warns and ignores
/// it; a glibc without DT_RELR support fails the link).
fn links_with_relr() -> bool {
    let Ok(dir) = std::env::var("OUT_DIR") else { return false };
    let exe = std::path::Path::new(&dir).join("relr-probe");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let mut compile = match Command::new(cc)
        .args(["-x", "c", "-", "-pie", "-fPIE", "-Wl,-z,pack-relative-relocs", "-Wl,--fatal-warnings", "-o"])
        .arg(&exe)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(child) => child,
        Err(_) => return false,
    };
    if let Some(mut stdin) = compile.stdin.take() {
        use std::io::Write;
        let _ = stdin.write_all(b"static int x; int *p = &x; int main(void) { return *p; }\n");
    }
    compile.wait().is_ok_and(|s| s.success()) && Command::new(&exe).status().is_ok_and(|s| s.success())
}
