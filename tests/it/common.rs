//! Helpers shared by the integration-test modules.

use std::path::PathBuf;
use std::process::Command;

/// The `huescan` binary cargo built for these tests.
pub fn huescan() -> Command {
    Command::new(env!("CARGO_BIN_EXE_huescan"))
}

/// `$TMPDIR/huescan-{area}-{name}-{pid}`, removed if a previous run left it; not created. The pid keeps
/// concurrent `cargo test` runs apart, `area` and `name` the tests of one run.
pub fn fresh_dir(area: &str, name: &str) -> PathBuf {
    let name = if name.is_empty() { String::new() } else { format!("-{name}") };
    let dir = std::env::temp_dir().join(format!("huescan-{area}{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The committed random-weight Qwen2.5-VL fixture (`scripts/make_qwen_fixture.py`).
pub fn qwen_fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen-tiny")
}
