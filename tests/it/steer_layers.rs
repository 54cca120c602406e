//! Layer numbering of steering, end to end: store index ↔ hook name ↔ llama.cpp `direction.{k}`. A stand-in
//! decoder (HF-style hook points, residual blocks, per-position interventions) has a direction planted at the
//! output of block 2 only (store index 3); the direction found there must be exported as `direction.2`, read back
//! as `blocks.2.hook_resid_post`, and act on index 3 and after, never before. An off-by-one anywhere here gives
//! plausible numbers at the neighbouring layer, so every step is checked exactly.

use std::collections::BTreeMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use huescan::colour::{hsv_to_rgb, signed_hue_delta_deg, Hsv};
use huescan::extract::{extract, load_image, ExtractPlan, SampleInput};
use huescan::model::autoencoder::rgb_to_hue_deg;
use huescan::model::{Captures, HookPoint, HookSet, Intervention, InterventionOp, Model, Pooling, Positions};
use huescan::steer::{
    self, gguf, run_sweep, DirectionContext, DirectionKind, Normalisation, PairSpec, SweepInput, SweepOptions,
};
use huescan::store::{ActivationStore, Provenance};

const N_BLOCKS: usize = 4;
const SEQ: usize = 3;
/// The planted direction (unit norm), written by block 2 in proportion to cos(hue).
const PLANTED: [f32; 6] = [0.0, 0.0, 0.0, 0.6, 0.0, 0.8];

/// Three positions per sample: 0 is "text", 1 and 2 are "image tokens" (both carry the image's hue).
struct ResidModel {
    width: usize,
}

impl ResidModel {
    fn select(positions: &Positions) -> Vec<usize> {
        match positions {
            Positions::ImageTokens => vec![1, 2],
            Positions::All => (0..SEQ).collect(),
            Positions::Last => vec![SEQ - 1],
            Positions::Indices(ix) => ix.clone(),
        }
    }
}

impl Model for ResidModel {
    fn id(&self) -> &str {
        "fake-resid"
    }
    fn hook_points(&self) -> Vec<HookPoint> {
        (0..=N_BLOCKS).map(|i| HookPoint::from_hidden_state_index(i, N_BLOCKS).unwrap()).collect()
    }
    fn width(&self, p: &HookPoint) -> Option<usize> {
        self.hook_points().contains(p).then_some(self.width)
    }
    fn forward(
        &self,
        images: &[image::RgbImage],
        hooks: &HookSet,
        pooling: Pooling,
    ) -> huescan::model::Result<Captures> {
        let (b, d) = (images.len(), self.width);
        let mut x = vec![0f32; b * SEQ * d];
        for (i, img) in images.iter().enumerate() {
            let p = img.get_pixel(0, 0).0.map(|c| c as f32 / 255.0);
            let h = rgb_to_hue_deg(p).unwrap().to_radians();
            for pos in 0..SEQ {
                let row = &mut x[(i * SEQ + pos) * d..][..d];
                if pos > 0 {
                    row[0] = h.cos() as f32;
                    row[1] = h.sin() as f32;
                }
                row[2] = pos as f32 * 0.1;
            }
        }
        let mut xs = Tensor::from_vec(x, (b, SEQ, d), &Device::Cpu)?;
        let mut captures = Captures::default();
        let mut at = |point: HookPoint, xs: Tensor| -> huescan::model::Result<Tensor> {
            let xs = hooks.apply(&point, &xs, &|_, p| Self::select(p))?;
            if hooks.wants(&point) {
                let pooled = match pooling {
                    Pooling::ImageMean => xs.narrow(1, 1, 2)?.mean(1)?,
                    Pooling::Last => xs.narrow(1, SEQ - 1, 1)?.squeeze(1)?,
                    Pooling::Tokens => xs.clone(),
                };
                captures.layers.insert(point, pooled);
            }
            Ok(xs)
        };
        xs = at(HookPoint::ResidPre(0), xs)?;
        for l in 0..N_BLOCKS {
            let mut c = vec![0f32; d];
            c[2] = (l + 1) as f32 * 0.5;
            let mut out = xs.broadcast_add(&Tensor::from_vec(c, d, &Device::Cpu)?)?;
            if l == 2 {
                let mut p = PLANTED.to_vec();
                p.resize(d, 0.0);
                let cos = xs.narrow(2, 0, 1)?;
                out = (out + cos.broadcast_mul(&Tensor::from_vec(p, d, &Device::Cpu)?)?)?;
            }
            xs = if l + 1 < N_BLOCKS { at(HookPoint::ResidPost(l), out)? } else { out };
        }
        let last = at(HookPoint::LnFinalOut, (xs * 0.5)?)?.narrow(1, SEQ - 1, 1)?.squeeze(1)?;
        // A 4-token "vocabulary" whose logits read the hue at the last position: 8 (cos, sin) . (cos w, sin w).
        let unembed: Vec<f32> = (0..d)
            .flat_map(|k| {
                WORDS.iter().map(move |(_, w)| match k {
                    0 => 8.0 * w.to_radians().cos() as f32,
                    1 => 8.0 * w.to_radians().sin() as f32,
                    _ => 0.0,
                })
            })
            .collect();
        captures.logits = Some(last.matmul(&Tensor::from_vec(unembed, (d, WORDS.len()), &Device::Cpu)?)?);
        Ok(captures)
    }

    fn token_ids(&self, words: &[String]) -> huescan::model::Result<Option<Vec<Vec<u32>>>> {
        Ok(Some(
            words
                .iter()
                .map(|w| WORDS.iter().position(|(n, _)| n == w).map(|i| vec![i as u32]).unwrap_or_default())
                .collect(),
        ))
    }

    /// The most probable word, as a stand-in for greedy decoding.
    fn generate(
        &self,
        images: &[image::RgbImage],
        hooks: &HookSet,
        _: usize,
    ) -> huescan::model::Result<Option<Vec<String>>> {
        let logits = self.forward(images, hooks, Pooling::Last)?.logits.unwrap().to_vec2::<f32>()?;
        Ok(Some(
            logits
                .iter()
                .map(|row| {
                    let best = (0..row.len()).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
                    WORDS[best].0.to_string()
                })
                .collect(),
        ))
    }
}

const WORDS: [(&str, f64); 4] = [("red", 0.0), ("green", 120.0), ("cyan", 180.0), ("blue", 240.0)];

fn setup(name: &str) -> (PathBuf, Vec<SampleInput>, ActivationStore) {
    let dir = crate::common::fresh_dir("steer-layers", name);
    std::fs::create_dir_all(&dir).unwrap();
    let samples: Vec<SampleInput> = (0..12)
        .map(|i| {
            let hue = i as f64 * 30.0;
            let rgb = hsv_to_rgb(Hsv { hue_deg: hue, s: 1.0, v: 1.0 }).map(|c| (c * 255.0).round() as u8);
            let path = dir.join(format!("h{i:02}.png"));
            image::RgbImage::from_pixel(2, 2, image::Rgb(rgb)).save(&path).unwrap();
            SampleInput { id: format!("h{i:02}"), hue_deg: hue, image: path, text: None }
        })
        .collect();
    let plan = ExtractPlan {
        samples: samples.clone(),
        layers: (0..=N_BLOCKS).collect(),
        pooling: Pooling::ImageMean,
        batch_size: 5,
        adaptive: false,
        shard: None,
        provenance: Provenance {
            model_id: "fake-resid".into(),
            model_revision: Some("0123abc".into()),
            model_config_sha256: None,
            model_files_sha256: Default::default(),
            stimuli_name: "twelve".into(),
            stimuli_sha256: "x".into(),
            pooling: "image-mean".into(),
            settings: BTreeMap::new(),
        },
        out: dir.join("acts"),
    };
    let store = extract(&ResidModel { width: 6 }, &plan, &|_, _| {}).unwrap().store;
    (dir, samples, store)
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

#[test]
fn planted_direction_round_trips_store_index_hook_and_gguf() {
    let (dir, samples, store) = setup("roundtrip");
    let hues = store.hue_deg();
    let direction_at = |index: usize| {
        let ctx = DirectionContext::from_store(&store, index, Positions::All, Normalisation::None).unwrap();
        steer::centroid(store.layer_2d(index).unwrap().view(), &hues, 180.0, 0.0, &ctx).unwrap().vector
    };
    // cos(0) - cos(180) = 2: the planted component is 2 at index 3 (block 2's output) and 0 before it.
    let (v2, v3) = (direction_at(2), direction_at(3));
    assert!(dot(&v2.vector, &PLANTED).abs() < 1e-6, "nothing planted before block 2");
    assert!((dot(&v3.vector, &PLANTED) - 2.0).abs() < 1e-5, "{:?}", v3.vector);
    assert_eq!(v3.recipe.layer_index, 3);
    assert_eq!(v3.recipe.hook, "blocks.2.hook_resid_post");
    assert_eq!(v3.recipe.layer_convention, huescan::model::LAYER_CONVENTION);
    assert_eq!(v3.recipe.model_revision.as_deref(), Some("0123abc"));

    // safetensors round trip, then GGUF: index 3 -> block 2 -> `direction.2`.
    let path = dir.join("v3.safetensors");
    v3.save(&path).unwrap();
    let loaded = steer::SteeringVector::load(&path).unwrap();
    assert_eq!(loaded, v3);
    let bytes = gguf::to_bytes(&[&loaded], "fake-resid").unwrap();
    assert_eq!(bytes.len() % 32, 0);
    let cv = gguf::from_bytes(&bytes).unwrap();
    assert_eq!(cv.directions.keys().copied().collect::<Vec<_>>(), vec![2]);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&cv.directions[&2]), bits(&v3.vector));
    assert_eq!(cv.metadata["general.architecture"], gguf::Value::String("controlvector".into()));
    assert_eq!(cv.metadata["controlvector.layer_count"], gguf::Value::U32(1));
    assert_eq!(cv.metadata["controlvector.model_hint"], gguf::Value::String("fake-resid".into()));
    let point = gguf::ControlVector::hook_point(2);
    assert_eq!(point.hidden_state_index(N_BLOCKS), Some(3), "direction.2 is hidden_states[3]");

    // Applied where llama.cpp would apply it (output of block 2, every position): index 3 moves by exactly v,
    // index 2 does not move at all, and the change reaches the final norm (0.5 v).
    let model = ResidModel { width: 6 };
    let images: Vec<_> = samples.iter().map(|s| load_image(s).unwrap()).collect();
    let capture = HookSet::capture(model.hook_points());
    let mut steered = capture.clone();
    steered.interventions.push(Intervention {
        point: point.clone(),
        positions: Positions::All,
        sample: None,
        op: InterventionOp::Add { vector: cv.directions[&2].clone(), alpha: 1.0 },
    });
    let clean = model.forward(&images, &capture, Pooling::ImageMean).unwrap();
    let moved = model.forward(&images, &steered, Pooling::ImageMean).unwrap();
    let rows = |c: &Captures, i: usize| c.layers[&model.hook_points()[i]].to_vec2::<f32>().unwrap();
    for i in 0..=2 {
        assert_eq!(rows(&clean, i), rows(&moved, i), "index {i} is before the steered block output");
    }
    for (i, scale) in [(3, 1.0f32), (4, 0.5)] {
        for (c, m) in rows(&clean, i).iter().zip(rows(&moved, i)) {
            for k in 0..6 {
                assert!((m[k] - c[k] - scale * v3.vector[k]).abs() < 1e-5, "index {i} dim {k}");
            }
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn only_block_outputs_past_block_0_export_to_gguf() {
    let (dir, _, store) = setup("export");
    let hues = store.hue_deg();
    let at = |index: usize| {
        let ctx = DirectionContext::from_store(&store, index, Positions::All, Normalisation::Unit).unwrap();
        steer::centroid(store.layer_2d(index).unwrap().view(), &hues, 180.0, 0.0, &ctx).unwrap().vector
    };
    let (v0, v1, v2, v3, v4) = (at(0), at(1), at(2), at(3), at(4));
    let err = |vs: &[&steer::SteeringVector]| gguf::to_bytes(vs, "m").unwrap_err().to_string();
    assert!(err(&[&v0]).contains("blocks.0.hook_resid_pre"), "{}", err(&[&v0]));
    assert!(err(&[&v1]).contains("block 0"), "{}", err(&[&v1]));
    assert!(err(&[&v4]).contains("ln_final.hook_out"), "{}", err(&[&v4]));
    assert!(err(&[&v2, &v2]).contains("two vectors at block 1"));
    let cv = gguf::from_bytes(&gguf::to_bytes(&[&v3, &v2], "m").unwrap()).unwrap();
    assert_eq!(cv.directions.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(cv.directions[&1], v2.vector);
    assert_eq!(cv.metadata["controlvector.layer_count"], gguf::Value::U32(2));
    let mut narrow = v2.clone();
    narrow.vector.pop();
    assert!(err(&[&v3, &narrow]).contains("width 5, expected 6"), "{}", err(&[&v3, &narrow]));
    assert!(gguf::from_bytes(b"GGUF\x01").is_err());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn sweep_on_a_decoder_steers_the_probed_hue_and_checks_widths() {
    let (dir, samples, store) = setup("sweep");
    let image = |row: usize| Ok(load_image(&samples[row])?);
    let opts = SweepOptions {
        layers: vec![3],
        pairs: vec![PairSpec::new(180.0, 0.0)],
        kinds: vec![DirectionKind::Centroid, DirectionKind::Random],
        positions: Positions::ImageTokens,
        ..SweepOptions::default()
    };
    let model = ResidModel { width: 6 };
    let result = run_sweep(&SweepInput { model: &model, store: &store, image: &image }, &opts, &|_, _| {}).unwrap();
    let row = |kind, alpha: f64| result.rows.iter().find(|r| r.direction == kind && r.alpha == alpha).unwrap();
    let c1 = row(DirectionKind::Centroid, 1.0);
    assert_eq!(c1.probe_hue_deg.keys().copied().collect::<Vec<_>>(), vec![3, 4]);
    assert!(signed_hue_delta_deg(0.0, c1.final_hue_deg.unwrap()).abs() < 5.0, "{c1:?}");
    assert!(signed_hue_delta_deg(180.0, row(DirectionKind::Centroid, 0.0).final_hue_deg.unwrap()).abs() < 5.0);
    assert!(c1.word_probs.is_none() && c1.texts.is_none(), "no colour words, no generation: left empty");

    // The same store against a model of another width: a clear error before anything runs.
    let wide = ResidModel { width: 7 };
    let err = run_sweep(&SweepInput { model: &wide, store: &store, image: &image }, &opts, &|_, _| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("width 7, expected 6"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// `tests/fixtures/control_vector_reference.gguf` was written by llama.cpp's `gguf` Python package as repeng
/// exports (`scripts/control_vector_reference.py`): huescan reads it exactly and writes the same bytes.
#[test]
fn control_vector_matches_the_gguf_reference_writer() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/control_vector_reference.gguf");
    let reference = std::fs::read(path).unwrap();
    let cv = gguf::from_bytes(&reference).unwrap();
    let want: BTreeMap<usize, Vec<f32>> =
        BTreeMap::from([(1, vec![0.5, -1.25, 2.0, 0.0, 3.75]), (2, vec![-0.125, 1.0, -2.5, 4.0, 0.25])]);
    assert_eq!(cv.directions, want);
    assert_eq!(cv.metadata["controlvector.model_hint"], gguf::Value::String("fake-resid".into()));
    let (dir, _, store) = setup("reference");
    let ctx = DirectionContext::from_store(&store, 2, Positions::All, Normalisation::None).unwrap();
    let template = steer::centroid(store.layer_2d(2).unwrap().view(), &store.hue_deg(), 180.0, 0.0, &ctx).unwrap();
    let vectors: Vec<steer::SteeringVector> = want
        .iter()
        .map(|(k, v)| {
            let mut sv = template.vector.clone();
            sv.vector = v.clone();
            // Store index k + 1 is the output of block k.
            sv.recipe.layer_index = k + 1;
            sv.recipe.hook = HookPoint::from_hidden_state_index(k + 1, N_BLOCKS).unwrap().to_string();
            sv
        })
        .collect();
    let refs: Vec<&steer::SteeringVector> = vectors.iter().collect();
    assert_eq!(gguf::to_bytes_with(&refs, "fake-resid", false).unwrap(), reference);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn colour_word_probabilities_and_answers_flip_to_the_target() {
    let (dir, samples, store) = setup("words");
    let image = |row: usize| Ok(load_image(&samples[row])?);
    let model = ResidModel { width: 6 };
    let words: Vec<String> = ["red", "green", "cyan", "blue"].map(String::from).to_vec();
    let ids = model.token_ids(&words).unwrap().unwrap();
    let opts = SweepOptions {
        layers: vec![3],
        pairs: vec![PairSpec::new(180.0, 0.0)],
        kinds: vec![DirectionKind::Centroid],
        // Not 0.5: there every logit is 0 and the top word is a tie.
        alphas: vec![0.0, 0.25, 0.4, 0.6, 1.0],
        positions: Positions::All,
        max_new_tokens: 4,
        colour_words: Some(steer::ColourWords::new(words, ids).unwrap()),
        ..SweepOptions::default()
    };
    let result = run_sweep(&SweepInput { model: &model, store: &store, image: &image }, &opts, &|_, _| {}).unwrap();
    let row = |alpha: f64| result.rows.iter().find(|r| r.alpha == alpha).unwrap();
    assert_eq!(row(0.0).top_word.as_deref(), Some("cyan"));
    assert_eq!(row(0.0).texts.as_deref(), Some(&["cyan".to_string()][..]));
    assert_eq!(row(1.0).top_word.as_deref(), Some("red"));
    assert_eq!(row(1.0).texts.as_deref(), Some(&["red".to_string()][..]));
    let p = row(1.0).word_probs.as_ref().unwrap();
    assert!((p.values().sum::<f64>() - 1.0).abs() < 1e-9, "the four words are the whole vocabulary: {p:?}");
    let s = &result.summary[0];
    assert_eq!(s.target_word.as_deref(), Some("red"));
    // (cos, sin) moves linearly from cyan (-1, 0) to red (1, 0): the answer flips past the midpoint.
    assert_eq!(s.alpha_word_flip, Some(0.6), "{s:?}");
    assert_eq!(row(0.4).top_word.as_deref(), Some("cyan"));
    let csv = steer::sweep_csv(&result);
    assert!(csv.lines().next().unwrap().ends_with("top_word,p_blue,p_cyan,p_green,p_red,text"), "{csv}");
    std::fs::remove_dir_all(dir).unwrap();
}
