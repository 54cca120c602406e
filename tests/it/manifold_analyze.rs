//! Known answers and bad input for `manifold::analyze` (periodic mode unless stated), and the writers.

use huescan::manifold::{self, analyze, write_analysis, write_global, AnalyzeOptions, LabelMode, Shape};
use ndarray::Array2;

/// Deterministic N(0,1) stream (splitmix64 + Box-Muller).
struct Noise(u64);

impl Noise {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform().max(1e-300), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

#[derive(Clone, Copy)]
enum Plant {
    Circle,
    Line,
    Noise,
}

/// `[n, d]` activations: a planted structure in two directions mixed over all dims, plus N(0,1) noise.
fn layer(plant: Plant, hue: &[f64], d: usize, seed: u64) -> Array2<f32> {
    let mut rng = Noise(seed);
    let dirs: Vec<f64> = (0..2 * d).map(|_| rng.normal() / (d as f64).sqrt()).collect();
    Array2::from_shape_fn((hue.len(), d), |(i, j)| {
        let th = hue[i].to_radians();
        let (a, b) = match plant {
            Plant::Circle => (4.0 * th.cos(), 4.0 * th.sin()),
            Plant::Line => (8.0 * hue[i] / 360.0, 0.0),
            Plant::Noise => (0.0, 0.0),
        };
        ((a * dirs[2 * j] + b * dirs[2 * j + 1]) * (d as f64).sqrt() / 2.0 + rng.normal()) as f32
    })
}

fn hues(n: usize) -> Vec<f64> {
    (0..n).map(|i| i as f64 * 360.0 / n as f64).collect()
}

fn opts() -> AnalyzeOptions {
    AnalyzeOptions { n_permutations: 99, n_bootstrap: 200, seed: 7, ..Default::default() }
}

fn run(layers: Vec<Array2<f32>>, hue: &[f64], o: &AnalyzeOptions) -> manifold::Result<manifold::Analysis> {
    analyze(layers.into_iter().enumerate().map(Ok), hue, o)
}

#[test]
fn noisy_circle_is_found_circular_at_the_right_layer_and_beats_shuffled_labels() {
    let hue = hues(120);
    let layers =
        vec![layer(Plant::Noise, &hue, 200, 1), layer(Plant::Circle, &hue, 200, 2), layer(Plant::Noise, &hue, 200, 3)];
    let a = run(layers, &hue, &opts()).unwrap();
    assert_eq!(a.choice.layer, 1, "{:#?}", a.layer_scan);
    assert_eq!(a.choice.criterion, "max_cv_score");
    assert_eq!(a.discovery[0].shape, Shape::Circular);
    assert_eq!(a.winner, Shape::Circular);
    let scan = &a.layer_scan[1];
    assert!(scan.p_value <= 0.02, "p = {}", scan.p_value);
    assert!(scan.cv_score > scan.shuffled_baseline + 0.2);
    let h = a.heldout.iter().find(|h| h.shape == Shape::Circular).unwrap();
    let (lo, hi) = h.test_ci;
    assert!(h.test.primary() > 0.7, "held-out {}", h.test.primary());
    assert!(lo < h.test.primary() && h.test.primary() < hi, "interval ({lo}, {hi}) vs {}", h.test.primary());
    assert!(h.periodicity_score > a.heldout.iter().find(|h| h.shape == Shape::Euclidean).unwrap().periodicity_score);
}

#[test]
fn planted_line_is_found_euclidean() {
    let hue = hues(120);
    let a = run(vec![layer(Plant::Line, &hue, 200, 4)], &hue, &opts()).unwrap();
    assert_eq!(a.discovery[0].shape, Shape::Euclidean, "{:#?}", a.discovery);
    assert_eq!(a.winner, Shape::Euclidean);
    assert!(a.discovery[0].p_value <= 0.02);
}

#[test]
fn pure_noise_beats_no_permutation_baseline_though_its_in_sample_score_is_near_one() {
    let hue = hues(120);
    let a = run(vec![layer(Plant::Noise, &hue, 400, 5)], &hue, &opts()).unwrap();
    let scan = &a.layer_scan[0];
    // The notebook's trap: with n < d the in-sample fit interpolates any labels.
    assert!(scan.in_sample_score > 0.95, "{}", scan.in_sample_score);
    assert!(scan.p_value > 0.01, "scan p = {}", scan.p_value);
    for d in &a.discovery {
        assert!(d.p_value > 0.01, "{} p = {}", d.shape, d.p_value);
    }
}

#[test]
fn compat_mode_chooses_by_in_sample_stress_and_says_so() {
    let hue = hues(60);
    let layers = vec![layer(Plant::Noise, &hue, 100, 6), layer(Plant::Circle, &hue, 100, 7)];
    let o = AnalyzeOptions { n_permutations: 0, n_bootstrap: 0, ..AnalyzeOptions::notebook("flat") };
    let a = run(layers, &hue, &o).unwrap();
    assert_eq!(a.choice.criterion, "min_in_sample_stress");
    assert!(a.layer_scan.iter().all(|r| r.mode == LabelMode::Compat && r.p_value.is_nan()));
    assert!(a.warnings.iter().any(|w| w.contains("only 60 samples")));
}

fn err(r: manifold::Result<manifold::Analysis>) -> manifold::Error {
    match r {
        Err(e) => e,
        Ok(_) => panic!("expected an error"),
    }
}

#[test]
fn bad_input_gives_clear_errors() {
    let hue = hues(40);
    let ok = || vec![layer(Plant::Circle, &hue, 20, 8)];
    let o = AnalyzeOptions { n_permutations: 3, n_bootstrap: 3, ..Default::default() };

    let e = err(run(vec![layer(Plant::Circle, &hue[..7], 20, 8)], &hue[..7], &o));
    assert!(matches!(e, manifold::Error::TooFewSamples { got: 7, min: 8 }), "{e}");
    assert!(e.to_string().starts_with("too few samples"));

    assert!(matches!(err(run(ok(), &vec![90.0; 40], &o)), manifold::Error::ConstantLabels { .. }));
    assert!(matches!(err(run(ok(), &vec![450.0; 40], &o)), manifold::Error::ConstantLabels { .. }));
    let mut nan_hue = hue.clone();
    nan_hue[3] = f64::NAN;
    assert!(matches!(err(run(ok(), &nan_hue, &o)), manifold::Error::NonFiniteLabel { index: 3, .. }));
    assert!(matches!(err(run(ok(), &hue[..39], &o)), manifold::Error::LayerRows { layer: 0, got: 40, expected: 39 }));

    for bad in [f32::NAN, f32::INFINITY] {
        let mut x = layer(Plant::Circle, &hue, 20, 8);
        x[[5, 2]] = bad;
        let e = err(run(vec![ok().remove(0), x], &hue, &o));
        assert!(matches!(e, manifold::Error::NonFiniteActivation { row: 5, col: 2, .. }), "{e}");
        assert!(e.to_string().contains("layer 1"), "{e}");
    }
    // Layers may differ in width (the colour autoencoder's 3-, 16- and 2-wide layers): each is analysed alone.
    let a = run(vec![ok().remove(0), layer(Plant::Circle, &hue, 21, 8)], &hue, &o).unwrap();
    assert_eq!(a.layer_scan.len(), 2);
    assert!(a.d_model == 20 || a.d_model == 21);
    assert!(matches!(err(run(vec![], &hue, &o)), manifold::Error::NoLayers));
    let too_many = AnalyzeOptions { n_components: 40, ..o.clone() };
    assert!(matches!(err(run(ok(), &hue, &too_many)), manifold::Error::TooManyComponents { .. }));
    let bad_alpha = AnalyzeOptions { alpha_cv: f64::NAN, ..o.clone() };
    assert!(matches!(err(run(ok(), &hue, &bad_alpha)), manifold::Error::InvalidParam { name: "alpha_cv", .. }));
}

#[test]
fn zero_variance_layers_are_reported_and_skipped_and_all_constant_is_an_error() {
    let hue = hues(40);
    let o = AnalyzeOptions { n_permutations: 3, n_bootstrap: 3, ..Default::default() };
    let flat = Array2::<f32>::from_elem((40, 20), 0.5);
    let a = run(vec![flat.clone(), layer(Plant::Circle, &hue, 20, 9)], &hue, &o).unwrap();
    assert_eq!(a.choice.layer, 1);
    assert_eq!(a.layer_scan[0].in_sample_score, f64::NEG_INFINITY);
    assert!(a.layer_scan[0].note.contains("zero variance"));
    assert!(matches!(err(run(vec![flat.clone(), flat], &hue, &o)), manifold::Error::NoUsableLayer(_)));
}

#[test]
fn duplicate_hues_are_allowed_with_a_warning() {
    let hue: Vec<f64> = (0..60).map(|i| (i / 2) as f64 * 12.0).collect();
    let o = AnalyzeOptions { n_permutations: 3, n_bootstrap: 3, ..Default::default() };
    let a = run(vec![layer(Plant::Circle, &hue, 30, 10)], &hue, &o).unwrap();
    assert!(a.warnings.iter().any(|w| w.contains("repeat a hue")), "{:?}", a.warnings);
    assert_eq!(a.winner, Shape::Circular);
}

#[test]
fn writers_produce_every_table_with_mode_columns() {
    let hue = hues(40);
    let o = AnalyzeOptions { dataset: "flat-40".into(), n_permutations: 5, n_bootstrap: 5, ..Default::default() };
    let a = run(vec![layer(Plant::Noise, &hue, 30, 11), layer(Plant::Circle, &hue, 30, 12)], &hue, &o).unwrap();
    let b =
        run(vec![layer(Plant::Circle, &hue, 30, 13)], &hue, &AnalyzeOptions { dataset: "wild".into(), ..o.clone() })
            .unwrap();
    let dir = std::env::temp_dir().join(format!("huescan-manifold-writers-{}", std::process::id()));
    write_analysis(&dir.join("flat-40"), &a).unwrap();
    write_global(&dir, &[a.clone(), b]).unwrap();
    for (file, first) in [
        ("layer_scan.csv", "dataset,mode,layer,n_samples,in_sample_score,stress,cv_score"),
        ("discovery.csv", "dataset,mode,layer,rank,shape"),
        ("heldout.csv", "dataset,mode,layer,shape,n_train,n_test"),
        ("arbitration.csv", "dataset,mode,layer,shape,train_cv_score"),
        ("joystick.csv", "dataset,mode,layer,pair"),
    ] {
        let text = std::fs::read_to_string(dir.join("flat-40").join(file)).unwrap();
        assert!(text.starts_with(first), "{file}: {}", text.lines().next().unwrap());
        assert!(text.lines().skip(1).all(|l| l.starts_with("flat-40,periodic,")), "{file}");
    }
    let scan = std::fs::read_to_string(dir.join("flat-40/layer_scan.csv")).unwrap();
    assert_eq!(scan.lines().count(), 3);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("flat-40/summary.json")).unwrap()).unwrap();
    assert_eq!(summary["mode"], "periodic");
    assert_eq!(summary["choice"]["layer"], 1);
    let bytes = std::fs::read(dir.join("flat-40/projection.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("coords").unwrap().shape(), &[40, 3]);
    let global = std::fs::read_to_string(dir.join("global.csv")).unwrap();
    assert!(global.lines().nth(1).unwrap().ends_with("true"));
    assert_eq!(global.lines().count(), 4);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn periodic_discovery_and_heldout_match_the_explicit_estimator_fold_by_fold() {
    // analyze() scores folds through Gram matrices; the public estimator centres and solves explicitly. In periodic
    // mode there is no package to compare with, so the two paths check each other (1e-9: both are exact solves).
    use huescan::manifold::{Metric, SmdsParams};
    use ndarray::Axis;
    let hue = hues(90);
    let x = layer(Plant::Circle, &hue, 120, 14);
    let o = AnalyzeOptions { n_permutations: 0, n_bootstrap: 0, joystick: None, ..opts() };
    let a = run(vec![x.clone()], &hue, &o).unwrap();
    let t = manifold::hue_turns(&hue);
    let xs = x.mapv(f64::from);
    for d in &a.discovery {
        let params = SmdsParams::new(d.shape).alpha(o.alpha_cv).mode(LabelMode::Periodic).check().unwrap();
        for (f, got) in a.discovery_folds.iter().zip(&d.folds) {
            let tr: Vec<usize> = f.train.iter().map(|&p| a.train_idx[p]).collect();
            let te: Vec<usize> = f.test.iter().map(|&p| a.train_idx[p]).collect();
            let ytr: Vec<f64> = tr.iter().map(|&i| t[i]).collect();
            let yte: Vec<f64> = te.iter().map(|&i| t[i]).collect();
            let fit = params.fit(xs.select(Axis(0), &tr).view(), &ytr).unwrap();
            let want = fit.scores(xs.select(Axis(0), &te).view(), &yte).unwrap();
            for m in Metric::ALL {
                if m == Metric::ShepardGoodnessScore || m == Metric::NonMetricStress {
                    continue; // rank-based: near-ties may order differently between the two exact paths
                }
                assert!((got.get(m) - want.get(m)).abs() < 1e-9, "{} {m}: {} vs {}", d.shape, got.get(m), want.get(m));
            }
        }
        let h = a.heldout.iter().find(|h| h.shape == d.shape).unwrap();
        let ytr: Vec<f64> = a.train_idx.iter().map(|&i| t[i]).collect();
        let yte: Vec<f64> = a.test_idx.iter().map(|&i| t[i]).collect();
        let fit = SmdsParams::new(d.shape).alpha(o.alpha_fit).mode(LabelMode::Periodic).check().unwrap();
        let fit = fit.fit(xs.select(Axis(0), &a.train_idx).view(), &ytr).unwrap();
        let want = fit.score(xs.select(Axis(0), &a.test_idx).view(), &yte, Metric::ScaleNormalizedStress).unwrap();
        assert!((h.test.primary() - want).abs() < 1e-9, "{} held-out {} vs {want}", d.shape, h.test.primary());
    }
    // Shuffled folds are not one arc each (contiguous folds here would span about 70 degrees).
    for f in &a.discovery_folds {
        let hs: Vec<f64> = f.test.iter().map(|&p| hue[a.train_idx[p]]).collect();
        let span = hs.iter().cloned().fold(f64::MIN, f64::max) - hs.iter().cloned().fold(f64::MAX, f64::min);
        assert!(span > 180.0, "test fold spans only {span} degrees");
    }
}

#[test]
fn compat_contiguous_folds_understate_a_planted_circle_that_periodic_mode_scores_well() {
    // The package's trap (issue 6, item 2): rows sorted by hue + unshuffled folds = each test fold is one arc,
    // which min-max stretches to a full circle before scoring.
    let hue = hues(150);
    let x = vec![layer(Plant::Circle, &hue, 200, 15)];
    let base = AnalyzeOptions { n_permutations: 0, n_bootstrap: 0, joystick: None, ..opts() };
    let periodic = run(x.clone(), &hue, &base).unwrap();
    let compat = run(x, &hue, &AnalyzeOptions { mode: LabelMode::Compat, ..base }).unwrap();
    let cv = |a: &manifold::Analysis| a.discovery.iter().find(|d| d.shape == Shape::Circular).unwrap().mean.primary();
    assert!(cv(&periodic) > 0.8, "periodic CV {}", cv(&periodic));
    assert!(cv(&periodic) > cv(&compat) + 0.2, "periodic {} vs compat {}", cv(&periodic), cv(&compat));
}
