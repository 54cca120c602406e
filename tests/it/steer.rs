//! Steering the colour autoencoder, a model whose answer is known: its bottleneck is a hue circle, so moving a
//! source colour's bottleneck along the fitted circle must rotate the decoded output hue towards the target,
//! monotonically with alpha, and a random direction of the same norm must not. The store is made by the real
//! pipeline (flat PNGs → `extract` → activation store).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use huescan::colour::{hsv_to_rgb, signed_hue_delta_deg, Hsv};
use huescan::extract::{extract, load_image, ExtractPlan, SampleInput};
use huescan::model::autoencoder::{self as ae, Autoencoder, TrainConfig};
use huescan::model::{HookSet, Intervention, InterventionOp, Model, Pooling, Positions};
use huescan::steer::{self, parse_alphas, run_sweep, DirectionKind, PairSpec, SweepInput, SweepOptions, SweepResult};
use huescan::store::{ActivationStore, Provenance};

/// A decoded hue within this many degrees of the target counts as reached. The decoder's own reconstruction
/// error on the training wheel is a few degrees; 20 leaves room for that and the held-out gap, and is far
/// below the 120 degrees a pair spans.
const REACH_DEG: f64 = 20.0;

struct Fixture {
    dir: PathBuf,
    samples: Vec<SampleInput>,
    model: Autoencoder,
    store: ActivationStore,
}

/// 60 flat hues every 6 degrees (as the flat-60 set), the default autoencoder, and its store at every point.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        // Shared by every test of this module and never removed (no test knows it is the last), so it lives
        // under target/ at a fixed path that the next run overwrites, instead of piling up in $TMPDIR.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("steer-fixture");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let samples: Vec<SampleInput> = (0..60)
            .map(|i| {
                let hue = i as f64 * 6.0;
                let rgb = hsv_to_rgb(Hsv { hue_deg: hue, s: 1.0, v: 1.0 }).map(|c| (c * 255.0).round() as u8);
                let path = dir.join(format!("hue_{i:03}.png"));
                image::RgbImage::from_pixel(4, 4, image::Rgb(rgb)).save(&path).unwrap();
                SampleInput { id: format!("hue_{i:03}"), hue_deg: hue, image: path, text: None }
            })
            .collect();
        let model = Autoencoder::train_or_load(None, &TrainConfig::default(), None).unwrap();
        let plan = ExtractPlan {
            samples: samples.clone(),
            layers: (0..ae::POINTS.len()).collect(),
            pooling: Pooling::Last,
            batch_size: 16,
            adaptive: false,
            shard: None,
            provenance: Provenance {
                model_id: model.id().to_string(),
                model_revision: None,
                model_config_sha256: None,
                model_files_sha256: Default::default(),
                stimuli_name: "flat-60-test".into(),
                stimuli_sha256: "test".into(),
                pooling: "last".into(),
                settings: BTreeMap::new(),
            },
            out: dir.join("acts"),
        };
        let store = extract(&model, &plan, &|_, _| {}).unwrap().store;
        Fixture { dir, samples, model, store }
    })
}

fn sweep(kinds: Vec<DirectionKind>, seed: u64, pairs: Vec<PairSpec>) -> steer::Result<SweepResult> {
    sweep_batched(kinds, seed, pairs, 5)
}

fn sweep_batched(
    kinds: Vec<DirectionKind>,
    seed: u64,
    pairs: Vec<PairSpec>,
    batch_size: usize,
) -> steer::Result<SweepResult> {
    let f = fixture();
    let image = |row: usize| Ok(load_image(&f.samples[row])?);
    let input = SweepInput { model: &f.model, store: &f.store, image: &image };
    let opts = SweepOptions {
        layers: vec![2], // the bottleneck
        pairs,
        kinds,
        seed,
        batch_size,
        output_rgb: Some(ae::point(ae::OUTPUT)),
        ..SweepOptions::default()
    };
    run_sweep(&input, &opts, &|_, _| {})
}

#[test]
fn per_sample_interventions_steer_the_right_rows_whatever_the_batching() {
    // One forward pass per alpha (batch 1) against all 7 alphas in one batch and in chunks of 5 (the default in
    // these tests): each row must get its own alpha. Rows are independent in the autoencoder, so only the
    // matmul's blocking can differ between batch sizes; 1e-3 degrees is far below any steering effect.
    let pairs = vec![PairSpec::new(240.0, 0.0)];
    let kinds = vec![DirectionKind::Manifold, DirectionKind::Centroid];
    let one = sweep_batched(kinds.clone(), 0, pairs.clone(), 1).unwrap();
    for batch in [5, 7] {
        let many = sweep_batched(kinds.clone(), 0, pairs.clone(), batch).unwrap();
        for (a, b) in one.rows.iter().zip(&many.rows) {
            assert_eq!((a.direction, a.alpha), (b.direction, b.alpha));
            let d = signed_hue_delta_deg(a.output_hue_deg.unwrap(), b.output_hue_deg.unwrap());
            assert!(d.abs() < 1e-3, "batch {batch}, {:?} alpha {}: {d}", a.direction, a.alpha);
        }
    }
}

/// Output hues of one (pair, direction), in alpha order.
fn hues_of(result: &SweepResult, pair: &str, kind: DirectionKind) -> Vec<(f64, f64)> {
    let mut v: Vec<(f64, f64)> = result
        .rows
        .iter()
        .filter(|r| r.pair == pair && r.direction == kind)
        .map(|r| (r.alpha, r.output_hue_deg.expect("a chromatic output")))
        .collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v
}

#[test]
fn manifold_steering_rotates_the_output_hue_monotonically_to_the_target() {
    let result = sweep(vec![DirectionKind::Manifold], 0, PairSpec::defaults()).unwrap();
    assert_eq!(result.rows.len(), 3 * 7);
    for pair in PairSpec::defaults() {
        let hues = hues_of(&result, &pair.label, DirectionKind::Manifold);
        let travel = signed_hue_delta_deg(pair.source_deg, pair.target_deg).signum();
        for w in hues.windows(2) {
            let step = travel * signed_hue_delta_deg(w[0].1, w[1].1);
            assert!(step > 0.0, "{}: hue went {:?} -> {:?}, against the steering", pair.label, w[0], w[1]);
        }
        let at = |a: f64| hues.iter().find(|(x, _)| *x == a).unwrap().1;
        assert!(
            signed_hue_delta_deg(pair.source_deg, at(0.0)).abs() < REACH_DEG,
            "{}: alpha 0 is the source",
            pair.label
        );
        let err = signed_hue_delta_deg(pair.target_deg, at(1.0));
        assert!(err.abs() < REACH_DEG, "{}: alpha 1 decodes to {} (error {err})", pair.label, at(1.0));
        let s = result.summary.iter().find(|s| s.pair == pair.label).unwrap();
        assert!(s.monotone, "{}", pair.label);
        eprintln!("{}: {:?}", pair.label, hues);
    }
}

#[test]
fn random_directions_of_the_same_norm_do_not_steer_to_the_target() {
    // Eight seeds per pair: a random 2-d direction can point near the right way by chance, so the claim is
    // about how often it does, against every manifold direction that does.
    let mut reached = 0;
    let mut total = 0;
    for seed in 0..8 {
        let result = sweep(vec![DirectionKind::Random], seed, PairSpec::defaults()).unwrap();
        for pair in PairSpec::defaults() {
            let hues = hues_of(&result, &pair.label, DirectionKind::Random);
            let at1 = hues.iter().find(|(a, _)| *a == 1.0).unwrap().1;
            total += 1;
            if signed_hue_delta_deg(pair.target_deg, at1).abs() < REACH_DEG {
                reached += 1;
            }
        }
    }
    eprintln!("random directions reaching the target: {reached}/{total}");
    assert!(reached * 4 <= total, "{reached} of {total} random directions reached the target");
}

#[test]
fn alpha_zero_is_bit_identical_to_no_hook() {
    let f = fixture();
    let images: Vec<_> = f.samples.iter().step_by(7).map(|s| load_image(s).unwrap()).collect();
    let all = HookSet::capture(ae::POINTS.iter().map(|p| ae::point(p)));
    let mut zero = all.clone();
    for b in 0..images.len() {
        zero.interventions.push(Intervention {
            point: ae::point(ae::BOTTLENECK),
            positions: Positions::ImageTokens,
            sample: Some(b),
            op: InterventionOp::Add { vector: vec![0.3, -0.7], alpha: 0.0 },
        });
    }
    let clean = f.model.forward(&images, &all, Pooling::Last).unwrap();
    let steered = f.model.forward(&images, &zero, Pooling::Last).unwrap();
    for (p, t) in &clean.layers {
        let bits = |t: &candle_core::Tensor| {
            t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        };
        assert_eq!(bits(t), bits(&steered.layers[p]), "{p}");
    }
    // The sweep's alpha = 0 rows are the clean model: same output hue as an unhooked run of the source image.
    let result = sweep(vec![DirectionKind::Centroid], 0, vec![PairSpec::new(240.0, 0.0)]).unwrap();
    let row = result.rows.iter().find(|r| r.alpha == 0.0).unwrap();
    let src = f.samples.iter().find(|s| s.hue_deg == 240.0).unwrap();
    let clean = f.model.forward(&[load_image(src).unwrap()], &all, Pooling::Last).unwrap();
    let hue = ae::output_hues_deg(&clean).unwrap()[0].unwrap();
    assert_eq!(row.output_hue_deg.unwrap().to_bits(), hue.to_bits());
}

#[test]
fn sweep_rows_carry_probes_the_joystick_and_a_summary() {
    let result = sweep(DirectionKind::ALL.to_vec(), 0, vec![PairSpec::new(240.0, 0.0)]).unwrap();
    assert_eq!(result.rows.len(), 3 * 7);
    assert_eq!(result.summary.len(), 3);
    assert_eq!(result.vectors.len(), 3);
    let layers: Vec<usize> = result.probes.iter().map(|p| p.layer).collect();
    assert_eq!(layers, vec![2, 3, 4], "probes from the steering layer on");
    let bottleneck_probe = &result.probes[0];
    assert!(bottleneck_probe.train_error_deg < 10.0, "the bottleneck is a hue circle: {bottleneck_probe:?}");
    for r in &result.rows {
        assert!(r.joystick_hue_deg.is_some() && r.model_minus_joystick_deg.is_some());
        assert_eq!(r.probe_hue_deg.len(), 3);
    }
    let m = result.summary.iter().find(|s| s.direction == DirectionKind::Manifold).unwrap();
    assert!(m.alpha_reached.is_some_and(|a| a <= 1.0), "{m:?}");
    // The steering vector of the manifold rotation is alpha = 1's change, recorded with its recipe.
    let v = result.vectors.iter().find(|v| v.recipe.kind == DirectionKind::Manifold).unwrap();
    assert_eq!((v.recipe.layer_index, v.recipe.hook.as_str()), (2, "bottleneck"));
    assert!(v.recipe.delta_theta_rad.is_some());
    let dir = fixture().dir.join("tables");
    let paths = steer::write_sweep(&dir, &result).unwrap();
    let csv = std::fs::read_to_string(&paths[0]).unwrap();
    assert_eq!(csv.lines().count(), 1 + 21);
    assert!(csv.lines().next().unwrap().contains("probe_hue_deg_L3"));
    let saved = dir.join("v.safetensors");
    v.save(&saved).unwrap();
    assert_eq!(&steer::SteeringVector::load(&saved).unwrap(), v);
}

#[test]
fn bad_input_is_a_clear_error() {
    let f = fixture();
    let image = |row: usize| Ok(load_image(&f.samples[row])?);
    let input = SweepInput { model: &f.model, store: &f.store, image: &image };
    let run = |opts: SweepOptions| run_sweep(&input, &opts, &|_, _| {}).unwrap_err().to_string();
    let base = SweepOptions { layers: vec![2], output_rgb: Some(ae::point(ae::OUTPUT)), ..SweepOptions::default() };
    let err = run(SweepOptions { layers: vec![9], ..base.clone() });
    assert!(err.contains("no layer 9"), "{err}");
    let err = run(SweepOptions { pairs: vec![PairSpec::new(243.0, 0.0)], ..base.clone() });
    assert!(err.contains("hue 243° is not in the stimulus set"), "{err}");
    let err = run(SweepOptions { batch_size: 0, ..base.clone() });
    assert!(err.contains("batch-size"), "{err}");
    for (spec, want) in [
        ("1:0:0.25", "stop is below start"),
        ("0:1:0", "step must be positive"),
        ("0:1", "exactly three parts"),
        ("0:x:1", "`x` is not a number"),
        ("0:1:0.00001", "at most"),
        ("", "is not a number"),
    ] {
        let err = parse_alphas(spec).unwrap_err().to_string();
        assert!(err.contains(want), "{spec}: {err}");
    }
    assert_eq!(parse_alphas("-0.25:1.25:0.25").unwrap(), vec![-0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25]);
    assert_eq!(parse_alphas("0, 2").unwrap(), vec![0.0, 2.0]);
    assert!(steer::parse_pair("240-0").is_err());
    assert!(Path::new(&f.dir).exists());
}
