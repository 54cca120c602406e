//! A sweep on disk: `sweep.csv` + `sweep.json` (one row per layer, pair, direction and alpha), `summary.csv` +
//! `summary.json` (one row per layer, pair and direction, plus probe quality and the options). Column order is
//! fixed; a probe column exists for every layer any row read out, empty where a row did not. The vectors go
//! next to them as safetensors ([`write_vectors`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::sweep::{ProbeInfo, SummaryRow, SweepRecord, SweepResult, SweepRow};
use super::SteeringVector;
use crate::fsx;

/// `sweep.json`: the options and every row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepFile {
    pub options: SweepRecord,
    pub rows: Vec<SweepRow>,
}

/// `summary.json`: the options, probe quality and one success row per (layer, pair, direction).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryFile {
    pub options: SweepRecord,
    pub probes: Vec<ProbeInfo>,
    pub summary: Vec<SummaryRow>,
}

/// Writes the four tables into `dir`; returns their paths.
pub fn write_sweep(dir: &Path, result: &SweepResult) -> crate::steer::Result<Vec<PathBuf>> {
    fsx::create_dir_all(dir)?;
    fsx::remove_stale_temps(dir)?;
    fsx::remove_stale_temps(&dir.join("vectors"))?;
    let paths = ["sweep.csv", "sweep.json", "summary.csv", "summary.json"].map(|f| dir.join(f));
    fsx::write_atomic(&paths[0], sweep_csv(result).as_bytes())?;
    let sweep = SweepFile { options: result.options.clone(), rows: result.rows.clone() };
    fsx::write_json(&paths[1], &sweep)?;
    fsx::write_atomic(&paths[2], summary_csv(&result.summary).as_bytes())?;
    let summary =
        SummaryFile { options: result.options.clone(), probes: result.probes.clone(), summary: result.summary.clone() };
    fsx::write_json(&paths[3], &summary)?;
    Ok(paths.to_vec())
}

/// Writes every vector of a sweep as `dir/{stem}.safetensors` ([`super::Recipe::file_stem`]); returns the
/// paths, in the order of the vectors.
pub fn write_vectors(dir: &Path, vectors: &[SteeringVector]) -> crate::steer::Result<Vec<PathBuf>> {
    let mut paths = Vec::with_capacity(vectors.len());
    for v in vectors {
        let path = dir.join(format!("{}.safetensors", v.recipe.file_stem()));
        v.save(&path)?;
        paths.push(path);
    }
    Ok(paths)
}

fn opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.4}")).unwrap_or_default()
}

/// RFC 4180 quoting when needed.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The sweep rows as CSV.
pub fn sweep_csv(result: &SweepResult) -> String {
    let probe_layers: BTreeSet<usize> = result.rows.iter().flat_map(|r| r.probe_hue_deg.keys().copied()).collect();
    let words: Vec<String> =
        result.rows.iter().find_map(|r| r.word_probs.as_ref()).map(|w| w.keys().cloned().collect()).unwrap_or_default();
    let mut header: Vec<String> =
        ["layer", "hook", "pair", "source_deg", "target_deg", "direction", "alpha", "n_images"]
            .map(String::from)
            .to_vec();
    header.extend(probe_layers.iter().map(|i| format!("probe_hue_deg_L{i}")));
    header.extend(
        [
            "output_hue_deg",
            "final_hue_deg",
            "target_error_deg",
            "joystick_hue_deg",
            "joystick_error_deg",
            "model_minus_joystick_deg",
            "top_word",
        ]
        .map(String::from),
    );
    header.extend(words.iter().map(|w| format!("p_{w}")));
    header.push("text".into());
    let mut out = header.join(",") + "\n";
    for r in &result.rows {
        let mut cells = vec![
            r.layer.to_string(),
            field(&r.hook),
            field(&r.pair),
            r.source_deg.to_string(),
            r.target_deg.to_string(),
            r.direction.to_string(),
            r.alpha.to_string(),
            r.n_images.to_string(),
        ];
        cells.extend(probe_layers.iter().map(|i| opt(r.probe_hue_deg.get(i).copied().flatten())));
        cells.extend([
            opt(r.output_hue_deg),
            opt(r.final_hue_deg),
            opt(r.target_error_deg),
            opt(r.joystick_hue_deg),
            opt(r.joystick_error_deg),
            opt(r.model_minus_joystick_deg),
            field(r.top_word.as_deref().unwrap_or("")),
        ]);
        cells.extend(
            words
                .iter()
                .map(|w| r.word_probs.as_ref().and_then(|p| p.get(w)).map(|p| format!("{p:.6}")).unwrap_or_default()),
        );
        cells.push(field(&r.texts.as_ref().map(|t| t.join(" | ")).unwrap_or_default()));
        out += &(cells.join(",") + "\n");
    }
    out
}

/// The summary rows as CSV.
pub fn summary_csv(rows: &[SummaryRow]) -> String {
    let mut out = String::from(
        "layer,hook,pair,direction,tolerance_deg,alpha_reached,alpha_word_flip,target_word,joystick_alpha_reached,\
         error_at_alpha_1,monotone,max_disagreement_deg\n",
    );
    for r in rows {
        let cells = [
            r.layer.to_string(),
            field(&r.hook),
            field(&r.pair),
            r.direction.to_string(),
            r.tolerance_deg.to_string(),
            r.alpha_reached.map(|a| a.to_string()).unwrap_or_default(),
            r.alpha_word_flip.map(|a| a.to_string()).unwrap_or_default(),
            field(r.target_word.as_deref().unwrap_or("")),
            r.joystick_alpha_reached.map(|a| a.to_string()).unwrap_or_default(),
            opt(r.error_at_alpha_1),
            r.monotone.to_string(),
            opt(r.max_disagreement_deg),
        ];
        out += &(cells.join(",") + "\n");
    }
    out
}
