//! "What the demo finds", from a run folder's own tables: per set the layer scan and, per steering layer and
//! direction, the alpha at which the model's generated answer turns into the target's colour word. The demo
//! prints it and writes it to `findings.md`; the README's VLM section is this text (a test checks it), and the
//! HTML report shows the steering part as "Where steering changes the answer".

use std::fmt::Write;
use std::path::Path;

use crate::manifold::Analysis;
use crate::nan_json;
use crate::steer::{answer_flips, AnswerFlip, DirectionKind, SummaryFile, SweepFile};

/// The direction kinds in table order, with their column titles.
const KINDS: [(DirectionKind, &str); 3] = [
    (DirectionKind::Centroid, "centroid difference"),
    (DirectionKind::Manifold, "rotation along the fitted circle"),
    (DirectionKind::Random, "random, same norm"),
];

/// The steering results of one set: flips per (layer, hook) row, the pair labels, and the joystick's reach.
struct Steering {
    pairs: Vec<String>,
    layers: Vec<(usize, String)>,
    flips: Vec<AnswerFlip>,
    /// (layer, pair) -> whether the decoder-only joystick reached the target (centroid rows).
    joystick: Vec<(usize, String, bool)>,
    /// How the rotation along the fitted circle was lifted back to the activations.
    lift: crate::steer::Lift,
}

fn steering(run: &Path, set: &str) -> crate::report::Result<Option<Steering>> {
    let dir = run.join("steering").join(set);
    if !dir.join("sweep.json").exists() {
        return Ok(None);
    }
    let sweep: SweepFile = nan_json::read(&dir.join("sweep.json"))?;
    let lift = sweep.options.lift;
    let rows = sweep.rows;
    let flips = answer_flips(&rows);
    if flips.is_empty() {
        return Ok(None);
    }
    let mut pairs: Vec<String> = Vec::new();
    let mut layers: Vec<(usize, String)> = Vec::new();
    for f in &flips {
        if !pairs.contains(&f.pair) {
            pairs.push(f.pair.clone());
        }
        if !layers.iter().any(|(l, _)| *l == f.layer) {
            layers.push((f.layer, f.hook.clone()));
        }
    }
    layers.sort();
    let summary: SummaryFile = nan_json::read(&dir.join("summary.json"))?;
    let joystick = summary
        .summary
        .iter()
        .filter(|r| r.direction == DirectionKind::Centroid)
        .map(|r| (r.layer, r.pair.clone(), r.joystick_alpha_reached.is_some_and(f64::is_finite)))
        .collect();
    Ok(Some(Steering { pairs, layers, flips, joystick, lift }))
}

impl Steering {
    /// The column title of `kind`; the circle's names its lift.
    fn title(&self, kind: DirectionKind, title: &str) -> String {
        match kind {
            DirectionKind::Manifold => format!("{title} ({} lift)", self.lift),
            _ => title.to_string(),
        }
    }

    /// `0.75 / 1 / –`: the flip alpha of each pair, in pair order.
    fn cell(&self, layer: usize, kind: DirectionKind) -> String {
        self.pairs
            .iter()
            .map(|p| {
                self.flips
                    .iter()
                    .find(|f| f.layer == layer && f.direction == kind && &f.pair == p)
                    .and_then(|f| f.alpha_answer_flip)
                    .map_or("–".to_string(), |a| format!("{a}"))
            })
            .collect::<Vec<_>>()
            .join(" / ")
    }

    fn joystick_cell(&self, layer: usize) -> String {
        let of: Vec<bool> = self.joystick.iter().filter(|(l, _, _)| *l == layer).map(|(_, _, ok)| *ok).collect();
        format!("{}/{}", of.iter().filter(|ok| **ok).count(), of.len())
    }

    /// Layers where the centroid or the circle direction flips every pair's answer.
    fn working_layers(&self) -> Vec<usize> {
        self.layers
            .iter()
            .map(|(l, _)| *l)
            .filter(|&l| {
                [DirectionKind::Centroid, DirectionKind::Manifold].iter().any(|&k| {
                    self.pairs.iter().all(|p| {
                        self.flips
                            .iter()
                            .any(|f| f.layer == l && f.direction == k && &f.pair == p && f.alpha_answer_flip.is_some())
                    })
                })
            })
            .collect()
    }
}

/// Markdown findings of every set of the run folder `run`.
pub fn markdown(run: &Path) -> crate::report::Result<String> {
    let mut s = String::new();
    for set in super::sets_in(&run.join("analysis")) {
        let a: Analysis = nan_json::read(&run.join("analysis").join(&set).join("summary.json"))?;
        let _ = writeln!(
            s,
            "**{set}** ({} images). Layer scan, circular SMDS, cross-validated, {} label permutations:\n",
            a.n_samples, a.options.n_permutations
        );
        s.push_str("| layer | CV circular score | shuffled-label baseline | p |\n|---|---|---|---|\n");
        // Non-finite numbers are written as null and read back as NaN: "–", as for any missing value.
        let f = |v: f64, digits: usize| if v.is_finite() { format!("{v:.digits$}") } else { "–".to_string() };
        for r in &a.layer_scan {
            let cv = f(r.cv_score, 3);
            let cv = if r.layer == a.choice.layer { format!("**{cv}**") } else { cv };
            let _ = writeln!(s, "| {} | {cv} | {} | {} |", r.layer, f(r.shuffled_baseline, 3), f(r.p_value, 2));
        }
        if let Some(st) = steering(run, &set)? {
            let _ = writeln!(
                s,
                "\nSteering at the image tokens: smallest alpha at which the generated answer becomes the target's \
                 colour word ({}; – never up to the largest alpha):\n",
                st.pairs.join(" / ")
            );
            s.push_str("| layer | hook |");
            for (k, title) in KINDS {
                let _ = write!(s, " {} |", st.title(k, title));
            }
            s.push_str(" decoder-only joystick reaches the target |\n|---|---|---|---|---|---|\n");
            for (l, hook) in &st.layers {
                let _ = write!(s, "| {l} | `{hook}` |");
                for (k, _) in KINDS {
                    let _ = write!(s, " {} |", st.cell(*l, k));
                }
                let _ = writeln!(s, " {} |", st.joystick_cell(*l));
            }
            let works = st.working_layers();
            let _ = writeln!(
                s,
                "\nThe answer flips for every pair at layer{} {}.\n",
                if works.len() == 1 { "" } else { "s" },
                if works.is_empty() {
                    "none".to_string()
                } else {
                    works.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(", ")
                }
            );
        }
    }
    Ok(s)
}

/// The steering part as an HTML section for one set's report, or `None` without generated answers.
pub fn html(run: &Path, set: &str) -> crate::report::Result<Option<String>> {
    let Some(st) = steering(run, set)? else { return Ok(None) };
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let mut s = String::from("<h4>Where steering changes the answer</h4>");
    let _ = write!(
        s,
        "<p>Smallest alpha at which the generated answer becomes the target's colour word, per pair ({}); – never. \
         The decoder-only joystick column counts the pairs whose target it reaches outside the model.</p>",
        esc(&st.pairs.join(" / "))
    );
    s.push_str("<table><thead><tr><th>layer</th><th>hook</th>");
    for (k, title) in KINDS {
        let _ = write!(s, "<th>{}</th>", esc(&st.title(k, title)));
    }
    s.push_str("<th>joystick reaches target</th></tr></thead><tbody>");
    let works = st.working_layers();
    for (l, hook) in &st.layers {
        let mark = if works.contains(l) { " class=\"win\"" } else { "" };
        let _ = write!(s, "<tr{mark}><td>{l}</td><td>{}</td>", esc(hook));
        for (k, _) in KINDS {
            let _ = write!(s, "<td>{}</td>", esc(&st.cell(*l, k)));
        }
        let _ = write!(s, "<td>{}</td></tr>", st.joystick_cell(*l));
    }
    s.push_str("</tbody></table>");
    Ok(Some(s))
}
