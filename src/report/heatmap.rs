//! Layer × direction heat maps, written as inline SVG by hand: the README's main finding (which direction
//! steers at which layer) at a glance. Every cell carries its number as text and a tooltip (`<title>`), so the
//! map reads in greyscale print and with a screen reader too.

use std::fmt::Write as _;

use super::table::esc;
use crate::steer::{DirectionKind, SummaryRow};

/// One cell: its fill, the text in it, and the tooltip.
struct HeatCell {
    fill: String,
    text: String,
    tip: String,
}

const CELL_W: usize = 78;
const CELL_H: usize = 30;
const LABEL_W: usize = 300;
const HEAD_H: usize = 56;

/// Interpolates green (good) → yellow → red (bad) for `t` in [0, 1].
fn ramp(t: f64) -> String {
    let t = t.clamp(0.0, 1.0);
    let (r, g, b) = if t < 0.5 {
        let u = t / 0.5;
        (60.0 + u * (240.0 - 60.0), 170.0 + u * (210.0 - 170.0), 90.0 - u * 40.0)
    } else {
        let u = (t - 0.5) / 0.5;
        (240.0 - u * 30.0, 210.0 - u * 150.0, 50.0 + u * 10.0)
    };
    format!("rgb({:.0},{:.0},{:.0})", r, g, b)
}

const GREY: &str = "rgb(225,225,225)";

/// The map: rows are steering layers, columns are (direction kind, pair) grouped by kind.
fn svg(title: &str, rows: &[(usize, String)], cols: &[(DirectionKind, String)], cells: &[Vec<HeatCell>]) -> String {
    let (w, h) = (LABEL_W + cols.len() * CELL_W + 10, HEAD_H + rows.len() * CELL_H + 10);
    let mut s = format!(
        "<svg class=\"heat\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
         role=\"img\" aria-label=\"{}\" font-family=\"system-ui,sans-serif\" font-size=\"13\">",
        esc(title)
    );
    let mut kinds: Vec<DirectionKind> = cols.iter().map(|c| c.0).collect();
    kinds.dedup();
    for kind in kinds {
        let first = cols.iter().position(|c| c.0 == kind).unwrap_or(0);
        let span = cols.iter().filter(|c| c.0 == kind).count();
        let x = LABEL_W + first * CELL_W + span * CELL_W / 2;
        let _ = write!(s, "<text x=\"{x}\" y=\"18\" text-anchor=\"middle\" font-weight=\"600\">{kind}</text>");
    }
    for (c, (_, pair)) in cols.iter().enumerate() {
        let x = LABEL_W + c * CELL_W + CELL_W / 2;
        let _ = write!(s, "<text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{}</text>", HEAD_H - 12, esc(pair));
    }
    for (r, (layer, hook)) in rows.iter().enumerate() {
        let y = HEAD_H + r * CELL_H;
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">layer {layer} <tspan fill=\"#666\">{}</tspan></text>",
            LABEL_W - 8,
            y + CELL_H / 2 + 5,
            esc(hook)
        );
        for (c, cell) in cells[r].iter().enumerate() {
            let x = LABEL_W + c * CELL_W;
            let _ = write!(
                s,
                "<g><title>{}</title><rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\" stroke=\"#fff\"/>\
                 <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text></g>",
                esc(&cell.tip),
                x,
                y,
                CELL_W,
                CELL_H,
                cell.fill,
                x + CELL_W / 2,
                y + CELL_H / 2 + 5,
                esc(&cell.text)
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// Rows (layer index, hook) and columns (direction kind, pair) of a map.
type Axes = (Vec<(usize, String)>, Vec<(DirectionKind, String)>);

/// Layers and (kind, pair) columns in the order the summary has them.
fn axes(summary: &[SummaryRow]) -> Axes {
    let mut rows: Vec<(usize, String)> = Vec::new();
    let mut cols: Vec<(DirectionKind, String)> = Vec::new();
    for r in summary {
        if !rows.iter().any(|x| x.0 == r.layer) {
            rows.push((r.layer, r.hook.clone()));
        }
        if !cols.iter().any(|c| c.0 == r.direction && c.1 == r.pair) {
            cols.push((r.direction, r.pair.clone()));
        }
    }
    rows.sort_by_key(|r| r.0);
    cols.sort_by_key(|c| c.0);
    (rows, cols)
}

fn grid(title: &str, summary: &[SummaryRow], cell: impl Fn(Option<&SummaryRow>) -> HeatCell) -> String {
    let (rows, cols) = axes(summary);
    let cells: Vec<Vec<HeatCell>> = rows
        .iter()
        .map(|(l, _)| {
            cols.iter()
                .map(|(k, p)| cell(summary.iter().find(|r| r.layer == *l && r.direction == *k && &r.pair == p)))
                .collect()
        })
        .collect();
    svg(title, &rows, &cols, &cells)
}

/// |hue error at alpha 1| per layer and (direction, pair): green within the tolerance, red at 180°.
pub fn error_map(summary: &[SummaryRow]) -> String {
    grid("hue error at alpha 1 by layer and direction", summary, |r| match r {
        None => HeatCell { fill: GREY.into(), text: "n/a".into(), tip: "not steered".into() },
        Some(r) => match r.error_at_alpha_1 {
            None => HeatCell {
                fill: GREY.into(),
                text: "n/a".into(),
                tip: format!(
                    "{} {} at layer {}: alpha 1 was not in the sweep, or no hue was read out",
                    r.direction, r.pair, r.layer
                ),
            },
            Some(e) => HeatCell {
                fill: ramp(e.abs() / 180.0),
                text: format!("{:.0}°", e.abs()),
                tip: format!(
                    "{} {} at layer {}: error {e:+.1}° at alpha 1 (tolerance {}°); target reached at {}",
                    r.direction,
                    r.pair,
                    r.layer,
                    r.tolerance_deg,
                    r.alpha_reached.map_or("never".to_string(), |a| format!("alpha {a}"))
                ),
            },
        },
    })
}

/// The alpha at which the most likely colour word becomes the target's, per layer and (direction, pair);
/// `None` when the model has no colour words (nothing to flip).
pub fn flip_map(summary: &[SummaryRow], max_alpha: f64) -> Option<String> {
    if summary.iter().all(|r| r.target_word.is_none()) {
        return None;
    }
    let map = grid("alpha at which the answer flips, by layer and direction", summary, |r| match r {
        None => HeatCell { fill: GREY.into(), text: "n/a".into(), tip: "not steered".into() },
        Some(r) if r.target_word.is_none() => HeatCell {
            fill: GREY.into(),
            text: "n/a".into(),
            tip: format!("{}: no colour word names the target hue", r.pair),
        },
        Some(r) => match r.alpha_word_flip {
            None => HeatCell {
                fill: ramp(1.0),
                text: "never".into(),
                tip: format!(
                    "{} {} at layer {}: the answer never became `{}`",
                    r.direction,
                    r.pair,
                    r.layer,
                    r.target_word.as_deref().unwrap_or("")
                ),
            },
            Some(a) => HeatCell {
                fill: ramp(0.5 * a.max(0.0) / max_alpha.max(1e-9)),
                text: format!("α {a}"),
                tip: format!(
                    "{} {} at layer {}: the most likely colour word is `{}` from alpha {a}",
                    r.direction,
                    r.pair,
                    r.layer,
                    r.target_word.as_deref().unwrap_or("")
                ),
            },
        },
    });
    Some(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(layer: usize, kind: DirectionKind, err: Option<f64>, word: Option<&str>, flip: Option<f64>) -> SummaryRow {
        SummaryRow {
            layer,
            hook: format!("blocks.{}.hook_resid_post", layer - 1),
            pair: "Blue→Red".into(),
            direction: kind,
            tolerance_deg: 30.0,
            alpha_reached: err.filter(|e| e.abs() <= 30.0).map(|_| 1.0),
            alpha_word_flip: flip,
            target_word: word.map(String::from),
            joystick_alpha_reached: None,
            error_at_alpha_1: err,
            monotone: true,
            max_disagreement_deg: None,
        }
    }

    #[test]
    fn cells_tell_not_applicable_from_never_and_missing_from_measured() {
        let rows = vec![
            row(2, DirectionKind::Centroid, Some(-12.0), Some("red"), Some(0.5)),
            row(2, DirectionKind::Random, Some(170.0), Some("red"), None),
            row(3, DirectionKind::Centroid, None, Some("red"), Some(1.0)),
        ];
        let err = error_map(&rows);
        assert!(err.contains(">12°<") && err.contains(">170°<"), "{err}");
        // Layer 3 random was not steered, layer 3 centroid read no hue at alpha 1: both n/a, never "0°".
        assert_eq!(err.matches(">n/a<").count(), 2, "{err}");
        let flip = flip_map(&rows, 1.25).unwrap();
        assert!(flip.contains(">α 0.5<") && flip.contains(">never<") && flip.contains(">α 1<"), "{flip}");
        let no_words: Vec<SummaryRow> = rows.iter().map(|r| SummaryRow { target_word: None, ..r.clone() }).collect();
        assert!(flip_map(&no_words, 1.25).is_none(), "a model without colour words gets no flip map");
        let evil = vec![SummaryRow { pair: "<b>x</b>".into(), ..rows[0].clone() }];
        assert!(!error_map(&evil).contains("<b>"));
    }
}
