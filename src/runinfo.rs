//! `run.json`: how a run folder was made (command line, tool version, model, sets), so every table and
//! figure in it can be traced back and re-made. No clock time: a run folder is byte-identical whenever, and
//! however often killed and resumed, the same command made it.

use std::path::Path;

use serde_json::json;

/// Writes `<dir>/run.json`. The command line is the process's own.
pub fn write(dir: &Path, model: &str, sets: &[String]) -> crate::Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    let info = json!({
        "tool": "huescan",
        "tool_version": env!("CARGO_PKG_VERSION"),
        "command_line": argv,
        "model": model,
        "stimulus_sets": sets,
        "seeds": {"stimuli": "each spec's `seed` (stimuli/<set>/stimuli.json records every image's own seed)",
                  "analysis": 0, "steering": 0, "autoencoder": 0},
        "note": "stores record model revision, config and stimulus hashes in activations/<set>/manifest.json",
    });
    crate::fsx::write_json(&dir.join("run.json"), &info)
}
