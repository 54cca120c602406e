//! Known-answer tests on the *trained* colour-naming Qwen2.5-VL (`tests/fixtures/qwen-colour`, made by
//! `scripts/make_colour_vlm.py`): through huescan's own runner, prompt, scan and steering, on huescan's own
//! `simple-60` and `wild-360` sets. The hue slice HOLD_OUT was never shown in training.
//!
//! One `huescan scan qwen-colour` run (both sets, 100 permutations, every layer steered: the model has 5 hook
//! points) is shared by the tests that read its tables; it takes well under a minute.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::{DType, Device, IndexOp, Tensor};
use huescan::colour::signed_hue_delta_deg;
use huescan::model::qwen2_5_vl::{Qwen25VlModel, Sample};
use huescan::model::{HookPoint, HookSet, Intervention, InterventionOp, Model, Positions};
use huescan::steer::layers::{answer_word, word_for_hue};
use huescan::steer::{answer_flips, DirectionKind, SweepRow, DEFAULT_COLOUR_WORDS};

/// The slice held out of training, degrees inclusive (reference.json says the same; checked below).
const HOLD_OUT: (f64, f64) = (195.0, 225.0);
/// Within this many degrees of the midpoint between two neighbouring colour words either word is right.
const BOUNDARY_BAND: f64 = 5.0;
/// The bar for held-in answers.
const MIN_HELD_IN_ACCURACY: f64 = 0.95;
/// Largest alpha of the scan's default sweep (`-0.25:1.25:0.25`), the bar for a flip.
const MAX_ALPHA: f64 = 1.25;
/// Parity with transformers, f32: as tests/it/qwen_parity.rs (max |ours - theirs| / max |theirs|).
const F32_TOL: f32 = 1e-4;
/// Colour-word probabilities are compared absolutely: they are in [0, 1] and come from logits within F32_TOL.
const PROB_TOL: f64 = 1e-4;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen-colour")
}

fn reference_meta() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture().join("reference.json")).unwrap()).unwrap()
}

/// The shared scan run folder.
fn scan() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = crate::common::fresh_dir("qwen-colour", "scan");
        let t = std::time::Instant::now();
        let out = crate::common::huescan()
            .args(["--quiet", "scan", "qwen-colour", "--sets", "simple-60,wild-360", "--permutations", "100"])
            .arg("--out")
            .arg(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "scan failed:\n{}", String::from_utf8_lossy(&out.stderr));
        eprintln!("scan qwen-colour: {:.1} s", t.elapsed().as_secs_f64());
        dir
    })
}

fn in_hold_out(h: f64) -> bool {
    (HOLD_OUT.0..=HOLD_OUT.1).contains(&h.rem_euclid(360.0))
}

/// The nearest colour word, and its neighbour when `h` is within BOUNDARY_BAND of their midpoint.
fn acceptable(h: f64) -> Vec<&'static str> {
    let mut d: Vec<(f64, &str)> =
        DEFAULT_COLOUR_WORDS.iter().map(|(w, c)| (signed_hue_delta_deg(*c, h).abs(), *w)).collect();
    d.sort_by(|a, b| a.0.total_cmp(&b.0));
    if d[1].0 - d[0].0 <= 2.0 * BOUNDARY_BAND {
        vec![d[0].1, d[1].1]
    } else {
        vec![d[0].1]
    }
}

fn load_model() -> Qwen25VlModel {
    Qwen25VlModel::load(&fixture(), DType::F32, &crate::common::device()).unwrap()
}

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

#[test]
fn held_out_slice_matches_the_training_script() {
    let m = reference_meta();
    assert_eq!(m["hold_out_deg"], serde_json::json!([HOLD_OUT.0, HOLD_OUT.1]));
    assert_eq!(m["boundary_band_deg"].as_f64(), Some(BOUNDARY_BAND));
}

/// (right, of) for held-in and held-out hues of one rendered set, by the generated answer.
fn score_set(model: &Qwen25VlModel, stimuli: &Path) -> [(usize, usize); 2] {
    let man = read_json(&stimuli.join("stimuli.json"));
    let mut counts = [(0, 0); 2];
    let items = man["stimuli"].as_array().unwrap();
    let mut wrong = Vec::new();
    for chunk in items.chunks(32) {
        let imgs: Vec<image::RgbImage> =
            chunk.iter().map(|it| image::open(stimuli.join(it["file"].as_str().unwrap())).unwrap().to_rgb8()).collect();
        let texts = Model::generate(model, &imgs, &HookSet::default(), 4).unwrap().unwrap();
        for (it, text) in chunk.iter().zip(texts) {
            let h = it["hue_deg"].as_f64().unwrap();
            let k = usize::from(in_hold_out(h));
            counts[k].1 += 1;
            if acceptable(h).contains(&answer_word(&text).as_str()) {
                counts[k].0 += 1;
            } else if k == 0 {
                wrong.push(format!("{h}°: `{text}`"));
            }
        }
    }
    eprintln!("{}: held-in wrong: {}", stimuli.display(), wrong.join(", "));
    counts
}

#[test]
fn answers_name_the_hue_on_at_least_95_percent_of_held_in_hues_of_simple_60_and_wild_360() {
    let run = scan();
    let model = load_model();
    for set in ["simple-60", "wild-360"] {
        let [(ri, ni), (ro, no)] = score_set(&model, &run.join("stimuli").join(set));
        let acc = ri as f64 / ni as f64;
        eprintln!("{set}: held-in {ri}/{ni} = {acc:.3}, held-out {ro}/{no} = {:.3}", ro as f64 / no as f64);
        assert!(no > 0 && ni > 0);
        assert!(acc >= MIN_HELD_IN_ACCURACY, "{set}: held-in accuracy {acc:.3} < {MIN_HELD_IN_ACCURACY}");
    }
}

#[test]
fn the_layer_scan_finds_a_circle_far_above_the_shuffled_baseline_and_names_its_best_layers() {
    let run = scan();
    for set in ["simple-60", "wild-360"] {
        let s = read_json(&run.join("analysis").join(set).join("summary.json"));
        let rows = s["layer_scan"].as_array().unwrap();
        let mut best: Vec<(u64, f64, f64, f64)> = rows
            .iter()
            .map(|r| {
                let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
                (r["layer"].as_u64().unwrap(), f("cv_score"), f("shuffled_baseline"), f("p_value"))
            })
            .collect();
        best.sort_by(|a, b| b.1.total_cmp(&a.1));
        eprintln!("{set}: layers by CV circular score (layer, cv, shuffled, p): {best:?}");
        let chosen = s["choice"]["layer"].as_u64().unwrap();
        let (layer, cv, shuffled, p) = best[0];
        assert_eq!(chosen, layer, "the analysis layer is the one with the best CV score");
        // p <= 0.01 needs no shuffled labelling of 100 to reach the real score ((1 + 0) / (1 + 100) = 0.0099).
        assert!(p <= 0.01, "{set} layer {layer}: p = {p}");
        // Far above: the shuffled null of a circular score is near zero; require the real one to clear it by 0.5.
        assert!(cv - shuffled >= 0.5, "{set} layer {layer}: cv {cv} vs shuffled {shuffled}");
    }
}

fn sweep_rows(set: &str) -> Vec<SweepRow> {
    let v = read_json(&scan().join("steering").join(set).join("sweep.json"));
    serde_json::from_value(v["rows"].clone()).expect("sweep.json rows are SweepRows")
}

/// Per (pair, direction): the layers (with alpha) at which the generated answer flips to the target word, for
/// the steering points in the language model (`vision == false`: the image-token positions of the decoder) or
/// in the vision tower (`vision == true`: its blocks, at every patch).
fn flips_in(set: &str, vision: bool) -> BTreeMap<(String, DirectionKind), Vec<(usize, f64)>> {
    let layers: Vec<usize> =
        sweep_rows(set).iter().filter(|r| r.hook.starts_with("visual.") == vision).map(|r| r.layer).collect();
    let mut out: BTreeMap<(String, DirectionKind), Vec<(usize, f64)>> = BTreeMap::new();
    for f in answer_flips(&sweep_rows(set)) {
        let e = out.entry((f.pair.clone(), f.direction)).or_default();
        if let Some(a) = f.alpha_answer_flip.filter(|_| layers.contains(&f.layer)) {
            e.push((f.layer, a));
        }
    }
    out
}

/// The decoder's flips (the claims below are about the language model unless a test says otherwise).
fn flips(set: &str) -> BTreeMap<(String, DirectionKind), Vec<(usize, f64)>> {
    flips_in(set, false)
}

#[test]
fn centroid_steering_at_image_tokens_flips_the_answer_for_all_three_pairs_a_random_direction_does_not() {
    scan();
    for set in ["simple-60", "wild-360"] {
        let f = flips(set);
        eprintln!("{set}: answer flips (layer, alpha) per pair and direction: {f:?}");
        let pairs: Vec<&String> =
            f.keys().map(|(p, _)| p).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
        assert_eq!(pairs.len(), 3, "the notebook's three pairs: {pairs:?}");
        for pair in pairs {
            // The rotation along the fitted circle has its own tests below (its flips are printed here).
            let at = &f[&(pair.clone(), DirectionKind::Centroid)];
            assert!(at.iter().any(|&(_, a)| a <= MAX_ALPHA), "{set} {pair} centroid: no flip at alpha <= 1.25");
            let random = &f[&(pair.clone(), DirectionKind::Random)];
            assert!(random.is_empty(), "{set} {pair}: a random direction of the same norm flipped it at {random:?}");
        }
    }
}

/// The pairs of a flip table, in order.
fn pairs_of(f: &BTreeMap<(String, DirectionKind), Vec<(usize, f64)>>) -> Vec<String> {
    f.keys().map(|(p, _)| p.clone()).collect::<std::collections::BTreeSet<_>>().into_iter().collect()
}

/// The rotation along the fitted circle with the default (local-mean) lift, in the decoder. Measured 2026-12-03
/// (README "Where steering works"): at layer 0 (`blocks.0.hook_resid_pre`) it flips all three pairs at alpha 1
/// on both sets, the answer walking through the colour words between source and target in hue order
/// (Blue→Red: blue, purple, magenta, pink, red at alpha 0, 0.25, ..., 1), where the random control of the
/// centroid's norm flips none; from layer 1 on fewer pairs flip. The linear lifts (`--lift pattern`,
/// `--lift min-norm`) flip no decoder pair: their answers land on other words.
#[test]
fn the_circle_rotation_flips_all_three_pairs_at_a_decoder_layer_where_a_random_direction_flips_none() {
    scan();
    for set in ["simple-60", "wild-360"] {
        let f = flips(set);
        eprintln!(
            "{set} decoder rotation flips: {:?}",
            f.iter().filter(|(k, _)| k.1 == DirectionKind::Manifold).collect::<Vec<_>>()
        );
        let pairs = pairs_of(&f);
        assert_eq!(pairs.len(), 3, "the notebook's three pairs: {pairs:?}");
        let flips_at = |pair: &String, kind: DirectionKind, layer: usize| {
            f[&(pair.clone(), kind)].iter().any(|&(l, a)| l == layer && a <= MAX_ALPHA)
        };
        let decoder: std::collections::BTreeSet<usize> = f.values().flatten().map(|&(l, _)| l).collect();
        let working: Vec<usize> = decoder
            .into_iter()
            .filter(|&l| pairs.iter().all(|p| flips_at(p, DirectionKind::Manifold, l)))
            .filter(|&l| pairs.iter().all(|p| !flips_at(p, DirectionKind::Random, l)))
            .collect();
        eprintln!("{set}: decoder layers where the rotation flips every pair and random none: {working:?}");
        assert!(
            !working.is_empty(),
            "{set}: no decoder layer where the rotation flips all three pairs and random none"
        );
        // On the way, the answer names the hues between source and target in order: its colour word's hue never
        // steps back towards the source as alpha grows from 0 to 1.
        let rows = sweep_rows(set);
        for pair in &pairs {
            let mut path: Vec<(f64, Vec<String>)> = rows
                .iter()
                .filter(|r| r.layer == working[0] && &r.pair == pair && r.direction == DirectionKind::Manifold)
                .filter(|r| (0.0..=1.0).contains(&r.alpha))
                .map(|r| (r.alpha, r.texts.clone().unwrap_or_default().iter().map(|t| answer_word(t)).collect()))
                .collect();
            path.sort_by(|a, b| a.0.total_cmp(&b.0));
            let row = rows.iter().find(|r| &r.pair == pair).unwrap();
            let travel = signed_hue_delta_deg(row.source_deg, row.target_deg);
            let progress = |w: &str| {
                let hue = DEFAULT_COLOUR_WORDS.iter().find(|(name, _)| *name == w).map(|(_, h)| *h);
                let hue = hue.unwrap_or_else(|| panic!("{set} {pair}: `{w}` is not a colour word: {path:?}"));
                signed_hue_delta_deg(row.source_deg, hue) * travel.signum()
            };
            let steps: Vec<f64> = path.iter().flat_map(|(_, words)| words.iter().map(|w| progress(w))).collect();
            assert!(steps.len() >= 5, "{set} {pair}: alphas 0..1 with answers: {path:?}");
            assert!(steps.windows(2).all(|w| w[1] >= w[0]), "{set} {pair} layer {}: {path:?}", working[0]);
        }
    }
}

/// The same rotation in the vision tower (layers 6-9, every patch): on simple-60 it flips all three pairs by
/// alpha 1 and the random control flips none of them there (on wild-360 Red→Green stops at yellow or orange).
#[test]
fn the_circle_rotation_flips_every_pair_in_the_vision_tower_on_simple_60() {
    scan();
    let f = flips_in("simple-60", true);
    eprintln!("simple-60 vision tower: answer flips (layer, alpha) per pair and direction: {f:?}");
    let pairs = pairs_of(&f);
    assert_eq!(pairs.len(), 3);
    for pair in &pairs {
        let rot = &f[&(pair.clone(), DirectionKind::Manifold)];
        assert!(rot.iter().any(|&(_, a)| a <= MAX_ALPHA), "simple-60 {pair} rotation: no vision-tower flip");
        let random = &f[&(pair.clone(), DirectionKind::Random)];
        assert!(random.is_empty(), "simple-60 {pair}: random flipped it in the vision tower at {random:?}");
    }
}

#[test]
fn steering_image_positions_after_the_last_block_changes_no_answer() {
    let n_blocks = load_model().n_layers();
    for set in ["simple-60", "wild-360"] {
        let rows = sweep_rows(set);
        let last: Vec<&SweepRow> = rows.iter().filter(|r| r.layer == n_blocks).collect();
        assert!(!last.is_empty(), "{set}: the scan steered at layer {n_blocks} (ln_final.hook_out) too");
        assert_eq!(last[0].hook, HookPoint::LnFinalOut.to_string());
        for r in &last {
            let clean = last
                .iter()
                .find(|c| c.pair == r.pair && c.direction == r.direction && c.alpha == 0.0)
                .and_then(|c| c.texts.clone());
            assert_eq!(r.texts, clean, "{set} {} {} alpha {}: the answer changed", r.pair, r.direction, r.alpha);
            assert!(r.texts.is_some());
        }
    }
}

#[test]
fn the_decoder_only_joystick_succeeds_at_every_layer_even_where_in_model_steering_cannot() {
    scan();
    for set in ["simple-60", "wild-360"] {
        let summary = read_json(&scan().join("steering").join(set).join("summary.json"));
        let rows = summary["summary"].as_array().unwrap();
        let f = answer_flips(&sweep_rows(set));
        let mut contrast = Vec::new();
        for r in rows.iter().filter(|r| r["direction"] == "centroid") {
            let layer = r["layer"].as_u64().unwrap() as usize;
            let pair = r["pair"].as_str().unwrap();
            assert!(
                r["joystick_alpha_reached"].as_f64().is_some_and(|a| a <= MAX_ALPHA),
                "{set} layer {layer} {pair}: the joystick did not reach the target: {r}"
            );
            let flip = f
                .iter()
                .find(|x| x.layer == layer && x.pair == pair && x.direction == DirectionKind::Centroid)
                .and_then(|x| x.alpha_answer_flip);
            if flip.is_none() {
                contrast.push((layer, pair.to_string()));
            }
        }
        eprintln!("{set}: joystick succeeds but the answer does not flip at (layer, pair): {contrast:?}");
        assert!(!contrast.is_empty(), "{set}: in-model steering flipped the answer everywhere; no contrast");
    }
}

// --------------------------------------------------------------------------------- parity with transformers

struct Reference {
    t: std::collections::HashMap<String, Tensor>,
    meta: serde_json::Value,
}

impl Reference {
    fn load() -> Self {
        let t = candle_core::safetensors::load(fixture().join("reference.safetensors"), &Device::Cpu).unwrap();
        Reference { t, meta: reference_meta() }
    }

    fn get(&self, k: &str) -> &Tensor {
        self.t.get(k).unwrap_or_else(|| panic!("reference has no `{k}`"))
    }

    fn ids(&self, k: &str) -> Vec<u32> {
        self.get(k).flatten_all().unwrap().to_vec1::<i64>().unwrap().into_iter().map(|x| x as u32).collect()
    }
}

fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs()));
    a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale.max(f32::MIN_POSITIVE)
}

#[test]
fn trained_model_matches_transformers_hidden_states_answers_word_probabilities_and_a_steered_forward() {
    let r = Reference::load();
    let model = load_model();
    let words: Vec<String> = DEFAULT_COLOUR_WORDS.iter().map(|(w, _)| w.to_string()).collect();
    let samples = r.meta["samples"].as_object().unwrap();
    assert!(samples.len() >= 5);
    for (key, m) in samples {
        let img = image::open(fixture().join(m["image"].as_str().unwrap())).unwrap().to_rgb8();
        // The image is stored at the processor's target size; our processor must give transformers' pixels.
        let sample = model.prepare(&img).unwrap();
        assert_eq!(sample.input_ids, r.ids(&format!("{key}.input_ids")), "{key}: prompt ids (chat template)");
        let e = rel_err(&sample.pixel_values, r.get(&format!("{key}.pixel_values")));
        assert!(e <= F32_TOL, "{key}: pixel values {e:.2e}");
        let out = model
            .forward_hidden_states(&sample.pixel_values, &sample.grids, &sample.input_ids, &HookSet::default())
            .unwrap();
        let want = r.get(&format!("{key}.hidden_states"));
        for (i, h) in out.hidden_states.iter().enumerate() {
            let e = rel_err(h, &want.get(i).unwrap());
            assert!(e <= F32_TOL, "{key} hidden_states[{i}]: {e:.2e}");
        }
        let last = out.logits.i(out.logits.dim(0).unwrap() - 1).unwrap();
        let e = rel_err(&last, r.get(&format!("{key}.last_logits")));
        assert!(e <= F32_TOL, "{key} last logits: {e:.2e}");
        let gen = model.generate(&sample, 4, &HookSet::default()).unwrap();
        assert_eq!(gen, r.ids(&format!("{key}.generated")), "{key}: greedy tokens");
        let text = Model::generate(&model, std::slice::from_ref(&img), &HookSet::default(), 4).unwrap().unwrap();
        assert_eq!(text[0], m["answer"].as_str().unwrap(), "{key}: decoded answer");
        assert_eq!(answer_word(&text[0]), word_for_hue(m["hue_deg"].as_f64().unwrap()), "{key}: the right colour");
        // Next-token probability of each colour word's lower-case spelling (the first of huescan's variants).
        let ids = model.token_ids(&words).unwrap().unwrap();
        let probs =
            candle_nn::ops::softmax_last_dim(&last.to_dtype(DType::F64).unwrap()).unwrap().to_vec1::<f64>().unwrap();
        for (w, ids) in words.iter().zip(&ids) {
            let want = m["word_probs"][w].as_f64().unwrap();
            let lower = ids[0] as usize;
            assert!((probs[lower] - want).abs() <= PROB_TOL, "{key} p({w}) = {} vs {want}", probs[lower]);
        }
    }
    // The steered forward: alpha * v added to decoder block STEER_BLOCK's output at the image tokens.
    let st = &r.meta["steering"];
    let key = st["sample"].as_str().unwrap();
    let block = st["block"].as_u64().unwrap() as usize;
    let alpha = st["alpha"].as_f64().unwrap() as f32;
    let sample = Sample {
        pixel_values: r.get(&format!("{key}.pixel_values")).clone(),
        grids: vec![[1, 8, 8]],
        input_ids: r.ids(&format!("{key}.input_ids")),
    };
    let hooks = HookSet {
        capture: vec![],
        interventions: vec![Intervention {
            point: HookPoint::ResidPost(block),
            positions: Positions::ImageTokens,
            sample: None,
            op: InterventionOp::Add { vector: r.get("steer.vector").to_vec1::<f32>().unwrap(), alpha },
        }],
        stop_early: false,
    };
    assert_eq!(st["hook_point"].as_str().unwrap(), HookPoint::ResidPost(block).to_string());
    let out = model.forward_hidden_states(&sample.pixel_values, &sample.grids, &sample.input_ids, &hooks).unwrap();
    let want = r.get("steer.hidden_states");
    for (i, h) in out.hidden_states.iter().enumerate() {
        let e = rel_err(h, &want.get(i).unwrap());
        assert!(e <= F32_TOL, "steered hidden_states[{i}]: {e:.2e}");
    }
    let last = out.logits.i(out.logits.dim(0).unwrap() - 1).unwrap();
    assert!(rel_err(&last, r.get("steer.last_logits")) <= F32_TOL);
    assert_eq!(model.generate(&sample, 4, &hooks).unwrap(), r.ids("steer.generated"), "steered greedy tokens");
}

// ------------------------------------------------------------------------------------------- demo and README

/// The README's "What the demo finds" for the VLM is the findings of `huescan scan qwen-colour` (the demo's main
/// act with the scan's default `--layers residual`, so the vision tower's blocks are in it; the demo itself
/// stores the decoder's points only). On a mismatch the wanted text is written next to the scan for pasting.
#[test]
fn readme_vlm_findings_are_what_the_demo_prints() {
    let md = huescan::report::findings::markdown(scan()).unwrap();
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let (start, end) = ("<!-- demo-findings:start -->\n", "<!-- demo-findings:end -->");
    let from = readme.find(start).expect("README has the demo-findings markers") + start.len();
    let to = from + readme[from..].find(end).expect("end marker");
    if readme[from..to].trim() != md.trim() {
        let wanted = scan().join("findings-for-readme.md");
        std::fs::write(&wanted, &md).unwrap();
        panic!(
            "README's VLM findings differ from `huescan scan qwen-colour`'s; paste {} between the markers",
            wanted.display()
        );
    }
}

#[test]
fn the_demo_runs_the_vlm_and_reports_where_steering_flips_the_answer() {
    let dir = crate::common::fresh_dir("qwen-colour", "demo");
    let out = crate::common::huescan()
        .args(["demo", "--model", "qwen-colour", "--sets", "simple-60", "--permutations", "20", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    let findings = std::fs::read_to_string(dir.join("findings.md")).unwrap();
    assert!(said.contains(findings.trim()), "the demo prints its findings");
    assert!(findings.contains("The answer flips for every pair at layer"), "{findings}");
    assert!(!findings.contains("every pair at layers none"), "{findings}");
    let index = std::fs::read_to_string(dir.join("report/index.html")).unwrap();
    assert!(index.contains("Where steering changes the answer"), "the report shows where steering works");
    std::fs::remove_dir_all(dir).unwrap();
}
