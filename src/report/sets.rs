//! One stimulus set's figures, drawn from its typed inputs.

use std::path::Path;

use super::figures::{render, AlphaCurves, HueScatter, HueScatter3d, LayerLines, SERIES};
use super::inputs::SetInputs;
use super::view3d::View3d;
use crate::colour::signed_hue_delta_deg;
use crate::steer::{DirectionKind, SweepRow};

/// A figure on the page: its file stem in `figures/` (SVG + PNG) and caption.
#[derive(Debug, Clone)]
pub struct Panel {
    pub stem: String,
    pub caption: String,
}

/// The steering curves of one steered layer.
#[derive(Debug, Clone)]
pub struct SteerLayer {
    pub layer: usize,
    pub hook: String,
    /// The layer the analysis chose (shown open; the others fold).
    pub chosen: bool,
    pub panels: Vec<Panel>,
}

/// Everything drawn for one set.
pub struct SetFigures {
    /// Figure file names (relative to `figures/`).
    pub files: Vec<String>,
    pub stress: Panel,
    /// (supervised, unsupervised) 2-D projections side by side.
    pub projections: Vec<Panel>,
    pub static3d: Option<Panel>,
    pub views: Vec<View3d>,
    pub joystick: Option<Panel>,
    pub steering: Vec<SteerLayer>,
    pub swatches: Option<String>,
    pub preview: Option<String>,
}

/// Draws the figures of `set` (position `index` on the page) into `fig_dir`.
pub(super) fn draw(run: &Path, index: usize, set: &SetInputs, fig_dir: &Path) -> crate::report::Result<SetFigures> {
    let mut d = Drawn { name: &set.name, files: Vec::new() };
    let name = d.name;
    let stress = stress_figure(set, fig_dir, &d.stem("stress"))?;
    let stress = d.add(stress.0, d.stem("stress"), stress.1);
    let (projections, static3d, views) = projection_figures(&mut d, index, set, fig_dir)?;
    let joystick = match &set.analysis.joystick {
        Some(j) if !j.rows.is_empty() => {
            let fig = joystick_curves(&format!("{name}: decoder-only joystick (outside the model)"), &j.rows);
            Some(d.add(render(&fig, fig_dir, &d.stem("joystick"))?, d.stem("joystick"), "The seed notebook's \"neural \
                joystick\": a linear decoder to RGB fitted at the chosen layer, fed x_src + α (x_tgt − x_src), drawn as \
                the hue travelled from the source. It never runs the model, so it shows what a linear read-out can \
                do, not what the model does.".into()))
        }
        _ => None,
    };
    let (steering, swatches) = steering_figures(&mut d, set, fig_dir)?;
    let preview = super::html::stimulus_preview(run, name, fig_dir)?;
    let mut files = d.files;
    files.extend(preview.clone());
    Ok(SetFigures { files, stress, projections, static3d, views, joystick, steering, swatches, preview })
}

/// The figure files drawn so far for one set, and the set's name that starts each file stem.
struct Drawn<'a> {
    name: &'a str,
    files: Vec<String>,
}

impl Drawn<'_> {
    fn stem(&self, what: &str) -> String {
        format!("{}-{what}", self.name)
    }

    /// Records a rendered figure's two files and returns its panel.
    fn add(&mut self, files: [String; 2], stem: String, caption: String) -> Panel {
        self.files.extend(files);
        Panel { stem, caption }
    }
}

/// The supervised (SMDS) and unsupervised (PCA) projections: 2-D panels, the static 3-D panel and the
/// interactive 3-D views.
fn projection_figures(
    d: &mut Drawn,
    index: usize,
    set: &SetInputs,
    fig_dir: &Path,
) -> crate::report::Result<(Vec<Panel>, Option<Panel>, Vec<View3d>)> {
    let name = d.name;
    let (mut projections, mut static3d, mut views) = (Vec::new(), None, Vec::new());
    if let Some((coords, hues)) = &set.projection {
        let a = &set.analysis;
        let (layer, shape) = (a.projection.layer, a.projection.shape);
        let pts: Vec<(f64, f64, f64)> =
            (0..coords.nrows()).map(|i| (coords[[i, 0]], coords[[i, 1]], hues[i])).collect();
        let fig = HueScatter {
            title: format!("{name}: SMDS, layer {layer} ({shape} template)"),
            x_label: "SMDS 1".into(),
            y_label: "SMDS 2".into(),
            points: pts,
            square: true,
        };
        projections.push(d.add(
            render(&fig, fig_dir, &d.stem("projection2d"))?,
            d.stem("projection2d"),
            format!(
                "Supervised: activations at layer {layer} mapped by SMDS onto the (cos θ, sin θ, 0) template of the \
             winning shape, coloured by stimulus hue. SMDS is fitted to the hue labels, so it can draw a ring even \
             for a random model; compare the unsupervised view beside it."
            ),
        ));
        if let Ok(p) = &set.pca {
            let pts: Vec<(f64, f64, f64)> =
                (0..p.scores.nrows()).map(|i| (p.scores[[i, 0]], p.scores[[i, 1]], hues[i])).collect();
            let fig = HueScatter {
                title: format!("{name}: PCA, layer {layer} (no labels)"),
                x_label: format!("PC 1 ({:.0} % of variance)", 100.0 * p.share[0]),
                y_label: format!("PC 2 ({:.0} %)", 100.0 * p.share[1]),
                points: pts,
                square: true,
            };
            projections.push(d.add(
                render(&fig, fig_dir, &d.stem("pca2d"))?,
                d.stem("pca2d"),
                format!(
                    "Unsupervised: the first two principal components of the same activations (layer {layer}); PCA \
                 never sees the hues, so a hue-ordered ring here is the model's own structure."
                ),
            ));
        }
        if coords.ncols() >= 3 {
            let pts3: Vec<([f64; 3], f64)> =
                (0..coords.nrows()).map(|i| ([coords[[i, 0]], coords[[i, 1]], coords[[i, 2]]], hues[i])).collect();
            let fig = HueScatter3d { title: format!("{name}: SMDS layer {layer}, 3-D (static)"), points: pts3 };
            static3d = Some(d.add(
                render(&fig, fig_dir, &d.stem("projection3d"))?,
                d.stem("projection3d"),
                "The SMDS fit in three dimensions, for print; the third axis shows what the circle template does not \
                 explain. The interactive views above rotate."
                    .into(),
            ));
            views.push(view(
                format!("s{index}-smds"),
                format!("{name}: SMDS 3-D, layer {layer}"),
                ["SMDS 1", "SMDS 2", "SMDS 3"],
                coords,
                hues,
                &set.sample_ids,
            ));
        }
        if let Ok(p) = &set.pca {
            views.push(view(
                format!("s{index}-pca"),
                format!("{name}: PCA 3-D, layer {layer} (no labels)"),
                ["PC 1", "PC 2", "PC 3"],
                &p.scores,
                hues,
                &set.sample_ids,
            ));
        }
    }
    Ok((projections, static3d, views))
}

/// One panel per steered layer and pair, and the answer swatches of the layer shown open.
fn steering_figures(
    d: &mut Drawn,
    set: &SetInputs,
    fig_dir: &Path,
) -> crate::report::Result<(Vec<SteerLayer>, Option<String>)> {
    let name = d.name;
    let mut steering = Vec::new();
    let mut swatches = None;
    if let Some(st) = &set.steering {
        let chosen = set.analysis.choice.layer;
        let tol = st.summary.options.tolerance_deg;
        for &layer in &st.sweep.options.layers {
            let at: Vec<&SweepRow> = st.sweep.rows.iter().filter(|r| r.layer == layer).collect();
            let Some(first) = at.first() else { continue };
            let mut panels = Vec::new();
            for (i, pair) in pairs_of(&at).iter().enumerate() {
                let of_pair: Vec<&SweepRow> = at.iter().copied().filter(|r| &r.pair == pair).collect();
                let fig = steering_curves(name, pair, layer, &of_pair, tol);
                let s = d.stem(&format!("steer-L{layer}-{i}"));
                panels.push(d.add(
                    render(&fig, fig_dir, &s)?,
                    s,
                    format!(
                        "{pair} at layer {layer}: the direction is added to the residual stream and every later layer \
                     runs. Curves are the hue travelled from the source (unwrapped, so a full turn is never \
                     mistaken for no change), against the target line and its ±{tol}° band; the decoder-only \
                     joystick on the same activations is grey."
                    ),
                ));
            }
            steering.push(SteerLayer { layer, hook: first.hook.clone(), chosen: layer == chosen, panels });
        }
        if !steering.iter().any(|l| l.chosen) {
            if let Some(l) = steering.first_mut() {
                l.chosen = true;
            }
        }
        let shown = steering.iter().find(|l| l.chosen).map(|l| l.layer);
        let at: Vec<&SweepRow> = st.sweep.rows.iter().filter(|r| Some(r.layer) == shown).collect();
        if let Some(file) = super::html::swatches(&at, fig_dir, &d.stem("swatches"))? {
            d.files.push(file.clone());
            swatches = Some(file);
        }
    }
    Ok((steering, swatches))
}

fn view(
    id: String,
    title: String,
    axes: [&str; 3],
    coords: &ndarray::Array2<f64>,
    hues: &[f64],
    ids: &[String],
) -> View3d {
    let points = (0..coords.nrows())
        .map(|i| {
            let c = |k: usize| if k < coords.ncols() { coords[[i, k]] } else { 0.0 };
            ([c(0), c(1), c(2)], hues[i], ids.get(i).cloned().unwrap_or_else(|| format!("#{i}")))
        })
        .collect();
    View3d { id, title, axes: axes.map(String::from), points }
}

/// Stress by layer: the notebook's in-sample stress next to cross-validated stress and the shuffled-label
/// baseline, so a reader sees that in-sample stress alone is not evidence.
fn stress_figure(set: &SetInputs, fig_dir: &Path, stem: &str) -> crate::report::Result<([String; 2], String)> {
    let a = &set.analysis;
    let scan = &a.layer_scan;
    let series = |f: fn(&crate::manifold::LayerScanRow) -> f64| scan.iter().map(|r| 1.0 - f(r)).collect::<Vec<f64>>();
    let layers: Vec<usize> = scan.iter().map(|r| r.layer).collect();
    // The hook name of each point, from the run's store (none without one): the figure orders vision and
    // language points by forward order and marks the boundary.
    let hooks = set.manifest.as_ref().map_or_else(Vec::new, |m| {
        layers.iter().map(|&l| m.layer(l).map(|e| e.hook.clone()).unwrap_or_default()).collect()
    });
    let fig = LayerLines {
        title: format!("{}: circular stress (1 − score) by layer", set.name),
        y_label: "stress (lower is better)".into(),
        layers,
        series: vec![
            ("in-sample (notebook)".into(), SERIES[4], series(|r| r.in_sample_score)),
            ("cross-validated".into(), SERIES[0], series(|r| r.cv_score)),
            ("shuffled labels (CV)".into(), SERIES[1], series(|r| r.shuffled_baseline)),
        ],
        chosen: Some(a.choice.layer),
        hooks,
    };
    let caption = format!(
        "Circular SMDS stress per layer ({} labels). The notebook picked the layer with the lowest in-sample stress; \
         with fewer samples than dimensions that is near 0 for any labels, so huescan chooses on the cross-validated \
         score and shows the shuffled-label baseline.",
        a.mode
    );
    Ok((render(&fig, fig_dir, stem)?, caption))
}

fn pairs_of(rows: &[&SweepRow]) -> Vec<String> {
    let mut pairs: Vec<String> = Vec::new();
    for r in rows {
        if !pairs.contains(&r.pair) {
            pairs.push(r.pair.clone());
        }
    }
    pairs
}

/// Every direction kind of one pair at one layer, and the decoder-only joystick, as hue travelled from the
/// source with the target line.
fn steering_curves(set: &str, pair: &str, layer: usize, rows: &[&SweepRow], tol: f64) -> AlphaCurves {
    let Some(first) = rows.first() else {
        return AlphaCurves {
            title: String::new(),
            y_label: String::new(),
            series: vec![],
            y_range: None,
            target: None,
        };
    };
    let source = first.source_deg;
    let mut series = Vec::new();
    for (k, kind) in DirectionKind::ALL.iter().enumerate() {
        let pts: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| r.direction == *kind)
            .map(|r| (r.alpha, r.final_hue_deg.unwrap_or(f64::NAN)))
            .collect();
        if !pts.is_empty() {
            series.push((format!("in-model, {kind}"), SERIES[k % SERIES.len()], travelled(source, pts)));
        }
    }
    let joy: Vec<(f64, f64)> = rows
        .iter()
        .filter(|r| r.direction == DirectionKind::Centroid)
        .map(|r| (r.alpha, r.joystick_hue_deg.unwrap_or(f64::NAN)))
        .collect();
    if joy.iter().any(|p| p.1.is_finite()) {
        series.push(("decoder-only joystick".into(), SERIES[4], travelled(source, joy)));
    }
    AlphaCurves {
        title: format!("{set}: {pair} at layer {layer}"),
        y_label: "hue travelled from the source (deg)".into(),
        series,
        y_range: None,
        target: Some((signed_hue_delta_deg(source, first.target_deg), tol)),
    }
}

fn joystick_curves(title: &str, rows: &[crate::manifold::JoystickRow]) -> AlphaCurves {
    let mut names: Vec<&str> = Vec::new();
    for r in rows {
        if !names.contains(&r.pair.as_str()) {
            names.push(&r.pair);
        }
    }
    let series = names
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let of: Vec<&crate::manifold::JoystickRow> = rows.iter().filter(|r| r.pair == *g).collect();
            let pts = of.iter().map(|r| (r.alpha, r.decoded_hue)).collect();
            let target = of.first().map_or(0.0, |r| signed_hue_delta_deg(r.source_deg, r.target_deg));
            (format!("{g} (target {target:+.0}°)"), SERIES[i % SERIES.len()], travelled(of[0].source_deg, pts))
        })
        .collect();
    AlphaCurves {
        title: title.into(),
        y_label: "hue travelled from the source (deg)".into(),
        series,
        y_range: None,
        target: None,
    }
}

/// The signed hue travelled from `source` along a curve of `(alpha, hue)`: anchored at the point nearest
/// alpha 0 (wrapped into [-180, 180)), then unwrapped step by step both ways, so every curve of a pair starts
/// at the same place and a target 120° away reads +120 whichever way round the numbers wrapped.
pub(super) fn travelled(source: f64, mut pts: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    let finite: Vec<usize> = (0..pts.len()).filter(|&i| pts[i].1.is_finite()).collect();
    let Some(&anchor) = finite.iter().min_by(|&&a, &&b| pts[a].0.abs().total_cmp(&pts[b].0.abs())) else {
        return pts;
    };
    let raw: Vec<f64> = pts.iter().map(|p| p.1).collect();
    pts[anchor].1 = signed_hue_delta_deg(source, raw[anchor]);
    let pos = finite.iter().position(|&i| i == anchor).unwrap_or(0);
    for w in pos..finite.len().saturating_sub(1) {
        let (a, b) = (finite[w], finite[w + 1]);
        pts[b].1 = pts[a].1 + signed_hue_delta_deg(raw[a], raw[b]);
    }
    for w in (1..=pos).rev() {
        let (a, b) = (finite[w], finite[w - 1]);
        pts[b].1 = pts[a].1 + signed_hue_delta_deg(raw[a], raw[b]);
    }
    pts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blue_to_red_reads_plus_120_not_minus_240() {
        // Blue (240) → red (0 = 360): hues 240, 270, 300, 330, 0, 30 must read 0..+150, and a curve that starts
        // at 238 (just under the source) reads -2 rather than +358.
        let pts = vec![(0.0, 240.0), (0.2, 270.0), (0.4, 300.0), (0.6, 330.0), (0.8, 0.0), (1.0, 30.0)];
        let got: Vec<f64> = travelled(240.0, pts).iter().map(|p| p.1).collect();
        assert_eq!(got, vec![0.0, 30.0, 60.0, 90.0, 120.0, 150.0]);
        let got = travelled(240.0, vec![(-0.25, 200.0), (0.0, 238.0), (0.5, f64::NAN), (1.0, 359.0)]);
        assert_eq!(got[0].1, -40.0);
        assert_eq!(got[1].1, -2.0);
        assert!(got[2].1.is_nan());
        assert_eq!(got[3].1, 119.0);
        assert_eq!(signed_hue_delta_deg(240.0, 0.0), 120.0, "the target line sits at +120");
    }
}
