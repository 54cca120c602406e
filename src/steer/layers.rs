//! Where to steer, and where steering changed what the model *says*.
//!
//! A small decoder can move colour out of the image tokens within its first blocks; after that, adding a
//! direction at image positions cannot change the answer, however well the layer's pooled activations hold hue.
//! So the analysis layer and the quartiles (the old default) can miss every layer where steering works. When the
//! model is small enough, every stored layer is steered and the sweep itself is the evidence; for large models
//! the quartiles and the analysis layer are kept, plus an early layer, because the trained test VLM
//! (tests/fixtures/qwen-colour) shows image-position steering working only in its first blocks.

use serde::{Deserialize, Serialize};

use super::{DirectionKind, SweepRow, DEFAULT_COLOUR_WORDS};
use crate::colour::signed_hue_delta_deg;

/// Models with at most this many stored layers are steered at every layer by default (a sweep per layer costs
/// `pairs × directions × alphas × source images` forwards and generations, seconds for such models).
pub const STEER_EVERY_LAYER_UP_TO: usize = 16;

/// Default steering layers: every stored layer of a small model; otherwise the analysis layer (`chosen`), the
/// quartiles of the stored layers and an eighth of the way in.
pub fn default_steering_layers(chosen: Option<usize>, stored: &[usize]) -> Vec<usize> {
    let mut layers: Vec<usize> = if stored.len() <= STEER_EVERY_LAYER_UP_TO {
        stored.to_vec()
    } else {
        let max = stored.iter().copied().max().unwrap_or(0);
        [max / 8, max / 4, max / 2, 3 * max / 4].into_iter().chain(chosen).filter(|l| stored.contains(l)).collect()
    };
    layers.sort_unstable();
    layers.dedup();
    layers
}

/// One (layer, pair, direction) of a sweep with generated answers: at which alpha the answer became the target's
/// colour word.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerFlip {
    pub layer: usize,
    pub hook: String,
    pub pair: String,
    pub direction: DirectionKind,
    pub source_word: Option<String>,
    pub target_word: Option<String>,
    /// Smallest positive alpha at which more than half of the source images are answered with the target word.
    pub alpha_answer_flip: Option<f64>,
    /// Answers at the largest alpha, one per source image.
    pub answers_at_max_alpha: Vec<String>,
}

/// The colour word (of [`DEFAULT_COLOUR_WORDS`]) nearest `hue_deg`.
pub fn word_for_hue(hue_deg: f64) -> &'static str {
    DEFAULT_COLOUR_WORDS
        .iter()
        .min_by(|a, b| signed_hue_delta_deg(a.1, hue_deg).abs().total_cmp(&signed_hue_delta_deg(b.1, hue_deg).abs()))
        .map(|(w, _)| *w)
        .expect("the colour-word list is not empty")
}

/// A generated answer reduced to the word it names: trimmed, lower-case, trailing punctuation dropped.
pub fn answer_word(text: &str) -> String {
    text.trim().trim_end_matches(|c: char| c.is_ascii_punctuation()).trim().to_lowercase()
}

/// Answer flips of every (layer, pair, direction) in `rows` that carries generated texts, in row order.
pub fn answer_flips(rows: &[SweepRow]) -> Vec<AnswerFlip> {
    let mut keys: Vec<(usize, &str, DirectionKind)> = Vec::new();
    for r in rows.iter().filter(|r| r.texts.is_some()) {
        let k = (r.layer, r.pair.as_str(), r.direction);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.into_iter()
        .map(|(layer, pair, direction)| {
            let mut group: Vec<&SweepRow> = rows
                .iter()
                .filter(|r| r.layer == layer && r.pair == pair && r.direction == direction && r.texts.is_some())
                .collect();
            group.sort_by(|a, b| a.alpha.total_cmp(&b.alpha));
            let first = group[0];
            let target = word_for_hue(first.target_deg);
            let flipped = |r: &SweepRow| {
                let texts = r.texts.as_deref().unwrap_or_default();
                2 * texts.iter().filter(|t| answer_word(t) == target).count() > texts.len()
            };
            AnswerFlip {
                layer,
                hook: first.hook.clone(),
                pair: pair.to_string(),
                direction,
                source_word: Some(word_for_hue(first.source_deg).to_string()),
                target_word: Some(target.to_string()),
                alpha_answer_flip: group.iter().find(|r| r.alpha > 0.0 && flipped(r)).map(|r| r.alpha),
                answers_at_max_alpha: group.last().and_then(|r| r.texts.clone()).unwrap_or_default(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_models_are_steered_everywhere_large_ones_at_quartiles_an_eighth_and_the_choice() {
        let small: Vec<usize> = (0..=5).collect();
        assert_eq!(default_steering_layers(Some(3), &small), small);
        let big: Vec<usize> = (0..=36).collect();
        assert_eq!(default_steering_layers(Some(20), &big), vec![4, 9, 18, 20, 27]);
        assert_eq!(default_steering_layers(Some(99), &big), vec![4, 9, 18, 27]);
    }

    #[test]
    fn answers_are_reduced_to_their_word() {
        assert_eq!(answer_word(" Red.\n"), "red");
        assert_eq!(word_for_hue(10.0), "red");
        assert_eq!(word_for_hue(239.0), "blue");
        assert_eq!(word_for_hue(350.0), "red");
    }

    fn row(alpha: f64, texts: &[&str]) -> SweepRow {
        SweepRow {
            layer: 1,
            hook: "blocks.0.hook_resid_post".into(),
            pair: "Blue→Red".into(),
            source_deg: 240.0,
            target_deg: 0.0,
            direction: DirectionKind::Centroid,
            alpha,
            n_images: texts.len(),
            probe_hue_deg: Default::default(),
            output_hue_deg: None,
            final_hue_deg: None,
            target_error_deg: None,
            word_probs: None,
            top_word: None,
            texts: Some(texts.iter().map(|t| t.to_string()).collect()),
            joystick_hue_deg: None,
            joystick_error_deg: None,
            model_minus_joystick_deg: None,
        }
    }

    #[test]
    fn the_flip_is_the_first_positive_alpha_with_a_majority_of_target_answers() {
        let rows = [row(0.0, &["blue", "blue"]), row(0.5, &["red", "blue"]), row(1.0, &["red", "Red"])];
        let f = answer_flips(&rows);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].alpha_answer_flip, Some(1.0), "half is not a majority");
        assert_eq!(f[0].target_word.as_deref(), Some("red"));
        let never = answer_flips(&[row(0.0, &["blue"]), row(1.0, &["purple"])]);
        assert_eq!(never[0].alpha_answer_flip, None);
    }
}
