//! The notebook's analysis of one stimulus set (sections 4-10), streaming layers one at a time, plus
//! cross-validated layer choice, shuffled-label baselines, permutation p-values and bootstrap intervals.
//!
//! Per layer only its $n \times n$ Gram matrix is kept while the layer is scored, and only the Gram of the best
//! layer so far survives the scan: memory is one layer's activations plus two $n \times n$ matrices.

use ndarray::Array2;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::cv::{kfold_contiguous, kfold_shuffled, mean_std, n_folds_for, periodic_train_test_split, Fold, FoldOps};
use super::gram::{ideal_embedding, project, LayerGram};
use super::joystick::{joystick_from_gram, Joystick, JoystickOptions};
use super::metrics::{pairwise, score_all, score_primary, Metric, Scores};
use super::shapes::{circle_template_3d, hue_turns, LabelMode, Shape};
use super::stats::{bootstrap_interval, coverage_ratio, periodicity_score, permutation_p_value, seam_closure_ratio};
use super::{Error, MIN_SAMPLES, SMALL_N_WARNING};

/// Settings of [`analyze`]. Defaults are the notebook's; `mode` decides labels and folds (see [`LabelMode`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalyzeOptions {
    /// Name of the stimulus set, written in every row (the notebook's `dataset`).
    pub dataset: String,
    pub mode: LabelMode,
    /// Candidate shapes; default the notebook's Circular, Semicircular, Euclidean.
    pub shapes: Vec<Shape>,
    /// Ideal-embedding dimension of discovery and held-out fits (the package's `smds_components`, 2).
    pub n_components: usize,
    /// Ridge alpha of the notebook's own fits (scan, refit on train, projection): 1e-4.
    pub alpha_fit: f64,
    /// Ridge alpha of cross-validated scores (the package's `discover_manifolds` default): 1.0.
    pub alpha_cv: f64,
    pub test_fraction: f64,
    pub split_offset: usize,
    /// Folds of discovery and of the scan's CV; `None` = `min(5, max(2, n // 10))` of the data being split.
    pub n_folds: Option<usize>,
    /// Seeds shuffled folds (periodic mode), permutations and bootstraps.
    pub seed: u64,
    /// Label permutations per layer (scan) and per shape (discovery); 0 turns the test off.
    pub n_permutations: usize,
    /// Bootstrap resamples of the held-out test set; 0 turns intervals off.
    pub n_bootstrap: usize,
    pub ci_level: f64,
    /// Composite = `w_test * test_score + w_periodicity * periodicity_score` (0.7 / 0.3).
    pub w_test: f64,
    pub w_periodicity: f64,
    /// Analyse this layer instead of choosing one.
    pub layer: Option<usize>,
    /// Run the decoder-only joystick at the chosen layer.
    pub joystick: Option<JoystickOptions>,
}

impl Default for AnalyzeOptions {
    fn default() -> Self {
        AnalyzeOptions {
            dataset: "set".into(),
            mode: LabelMode::Periodic,
            shapes: Shape::NOTEBOOK.to_vec(),
            n_components: 2,
            alpha_fit: crate::settings::SMDS_ALPHA,
            alpha_cv: 1.0,
            test_fraction: 0.2,
            split_offset: 0,
            n_folds: None,
            seed: crate::settings::SEED,
            n_permutations: crate::settings::PERMUTATIONS,
            n_bootstrap: crate::settings::BOOTSTRAP,
            ci_level: 0.95,
            w_test: crate::settings::W_TEST,
            // 0.3, not `1 - W_TEST` (0.30000000000000004, what the command line computes): library callers
            // keep the numbers they have always had.
            w_periodicity: 0.3,
            layer: None,
            joystick: Some(JoystickOptions::default()),
        }
    }
}

impl AnalyzeOptions {
    /// The notebook's procedure number for number (compat labels, unshuffled folds, alphas 1e-4 / 1.0). The
    /// extras the notebook lacks (permutations, bootstrap, per-shape CV in the scan) still run, seeded; they add
    /// columns and change none of the notebook's numbers.
    pub fn notebook(dataset: &str) -> Self {
        AnalyzeOptions { dataset: dataset.into(), mode: LabelMode::Compat, ..Default::default() }
    }

    pub fn check(&self) -> Result<(), Error> {
        let bad = |name, value: String, expected| Err(Error::InvalidParam { name, value, expected });
        if self.shapes.is_empty() {
            return bad("shapes", "[]".into(), "at least one shape");
        }
        for (name, a) in [("alpha_fit", self.alpha_fit), ("alpha_cv", self.alpha_cv)] {
            if !(a.is_finite() && a >= 0.0) {
                return bad(name, a.to_string(), "a finite number >= 0");
            }
        }
        if self.n_components == 0 {
            return bad("n_components", "0".into(), "at least 1");
        }
        if !(self.ci_level > 0.0 && self.ci_level < 1.0) {
            return bad("ci_level", self.ci_level.to_string(), "0 < ci_level < 1");
        }
        if !(self.w_test.is_finite() && self.w_periodicity.is_finite()) {
            return bad("w_test", format!("{}/{}", self.w_test, self.w_periodicity), "finite weights");
        }
        if let Some(k) = self.n_folds {
            if k < 2 {
                return bad("n_folds", k.to_string(), "at least 2");
            }
        }
        Ok(())
    }

    fn folds(&self, n: usize, salt: u64) -> Result<Vec<Fold>, Error> {
        let k = self.n_folds.unwrap_or_else(|| n_folds_for(n));
        match self.mode {
            LabelMode::Compat => kfold_contiguous(n, k),
            LabelMode::Periodic => kfold_shuffled(n, k, self.seed ^ salt),
        }
    }
}

/// One row of `layer_scan.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerScanRow {
    pub layer: usize,
    pub mode: LabelMode,
    /// Circular score fitted and scored on the same samples (`alpha_fit`): the notebook's scan. With n < d it is
    /// near 1 for any labels, so it is reported, not used, in periodic mode.
    pub in_sample_score: f64,
    pub stress: f64,
    /// Mean / std over folds of the cross-validated Circular score (`alpha_cv`).
    pub cv_score: f64,
    pub cv_std: f64,
    pub n_folds: usize,
    /// Mean cross-validated score with shuffled labels (the permutation null), and the p-value of `cv_score`.
    pub shuffled_baseline: f64,
    pub p_value: f64,
    /// Cross-validated primary score (mean, std over the same folds) of every candidate shape at this layer.
    pub cv_by_shape: Vec<(Shape, f64, f64)>,
    pub note: String,
}

/// Which layer the set-level analysis used, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerChoice {
    pub layer: usize,
    /// `min_in_sample_stress` (compat, the notebook), `max_cv_score` (periodic) or `user`.
    pub criterion: String,
}

/// One shape's cross-validated discovery on the training split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiscoveryRow {
    pub shape: Shape,
    pub rank: usize,
    pub n_folds: usize,
    /// Per metric (order of [`Metric::ALL`]): mean, std (ddof 0) and per-fold scores.
    pub mean: Scores,
    pub std: Scores,
    pub folds: Vec<Scores>,
    pub p_value: f64,
    pub shuffled_baseline: f64,
}

/// One shape refitted on train (`alpha_fit`) and scored on the held-out test split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldoutRow {
    pub shape: Shape,
    pub test: Scores,
    pub test_ci: (f64, f64),
    pub test_closure_ratio: f64,
    pub periodicity_score: f64,
    pub coverage_ratio: f64,
}

/// One row of the notebook's arbitration table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArbitrationRow {
    pub shape: Shape,
    pub train_cv_score: f64,
    pub train_cv_std: f64,
    pub test_score: f64,
    pub test_closure_ratio: f64,
    pub periodicity_score: f64,
    pub coverage_ratio: f64,
    pub composite_score: f64,
}

/// The 3-D projection with the `(cos, sin, 0)` template of this set's winning shape, fitted on all samples at the
/// chosen layer (alpha_fit). The notebook uses the global winner across sets instead; where the two differ, refit
/// with `SmdsParams::template(circle_template_3d(hue_deg, shape))`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Projection {
    pub layer: usize,
    pub shape: Shape,
    /// `[n, 3]`, rows in input order.
    #[serde(skip)]
    pub coords: Array2<f64>,
    /// The same fit as a matrix for new activations; `analyze` streams layers and keeps none, so the caller
    /// that holds the layer fills it ([`super::ProjectionMap::fit`]) before writing.
    #[serde(skip)]
    pub map: Option<super::ProjectionMap>,
}

/// Everything `huescan analyze` reports for one stimulus set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Analysis {
    pub dataset: String,
    pub mode: LabelMode,
    pub options: AnalyzeOptions,
    pub n_samples: usize,
    /// Width of the chosen layer.
    pub d_model: usize,
    pub hue_deg: Vec<f64>,
    pub layer_scan: Vec<LayerScanRow>,
    pub choice: LayerChoice,
    pub train_idx: Vec<usize>,
    pub test_idx: Vec<usize>,
    /// Discovery folds, as positions into `train_idx`.
    pub discovery_folds: Vec<Fold>,
    pub discovery: Vec<DiscoveryRow>,
    pub heldout: Vec<HeldoutRow>,
    /// Sorted by composite, best first.
    pub arbitration: Vec<ArbitrationRow>,
    pub winner: Shape,
    pub projection: Projection,
    pub joystick: Option<Joystick>,
    pub warnings: Vec<String>,
}

fn check_hues(hue_deg: &[f64]) -> Result<Vec<String>, Error> {
    let n = hue_deg.len();
    if n < MIN_SAMPLES {
        return Err(Error::TooFewSamples { got: n, min: MIN_SAMPLES });
    }
    if let Some((index, &value)) = hue_deg.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(Error::NonFiniteLabel { index, value });
    }
    let turns = hue_turns(hue_deg);
    if turns.iter().all(|t| *t == turns[0]) {
        return Err(Error::ConstantLabels { n, value: hue_deg[0] });
    }
    let mut warnings = Vec::new();
    let mut sorted = turns.clone();
    sorted.sort_by(f64::total_cmp);
    sorted.dedup();
    if sorted.len() < n {
        warnings.push(format!(
            "{} of {n} samples repeat a hue (mod 360); ties are kept, seam closure averages them",
            n - sorted.len()
        ));
    }
    if n < SMALL_N_WARNING {
        warnings
            .push(format!("only {n} samples (< {SMALL_N_WARNING}): scores are noisy, read the intervals and p-values"));
    }
    Ok(warnings)
}

fn permutations(labels: &[f64], count: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            let mut p = labels.to_vec();
            p.shuffle(&mut rng);
            p
        })
        .collect()
}

/// Null distribution of the mean CV primary score of `shape` under the label permutations.
fn null_scores(ops: &FoldOps, shape: Shape, perms: &[Vec<f64>], opts: &AnalyzeOptions) -> Result<Vec<f64>, Error> {
    perms.par_iter().map(|p| ops.mean_primary(shape, p, opts.mode, opts.n_components)).collect()
}

fn nan_last_desc(a: f64, b: f64) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ => b.total_cmp(&a),
    }
}

/// What the layer scan scores every layer against: the labels, all rows, the scan's folds and label
/// permutations, and the circle's ideal embedding and distances.
struct ScanContext<'a> {
    opts: &'a AnalyzeOptions,
    labels: &'a [f64],
    all: &'a [usize],
    folds: &'a [Fold],
    perms: &'a [Vec<f64>],
    circ_all: &'a Array2<f64>,
    circ_d: &'a Array2<f64>,
}

/// The scan row of a zero-variance layer: the package's `-inf` score, never chosen.
fn zero_variance_row(layer: usize, ctx: &ScanContext) -> LayerScanRow {
    let mut row = empty_scan_row(layer, ctx);
    row.note = "zero variance: every row is identical, score is -inf as in the package".into();
    row
}

fn empty_scan_row(layer: usize, ctx: &ScanContext) -> LayerScanRow {
    LayerScanRow {
        layer,
        mode: ctx.opts.mode,
        in_sample_score: f64::NEG_INFINITY,
        stress: f64::INFINITY,
        cv_score: f64::NAN,
        cv_std: f64::NAN,
        n_folds: ctx.folds.len(),
        shuffled_baseline: f64::NAN,
        p_value: f64::NAN,
        cv_by_shape: Vec::new(),
        note: String::new(),
    }
}

/// One layer of the scan: its in-sample and cross-validated circle scores, the other shapes' CV scores and the
/// permutation baseline, with the key the layer choice maximises. `None` for a zero-variance layer.
fn scan_layer(
    layer: usize,
    gram: &LayerGram,
    ctx: &ScanContext,
) -> crate::manifold::Result<Option<(LayerScanRow, f64)>> {
    let (opts, k) = (ctx.opts, ctx.opts.n_components);
    let mut row = empty_scan_row(layer, ctx);
    if gram.trace() == 0.0 {
        return Ok(None);
    }
    let op = gram.operator(ctx.all, ctx.all, opts.alpha_fit)?;
    row.in_sample_score = score_primary(ctx.circ_d.view(), pairwise(project(&op, ctx.circ_all).view()).view());
    row.stress = 1.0 - row.in_sample_score;
    let ops = FoldOps::new(gram, ctx.all, ctx.folds.to_vec(), opts.alpha_cv)?;
    let fold_scores: Vec<f64> =
        ops.scores(Shape::Circular, ctx.labels, opts.mode, k)?.iter().map(Scores::primary).collect();
    (row.cv_score, row.cv_std) = mean_std(&fold_scores);
    for &shape in &opts.shapes {
        let (mean, std) = if shape == Shape::Circular {
            (row.cv_score, row.cv_std)
        } else {
            mean_std(&ops.scores(shape, ctx.labels, opts.mode, k)?.iter().map(Scores::primary).collect::<Vec<_>>())
        };
        row.cv_by_shape.push((shape, mean, std));
    }
    let null = null_scores(&ops, Shape::Circular, ctx.perms, opts)?;
    if !null.is_empty() {
        row.shuffled_baseline = null.iter().sum::<f64>() / null.len() as f64;
    }
    row.p_value = permutation_p_value(row.cv_score, &null);
    let key = match (opts.layer, opts.mode) {
        (Some(l), _) => f64::from(u8::from(l == layer)),
        (None, LabelMode::Compat) => row.in_sample_score,
        (None, LabelMode::Periodic) => row.cv_score,
    };
    Ok(Some((row, key)))
}

/// Discovery on the training split: every candidate shape's cross-validated scores and permutation p-value,
/// ranked by mean primary score (NaN last).
fn discover(
    ops: &FoldOps,
    train_labels: &[f64],
    perms: &[Vec<f64>],
    opts: &AnalyzeOptions,
) -> Result<Vec<DiscoveryRow>, Error> {
    let k = opts.n_components;
    let mut discovery = opts
        .shapes
        .iter()
        .map(|&shape| {
            let folds = ops.scores(shape, train_labels, opts.mode, k)?;
            let stats: Vec<(f64, f64)> =
                (0..5).map(|m| mean_std(&folds.iter().map(|s| s.0[m]).collect::<Vec<_>>())).collect();
            let null = null_scores(ops, shape, perms, opts)?;
            let mean = Scores(std::array::from_fn(|m| stats[m].0));
            Ok(DiscoveryRow {
                shape,
                rank: 0,
                n_folds: folds.len(),
                std: Scores(std::array::from_fn(|m| stats[m].1)),
                p_value: permutation_p_value(mean.primary(), &null),
                shuffled_baseline: if null.is_empty() {
                    f64::NAN
                } else {
                    null.iter().sum::<f64>() / null.len() as f64
                },
                mean,
                folds,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    discovery.sort_by(|a, b| nan_last_desc(a.mean.primary(), b.mean.primary()));
    discovery.iter_mut().enumerate().for_each(|(i, r)| r.rank = i + 1);
    Ok(discovery)
}

/// Refits each discovered shape on the training split and scores the held-out test split: every metric, a
/// bootstrap interval of the primary score, the seam closure and the periodicity score.
fn held_out(
    gram: &LayerGram,
    discovery: &[DiscoveryRow],
    (train, test): (&[usize], &[usize]),
    hue_deg: &[f64],
    labels: &[f64],
    opts: &AnalyzeOptions,
) -> Result<Vec<HeldoutRow>, Error> {
    let k = opts.n_components;
    let train_labels: Vec<f64> = train.iter().map(|&i| labels[i]).collect();
    let test_labels: Vec<f64> = test.iter().map(|&i| labels[i]).collect();
    let test_hues: Vec<f64> = test.iter().map(|&i| hue_deg[i]).collect();
    let op_test = gram.operator(train, test, opts.alpha_fit)?;
    let coverage = coverage_ratio(hue_deg);
    discovery
        .iter()
        .map(|d| {
            let y = ideal_embedding(d.shape, &train_labels, opts.mode, k)?;
            let z = project(&op_test, &y);
            let d_pred = pairwise(z.view());
            let scores = score_all(d.shape.distances(&test_labels, opts.mode)?.view(), d_pred.view());
            let ci =
                bootstrap_interval(test.len(), opts.n_bootstrap, opts.ci_level, opts.seed.wrapping_add(3), |idx| {
                    let sub: Vec<f64> = idx.iter().map(|&i| test_labels[i]).collect();
                    let d_ideal = d.shape.distances(&sub, opts.mode).expect("labels already checked");
                    score_primary(
                        d_ideal.view(),
                        d_pred.select(ndarray::Axis(0), idx).select(ndarray::Axis(1), idx).view(),
                    )
                });
            let closure = seam_closure_ratio(z.view(), &test_hues);
            Ok(HeldoutRow {
                shape: d.shape,
                test: scores,
                test_ci: ci,
                test_closure_ratio: closure,
                periodicity_score: periodicity_score(closure),
                coverage_ratio: coverage,
            })
        })
        .collect::<Result<Vec<_>, Error>>()
}

/// Arbitration: each shape's composite of held-out score and periodicity, best first (NaN last).
fn arbitrate(discovery: &[DiscoveryRow], heldout: &[HeldoutRow], opts: &AnalyzeOptions) -> Vec<ArbitrationRow> {
    let mut arbitration: Vec<ArbitrationRow> = discovery
        .iter()
        .zip(heldout)
        .map(|(d, h)| ArbitrationRow {
            shape: d.shape,
            train_cv_score: d.mean.primary(),
            train_cv_std: d.std.primary(),
            test_score: h.test.primary(),
            test_closure_ratio: h.test_closure_ratio,
            periodicity_score: h.periodicity_score,
            coverage_ratio: h.coverage_ratio,
            composite_score: opts.w_test * h.test.primary() + opts.w_periodicity * h.periodicity_score,
        })
        .collect();
    arbitration.sort_by(|a, b| nan_last_desc(a.composite_score, b.composite_score));
    arbitration
}

/// How the analysis layer was chosen: by the user, or by the mode's criterion.
fn choice_criterion(opts: &AnalyzeOptions) -> &'static str {
    match (opts.layer, opts.mode) {
        (Some(_), _) => "user",
        (None, LabelMode::Compat) => "min_in_sample_stress",
        (None, LabelMode::Periodic) => "max_cv_score",
    }
}

/// The layer scan over every layer: one row per layer, each layer's width, and the chosen layer with its Gram
/// matrix (the only layer kept in memory once scanned).
struct Scanned {
    rows: Vec<LayerScanRow>,
    widths: std::collections::BTreeMap<usize, usize>,
    layer: usize,
    gram: LayerGram,
}

fn scan_layers<T, I>(layers: I, ctx: &ScanContext, warnings: &mut Vec<String>) -> crate::manifold::Result<Scanned>
where
    T: Copy + Into<f64> + Send + Sync,
    I: IntoIterator<Item = crate::manifold::Result<(usize, Array2<T>)>>,
{
    let n = ctx.labels.len();
    let mut scan = Vec::new();
    let mut widths = std::collections::BTreeMap::new();
    let mut best: Option<(f64, usize, LayerGram)> = None;
    for item in layers {
        let (layer, x) = item?;
        let _span = tracing::info_span!("manifold_layer", layer).entered();
        if x.nrows() != n {
            return Err(Error::LayerRows { layer, got: x.nrows(), expected: n });
        }
        // Layers may differ in width (the colour autoencoder's do); each is analysed on its own.
        widths.insert(layer, x.ncols());
        let gram = LayerGram::new(x.view(), &format!("layer {layer}"))?;
        drop(x);
        let Some((row, key)) = scan_layer(layer, &gram, ctx)? else {
            warnings.push(format!("layer {layer} has zero variance and was skipped"));
            scan.push(zero_variance_row(layer, ctx));
            continue;
        };
        // Strictly greater keeps the first layer on ties, like pandas idxmin.
        if key.is_finite() && best.as_ref().is_none_or(|(b, _, _)| key > *b) {
            best = Some((key, layer, gram));
        }
        scan.push(row);
    }
    if scan.is_empty() {
        return Err(Error::NoLayers);
    }
    let Some((_, layer, gram)) = best else {
        return Err(Error::NoUsableLayer(format!("{} layers, all constant", scan.len())));
    };
    Ok(Scanned { rows: scan, widths, layer, gram })
}

/// Analyses one stimulus set. `layers` yields `(layer index, [n_samples, d_model] activations)` one at a time
/// (f32 or f64); `hue_deg` has one hue per row. Errors: fewer than 8 samples, NaN/constant hues, a layer whose
/// row count or width differs, NaN/Inf activations (named by layer, row, column), every layer constant.
/// Constant (zero-variance) layers are kept in the scan with the package's `-inf` score and never chosen.
pub fn analyze<T, I>(layers: I, hue_deg: &[f64], opts: &AnalyzeOptions) -> crate::manifold::Result<Analysis>
where
    T: Copy + Into<f64> + Send + Sync,
    I: IntoIterator<Item = crate::manifold::Result<(usize, Array2<T>)>>,
{
    opts.check()?;
    let mut warnings = check_hues(hue_deg)?;
    let n = hue_deg.len();
    let labels = hue_turns(hue_deg);
    let k = opts.n_components;
    let all: Vec<usize> = (0..n).collect();
    let scan_folds = opts.folds(n, 0x5ca7)?;
    let min_train = scan_folds.iter().map(|f| f.train.len()).min().unwrap_or(n);
    if k > min_train {
        return Err(Error::TooManyComponents { k, n: min_train });
    }
    let scan_perms = permutations(&labels, opts.n_permutations, opts.seed.wrapping_add(1));
    let circ_all = ideal_embedding(Shape::Circular, &labels, opts.mode, k)?;
    let circ_d = Shape::Circular.distances(&labels, opts.mode)?;

    let ctx = ScanContext {
        opts,
        labels: &labels,
        all: &all,
        folds: &scan_folds,
        perms: &scan_perms,
        circ_all: &circ_all,
        circ_d: &circ_d,
    };
    let Scanned { rows: scan, widths, layer, gram } = scan_layers(layers, &ctx, &mut warnings)?;
    if let Some(want) = opts.layer {
        if want != layer {
            return Err(Error::InvalidParam {
                name: "layer",
                value: want.to_string(),
                expected: "a layer in the store",
            });
        }
    }

    // Train/test split and discovery on train.
    let (train, test) = periodic_train_test_split(hue_deg, opts.test_fraction, opts.split_offset)?;
    if train.len() < SMALL_N_WARNING {
        warnings
            .push(format!("discovery trains on {} samples (< {SMALL_N_WARNING}), as the package warns", train.len()));
    }
    let train_labels: Vec<f64> = train.iter().map(|&i| labels[i]).collect();
    let ops = FoldOps::new(&gram, &train, opts.folds(train.len(), 0xd15c)?, opts.alpha_cv)?;
    let disc_perms = permutations(&train_labels, opts.n_permutations, opts.seed.wrapping_add(2));
    let discovery = discover(&ops, &train_labels, &disc_perms, opts)?;

    // Refit on train, score the held-out test split.
    let heldout = held_out(&gram, &discovery, (&train, &test), hue_deg, &labels, opts)?;

    let arbitration = arbitrate(&discovery, &heldout, opts);
    let winner = arbitration[0].shape;

    let template = circle_template_3d(hue_deg, winner);
    let op_all = gram.operator(&all, &all, opts.alpha_fit)?;
    let projection = Projection { layer, shape: winner, coords: project(&op_all, &template), map: None };
    let joystick = opts.joystick.as_ref().map(|j| joystick_from_gram(&gram, hue_deg, j)).transpose()?;

    Ok(Analysis {
        dataset: opts.dataset.clone(),
        mode: opts.mode,
        options: opts.clone(),
        n_samples: n,
        d_model: widths.get(&layer).copied().unwrap_or(0),
        hue_deg: hue_deg.to_vec(),
        layer_scan: scan,
        choice: LayerChoice { layer, criterion: choice_criterion(opts).into() },
        train_idx: train,
        test_idx: test,
        discovery_folds: ops.folds.clone(),
        discovery,
        heldout,
        arbitration,
        winner,
        projection,
        joystick,
        warnings,
    })
}

/// One row of the notebook's `global_shape_df`: a shape's arbitration averaged over stimulus sets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GlobalShapeRow {
    pub shape: Shape,
    pub mean_train_cv_score: f64,
    pub mean_test_score: f64,
    pub mean_periodicity: f64,
    pub mean_composite: f64,
    /// Sample standard deviation (ddof 1, pandas' default); NaN for one set.
    pub std_composite: f64,
    pub n_domains: usize,
}

/// The notebook's global topology winner across sets: rows sorted by mean composite, best first.
pub fn global_winner(analyses: &[Analysis]) -> Vec<GlobalShapeRow> {
    let mut shapes: Vec<Shape> = analyses.iter().flat_map(|a| a.arbitration.iter().map(|r| r.shape)).collect();
    shapes.sort_by_key(|s| s.class_name());
    shapes.dedup();
    let mut rows: Vec<GlobalShapeRow> = shapes
        .into_iter()
        .map(|shape| {
            let rs: Vec<&ArbitrationRow> =
                analyses.iter().flat_map(|a| a.arbitration.iter().filter(move |r| r.shape == shape)).collect();
            let m = rs.len() as f64;
            let mean = |f: fn(&ArbitrationRow) -> f64| rs.iter().map(|r| f(r)).sum::<f64>() / m;
            let mc = mean(|r| r.composite_score);
            let std = if rs.len() > 1 {
                (rs.iter().map(|r| (r.composite_score - mc).powi(2)).sum::<f64>() / (m - 1.0)).sqrt()
            } else {
                f64::NAN
            };
            GlobalShapeRow {
                shape,
                mean_train_cv_score: mean(|r| r.train_cv_score),
                mean_test_score: mean(|r| r.test_score),
                mean_periodicity: mean(|r| r.periodicity_score),
                mean_composite: mc,
                std_composite: std,
                n_domains: rs.len(),
            }
        })
        .collect();
    rows.sort_by(|a, b| nan_last_desc(a.mean_composite, b.mean_composite));
    rows
}

/// Metric column order of the CSV writers (the package's `StressMetrics` order).
pub(crate) const METRICS: [Metric; 5] = Metric::ALL;
