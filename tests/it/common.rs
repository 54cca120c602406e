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

/// The device the model parity tests load the model on: `HUESCAN_TEST_DEVICE` (`cpu`, `cuda`, `cuda:N`), the
/// CPU when unset. scripts/gpu_check.sh runs the CUDA build of this binary with `cuda`; references stay on the
/// CPU and comparisons read both sides back there.
pub fn device() -> candle_core::Device {
    let spec = std::env::var("HUESCAN_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    huescan::model::device::parse_device(&spec).unwrap_or_else(|e| panic!("HUESCAN_TEST_DEVICE={spec}: {e}"))
}

/// The committed random-weight Qwen2.5-VL fixture (`scripts/make_qwen_fixture.py`).
pub fn qwen_fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen-tiny")
}
