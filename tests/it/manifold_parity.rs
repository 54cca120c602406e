//! Compat-mode parity with the Python package `smds` 1.6.6 and the seed notebook's sections 4-10, from committed
//! fixtures (`scripts/make_smds_fixture.py` regenerates them; no Python needed here).
//!
//! Tolerances: scores 1e-6 absolute (the target; the dual and primal ridge agree to ~1e-12 on these
//! well-conditioned cases), ratios such as seam closure 1e-6 relative, coordinates 1e-6 absolute after removing
//! the sign/rotation freedom of the ideal embedding (compared as pairwise-distance matrices). ClusterShape is
//! compared only for finiteness: with all-distinct labels its cMDS eigenspace is one eigenvalue of multiplicity
//! n-1, so which k=2 vectors LAPACK returns (and every score) is solver-dependent.

use std::collections::HashMap;
use std::path::Path;

use huescan::manifold::{
    analyze, global_winner, kfold_contiguous, AnalyzeOptions, LabelMode, Metric, Shape, SmdsParams,
};
use ndarray::{Array2, Axis};
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/smds");
const TOL: f64 = 1e-6;

struct Fixture {
    inputs: HashMap<String, (Array2<f64>, Vec<f64>)>,
    expected: Value,
}

fn f16_to_f64(bits: u16) -> f64 {
    let sign = if bits >> 15 == 1 { -1.0 } else { 1.0 };
    let exp = i32::from((bits >> 10) & 0x1f);
    let frac = f64::from(bits & 0x3ff);
    sign * match exp {
        0 => frac * 2f64.powi(-24),
        31 => {
            if frac == 0.0 {
                f64::INFINITY
            } else {
                f64::NAN
            }
        }
        _ => (1.0 + frac / 1024.0) * 2f64.powi(exp - 15),
    }
}

fn load() -> Fixture {
    let bytes = std::fs::read(Path::new(FIXTURES).join("inputs.safetensors")).expect("fixture inputs");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let mut inputs = HashMap::new();
    for name in st.names() {
        let Some(case) = name.strip_suffix(".x") else { continue };
        let x = st.tensor(name).unwrap();
        assert_eq!(x.dtype(), safetensors::Dtype::F16);
        let (n, d) = (x.shape()[0], x.shape()[1]);
        let vals: Vec<f64> = x.data().chunks_exact(2).map(|c| f16_to_f64(u16::from_le_bytes([c[0], c[1]]))).collect();
        let hue = st.tensor(&format!("{case}.hue_deg")).unwrap();
        let hue: Vec<f64> = hue.data().chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect();
        inputs.insert(case.to_string(), (Array2::from_shape_vec((n, d), vals).unwrap(), hue));
    }
    let text = std::fs::read_to_string(Path::new(FIXTURES).join("expected.json")).expect("fixture json");
    Fixture { inputs, expected: serde_json::from_str(&text).unwrap() }
}

fn num(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap(),
        Value::String(s) => match s.as_str() {
            "nan" => f64::NAN,
            "inf" => f64::INFINITY,
            "-inf" => f64::NEG_INFINITY,
            _ => panic!("not a number: {s}"),
        },
        _ => panic!("not a number: {v}"),
    }
}

thread_local! {
    static FAILS: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Reports every mismatch of a test at once (not just the first).
fn finish(test: &str) {
    let fails = FAILS.with(|f| std::mem::take(&mut *f.borrow_mut()));
    assert!(fails.is_empty(), "{test}: {} mismatches:\n{}", fails.len(), fails.join("\n"));
}

fn close(got: f64, want: f64, tol: f64, what: &str) {
    let ok = if want.is_nan() || got.is_nan() {
        want.is_nan() && got.is_nan()
    } else if want.is_infinite() {
        got == want
    } else {
        (got - want).abs() <= tol
    };
    if !ok {
        FAILS.with(|f| {
            f.borrow_mut().push(format!("{what}: got {got}, package {want} (diff {:e})", (got - want).abs()))
        });
    }
}

fn turns(hue: &[f64]) -> Vec<f64> {
    hue.iter().map(|h| h.rem_euclid(360.0) / 360.0).collect()
}

/// Non-metric stress is NaN in the package when sklearn's isotonic interpolation falls just outside its range,
/// which hinges on the last bit of the largest ideal distances (numpy's and Rust's `sin` may round differently).
/// Where exactly one side is NaN, that rule is the only allowed difference.
///
/// Spearman (Shepard) gets 1e-5: it is a rank statistic, discontinuous in the predicted distances. In the
/// interpolating regime (alpha 1e-4, n < d) pairs with equal ideal distance get predicted distances equal to
/// ~1e-9, and their order is rounding noise of either implementation (observed differences 1.1e-6).
fn close_metric(m: Metric, got: f64, want: f64, what: &str) {
    if m == Metric::NonMetricStress && (got.is_nan() != want.is_nan()) {
        eprintln!("{what}: non-metric NaN differs (isotonic out-of-bounds rule): got {got}, package {want}");
        return;
    }
    close(got, want, if m == Metric::ShepardGoodnessScore { 1e-5 } else { TOL }, what);
}

/// Hue in degrees compared on the circle (359.99999999999994 and 0 are the same decoded hue).
fn close_hue(got: f64, want: f64, what: &str) {
    let diff = huescan::colour::signed_hue_delta_deg(want, got);
    close(diff, 0.0, 1e-6, what);
}

#[test]
fn full_fit_scores_match_smds_1_6_6_for_every_shape_and_metric() {
    let fx = load();
    for (case, (x, hue)) in &fx.inputs {
        let y = turns(hue);
        for alpha in [1e-4, 1.0] {
            for shape in Shape::ALL {
                let key = format!("{}@{}", shape.class_name(), if alpha == 1.0 { "1" } else { "0.0001" });
                let want = &fx.expected["cases"][case]["full"][&key];
                assert!(want.is_array(), "missing {case} {key}");
                let fit = SmdsParams::new(shape)
                    .alpha(alpha)
                    .mode(LabelMode::Compat)
                    .check()
                    .unwrap()
                    .fit(x.view(), &y)
                    .unwrap();
                let got = fit.scores(x.view(), &y).unwrap();
                for m in Metric::ALL {
                    let what = format!("{case} {key} {m}");
                    if shape == Shape::Cluster {
                        continue;
                    }
                    close_metric(m, got.get(m), num(&want[m.index()]), &what);
                }
            }
        }
    }
    finish("full_fit_scores_match_smds_1_6_6_for_every_shape_and_metric");
}

#[test]
fn transform_coordinates_match_up_to_sign_and_rotation() {
    let fx = load();
    for (case, (x, hue)) in &fx.inputs {
        let y = turns(hue);
        for shape in [Shape::Circular, Shape::Euclidean] {
            let want = &fx.expected["cases"][case]["coords"][shape.class_name()];
            let want: Vec<Vec<f64>> =
                want.as_array().unwrap().iter().map(|r| r.as_array().unwrap().iter().map(num).collect()).collect();
            let fit =
                SmdsParams::new(shape).alpha(1e-4).mode(LabelMode::Compat).check().unwrap().fit(x.view(), &y).unwrap();
            let z = fit.transform(x.view()).unwrap();
            let n = z.nrows();
            let mut worst = 0.0f64;
            for i in 0..n {
                for j in (i + 1)..n {
                    let dg = (&z.row(i) - &z.row(j)).mapv(|v| v * v).sum().sqrt();
                    let dw = want[i].iter().zip(&want[j]).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt();
                    worst = worst.max((dg - dw).abs());
                }
            }
            assert!(worst < TOL, "{case} {shape}: pairwise distance of coordinates differs by {worst:e}");
        }
    }
    finish("transform_coordinates_match_up_to_sign_and_rotation");
}

#[test]
fn discover_manifolds_folds_scores_and_ranking_match() {
    let fx = load();
    for (case, (x, hue)) in &fx.inputs {
        let y = turns(hue);
        let disc = &fx.expected["cases"][case]["discover"];
        let folds = kfold_contiguous(x.nrows(), 5).unwrap();
        let want_idx: Vec<Vec<usize>> = serde_json::from_value(disc["fold_test_idx"].clone()).unwrap();
        assert_eq!(folds.iter().map(|f| f.test.clone()).collect::<Vec<_>>(), want_idx, "{case} fold indices");
        let mut means = Vec::new();
        for shape in Shape::ALL {
            let row = &disc["rows"][shape.class_name()];
            let params = SmdsParams::new(shape).alpha(1.0).mode(LabelMode::Compat).check().unwrap();
            let per_fold: Vec<_> = folds
                .iter()
                .map(|f| {
                    let (xtr, xte) = (x.select(Axis(0), &f.train), x.select(Axis(0), &f.test));
                    let ytr: Vec<f64> = f.train.iter().map(|&i| y[i]).collect();
                    let yte: Vec<f64> = f.test.iter().map(|&i| y[i]).collect();
                    params.fit(xtr.view(), &ytr).unwrap().scores(xte.view(), &yte).unwrap()
                })
                .collect();
            let mean = per_fold.iter().map(|s| s.primary()).sum::<f64>() / 5.0;
            if shape == Shape::Cluster {
                assert!(mean.is_finite());
                continue;
            }
            means.push((shape, mean));
            for m in Metric::ALL {
                for (k, s) in per_fold.iter().enumerate() {
                    close_metric(
                        m,
                        s.get(m),
                        num(&row[format!("fold_{m}")][k]),
                        &format!("{case} {shape} fold {k} {m}"),
                    );
                }
            }
            close(mean, num(&row["mean_scale_normalized_stress"]), TOL, &format!("{case} {shape} mean"));
        }
        // The package's order must be non-increasing in our means. Exact ties are allowed to swap: in compat
        // mode DiscreteCircular on hue fractions is Euclidean up to scale, and scale-normalized stress is
        // scale-invariant, so the two tie to rounding and pandas' unstable sort picks either.
        let want: Vec<&str> = disc["ranking"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .filter(|s| *s != "ClusterShape")
            .collect();
        let mean_of = |name: &str| means.iter().find(|(s, _)| s.class_name() == name).unwrap().1;
        for w in want.windows(2) {
            assert!(mean_of(w[0]) >= mean_of(w[1]) - 1e-9, "{case} ranking: {} should not rank below {}", w[0], w[1]);
        }
    }
    finish("discover_manifolds_folds_scores_and_ranking_match");
}

#[test]
fn notebook_sections_4_to_10_reproduced_in_compat_mode() {
    let fx = load();
    let nb = &fx.expected["notebook"];
    let kinds: Vec<String> = serde_json::from_value(fx.expected["notebook_layers"].clone()).unwrap();
    let mut analyses = Vec::new();
    for n in [60, 360] {
        let set = format!("set{n}");
        let hue = fx.inputs[&format!("circle{n}")].1.clone();
        let layers: Vec<huescan::manifold::Result<(usize, Array2<f64>)>> =
            kinds.iter().enumerate().map(|(l, k)| Ok((l, fx.inputs[&format!("{k}{n}")].0.clone()))).collect();
        let opts = AnalyzeOptions { n_permutations: 5, n_bootstrap: 10, ..AnalyzeOptions::notebook(&set) };
        let a = analyze(layers, &hue, &opts).unwrap();

        let stress = &nb["stress"][&set];
        for (l, row) in a.layer_scan.iter().enumerate() {
            close(row.in_sample_score, num(&stress["score"][l]), TOL, &format!("{set} layer {l} scan score"));
        }
        let opt = nb["optimal_layers"].as_array().unwrap().iter().find(|r| r["dataset"] == set.as_str()).unwrap();
        assert_eq!(a.choice.layer as u64, opt["optimal_layer"].as_u64().unwrap(), "{set} optimal layer");
        let split = nb["split"].as_array().unwrap().iter().find(|r| r["dataset"] == set.as_str()).unwrap();
        assert_eq!(a.train_idx, serde_json::from_value::<Vec<usize>>(split["train_idx"].clone()).unwrap());
        assert_eq!(a.test_idx, serde_json::from_value::<Vec<usize>>(split["test_idx"].clone()).unwrap());

        let disc = &nb["discovery"][&set];
        let ranking: Vec<&str> = disc["ranking"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(a.discovery.iter().map(|d| d.shape.class_name()).collect::<Vec<_>>(), ranking, "{set} ranking");
        for d in &a.discovery {
            let row = &disc[d.shape.class_name()];
            for m in Metric::ALL {
                close_metric(m, d.mean.get(m), num(&row[format!("mean_{m}")]), &format!("{set} {} mean {m}", d.shape));
                close_metric(m, d.std.get(m), num(&row[format!("std_{m}")]), &format!("{set} {} std {m}", d.shape));
                for (k, s) in d.folds.iter().enumerate() {
                    close_metric(
                        m,
                        s.get(m),
                        num(&row[format!("fold_{m}")][k]),
                        &format!("{set} {} fold {k} {m}", d.shape),
                    );
                }
            }
        }
        let arb: Vec<&Value> =
            nb["arbitration"].as_array().unwrap().iter().filter(|r| r["dataset"] == set.as_str()).collect();
        for h in &a.heldout {
            let want = arb.iter().find(|r| r["shape"] == h.shape.class_name()).unwrap();
            for m in Metric::ALL {
                close_metric(
                    m,
                    h.test.get(m),
                    num(&want["test_scores_all"][m.index()]),
                    &format!("{set} {} test {m}", h.shape),
                );
            }
            let wc = num(&want["test_closure_ratio"]);
            close(h.test_closure_ratio, wc, TOL * wc.abs().max(1.0), &format!("{set} {} closure", h.shape));
            close(h.periodicity_score, num(&want["periodicity_score"]), TOL, &format!("{set} {} periodicity", h.shape));
            close(h.coverage_ratio, num(&want["coverage_ratio"]), 1e-12, &format!("{set} coverage"));
        }
        for r in &a.arbitration {
            let want = arb.iter().find(|w| w["shape"] == r.shape.class_name()).unwrap();
            close(r.composite_score, num(&want["composite_score"]), TOL, &format!("{set} {} composite", r.shape));
            close(r.train_cv_std, num(&want["train_cv_std"]), TOL, &format!("{set} {} cv std", r.shape));
        }
        let winner = nb["dataset_winners"].as_array().unwrap().iter().find(|r| r["dataset"] == set.as_str()).unwrap();
        assert_eq!(a.winner.class_name(), winner["winner_shape"].as_str().unwrap(), "{set} winner");

        let js = a.joystick.as_ref().unwrap();
        let wj = &nb["joystick"][&set];
        close(js.decoder_r2, num(&wj["decoder_r2"]), 1e-9, &format!("{set} decoder r2"));
        close(js.decoder_mse, num(&wj["decoder_mse"]), 1e-9, &format!("{set} decoder mse"));
        for (key, got) in [
            ("decoded_blue_hue", js.decoded_blue_hue),
            ("decoded_steered_hue", js.decoded_steered_hue),
            ("decoded_red_hue", js.decoded_red_hue),
        ] {
            close_hue(got, num(&wj[key]), &format!("{set} {key}"));
        }
        for (g, w) in js.rows.iter().zip(wj["rows"].as_array().unwrap()) {
            close_hue(g.decoded_hue, num(&w["decoded_hue"]), &format!("{set} {} {} hue", g.pair, g.alpha));
        }
        analyses.push(a);
    }
    let global = global_winner(&analyses);
    assert_eq!(global[0].shape.class_name(), nb["global_winner"].as_str().unwrap());
    for g in &global {
        let want = nb["global"].as_array().unwrap().iter().find(|r| r["shape"] == g.shape.class_name()).unwrap();
        close(g.mean_composite, num(&want["mean_composite"]), TOL, &format!("global {} composite", g.shape));
        close(g.std_composite, num(&want["std_composite"]), TOL, &format!("global {} std", g.shape));
    }
    // The notebook projects every set with the global winner's template; analyze() uses each set's own winner,
    // so compare where they agree and refit with the global winner otherwise.
    for a in &analyses {
        let want = &nb["projection"][&a.dataset];
        let shape: Shape = want["shape"].as_str().unwrap().parse().unwrap();
        let coords = if a.projection.shape == shape {
            a.projection.coords.clone()
        } else {
            let (x, _) = &fx.inputs[&format!("{}{}", kinds[a.choice.layer], a.n_samples)];
            let t = huescan::manifold::circle_template_3d(&a.hue_deg, shape);
            let fit = SmdsParams::template(t).alpha(1e-4).check().unwrap().fit(x.view(), &a.hue_deg).unwrap();
            fit.transform(x.view()).unwrap()
        };
        let want: Vec<Vec<f64>> = want["coords"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_array().unwrap().iter().map(num).collect())
            .collect();
        for (i, row) in want.iter().enumerate() {
            for (c, w) in row.iter().enumerate() {
                close(coords[[i, c]], *w, TOL, &format!("{} projection [{i}, {c}]", a.dataset));
            }
        }
    }
    finish("notebook_sections_4_to_10_reproduced_in_compat_mode");
}
