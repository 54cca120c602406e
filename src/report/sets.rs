//! One stimulus set's part of the report: reads its analysis (and stimuli, steering when present) and draws
//! its figures.

use std::path::Path;

use serde_json::Value;

use super::figures::{render, AlphaCurves, HueScatter, HueScatter3d, LayerLines, SERIES};
use crate::fsx;
use crate::store::MappedFile;

/// Everything the page shows for one set.
#[derive(Debug, Clone)]
pub struct SetReport {
    pub name: String,
    pub summary: Value,
    /// Figure file names (relative to `figures/`), SVG and PNG.
    pub figures: Vec<String>,
    /// (figure stem, caption) in page order.
    pub panels: Vec<(String, String)>,
    pub preview: Option<String>,
    /// `steering/<set>/summary.json` if a steering sweep was run, and the sweep rows.
    pub steering: Option<Value>,
    pub steering_rows: Vec<Value>,
    /// Swatch strip of the first pair's steering trajectory.
    pub swatches: Option<String>,
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// The hook name of each of `layers` from the run's store of set `name` (empty when the run has none).
fn stored_hooks(run: &Path, name: &str, layers: &[usize]) -> Vec<String> {
    let path = run.join("activations").join(name).join("manifest.json");
    let Ok(m) = fsx::read_json::<crate::store::Manifest>(&path) else { return vec![] };
    layers.iter().map(|&l| m.layer(l).map(|e| e.hook.clone()).unwrap_or_default()).collect()
}

pub(super) fn build_set(run: &Path, name: &str, fig_dir: &Path) -> crate::Result<SetReport> {
    let dir = run.join("analysis").join(name);
    let summary: Value = fsx::read_json(&dir.join("summary.json"))?;
    let mut report = SetReport {
        name: name.to_string(),
        summary: summary.clone(),
        figures: Vec::new(),
        panels: Vec::new(),
        preview: None,
        steering: None,
        steering_rows: Vec::new(),
        swatches: None,
    };
    let stem = |what: &str| format!("{name}-{what}");

    // Stress by layer: the notebook's in-sample stress next to cross-validated stress and the shuffled-label
    // baseline, so a reader sees that in-sample stress alone is not evidence.
    let scan = summary["layer_scan"].as_array().cloned().unwrap_or_default();
    let layers: Vec<usize> = scan.iter().filter_map(|r| r["layer"].as_u64().map(|l| l as usize)).collect();
    let series = |key: &str| scan.iter().map(|r| 1.0 - num(&r[key])).collect::<Vec<f64>>();
    let chosen = summary["choice"]["layer"].as_u64().map(|l| l as usize);
    let hooks = stored_hooks(run, name, &layers);
    let fig = LayerLines {
        title: format!("{name}: circular stress (1 - score) by layer"),
        y_label: "stress (lower is better)".into(),
        layers,
        series: vec![
            ("in-sample (notebook)".into(), SERIES[4], series("in_sample_score")),
            ("cross-validated".into(), SERIES[0], series("cv_score")),
            ("shuffled labels (CV)".into(), SERIES[1], series("shuffled_baseline")),
        ],
        chosen,
        hooks,
    };
    add(
        &mut report,
        render(&fig, fig_dir, &stem("stress"))?,
        &stem("stress"),
        format!(
        "Circular SMDS stress per layer ({} labels). The notebook picked the layer with the lowest in-sample stress; \
         with fewer samples than dimensions that is near 0 for any labels, so huescan chooses on the cross-validated \
         score and shows the shuffled-label baseline.",
        summary["mode"].as_str().unwrap_or("?")
    ),
    );

    // Projections.
    let proj = dir.join("projection.safetensors");
    if proj.exists() {
        let f = MappedFile::open(&proj)?;
        let (shape, coords) = f.read_f32("coords")?;
        let (_, hues) = f.read_f32("hue_deg")?;
        if shape.len() == 2 && shape[1] >= 2 {
            let k = shape[1];
            let pts: Vec<(f64, f64, f64)> = hues
                .iter()
                .enumerate()
                .map(|(i, &h)| (coords[i * k] as f64, coords[i * k + 1] as f64, h as f64))
                .collect();
            let layer = summary["projection"]["layer"].as_u64().unwrap_or(0);
            let shape_name = summary["projection"]["shape"].as_str().unwrap_or("?").to_string();
            let fig = HueScatter {
                title: format!("{name}: layer {layer}, {shape_name} template (2-D)"),
                x_label: "SMDS 1".into(),
                y_label: "SMDS 2".into(),
                points: pts,
                square: true,
            };
            add(
                &mut report,
                render(&fig, fig_dir, &stem("projection2d"))?,
                &stem("projection2d"),
                format!(
                "Activations at layer {layer} mapped by SMDS with the (cos θ, sin θ, 0) template of the winning shape, \
                 coloured by the stimulus hue. A hue wheel shows as a ring in hue order."
            ),
            );
            if k >= 3 {
                let pts3: Vec<([f64; 3], f64)> = hues
                    .iter()
                    .enumerate()
                    .map(|(i, &h)| {
                        ([coords[i * k] as f64, coords[i * k + 1] as f64, coords[i * k + 2] as f64], h as f64)
                    })
                    .collect();
                let fig = HueScatter3d { title: format!("{name}: layer {layer}, 3-D projection"), points: pts3 };
                add(
                    &mut report,
                    render(&fig, fig_dir, &stem("projection3d"))?,
                    &stem("projection3d"),
                    "The same fit in three dimensions; the third axis shows what the circle template does not explain."
                        .into(),
                );
            }
        }
    }

    // The notebook's decoder-only joystick.
    if let Some(rows) = summary["joystick"]["rows"].as_array() {
        let fig =
            alpha_curves(&format!("{name}: decoder-only joystick (outside the model)"), rows, "pair", "decoded_hue");
        add(&mut report, render(&fig, fig_dir, &stem("joystick"))?, &stem("joystick"), "The seed notebook's \"neural joystick\": a linear decoder to RGB fitted at the chosen layer, fed x_src + α (x_tgt − x_src). It never runs the model, so it shows what a linear read-out can do, not what the model does.".into());
    }

    // In-model steering, when a sweep was run: at the analysis layer (or the first steered one), one panel per
    // source/target pair with every direction kind next to the decoder-only joystick on the same activations.
    let steer_dir = run.join("steering").join(name);
    if steer_dir.join("sweep.json").exists() {
        let sweep: Value = fsx::read_json(&steer_dir.join("sweep.json"))?;
        let rows = sweep["rows"].as_array().cloned().unwrap_or_default();
        let steered: Vec<u64> =
            sweep["options"]["layers"].as_array().into_iter().flatten().filter_map(Value::as_u64).collect();
        let layer = chosen.map(|l| l as u64).filter(|l| steered.contains(l)).or(steered.first().copied());
        if let Some(layer) = layer {
            let at: Vec<&Value> = rows.iter().filter(|r| r["layer"].as_u64() == Some(layer)).collect();
            let mut pairs: Vec<String> = Vec::new();
            for r in &at {
                let p = r["pair"].as_str().unwrap_or("?").to_string();
                if !pairs.contains(&p) {
                    pairs.push(p);
                }
            }
            for (i, pair) in pairs.iter().enumerate() {
                let of_pair: Vec<&Value> =
                    at.iter().copied().filter(|r| r["pair"].as_str() == Some(pair.as_str())).collect();
                let mut series = Vec::new();
                for (k, kind) in ["centroid", "manifold", "random"].iter().enumerate() {
                    let mut pts: Vec<(f64, f64)> = of_pair
                        .iter()
                        .filter(|r| r["direction"].as_str() == Some(kind))
                        .map(|r| (num(&r["alpha"]), num(&r["final_hue_deg"])))
                        .collect();
                    if !pts.is_empty() {
                        unwrap_hues(&mut pts);
                        series.push((format!("in-model, {kind}"), SERIES[k], pts));
                    }
                }
                let mut joy: Vec<(f64, f64)> = of_pair
                    .iter()
                    .filter(|r| r["direction"].as_str() == Some("centroid"))
                    .map(|r| (num(&r["alpha"]), num(&r["joystick_hue_deg"])))
                    .collect();
                unwrap_hues(&mut joy);
                series.push(("decoder-only joystick".into(), SERIES[4], joy));
                let fig = AlphaCurves {
                    title: format!("{name}: steering {pair} at layer {layer}"),
                    y_label: "hue after steering (deg, unwrapped)".into(),
                    series,
                    y_range: None,
                };
                let stem = stem(&format!("steer{i}"));
                add(&mut report, render(&fig, fig_dir, &stem)?, &stem, format!(
                    "{pair}: the direction is added to the residual stream at layer {layer} and every later layer runs; \
                     the curves are the hue the model then gives (its RGB output for the autoencoder, else a linear probe \
                     on the last layer), against the notebook's decoder-only joystick on the same activations."
                ));
            }
            if let Some(file) = super::html::swatches(&at, fig_dir, &stem("swatches"))? {
                report.figures.push(file.clone());
                report.swatches = Some(file);
            }
        }
        report.steering = Some(fsx::read_json(&steer_dir.join("summary.json"))?);
        report.steering_rows = rows;
    }

    report.preview = super::html::stimulus_preview(run, name, fig_dir)?;
    Ok(report)
}

fn add(report: &mut SetReport, files: [String; 2], stem: &str, caption: String) {
    report.figures.extend(files);
    report.panels.push((stem.to_string(), caption));
}

/// One curve per value of `group`, points (alpha, value).
fn alpha_curves(title: &str, rows: &[Value], group: &str, value: &str) -> AlphaCurves {
    let mut names: Vec<String> = Vec::new();
    for r in rows {
        let g = r[group].as_str().unwrap_or("?").to_string();
        if !names.contains(&g) {
            names.push(g);
        }
    }
    let series = names
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let mut pts: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| r[group].as_str() == Some(g.as_str()))
                .map(|r| (num(&r["alpha"]), num(&r[value])))
                .collect();
            unwrap_hues(&mut pts);
            (g.clone(), SERIES[i % SERIES.len()], pts)
        })
        .collect();
    AlphaCurves { title: title.into(), y_label: "hue (deg, unwrapped along the curve)".into(), series, y_range: None }
}

/// Makes a hue curve continuous (350° then 10° becomes 350° then 370°), so a sweep through red does not
/// draw a false jump across the plot.
fn unwrap_hues(pts: &mut [(f64, f64)]) {
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut prev: Option<f64> = None;
    for p in pts.iter_mut().filter(|p| p.1.is_finite()) {
        if let Some(q) = prev {
            p.1 += 360.0 * ((q - p.1) / 360.0).round();
        }
        prev = Some(p.1);
    }
}
