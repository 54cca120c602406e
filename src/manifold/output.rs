//! Writers for `huescan analyze`: layer_scan.csv, discovery.csv, heldout.csv, arbitration.csv, joystick.csv,
//! projection.safetensors and summary.json per set, and global.csv across sets. Every file is written
//! atomically; columns have a fixed order; every row names its dataset and label mode.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::analyze::{global_winner, Analysis, METRICS};
use super::joystick::Joystick;
use super::Result;
use crate::fsx::{write_atomic, write_json};
use crate::store::{serialize_raw, RawTensor};

fn csv(header: &[String], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let mut s = header.join(",");
    s.push('\n');
    for r in rows {
        s.push_str(&r.join(","));
        s.push('\n');
    }
    s
}

fn f(v: f64) -> String {
    v.to_string()
}

fn quote(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Writes one set's tables into `dir` (created if missing).
pub fn write_analysis(dir: &Path, a: &Analysis) -> Result<()> {
    // Temporaries of a killed earlier run would otherwise stay next to the finished files for ever.
    crate::fsx::remove_stale_temps(dir)?;
    let row = RowKey { ds: quote(&a.dataset), mode: a.mode.to_string(), chosen: a.choice.layer };
    write_atomic(&dir.join("layer_scan.csv"), layer_scan_csv(a, &row).as_bytes())?;
    write_atomic(&dir.join("discovery.csv"), discovery_csv(a, &row).as_bytes())?;
    write_atomic(&dir.join("heldout.csv"), heldout_csv(a, &row).as_bytes())?;
    write_atomic(&dir.join("arbitration.csv"), arbitration_csv(a, &row).as_bytes())?;
    if let Some(j) = &a.joystick {
        write_atomic(&dir.join("joystick.csv"), joystick_csv(j, &row).as_bytes())?;
    }
    write_atomic(&dir.join("projection.safetensors"), &projection_safetensors(a, &row.mode)?)?;
    Ok(write_json(&dir.join("summary.json"), a)?)
}

/// What every row of a set's tables starts with: the dataset (CSV-quoted), the label mode and the chosen layer.
struct RowKey {
    ds: String,
    mode: String,
    chosen: usize,
}

fn layer_scan_csv(a: &Analysis, key: &RowKey) -> String {
    let RowKey { ds, mode, chosen } = key;
    let chosen = *chosen;
    let mut header = strings(&[
        "dataset",
        "mode",
        "layer",
        "n_samples",
        "in_sample_score",
        "stress",
        "cv_score",
        "cv_std",
        "n_folds",
        "shuffled_baseline",
        "p_value",
        "n_permutations",
        "chosen",
    ]);
    header.extend(a.options.shapes.iter().map(|s| format!("cv_{s}")));
    header.push("note".into());
    csv(
        &header,
        a.layer_scan.iter().map(|r| {
            let by_shape: Vec<String> = a
                .options
                .shapes
                .iter()
                .map(|s| f(r.cv_by_shape.iter().find(|c| c.0 == *s).map_or(f64::NAN, |c| c.1)))
                .collect();
            let mut row = vec![
                ds.clone(),
                mode.clone(),
                r.layer.to_string(),
                a.n_samples.to_string(),
                f(r.in_sample_score),
                f(r.stress),
                f(r.cv_score),
                f(r.cv_std),
                r.n_folds.to_string(),
                f(r.shuffled_baseline),
                f(r.p_value),
                a.options.n_permutations.to_string(),
                (r.layer == chosen).to_string(),
            ];
            row.extend(by_shape);
            row.push(quote(&r.note));
            row
        }),
    )
}

fn discovery_csv(a: &Analysis, key: &RowKey) -> String {
    let RowKey { ds, mode, chosen } = key;
    let mut header = strings(&["dataset", "mode", "layer", "rank", "shape", "n_train", "n_folds", "alpha"]);
    for m in METRICS {
        header.extend([format!("mean_{m}"), format!("std_{m}"), format!("fold_{m}")]);
    }
    header.extend(strings(&["p_value", "shuffled_baseline"]));
    csv(
        &header,
        a.discovery.iter().map(|r| {
            let mut row = vec![
                ds.clone(),
                mode.clone(),
                chosen.to_string(),
                r.rank.to_string(),
                r.shape.to_string(),
                a.train_idx.len().to_string(),
                r.n_folds.to_string(),
                f(a.options.alpha_cv),
            ];
            for m in METRICS {
                let folds: Vec<String> = r.folds.iter().map(|s| f(s.get(m))).collect();
                row.extend([f(r.mean.get(m)), f(r.std.get(m)), folds.join(";")]);
            }
            row.extend([f(r.p_value), f(r.shuffled_baseline)]);
            row
        }),
    )
}

fn heldout_csv(a: &Analysis, key: &RowKey) -> String {
    let RowKey { ds, mode, chosen } = key;
    let mut header = strings(&["dataset", "mode", "layer", "shape", "n_train", "n_test", "alpha"]);
    header.extend(METRICS.iter().map(|m| format!("test_{m}")));
    header.extend(strings(&[
        "test_ci_low",
        "test_ci_high",
        "ci_level",
        "test_closure_ratio",
        "periodicity_score",
        "coverage_ratio",
    ]));
    csv(
        &header,
        a.heldout.iter().map(|r| {
            let mut row = vec![
                ds.clone(),
                mode.clone(),
                chosen.to_string(),
                r.shape.to_string(),
                a.train_idx.len().to_string(),
                a.test_idx.len().to_string(),
                f(a.options.alpha_fit),
            ];
            row.extend(METRICS.iter().map(|m| f(r.test.get(*m))));
            row.extend([
                f(r.test_ci.0),
                f(r.test_ci.1),
                f(a.options.ci_level),
                f(r.test_closure_ratio),
                f(r.periodicity_score),
                f(r.coverage_ratio),
            ]);
            row
        }),
    )
}

fn arbitration_csv(a: &Analysis, key: &RowKey) -> String {
    let RowKey { ds, mode, chosen } = key;
    csv(
        &strings(&[
            "dataset",
            "mode",
            "layer",
            "shape",
            "train_cv_score",
            "train_cv_std",
            "test_score",
            "test_closure_ratio",
            "periodicity_score",
            "coverage_ratio",
            "composite_score",
            "winner",
        ]),
        a.arbitration.iter().map(|r| {
            vec![
                ds.clone(),
                mode.clone(),
                chosen.to_string(),
                r.shape.to_string(),
                f(r.train_cv_score),
                f(r.train_cv_std),
                f(r.test_score),
                f(r.test_closure_ratio),
                f(r.periodicity_score),
                f(r.coverage_ratio),
                f(r.composite_score),
                (r.shape == a.winner).to_string(),
            ]
        }),
    )
}

fn joystick_csv(j: &Joystick, key: &RowKey) -> String {
    let RowKey { ds, mode, chosen } = key;
    csv(
        &strings(&[
            "dataset",
            "mode",
            "layer",
            "pair",
            "source_deg",
            "target_deg",
            "alpha",
            "decoded_hue",
            "target_error_deg",
        ]),
        j.rows.iter().map(|r| {
            vec![
                ds.clone(),
                mode.clone(),
                chosen.to_string(),
                quote(&r.pair),
                f(r.source_deg),
                f(r.target_deg),
                f(r.alpha),
                f(r.decoded_hue),
                f(r.target_error_deg),
            ]
        }),
    )
}

/// projection.safetensors: the 2-D coordinates and hues, and the fitted map when there is one.
fn projection_safetensors(a: &Analysis, mode: &str) -> Result<Vec<u8>> {
    let coords: Vec<u8> = a.projection.coords.iter().flat_map(|v| v.to_le_bytes()).collect();
    let hues: Vec<u8> = a.hue_deg.iter().flat_map(|v| v.to_le_bytes()).collect();
    let (n, k) = a.projection.coords.dim();
    let (coords_shape, hue_shape) = ([n, k], [a.hue_deg.len()]);
    if n != a.hue_deg.len() {
        return Err(super::Error::ProjectionRows { rows: n, labels: a.hue_deg.len() });
    }
    let mut views = vec![
        RawTensor { name: "coords", dtype: "F64", shape: &coords_shape, bytes: &coords },
        RawTensor { name: "hue_deg", dtype: "F64", shape: &hue_shape, bytes: &hues },
    ];
    // The fitted map, for activations the fit never saw: z = (x - mean) @ weight.T.
    let map_bytes = a.projection.map.as_ref().map(|m| {
        let w: Vec<u8> = m.weight.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mu: Vec<u8> = m.mean.iter().flat_map(|v| v.to_le_bytes()).collect();
        let (mk, md) = m.weight.dim();
        ([mk, md], [md], w, mu)
    });
    if let Some((w_shape, mu_shape, w, mu)) = &map_bytes {
        views.push(RawTensor { name: "weight", dtype: "F64", shape: w_shape, bytes: w });
        views.push(RawTensor { name: "mean", dtype: "F64", shape: mu_shape, bytes: mu });
    }
    // The store's serialiser sorts the metadata; the safetensors crate writes a HashMap in hash order, which
    // made every projection.safetensors differ from the last.
    let mut meta = BTreeMap::from([
        ("dataset".to_string(), a.dataset.clone()),
        ("mode".to_string(), mode.to_string()),
        ("layer".to_string(), a.projection.layer.to_string()),
        ("shape".to_string(), a.projection.shape.to_string()),
        ("template".to_string(), "(cos theta, sin theta, 0)".to_string()),
    ]);
    if map_bytes.is_some() {
        meta.insert("map".to_string(), "coords of new rows x [m, d] = (x - mean) @ weight.T".to_string());
    }
    Ok(serialize_raw(&views, &meta))
}

/// Writes `global.csv`, the notebook's per-shape means across sets, into `dir`.
pub fn write_global(dir: &Path, analyses: &[Analysis]) -> Result<()> {
    crate::fsx::remove_stale_temps(dir)?;
    let mut modes: Vec<String> = analyses.iter().map(|a| a.mode.to_string()).collect();
    modes.dedup();
    let mode = modes.join("+");
    let mut text = csv(
        &strings(&[
            "mode",
            "shape",
            "mean_train_cv_score",
            "mean_test_score",
            "mean_periodicity",
            "mean_composite",
            "std_composite",
            "n_domains",
            "global_winner",
        ]),
        std::iter::empty(),
    );
    for (i, r) in global_winner(analyses).iter().enumerate() {
        let _ = writeln!(
            text,
            "{mode},{},{},{},{},{},{},{},{}",
            r.shape,
            f(r.mean_train_cv_score),
            f(r.mean_test_score),
            f(r.mean_periodicity),
            f(r.mean_composite),
            f(r.std_composite),
            r.n_domains,
            i == 0
        );
    }
    Ok(write_atomic(&dir.join("global.csv"), text.as_bytes())?)
}
