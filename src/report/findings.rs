//! "What the demo finds", from a run folder's own tables: per set the layer scan and, per steering layer and
//! direction, the alpha at which the model's generated answer turns into the target's colour word. The demo
//! prints it and writes it to `findings.md`; the README's VLM section is this text (a test checks it), and the
//! HTML report shows the steering part as "Where steering changes the answer".

use std::fmt::Write;
use std::path::Path;

use serde_json::Value;

use crate::fsx;
use crate::steer::{answer_flips, AnswerFlip, DirectionKind, SweepRow};

/// The direction kinds in table order, with their column titles.
const KINDS: [(DirectionKind, &str); 3] = [
    (DirectionKind::Centroid, "centroid difference"),
    (DirectionKind::Manifold, "rotation along the fitted circle"),
    (DirectionKind::Random, "random, same norm"),
];

fn sets(run: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(run.join("analysis"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("summary.json").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The steering results of one set: flips per (layer, hook) row, the pair labels, and the joystick's reach.
struct Steering {
    pairs: Vec<String>,
    layers: Vec<(usize, String)>,
    flips: Vec<AnswerFlip>,
    /// (layer, pair) -> whether the decoder-only joystick reached the target (centroid rows).
    joystick: Vec<(usize, String, bool)>,
}

fn steering(run: &Path, set: &str) -> crate::Result<Option<Steering>> {
    let dir = run.join("steering").join(set);
    if !dir.join("sweep.json").exists() {
        return Ok(None);
    }
    let sweep: Value = fsx::read_json(&dir.join("sweep.json"))?;
    let rows: Vec<SweepRow> = serde_json::from_value(sweep["rows"].clone())
        .map_err(|e| crate::Error::Msg(format!("{}: unreadable sweep rows ({e})", dir.display())))?;
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
    let summary: Value = fsx::read_json(&dir.join("summary.json"))?;
    let joystick = summary["summary"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["direction"] == "centroid")
        .map(|r| {
            (
                r["layer"].as_u64().unwrap_or(0) as usize,
                r["pair"].as_str().unwrap_or("").to_string(),
                r["joystick_alpha_reached"].is_number(),
            )
        })
        .collect();
    Ok(Some(Steering { pairs, layers, flips, joystick }))
}

impl Steering {
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
pub fn markdown(run: &Path) -> crate::Result<String> {
    let mut s = String::new();
    for set in sets(run) {
        let a: Value = fsx::read_json(&run.join("analysis").join(&set).join("summary.json"))?;
        let perms = a["options"]["n_permutations"].as_u64().unwrap_or(0);
        let chosen = a["choice"]["layer"].as_u64();
        let _ = writeln!(
            s,
            "**{set}** ({} images). Layer scan, circular SMDS, cross-validated, {perms} label permutations:\n",
            a["n_samples"]
        );
        s.push_str("| layer | CV circular score | shuffled-label baseline | p |\n|---|---|---|---|\n");
        for r in a["layer_scan"].as_array().into_iter().flatten() {
            let l = r["layer"].as_u64();
            let f = |k: &str| r[k].as_f64().map_or("–".to_string(), |v| format!("{v:.3}"));
            let cv = if l == chosen { format!("**{}**", f("cv_score")) } else { f("cv_score") };
            let _ = writeln!(
                s,
                "| {} | {cv} | {} | {} |",
                l.unwrap_or(0),
                f("shuffled_baseline"),
                r["p_value"].as_f64().map_or("–".into(), |v| format!("{v:.2}"))
            );
        }
        if let Some(st) = steering(run, &set)? {
            let _ = writeln!(
                s,
                "\nSteering at the image tokens: smallest alpha at which the generated answer becomes the target's \
                 colour word ({}; – never up to the largest alpha):\n",
                st.pairs.join(" / ")
            );
            s.push_str("| layer | hook |");
            for (_, title) in KINDS {
                let _ = write!(s, " {title} |");
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
pub fn html(run: &Path, set: &str) -> crate::Result<Option<String>> {
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
    for (_, title) in KINDS {
        let _ = write!(s, "<th>{title}</th>");
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
