//! The HTML page: one self-contained file next to its figures. A small script marks the page with how many
//! figures loaded (`data-figures-loaded` on `<body>`), which the headless-browser check reads.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use super::sets::SetReport;
use crate::stimuli::StimulusManifest;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn fmt(v: &Value) -> String {
    match v {
        Value::Number(n) => n.as_f64().map_or_else(
            || n.to_string(),
            |f| if f.fract() == 0.0 && f.abs() < 1e6 { format!("{f}") } else { format!("{f:.4}") },
        ),
        Value::Null => "NaN".into(),
        Value::String(s) => esc(s),
        Value::Bool(b) => b.to_string(),
        other => esc(&other.to_string()),
    }
}

/// A table of `rows` (JSON objects) with the given (key, header) columns.
fn table(rows: &[Value], cols: &[(&str, &str)], highlight: impl Fn(&Value) -> bool) -> String {
    let mut s = String::from("<table><thead><tr>");
    for (_, h) in cols {
        let _ = write!(s, "<th>{}</th>", esc(h));
    }
    s.push_str("</tr></thead><tbody>");
    for r in rows {
        let class = if highlight(r) { " class=\"win\"" } else { "" };
        let _ = write!(s, "<tr{class}>");
        for (k, _) in cols {
            let v = k.split('.').fold(r, |v, part| match part.parse::<usize>() {
                Ok(i) => &v[i],
                Err(_) => &v[part],
            });
            let _ = write!(s, "<td>{}</td>", fmt(v));
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table>");
    s
}

/// A contact sheet of up to 12 stimuli spread over the hue circle, as one PNG in `fig_dir`.
pub(super) fn stimulus_preview(run: &Path, name: &str, fig_dir: &Path) -> crate::Result<Option<String>> {
    let dir = run.join("stimuli").join(name);
    if !dir.join(crate::stimuli::MANIFEST_FILE).exists() {
        return Ok(None);
    }
    let m = StimulusManifest::load(&dir)?;
    let n = m.stimuli.len();
    let picks: Vec<usize> = (0..12.min(n)).map(|i| i * n / 12.min(n)).collect();
    let thumb = 72u32;
    let mut sheet = image::RgbImage::from_pixel(thumb * picks.len() as u32, thumb, image::Rgb([255, 255, 255]));
    for (slot, &i) in picks.iter().enumerate() {
        let path = dir.join(&m.stimuli[i].file);
        let img = image::open(&path)
            .map_err(|e| crate::Error::Msg(format!("cannot read stimulus `{}`: {e}", path.display())))?
            .resize_exact(thumb, thumb, image::imageops::FilterType::Triangle)
            .to_rgb8();
        image::imageops::overlay(&mut sheet, &img, (slot as u32 * thumb) as i64, 0);
    }
    let file = format!("{name}-stimuli.png");
    let mut bytes = Vec::new();
    sheet
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .map_err(|e| crate::Error::Msg(format!("cannot encode the stimulus preview: {e}")))?;
    crate::fsx::write_atomic(&fig_dir.join(&file), &bytes)?;
    Ok(Some(file))
}

/// A strip of colour swatches: one row per direction kind of the first pair, one swatch per alpha, coloured by
/// the hue after steering.
pub(super) fn swatches(rows: &[&Value], fig_dir: &Path, stem: &str) -> crate::Result<Option<String>> {
    let Some(pair) = rows.first().and_then(|r| r["pair"].as_str()) else { return Ok(None) };
    let kinds = ["centroid", "manifold", "random"];
    let lines: Vec<Vec<f64>> = kinds
        .iter()
        .map(|k| {
            rows.iter()
                .filter(|r| r["pair"].as_str() == Some(pair) && r["direction"].as_str() == Some(k))
                .map(|r| r["final_hue_deg"].as_f64().unwrap_or(f64::NAN))
                .collect()
        })
        .filter(|l: &Vec<f64>| !l.is_empty())
        .collect();
    let cols = lines.iter().map(Vec::len).max().unwrap_or(0) as u32;
    if cols == 0 {
        return Ok(None);
    }
    let cell = 48u32;
    let mut img = image::RgbImage::from_pixel(cols * cell, lines.len() as u32 * cell, image::Rgb([255, 255, 255]));
    for (r, line) in lines.iter().enumerate() {
        for (c, h) in line.iter().enumerate() {
            let colour =
                if h.is_finite() { super::figures::hue_colour(*h) } else { plotters::style::RGBColor(128, 128, 128) };
            for y in 2..cell - 2 {
                for x in 2..cell - 2 {
                    img.put_pixel(c as u32 * cell + x, r as u32 * cell + y, image::Rgb([colour.0, colour.1, colour.2]));
                }
            }
        }
    }
    let file = format!("{stem}.png");
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .map_err(|e| crate::Error::Msg(format!("cannot encode swatches: {e}")))?;
    crate::fsx::write_atomic(&fig_dir.join(&file), &bytes)?;
    Ok(Some(file))
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:1180px;margin:2em auto;padding:0 1em;color:#222}\
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}\
table{border-collapse:collapse;margin:.6em 0;font-size:.88em}td,th{border:1px solid #ddd;padding:.25em .5em;text-align:right}\
th{background:#f4f4f4}tr.win{background:#eef7ee;font-weight:600}figure{display:inline-block;margin:.6em;vertical-align:top;max-width:740px}\
figcaption{font-size:.85em;color:#555}img{max-width:100%}.warn{color:#8a5a00}.meta{color:#666;font-size:.85em}code{background:#f4f4f4;padding:0 .2em}";

const CHECK: &str = "<script>window.addEventListener('load',function(){var im=document.querySelectorAll('img');\
var ok=0;for(var i=0;i<im.length;i++){if(im[i].complete&&im[i].naturalWidth>0){ok++;}}\
document.body.setAttribute('data-figures-loaded',ok+'/'+im.length);});</script>";

pub(super) fn page(run: &Path, sets: &[SetReport]) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>huescan report: {}</title><style>{STYLE}</style></head><body>",
        esc(&run.display().to_string())
    );
    let _ = write!(s, "<h1>huescan report</h1><p class=\"meta\">run folder <code>{}</code>; huescan {}; every number below comes from the CSV/JSON files next to it (<code>analysis/&lt;set&gt;/</code>), which record how they were made.</p>", esc(&run.display().to_string()), env!("CARGO_PKG_VERSION"));
    let _ = write!(s, "<h2>Summary</h2>");
    let rows: Vec<Value> = sets
        .iter()
        .map(|r| {
            let a = &r.summary["arbitration"][0];
            serde_json::json!({
                "set": r.name, "mode": r.summary["mode"], "n": r.summary["n_samples"],
                "layer": r.summary["choice"]["layer"], "criterion": r.summary["choice"]["criterion"],
                "winner": r.summary["winner"], "test": a["test_score"], "composite": a["composite_score"],
            })
        })
        .collect();
    s.push_str(&table(
        &rows,
        &[
            ("set", "set"),
            ("mode", "labels"),
            ("n", "samples"),
            ("layer", "layer"),
            ("criterion", "chosen by"),
            ("winner", "winning shape"),
            ("test", "held-out score"),
            ("composite", "composite"),
        ],
        |_| false,
    ));
    for r in sets {
        let _ = write!(s, "<h2 id=\"{0}\">{0}</h2>", esc(&r.name));
        if let Some(p) = &r.preview {
            let _ = write!(s, "<figure><img src=\"figures/{}\" alt=\"stimuli of {}\"><figcaption>Stimuli spread over the hue circle.</figcaption></figure>", esc(p), esc(&r.name));
        }
        for w in r.summary["warnings"].as_array().into_iter().flatten() {
            let _ = write!(s, "<p class=\"warn\">⚠ {}</p>", fmt(w));
        }
        for (stem, caption) in &r.panels {
            let _ = write!(s, "<figure><img src=\"figures/{stem}.svg\" alt=\"{stem}\"><figcaption>{} <a href=\"figures/{stem}.png\">PNG</a></figcaption></figure>", esc(caption));
        }
        let winner = r.summary["winner"].as_str().unwrap_or("").to_string();
        let _ = write!(s, "<h3>Arbitration at layer {}</h3>", fmt(&r.summary["choice"]["layer"]));
        let arb = r.summary["arbitration"].as_array().cloned().unwrap_or_default();
        s.push_str(&table(
            &arb,
            &[
                ("shape", "shape"),
                ("train_cv_score", "train CV score"),
                ("train_cv_std", "± std"),
                ("test_score", "held-out score"),
                ("test_closure_ratio", "seam closure"),
                ("periodicity_score", "periodicity"),
                ("coverage_ratio", "coverage"),
                ("composite_score", "composite"),
            ],
            |row| row["shape"].as_str() == Some(winner.as_str()),
        ));
        let _ = write!(s, "<h3>Discovery (cross-validated on the training split)</h3>");
        let disc = r.summary["discovery"].as_array().cloned().unwrap_or_default();
        s.push_str(&table(
            &disc,
            &[
                ("shape", "shape"),
                ("rank", "rank"),
                ("n_folds", "folds"),
                ("mean.0", "mean score"),
                ("std.0", "std"),
                ("shuffled_baseline", "shuffled-label mean"),
                ("p_value", "permutation p"),
            ],
            |row| row["rank"].as_u64() == Some(1),
        ));
        let _ = write!(s, "<h3>Held-out test</h3>");
        let held = r.summary["heldout"].as_array().cloned().unwrap_or_default();
        s.push_str(&table(
            &held,
            &[
                ("shape", "shape"),
                ("test.0", "score"),
                ("test_ci.0", "CI low"),
                ("test_ci.1", "CI high"),
                ("test_closure_ratio", "seam closure"),
                ("periodicity_score", "periodicity"),
            ],
            |row| row["shape"].as_str() == Some(winner.as_str()),
        ));
        let _ = write!(s, "<h3>Layer scan</h3>");
        let scan = r.summary["layer_scan"].as_array().cloned().unwrap_or_default();
        let chosen = r.summary["choice"]["layer"].as_u64();
        s.push_str(&table(
            &scan,
            &[
                ("layer", "layer"),
                ("in_sample_score", "in-sample score"),
                ("cv_score", "CV score"),
                ("cv_std", "± std"),
                ("shuffled_baseline", "shuffled"),
                ("p_value", "p"),
                ("note", "note"),
            ],
            |row| row["layer"].as_u64() == chosen,
        ));
        if let Some(st) = &r.steering {
            let _ = write!(s, "<h3>In-model steering</h3>");
            if let Some(sw) = &r.swatches {
                let _ = write!(s, "<figure><img src=\"figures/{}\" alt=\"steering swatches\"><figcaption>Steering trajectory of the first pair: rows centroid / manifold / random direction, columns the alphas, each swatch the hue after steering.</figcaption></figure>", esc(sw));
            }
            let rows = st["summary"].as_array().cloned().unwrap_or_default();
            s.push_str(&table(
                &rows,
                &[
                    ("layer", "layer"),
                    ("hook", "hook"),
                    ("pair", "pair"),
                    ("direction", "direction"),
                    ("alpha_reached", "alpha reaching target"),
                    ("error_at_alpha_1", "error at alpha 1 (deg)"),
                    ("monotone", "monotone"),
                    ("joystick_alpha_reached", "joystick alpha"),
                    ("max_disagreement_deg", "max model-joystick gap"),
                    ("target_word", "target word"),
                    ("alpha_word_flip", "answer flips at"),
                ],
                |row| row["monotone"].as_bool() == Some(true) && row["alpha_reached"].is_number(),
            ));
            if let Ok(Some(where_)) = super::findings::html(run, &r.name) {
                s.push_str(&where_);
            }
            let answers: Vec<Value> = r
                .steering_rows
                .iter()
                .filter(|row| row["top_word"].is_string() || row["texts"].is_array())
                .cloned()
                .collect();
            if !answers.is_empty() {
                let _ = write!(s, "<h4>Colour words and answers</h4>");
                s.push_str(&table(
                    &answers,
                    &[
                        ("layer", "layer"),
                        ("pair", "pair"),
                        ("direction", "direction"),
                        ("alpha", "alpha"),
                        ("top_word", "most likely colour word"),
                        ("texts.0", "generated answer"),
                    ],
                    |_| false,
                ));
            }
        }
    }
    s.push_str(CHECK);
    s.push_str("</body></html>\n");
    s
}
