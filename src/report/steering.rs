//! The in-model steering part of a set's section: heat maps first (which direction steers at which layer),
//! then the curves per layer (the analysis's layer open, the others folded), then the tables.

use std::fmt::Write as _;

use super::html::figure;
use super::inputs::SetInputs;
use super::sets::SetFigures;
use super::table::{esc, Cell, Table};

pub(super) fn section(set: &SetInputs, figs: &SetFigures) -> String {
    let Some(st) = &set.steering else { return String::new() };
    let summary = &st.summary.summary;
    let mut s = String::new();
    let o = &st.summary.options;
    let _ = write!(
        s,
        "<p class=\"meta\">Steered at layers {} at token positions <code>{}</code>, alphas {} to {}; a hue within \
         {}° of the target counts as reached.</p>",
        esc(&o.layers.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(", ")),
        esc(&o.positions),
        o.alphas.first().copied().unwrap_or(f64::NAN),
        o.alphas.last().copied().unwrap_or(f64::NAN),
        o.tolerance_deg
    );
    let _ = write!(
        s,
        "<figure>{}<figcaption>|hue error| at alpha 1 per steering layer and direction (columns: pairs). Green is \
         within the tolerance, red is the opposite side of the wheel; hover a cell for the signed error and the \
         alpha at which the target was reached.</figcaption></figure>",
        super::heatmap::error_map(summary)
    );
    let max_alpha = o.alphas.iter().copied().fold(0.0, f64::max);
    if let Some(map) = super::heatmap::flip_map(summary, max_alpha) {
        let _ = write!(
            s,
            "<figure>{map}<figcaption>Alpha at which the most likely colour word becomes the target's \
             (<b>never</b>: not within the sweep).</figcaption></figure>"
        );
    }
    if let Some(sw) = &figs.swatches {
        let _ = write!(
            s,
            "<figure class=\"fixed\"><img src=\"figures/{}\" alt=\"steering swatches\"><figcaption>First pair at the \
             layer shown open below: rows centroid / manifold / random, columns the alphas, each swatch the hue \
             after steering.</figcaption></figure>",
            esc(sw)
        );
    }
    for l in &figs.steering {
        let panels: String = l.panels.iter().map(figure).collect();
        let title = format!("Layer {} ({}){}", l.layer, l.hook, if l.chosen { ", the analysis's layer" } else { "" });
        let _ = write!(
            s,
            "<details{}><summary>{}</summary><div class=\"grid\">{panels}</div></details>",
            if l.chosen { " open" } else { "" },
            esc(&title)
        );
    }
    s.push_str(&summary_table(set));
    s.push_str(&answers_table(set));
    s
}

fn summary_table(set: &SetInputs) -> String {
    let Some(st) = &set.steering else { return String::new() };
    let joystick_ran = st.sweep.rows.iter().any(|r| r.joystick_hue_deg.is_some());
    let mut t = Table::new(
        "Steering summary: one row per layer, pair and direction",
        &[
            "layer",
            "hook",
            "pair",
            "direction",
            "alpha reaching target",
            "error at alpha 1 (deg)",
            "monotone",
            "joystick alpha",
            "max model-joystick gap",
            "target word",
            "answer flips at",
        ],
    );
    for r in &st.summary.summary {
        let alpha = |a: Option<f64>| a.map_or(Cell::Never, |v| Cell::Shown(v, format!("α {v}")));
        t.row(
            r.monotone && r.alpha_reached.is_some(),
            vec![
                Cell::Num(r.layer as f64),
                Cell::Text(r.hook.clone()),
                Cell::Text(r.pair.clone()),
                Cell::Text(r.direction.to_string()),
                alpha(r.alpha_reached),
                Cell::opt(
                    r.error_at_alpha_1,
                    Cell::NotApplicable("alpha 1 is not in the sweep, or no hue was read out"),
                ),
                Cell::Text(r.monotone.to_string()),
                if joystick_ran {
                    alpha(r.joystick_alpha_reached)
                } else {
                    Cell::NotApplicable("no joystick at this layer")
                },
                Cell::opt(r.max_disagreement_deg, Cell::NotApplicable("no joystick at this layer")),
                r.target_word.clone().map_or(Cell::NotApplicable("the model has no colour words"), Cell::Text),
                match (&r.target_word, r.alpha_word_flip) {
                    (None, _) => Cell::NotApplicable("the model has no colour words"),
                    (Some(_), None) => Cell::Never,
                    (Some(_), Some(a)) => Cell::Shown(a, format!("α {a}")),
                },
            ],
        );
    }
    t.render()
}

fn answers_table(set: &SetInputs) -> String {
    let Some(st) = &set.steering else { return String::new() };
    let rows: Vec<_> = st.sweep.rows.iter().filter(|r| r.top_word.is_some() || r.texts.is_some()).collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut t = Table::new(
        "Colour words and answers",
        &["layer", "pair", "direction", "alpha", "most likely colour word", "generated answer (first image)"],
    );
    for r in rows {
        t.row(
            false,
            vec![
                Cell::Num(r.layer as f64),
                Cell::Text(r.pair.clone()),
                Cell::Text(r.direction.to_string()),
                Cell::Num(r.alpha),
                r.top_word.clone().map_or(Cell::NotApplicable("no colour words"), Cell::Text),
                r.texts
                    .as_ref()
                    .and_then(|t| t.first().cloned())
                    .map_or(Cell::NotApplicable("no answers were generated (--max-new-tokens 0)"), Cell::Text),
            ],
        );
    }
    t.render()
}
