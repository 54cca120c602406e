//! Known-answer tests of the trained autoencoder: what seed 003 shows (a colour wheel with a gap at the
//! held-out slice) and what steering its bottleneck must do. One model (default config, seed 0) is trained
//! once and shared; it takes about a second in a debug build.

use std::sync::OnceLock;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::colour::signed_hue_delta_deg;
use crate::model::{Intervention, InterventionOp};

/// Full-batch MSE the default training must reach. The seed notebook reports 0.0162 after 500 epochs with
/// PyTorch's init; an untrained net sits near 0.1 (see `loss_falls_below_threshold`).
const MAX_FINAL_LOSS: f32 = 0.03;

fn trained() -> &'static (Autoencoder, TrainReport) {
    static MODEL: OnceLock<(Autoencoder, TrainReport)> = OnceLock::new();
    MODEL.get_or_init(|| Autoencoder::train(&TrainConfig::default(), None).unwrap())
}

fn weights(m: &Autoencoder) -> Vec<(String, Vec<f32>)> {
    let data = m.varmap.data().lock().unwrap();
    let mut out: Vec<_> =
        data.iter().map(|(k, v)| (k.clone(), v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap())).collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Bottleneck rows of `rgb`, `[n][d_bottleneck]`.
fn bottleneck(m: &Autoencoder, rgb: &[[f32; 3]], hooks: &HookSet) -> Vec<Vec<f32>> {
    let hooks =
        HookSet { capture: vec![point(BOTTLENECK)], interventions: hooks.interventions.clone(), stop_early: false };
    let c = m.forward_rgb(&rgb_tensor(rgb).unwrap(), &hooks, Pooling::Last).unwrap();
    c.layers[&point(BOTTLENECK)].to_vec2::<f32>().unwrap()
}

/// The training colours at value 1.0 (one per hue), their hues and bottleneck angles (radians).
fn wheel(m: &Autoencoder) -> (Vec<[f32; 3]>, Vec<f64>, Vec<f64>) {
    let set = m.train_config().training_set();
    let keep: Vec<usize> = (0..set.rgb.len()).filter(|&i| set.value[i] == 1.0).collect();
    let rgb: Vec<[f32; 3]> = keep.iter().map(|&i| set.rgb[i]).collect();
    let hues: Vec<f64> = keep.iter().map(|&i| set.hue_deg[i]).collect();
    let z = bottleneck(m, &rgb, &HookSet::default());
    let angles = z.iter().map(|r| (r[1] as f64).atan2(r[0] as f64)).collect();
    (rgb, hues, angles)
}

/// +1 if the bottleneck angle grows with hue, -1 if it shrinks (the wheel's orientation is arbitrary).
fn orientation(angles: &[f64]) -> f64 {
    let steps: f64 = angles
        .windows(2)
        .map(|w| (w[1] - w[0] + std::f64::consts::PI).rem_euclid(std::f64::consts::TAU) - std::f64::consts::PI)
        .sum();
    steps.signum()
}

/// Hues after which the bottleneck angle fails to advance (in the wheel's orientation), and a check that the
/// training hues wind exactly once around the origin.
fn non_monotone_hues(hues: &[f64], angles: &[f64]) -> Vec<f64> {
    let sign = orientation(angles);
    let pi = std::f64::consts::PI;
    let wrap = |d: f64| (d + pi).rem_euclid(2.0 * pi) - pi;
    let steps: Vec<f64> = angles.windows(2).map(|w| sign * wrap(w[1] - w[0])).collect();
    let turn = steps.iter().sum::<f64>() + sign * wrap(angles[0] - angles[angles.len() - 1]);
    assert!((turn - 2.0 * pi).abs() < 1e-6, "the wheel winds {turn} rad, expected one turn");
    hues.iter().zip(&steps).filter(|(_, &s)| s <= 0.0).map(|(h, _)| *h).collect()
}

/// The largest angular gap between neighbouring bottleneck angles (radians) and the two hues at its ends.
fn largest_gap(hues: &[f64], angles: &[f64]) -> (f64, [f64; 2]) {
    let mut order: Vec<usize> = (0..angles.len()).collect();
    order.sort_by(|&a, &b| angles[a].total_cmp(&angles[b]));
    let (mut best, mut ends) = (0.0, (0, 0));
    for k in 0..order.len() {
        let (i, j) = (order[k], order[(k + 1) % order.len()]);
        let gap = (angles[j] - angles[i]).rem_euclid(std::f64::consts::TAU);
        if gap > best {
            (best, ends) = (gap, (i, j));
        }
    }
    let mut pair = [hues[ends.0], hues[ends.1]];
    pair.sort_by(f64::total_cmp);
    (best, pair)
}

/// `rgb` repeated once per alpha, with `direction(row)` added at the bottleneck times that alpha.
fn steer_hues(m: &Autoencoder, rgb: [f32; 3], alphas: &[f32], vector: Vec<f32>) -> Vec<f64> {
    let hooks = HookSet {
        capture: vec![],
        interventions: alphas
            .iter()
            .enumerate()
            .map(|(b, &alpha)| Intervention {
                point: point(BOTTLENECK),
                positions: Positions::ImageTokens,
                sample: Some(b),
                op: InterventionOp::Add { vector: vector.clone(), alpha },
            })
            .collect(),
        stop_early: false,
    };
    m.decode_hues(&vec![rgb; alphas.len()], &hooks).unwrap().into_iter().map(|h| h.expect("chromatic output")).collect()
}

#[test]
fn training_is_deterministic_from_the_seed() {
    let cfg = TrainConfig { epochs: 40, seed: 11, ..TrainConfig::default() };
    let (a, ra) = Autoencoder::train(&cfg, None).unwrap();
    let (b, rb) = Autoencoder::train(&cfg, None).unwrap();
    assert_eq!(weights(&a), weights(&b), "same seed must give bit-identical weights");
    assert_eq!(ra.losses, rb.losses);
    let (c, _) = Autoencoder::train(&TrainConfig { seed: 12, ..cfg }, None).unwrap();
    assert_ne!(weights(&a), weights(&c));
}

#[test]
fn loss_falls_below_threshold() {
    let (m, report) = trained();
    eprintln!("initial loss {}, final loss {}", report.losses[0], report.final_loss);
    assert_eq!(report.losses.len(), 500);
    assert!(report.losses[0] > 0.05, "an untrained net should be far off: {}", report.losses[0]);
    assert!(report.final_loss < MAX_FINAL_LOSS, "final loss {} >= {MAX_FINAL_LOSS}", report.final_loss);
    assert!(report.final_loss < report.losses[0] / 3.0);
    assert_eq!(m.final_loss(), report.final_loss);
}

#[test]
fn bottleneck_is_a_circle_ordered_by_hue() {
    let (m, _) = trained();
    let set = m.train_config().training_set();
    let z = bottleneck(m, &set.rgb, &HookSet::default());
    let radii: Vec<f64> = z.iter().map(|r| ((r[0] * r[0] + r[1] * r[1]) as f64).sqrt()).collect();
    let mean = radii.iter().sum::<f64>() / radii.len() as f64;
    let sd = (radii.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / radii.len() as f64).sqrt();
    // The bottleneck is unit-normalised, so the radius is 1 up to eps; the claim that matters is the order.
    assert!(sd / mean < 1e-3, "radius CV {}", sd / mean);

    let (_, hues, angles) = wheel(m);
    let backwards = non_monotone_hues(&hues, &angles);
    assert!(backwards.is_empty(), "bottleneck angle is not monotone in hue after hues {backwards:?}");
}

#[test]
fn largest_angular_gap_is_in_the_held_out_slice() {
    let (m, _) = trained();
    let (_, hues, angles) = wheel(m);
    let (best, pair) = largest_gap(&hues, &angles);
    eprintln!("largest gap {:.1} deg between hues {pair:?}", best.to_degrees());
    // The training hues on either side of the held-out [150, 240] are 149 and 241.
    assert_eq!(pair, [149.0, 241.0]);
    // 91 of 360 hues are missing (25%); the gap should be far wider than one 1° step.
    assert!(best.to_degrees() > 30.0, "gap only {:.1} deg", best.to_degrees());
}

#[test]
fn steering_along_the_circle_moves_output_hue_monotonically() {
    let (m, _) = trained();
    let (rgb, hues, angles) = wheel(m);
    let sign = orientation(&angles) as f32;
    let alphas: Vec<f32> = (-6..=6).map(|k| k as f32 * 0.1).collect();
    for start in [0.0, 60.0, 300.0] {
        let i = hues.iter().position(|&h| h == start).unwrap();
        let z = &bottleneck(m, &[rgb[i]], &HookSet::default())[0];
        // Unit tangent in the direction of increasing hue.
        let tangent = vec![-z[1] * sign, z[0] * sign];
        let out = steer_hues(m, rgb[i], &alphas, tangent);
        let shifts: Vec<f64> = out.iter().map(|&h| signed_hue_delta_deg(start, h)).collect();
        eprintln!("start {start}: shifts {shifts:.1?}");
        assert!(shifts.windows(2).all(|w| w[1] > w[0]), "not monotone from {start}: {shifts:?}");
        assert!(shifts[12] > 10.0 && shifts[0] < -10.0, "too small a move from {start}: {shifts:?}");
    }
}

#[test]
fn rotation_along_the_circle_tracks_the_angle() {
    let (m, _) = trained();
    let (rgb, hues, angles) = wheel(m);
    let sign = orientation(&angles);
    let i = hues.iter().position(|&h| h == 0.0).unwrap();
    let z = &bottleneck(m, &[rgb[i]], &HookSet::default())[0];
    let (x, y) = (z[0] as f64, z[1] as f64);
    let deltas: Vec<f64> = (-6..=6).map(|k| (k * 10) as f64).collect();
    let mut out = Vec::new();
    for &d in &deltas {
        let (s, c) = (sign * d).to_radians().sin_cos();
        // Patch the whole 2-D bottleneck to z rotated by d degrees (in hue direction).
        let hooks = HookSet {
            capture: vec![],
            interventions: vec![Intervention {
                point: point(BOTTLENECK),
                positions: Positions::All,
                sample: None,
                op: InterventionOp::Patch {
                    basis: vec![vec![1.0, 0.0], vec![0.0, 1.0]],
                    target: vec![(c * x - s * y) as f32, (s * x + c * y) as f32],
                },
            }],
            stop_early: false,
        };
        out.push(signed_hue_delta_deg(0.0, m.decode_hues(&[rgb[i]], &hooks).unwrap()[0].unwrap()));
    }
    eprintln!("rotation by {deltas:?} deg moves hue by {out:.1?}");
    assert!(out.windows(2).all(|w| w[1] > w[0]), "not monotone: {out:?}");
    // Away from the gap, training hues fill ~269/360 of the circle's angle roughly evenly, so one degree of
    // rotation is worth roughly one degree of hue; allow a factor of two either way.
    for (d, h) in deltas.iter().zip(&out).filter(|(d, _)| d.abs() >= 30.0) {
        assert!((h / d) > 0.5 && (h / d) < 2.0, "rotation {d} gave hue shift {h}");
    }
}

#[test]
fn random_direction_of_the_same_norm_does_not_move_hue_consistently() {
    let (m, _) = trained();
    let (rgb, hues, angles) = wheel(m);
    let sign = orientation(&angles) as f32;
    let z = bottleneck(m, &rgb, &HookSet::default());
    let alpha = 0.3;
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let (mut tangent_up, mut random_up) = (0usize, 0usize);
    for (i, zi) in z.iter().enumerate() {
        let norm = (zi[0] * zi[0] + zi[1] * zi[1]).sqrt();
        let tangent = vec![-zi[1] * sign, zi[0] * sign];
        let theta: f32 = rng.random_range(0.0..std::f32::consts::TAU);
        let random = vec![norm * theta.cos(), norm * theta.sin()];
        let base = steer_hues(m, rgb[i], &[0.0], vec![0.0, 0.0])[0];
        let t = steer_hues(m, rgb[i], &[alpha], tangent)[0];
        let r = steer_hues(m, rgb[i], &[alpha], random)[0];
        tangent_up += (signed_hue_delta_deg(base, t) > 0.0) as usize;
        random_up += (signed_hue_delta_deg(base, r) > 0.0) as usize;
    }
    let n = hues.len() as f64;
    let (ft, fr) = (tangent_up as f64 / n, random_up as f64 / n);
    eprintln!("hue moved up: tangent {ft:.3}, random {fr:.3} of {n} colours");
    assert_eq!(tangent_up, hues.len(), "the tangent must move every colour's hue up");
    // A random direction's tangent component has a random sign: about half up, half down
    // (binomial sd ~0.03 at n = 269).
    assert!((0.3..0.7).contains(&fr), "random direction moved {fr} of hues up");
}

#[test]
fn alpha_zero_is_bit_identical() {
    let (m, _) = trained();
    let set = m.train_config().training_set();
    let xs = rgb_tensor(&set.rgb).unwrap();
    let all: Vec<HookPoint> = m.hook_points();
    let clean = m.forward_rgb(&xs, &HookSet::capture(all.clone()), Pooling::Last).unwrap();
    let mut hooks = HookSet::capture(all.clone());
    for (p, w) in all.iter().zip(m.config().point_widths()) {
        hooks.interventions.push(Intervention {
            point: p.clone(),
            positions: Positions::All,
            sample: None,
            op: InterventionOp::Add { vector: vec![1.0; w], alpha: 0.0 },
        });
    }
    let hooked = m.forward_rgb(&xs, &hooks, Pooling::Last).unwrap();
    for p in &all {
        let (a, b) = (clean.layers[p].to_vec2::<f32>().unwrap(), hooked.layers[p].to_vec2::<f32>().unwrap());
        assert!(a.iter().flatten().zip(b.iter().flatten()).all(|(x, y)| x.to_bits() == y.to_bits()), "{p}");
    }
}

#[test]
fn steering_the_bottleneck_changes_only_later_points() {
    let (m, _) = trained();
    let xs = rgb_tensor(&[[1.0, 0.0, 0.0]]).unwrap();
    let all = m.hook_points();
    let clean = m.forward_rgb(&xs, &HookSet::capture(all.clone()), Pooling::Tokens).unwrap();
    let mut hooks = HookSet::capture(all.clone());
    hooks.interventions.push(Intervention {
        point: point(BOTTLENECK),
        positions: Positions::Last,
        sample: None,
        op: InterventionOp::Add { vector: vec![0.5, -0.5], alpha: 1.0 },
    });
    let steered = m.forward_rgb(&xs, &hooks, Pooling::Tokens).unwrap();
    for (k, p) in all.iter().enumerate() {
        assert_eq!(steered.layers[p].dims(), &[1, 1, m.width(p).unwrap()]);
        let same = clean.layers[p].to_vec3::<f32>().unwrap() == steered.layers[p].to_vec3::<f32>().unwrap();
        assert_eq!(same, k < 2, "{p}: changed = {}", !same);
    }
}

#[test]
fn save_load_round_trip_and_bad_files() {
    let (m, _) = trained();
    let dir = std::env::temp_dir().join(format!("huescan-ae-{}", std::process::id()));
    let path = dir.join("ae.safetensors");
    m.save(&path).unwrap();
    let back = Autoencoder::load(&path).unwrap();
    assert_eq!(weights(m), weights(&back));
    assert_eq!(back.train_config(), m.train_config());
    assert_eq!(back.final_loss(), m.final_loss());
    let again = Autoencoder::train_or_load(Some(&path), &TrainConfig::default(), None).unwrap();
    assert_eq!(weights(m), weights(&again));

    let other = TrainConfig { seed: 1, ..TrainConfig::default() };
    let err = Autoencoder::train_or_load(Some(&path), &other, None).unwrap_err().to_string();
    assert!(err.contains("was trained with") && err.contains("ae.safetensors"), "{err}");

    let bytes = std::fs::read(&path).unwrap();
    let truncated = dir.join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = Autoencoder::load(&truncated).unwrap_err().to_string();
    assert!(err.contains("truncated.safetensors") && err.contains("not a readable safetensors"), "{err}");

    let foreign = dir.join("foreign.safetensors");
    candle_core::safetensors::save(
        &std::collections::HashMap::from([("x", rgb_tensor(&[[0.0; 3]]).unwrap())]),
        &foreign,
    )
    .unwrap();
    let err = Autoencoder::load(&foreign).unwrap_err().to_string();
    assert!(err.contains("expected `huescan-colour-autoencoder-v1`"), "{err}");

    let err = Autoencoder::load(&dir.join("missing.safetensors")).unwrap_err().to_string();
    assert!(err.contains("missing.safetensors"), "{err}");

    // Right metadata, wrong architecture: the shape error names the tensor.
    let cfg_json = serde_json::to_string(&TrainConfig::default()).unwrap();
    let meta = std::collections::HashMap::from([
        ("format".to_string(), io::FORMAT.to_string()),
        ("train_config".to_string(), cfg_json),
    ]);
    let bytes = vec![0u8; 8 * 3 * 4];
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![8, 3], &bytes).unwrap();
    let misshaped = dir.join("misshaped.safetensors");
    std::fs::write(&misshaped, safetensors::serialize([("encoder.0.weight", view)], Some(meta)).unwrap()).unwrap();
    let err = Autoencoder::load(&misshaped).unwrap_err().to_string();
    assert!(err.contains("`encoder.0.weight` has shape [8, 3], expected [16, 3]"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn train_or_load_trains_once_then_loads() {
    let dir = std::env::temp_dir().join(format!("huescan-ae-tol-{}", std::process::id()));
    let path = dir.join("sub").join("ae.safetensors");
    let cfg = TrainConfig { epochs: 20, seed: 5, ..TrainConfig::default() };
    let first = Autoencoder::train_or_load(Some(&path), &cfg, None).unwrap();
    assert!(path.exists(), "trained weights are saved where asked");
    assert!(first.id().starts_with("colour-autoencoder(seed=5"));
    let second = Autoencoder::train_or_load(Some(&path), &cfg, None).unwrap();
    assert_eq!(weights(&first), weights(&second));
    assert_eq!(second.id(), path.display().to_string());
    let unsaved = Autoencoder::train_or_load(None, &cfg, None).unwrap();
    assert_eq!(weights(&first), weights(&unsaved));
    let bad = TrainConfig { epochs: 0, ..cfg };
    assert!(Autoencoder::train_or_load(None, &bad, None).unwrap_err().to_string().contains("`epochs`"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn images_feed_their_chromatic_colour() {
    let (m, _) = trained();
    let red = RgbImage::from_pixel(4, 4, image::Rgb([255, 0, 0]));
    let mut textured = RgbImage::from_pixel(4, 4, image::Rgb([128, 128, 128]));
    for (x, y, px) in textured.enumerate_pixels_mut() {
        if (x + y) % 2 == 0 {
            *px = image::Rgb([0, if x < 2 { 255 } else { 205 }, 0]);
        }
    }
    assert_eq!(image_input_rgb(&red, 0).unwrap(), [1.0, 0.0, 0.0]);
    let g = image_input_rgb(&textured, 1).unwrap();
    assert!(g[0] == 0.0 && g[2] == 0.0 && (g[1] - 230.0 / 255.0).abs() < 1e-6, "grey background ignored: {g:?}");
    let grey = RgbImage::from_pixel(2, 2, image::Rgb([51, 51, 51]));
    assert_eq!(image_input_rgb(&grey, 2).unwrap(), [0.2; 3]);
    assert!(image_input_rgb(&RgbImage::new(0, 3), 3).unwrap_err().to_string().contains("image 3"));

    let pts = m.hook_points();
    let via_images = m.forward(&[red, textured], &HookSet::capture(pts.clone()), Pooling::ImageMean).unwrap();
    let via_rgb = m
        .forward_rgb(&rgb_tensor(&[[1.0, 0.0, 0.0], g]).unwrap(), &HookSet::capture(pts.clone()), Pooling::ImageMean)
        .unwrap();
    for p in &pts {
        assert_eq!(via_images.layers[p].to_vec2::<f32>().unwrap(), via_rgb.layers[p].to_vec2::<f32>().unwrap());
    }
    assert!(via_images.logits.is_none());
    // Usable behind the trait object the pipeline holds.
    let dynamic: &dyn Model = m;
    assert_eq!(dynamic.width(&point(BOTTLENECK)), Some(2));
    assert_eq!(dynamic.width(&HookPoint::LnFinalOut), None);
    assert_eq!(m.layer_index(&point(BOTTLENECK)).unwrap(), 2);
}

#[test]
fn unknown_points_and_positions_are_errors() {
    let (m, _) = trained();
    let xs = rgb_tensor(&[[1.0, 0.0, 0.0]]).unwrap();
    let err = m.forward_rgb(&xs, &HookSet::capture([HookPoint::ResidPost(3)]), Pooling::Last).unwrap_err().to_string();
    assert!(err.contains("blocks.3.hook_resid_post") && err.contains("bottleneck"), "{err}");
    let mut hooks = HookSet::default();
    hooks.interventions.push(Intervention {
        point: point(BOTTLENECK),
        positions: Positions::Indices(vec![1]),
        sample: None,
        op: InterventionOp::Add { vector: vec![1.0, 0.0], alpha: 1.0 },
    });
    let err = m.forward_rgb(&xs, &hooks, Pooling::Last).unwrap_err().to_string();
    assert!(err.contains("past the sequence length"), "{err}");
    hooks.interventions[0].positions = Positions::Last;
    hooks.interventions[0].op = InterventionOp::Add { vector: vec![1.0; 3], alpha: 1.0 };
    assert!(m.forward_rgb(&xs, &hooks, Pooling::Last).unwrap_err().to_string().contains("width 3"));
    let flat = Tensor::zeros((2, 4), DType::F32, &Device::Cpu).unwrap();
    let err = m.forward_rgb(&flat, &HookSet::default(), Pooling::Last).unwrap_err().to_string();
    assert!(err.contains("`input` has shape [2, 4], expected [2, 3]"), "{err}");
    let err = m.forward(&[], &HookSet::default(), Pooling::Last).unwrap_err().to_string();
    assert!(err.contains("at least one image"), "{err}");
}

#[test]
fn hsv_and_hue_helpers_match_known_values() {
    let hsv_to_rgb = |hue_deg: f64, s: f64, v: f64| colour::hsv_to_rgb(colour::Hsv { hue_deg, s, v });
    assert_eq!(hsv_to_rgb(0.0, 1.0, 1.0), [1.0, 0.0, 0.0]);
    assert_eq!(hsv_to_rgb(120.0, 1.0, 1.0), [0.0, 1.0, 0.0]);
    assert_eq!(hsv_to_rgb(240.0, 1.0, 0.5), [0.0, 0.0, 0.5]);
    assert_eq!(hsv_to_rgb(360.0 + 60.0, 1.0, 1.0), [1.0, 1.0, 0.0]);
    for h in (0..360).step_by(7) {
        let rgb = hsv_to_rgb(h as f64, 1.0, 0.9).map(|c| c as f32);
        assert!(signed_hue_delta_deg(h as f64, rgb_to_hue_deg(rgb).unwrap()).abs() < 1e-4, "{h}");
    }
    assert_eq!(rgb_to_hue_deg([0.3, 0.3, 0.3]), None);
}

#[test]
fn wheel_and_gap_hold_for_other_seeds() {
    // Seeds 0..20 all pass these checks (final loss 0.006-0.015, gap 52-95 deg); a few here keep it cheap.
    for seed in [1, 2, 3, 4] {
        let (m, report) = Autoencoder::train(&TrainConfig { seed, ..TrainConfig::default() }, None).unwrap();
        assert!(report.final_loss < MAX_FINAL_LOSS, "seed {seed}: loss {}", report.final_loss);
        let (_, hues, angles) = wheel(&m);
        assert!(non_monotone_hues(&hues, &angles).is_empty(), "seed {seed}");
        assert_eq!(largest_gap(&hues, &angles).1, [149.0, 241.0], "seed {seed}");
    }
}

/// `tests/fixtures/autoencoder_reference.json`, written by `scripts/autoencoder_reference.py` (float64 numpy,
/// hand-derived gradients checked against finite differences, PyTorch's Adam rule, `colorsys` colours).
fn reference() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/autoencoder_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    match v {
        serde_json::Value::Array(xs) => xs.iter().flat_map(floats).collect(),
        x => vec![x.as_f64().unwrap()],
    }
}

/// A VarMap holding the reference's `key` weights (`init` or `final`).
fn reference_varmap(r: &serde_json::Value, key: &str) -> VarMap {
    let varmap = VarMap::new();
    let cfg = Config::default();
    for (l, (d_in, d_out)) in LAYERS.iter().zip(cfg.layer_dims()) {
        for (suffix, shape) in [("weight", vec![d_out, d_in]), ("bias", vec![d_out])] {
            let name = format!("{l}.{suffix}");
            let values: Vec<f32> = floats(&r[key][&name]).iter().map(|&x| x as f32).collect();
            let t = Tensor::from_vec(values, shape, &Device::Cpu).unwrap();
            varmap.data().lock().unwrap().insert(name, candle_core::Var::from_tensor(&t).unwrap());
        }
    }
    varmap
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

#[test]
fn training_set_matches_the_colorsys_reference() {
    let r = reference();
    let set = TrainConfig::default().training_set();
    let hues: Vec<f64> = floats(&r["hues_deg"]);
    assert_eq!(set.hue_deg, hues);
    let ours: Vec<f64> = set.rgb.iter().flatten().map(|&c| c as f64).collect();
    // Both sides are f32 casts of f64 HSV conversions; they may differ in the last f32 bit.
    assert!(max_abs_diff(&ours, &floats(&r["rgb"])) < 1e-7);
}

#[test]
fn forward_matches_the_float64_reference() {
    let r = reference();
    let cfg = TrainConfig::default();
    let m = Autoencoder::from_varmap("reference".into(), cfg.clone(), f32::NAN, reference_varmap(&r, "final")).unwrap();
    let hooks = HookSet::capture([point(BOTTLENECK), point(OUTPUT)]);
    let c = m.forward_rgb(&cfg.training_set().tensor(&Device::Cpu).unwrap(), &hooks, Pooling::Last).unwrap();
    let got = |p: &str| floats(&serde_json::to_value(c.layers[&point(p)].to_vec2::<f32>().unwrap()).unwrap());
    // f32 against f64 through four layers of width <= 16: a few f32 ulp (1.2e-7) at values of order 1
    // (measured 2.4e-7).
    let (db, dout) =
        (max_abs_diff(&got(BOTTLENECK), &floats(&r["bottleneck"])), max_abs_diff(&got(OUTPUT), &floats(&r["output"])));
    eprintln!("forward vs reference: bottleneck {db:.2e}, output {dout:.2e}");
    assert!(db < 2e-6 && dout < 2e-6);
}

#[test]
fn training_matches_the_float64_reference() {
    let r = reference();
    let cfg = TrainConfig { epochs: r["epochs"].as_u64().unwrap() as usize, ..TrainConfig::default() };
    let (m, report) = Autoencoder::train_from(&cfg, reference_varmap(&r, "init"), None).unwrap();
    let ref_losses = floats(&r["losses"]);
    let rel = report.losses.iter().zip(&ref_losses).map(|(&a, &b)| ((a as f64 - b) / b).abs()).fold(0.0, f64::max);
    let ours = weights(&m);
    let mut dw: f64 = 0.0;
    for (name, w) in &ours {
        let w: Vec<f64> = w.iter().map(|&x| x as f64).collect();
        dw = dw.max(max_abs_diff(&w, &floats(&r["final"][name])));
    }
    eprintln!(
        "500 epochs vs reference: loss curve rel diff {rel:.2e}, final weights abs diff {dw:.2e}, final loss {} vs {}",
        report.final_loss, r["final_loss"]
    );
    // Measured 2.2e-6 and 2.8e-6: f32 rounding accumulated over 500 Adam steps; 1e-4 leaves a 30x margin and
    // still catches a real difference in the maths (candle's default AdamW weight decay of 0.01 alone gives 3.8e-3).
    assert!(rel < 1e-4 && dw < 1e-4);
}

#[test]
fn unnormalised_bottleneck_is_the_raw_encoder_output() {
    let cfg = TrainConfig {
        model: Config { normalize_bottleneck: false, ..Config::default() },
        epochs: 100,
        ..TrainConfig::default()
    };
    let (m, _) = Autoencoder::train(&cfg, None).unwrap();
    let set = cfg.training_set();
    let hooks = HookSet::capture([point(ENCODER_HIDDEN), point(BOTTLENECK)]);
    let c = m.forward_rgb(&set.tensor(&Device::Cpu).unwrap(), &hooks, Pooling::Last).unwrap();
    let h = c.layers[&point(ENCODER_HIDDEN)].to_vec2::<f32>().unwrap();
    let z = c.layers[&point(BOTTLENECK)].to_vec2::<f32>().unwrap();
    let w = weights(&m);
    let get = |k: &str| &w.iter().find(|(n, _)| n == k).unwrap().1;
    let (w2, b2) = (get("encoder.2.weight"), get("encoder.2.bias"));
    let mut radii = Vec::new();
    for (hi, zi) in h.iter().zip(&z) {
        for j in 0..2 {
            let expect = b2[j] + (0..16).map(|k| w2[j * 16 + k] * hi[k]).sum::<f32>();
            assert!((expect - zi[j]).abs() < 1e-5, "{expect} vs {}", zi[j]);
        }
        radii.push((zi[0] * zi[0] + zi[1] * zi[1]).sqrt());
    }
    let (lo, hi) = radii.iter().fold((f32::MAX, 0f32), |(lo, hi), &r| (lo.min(r), hi.max(r)));
    assert!(hi - lo > 0.05, "without normalisation the radius is free, got {lo}..{hi}");
}
