//! `run.json`: how a run folder was made (command line, tool version, model, sets, start time), so every table
//! and figure in it can be traced back and re-made. The start time is kept across resumes, so a run folder is
//! byte-identical however often it is killed and resumed; `SOURCE_DATE_EPOCH` pins it across runs.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// File name of the record inside a run folder.
pub const FILE: &str = "run.json";

/// The record. Fields are in alphabetical order, the order the file has always had; every field has a
/// default so a record written by an older huescan still reads.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunInfo {
    /// The process's own argv.
    pub command_line: Vec<String>,
    pub model: String,
    pub note: String,
    pub seeds: Seeds,
    pub started_unix_s: u64,
    pub stimulus_sets: Vec<String>,
    pub tool: String,
    pub tool_version: String,
}

/// The seeds of each stage (alphabetical, as written).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Seeds {
    pub analysis: u64,
    pub autoencoder: u64,
    pub steering: u64,
    /// Where the stimulus seeds are: each image has its own.
    pub stimuli: String,
}

/// Writes `<dir>/run.json`. The command line is the process's own.
pub fn write(dir: &Path, model: &str, sets: &[String]) -> crate::fsx::Result<()> {
    // The start time is the one thing in a run folder that a clock decides. A resumed run keeps the time of the
    // run it resumes, so kill -9 + re-run leaves run.json byte-identical; `SOURCE_DATE_EPOCH` (the
    // reproducible-builds convention) fixes it for runs that must match byte for byte across machines.
    let started_unix_s = match read(dir) {
        Ok(Some(old)) if old.started_unix_s > 0 => old.started_unix_s,
        _ => std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|s| s.trim().parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
        }),
    };
    let info = RunInfo {
        command_line: std::env::args().collect(),
        model: model.to_string(),
        note: "stores record model revision, config and stimulus hashes in activations/<set>/manifest.json".into(),
        seeds: Seeds {
            analysis: 0,
            autoencoder: 0,
            steering: 0,
            stimuli: "each spec's `seed` (stimuli/<set>/stimuli.json records every image's own seed)".into(),
        },
        started_unix_s,
        stimulus_sets: sets.to_vec(),
        tool: "huescan".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
    };
    crate::fsx::write_json(&dir.join(FILE), &info)
}

/// Reads `<dir>/run.json` if there is one.
pub fn read(dir: &Path) -> crate::fsx::Result<Option<RunInfo>> {
    let path = dir.join(FILE);
    if !path.exists() {
        return Ok(None);
    }
    crate::fsx::read_json(&path).map(Some)
}

/// `1970-01-01T00:00:00Z` for a Unix time in seconds (UTC; the proleptic Gregorian calendar).
pub fn iso8601_utc(unix_s: u64) -> String {
    // Howard Hinnant's days-to-civil algorithm: exact for every day since 1970 without a date crate.
    let days = (unix_s / 86_400) as i64;
    let secs = unix_s % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates_match_known_instants() {
        assert_eq!(iso8601_utc(0), "1970-01-01T00:00:00Z");
        // `date -u -d @951782400` (a leap day) and `date -u -d @1796219999`.
        assert_eq!(iso8601_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601_utc(1_796_219_999), "2026-12-02T13:59:59Z");
    }

    #[test]
    fn the_record_round_trips_and_old_records_read() {
        let info = RunInfo { model: "m".into(), started_unix_s: 5, ..Default::default() };
        let back: RunInfo = serde_json::from_str(&serde_json::to_string(&info).unwrap()).unwrap();
        assert_eq!(back, info);
        let old: RunInfo = serde_json::from_str(r#"{"model": "x", "extra": 1}"#).unwrap();
        assert_eq!(old.model, "x");
    }
}
