//! The HTML page: one self-contained file next to its figures. Sections (with the table of contents built from
//! them) are a list, so a new section is one more entry. Small inline scripts sort tables, draw the 3-D views
//! and mark `<body>` with how many figures and views loaded (`data-figures-loaded`, `data-views3d`), which the
//! headless-browser check reads. Every piece of text from disk goes through [`esc`].

use std::fmt::Write as _;
use std::path::Path;

use super::inputs::{RunInputs, SetInputs};
use super::sets::{Panel, SetFigures};
use super::table::{esc, Cell, Table};
use crate::steer::{DirectionKind, SweepRow};
use crate::stimuli::StimulusManifest;

/// One section of the page: its anchor, its title in the table of contents, subsections, and its HTML.
pub struct Section {
    pub id: String,
    pub title: String,
    pub children: Vec<(String, String)>,
    pub html: String,
}

/// A contact sheet of up to 12 stimuli spread over the hue circle, as one PNG in `fig_dir`.
pub(super) fn stimulus_preview(run: &Path, name: &str, fig_dir: &Path) -> crate::report::Result<Option<String>> {
    let dir = run.join("stimuli").join(name);
    if !dir.join(crate::stimuli::MANIFEST_FILE).exists() {
        return Ok(None);
    }
    let m = StimulusManifest::load(&dir)?;
    let n = m.stimuli.len();
    let picks: Vec<usize> = (0..12.min(n)).map(|i| i * n / 12.min(n)).collect();
    let thumb = 96u32;
    let mut sheet = image::RgbImage::from_pixel(thumb * picks.len() as u32, thumb, image::Rgb([255, 255, 255]));
    for (slot, &i) in picks.iter().enumerate() {
        let path = dir.join(&m.stimuli[i].file);
        let img = image::open(&path)
            .map_err(|e| crate::report::Error::Image {
                action: "cannot read stimulus",
                path: path.clone(),
                msg: e.to_string(),
            })?
            .resize_exact(thumb, thumb, image::imageops::FilterType::Triangle)
            .to_rgb8();
        image::imageops::overlay(&mut sheet, &img, (slot as u32 * thumb) as i64, 0);
    }
    let file = format!("{name}-stimuli.png");
    write_png(&sheet, &fig_dir.join(&file))?;
    Ok(Some(file))
}

fn write_png(img: &image::RgbImage, path: &Path) -> crate::report::Result<()> {
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).map_err(|e| {
        crate::report::Error::Image { action: "cannot encode", path: path.to_path_buf(), msg: e.to_string() }
    })?;
    Ok(crate::fsx::write_atomic(path, &bytes)?)
}

/// A strip of colour swatches: one row per direction kind of the first pair, one swatch per alpha, coloured by
/// the hue after steering (grey where no hue was read out).
pub(super) fn swatches(rows: &[&SweepRow], fig_dir: &Path, stem: &str) -> crate::report::Result<Option<String>> {
    let Some(pair) = rows.first().map(|r| r.pair.clone()) else { return Ok(None) };
    let lines: Vec<Vec<f64>> = DirectionKind::ALL
        .iter()
        .map(|k| {
            let mut of: Vec<&&SweepRow> = rows.iter().filter(|r| r.pair == pair && r.direction == *k).collect();
            of.sort_by(|a, b| a.alpha.total_cmp(&b.alpha));
            of.iter().map(|r| r.final_hue_deg.unwrap_or(f64::NAN)).collect()
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
    write_png(&img, &fig_dir.join(&file))?;
    Ok(Some(file))
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#222;font-size:16px;line-height:1.4}\
.layout{display:grid;grid-template-columns:240px minmax(0,1fr);gap:1.5em;max-width:1900px;margin:0 auto;padding:1em 1.5em}\
nav.toc{position:sticky;top:0;align-self:start;max-height:100vh;overflow:auto;font-size:.92em;padding-top:1em}\
nav.toc ol{padding-left:1.1em;margin:.2em 0}nav.toc a{color:#1f4e79;text-decoration:none}\
h1{font-size:1.7em;margin:.4em 0}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.8em}h3{margin-top:1.4em}\
table{border-collapse:collapse;margin:.4em 0 1em;font-size:.92em}td,th{border:1px solid #ddd;padding:.25em .55em;text-align:right}\
td.t{text-align:left}th{background:#f4f4f4;cursor:pointer}td.na{color:#999}td.never{color:#a33}\
tr.win{background:#eef7ee;font-weight:600}table.prov td{text-align:left;font-family:ui-monospace,monospace;font-size:.9em;word-break:break-all}\
table.prov th{text-align:left;cursor:default}.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:1em 1.5em}\
figure{margin:.4em 0}figure img{width:100%;max-width:820px;height:auto;border:1px solid #eee}figure.fixed img{width:auto;max-width:100%}\
figcaption{font-size:.9em;color:#444}.warn{color:#8a5a00}.meta{color:#555;font-size:.92em}code{background:#f4f4f4;padding:0 .2em}\
.v3dwrap{position:relative;display:inline-block}canvas.view3d{border:1px solid #ddd;max-width:100%;cursor:grab}\
.tip{position:absolute;background:#222;color:#fff;padding:.15em .45em;border-radius:3px;font-size:13px;pointer-events:none;white-space:nowrap}\
.tcap{font-weight:600;margin:.8em 0 .2em}details{margin:.5em 0}summary{cursor:pointer;font-weight:600}.links a{margin-right:.8em}\
svg.heat{max-width:100%;height:auto}@media print{nav.toc{display:none}.layout{display:block}}";

const SCRIPT: &str = "<script>window.addEventListener('load',function(){var im=document.querySelectorAll('img');\
var ok=0;for(var i=0;i<im.length;i++){if(im[i].complete&&im[i].naturalWidth>0){ok++;}}\
document.body.setAttribute('data-figures-loaded',ok+'/'+im.length);\
var ths=document.querySelectorAll('table.sortable th');for(var t=0;t<ths.length;t++){(function(th){\
th.addEventListener('click',function(){var tb=th.closest('table').tBodies[0],col=Array.prototype.indexOf.call(th.parentNode.children,th);\
var asc=th.getAttribute('data-sort')!=='asc';th.setAttribute('data-sort',asc?'asc':'desc');\
var rows=Array.prototype.slice.call(tb.rows);function key(r){var c=r.cells[col];var v=c.getAttribute('data-v');\
return v===null?[1,c.textContent]:[0,parseFloat(v)];}\
rows.sort(function(a,b){var x=key(a),y=key(b);if(x[0]!==y[0]){return x[0]-y[0];}\
var d=x[0]===0?x[1]-y[1]:(x[1]<y[1]?-1:x[1]>y[1]?1:0);return asc?d:-d;});\
for(var k=0;k<rows.length;k++){tb.appendChild(rows[k]);}});})(ths[t]);}});</script>";

/// The page: header with provenance and data links, table of contents, then `sections`.
pub(super) fn page(inputs: &RunInputs, rel: &str, sections: &[Section]) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width\"><title>huescan report: {}</title><style>{STYLE}</style></head><body>\
         <div class=\"layout\"><nav class=\"toc\"><h2 id=\"contents\">Contents</h2><ol>",
        esc(&inputs.info.as_ref().map_or_else(|| inputs.run.display().to_string(), |i| i.model.clone()))
    );
    let _ = write!(s, "<li><a href=\"#provenance\">Provenance and data</a></li>");
    for sec in sections {
        let _ = write!(s, "<li><a href=\"#{}\">{}</a>", sec.id, esc(&sec.title));
        if !sec.children.is_empty() {
            s.push_str("<ol>");
            for (id, title) in &sec.children {
                let _ = write!(s, "<li><a href=\"#{id}\">{}</a></li>", esc(title));
            }
            s.push_str("</ol>");
        }
        s.push_str("</li>");
    }
    s.push_str("</ol></nav><main>");
    s.push_str(&provenance(inputs, rel));
    for sec in sections {
        s.push_str(&sec.html);
    }
    s.push_str("</main></div>");
    s.push_str(SCRIPT);
    s.push_str(super::view3d::SCRIPT);
    s.push_str("</body></html>\n");
    s
}

/// A link to `file` inside the run folder, when it exists; `rel` leads from the report folder to the run.
fn link(run: &Path, rel: &str, file: &str) -> Option<String> {
    run.join(file).exists().then(|| format!("<a href=\"{}\">{}</a>", esc(&href(&format!("{rel}{file}"))), esc(file)))
}

/// Percent-encodes what a relative URL path cannot hold as is.
fn href(path: &str) -> String {
    let mut out = String::new();
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The lab-notebook header: how the run was made (run.json) and where each set's numbers came from (its
/// store's manifest), with links to every file the page cites.
fn provenance(inputs: &RunInputs, rel: &str) -> String {
    let mut s = String::from("<h1>huescan report</h1><section><h2 id=\"provenance\">Provenance and data</h2>");
    let mut t = String::from("<table class=\"prov\"><tbody>");
    let mut row = |k: &str, v: &str| {
        let _ = write!(t, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
    };
    match &inputs.info {
        Some(i) => {
            row("model", &i.model);
            row("command", &i.command_line.join(" "));
            row("started (UTC)", &crate::runinfo::iso8601_utc(i.started_unix_s));
            row("made by", &format!("{} {}", i.tool, i.tool_version));
            row("stimulus sets", &i.stimulus_sets.join(", "));
        }
        None => row("run.json", "n/a: this folder has no run.json (it was not made by `huescan scan`/`demo`)"),
    }
    row("report by", &format!("huescan {}", env!("CARGO_PKG_VERSION")));
    row("run folder", &inputs.run.display().to_string());
    t.push_str("</tbody></table>");
    s.push_str(&t);
    s.push_str(&store_provenance(&inputs.sets));
    let mut links: Vec<String> =
        ["run.json", "analysis/global.csv"].iter().filter_map(|f| link(&inputs.run, rel, f)).collect();
    if links.is_empty() {
        links.push("none at the run level".into());
    }
    let _ = write!(s, "<p class=\"links\">Run files: {}</p>", links.join(" "));
    s.push_str(
        "<p class=\"meta\">Every number on this page is read from the files linked in each set's section; \
                tables show four decimals, the CSV and JSON files every digit. <b>n/a</b> means not applicable or not \
                computed; <b>never</b> means measured, and it did not happen.</p></section>",
    );
    s
}

fn file_hash(m: &crate::store::Manifest, k: &str) -> String {
    m.provenance.model_files_sha256.get(k).cloned().unwrap_or_else(|| "n/a: not recorded".into())
}

/// One column per set: model, revision, hashes, prompt and the other settings its store recorded.
fn store_provenance(sets: &[SetInputs]) -> String {
    let with: Vec<&SetInputs> = sets.iter().filter(|s| s.manifest.is_some()).collect();
    if with.is_empty() {
        return "<p class=\"meta\">No activation store is in this run folder, so model provenance is n/a here; \
                the store's manifest.json records it.</p>"
            .into();
    }
    let mut keys: Vec<String> = Vec::new();
    for set in &with {
        for k in
            set.manifest.as_ref().map(|m| m.provenance.settings.keys().cloned().collect::<Vec<_>>()).unwrap_or_default()
        {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    let mut s = String::from("<table class=\"prov\"><thead><tr><th>store</th>");
    for set in &with {
        let _ = write!(s, "<th>{}</th>", esc(&set.name));
    }
    s.push_str("</tr></thead><tbody>");
    type Getter = fn(&crate::store::Manifest) -> String;
    let fixed: [(&str, Getter); 10] = [
        ("model id", |m| m.provenance.model_id.clone()),
        ("revision", |m| m.provenance.model_revision.clone().unwrap_or_else(|| "n/a: not recorded".into())),
        ("config.json sha256", |m| m.provenance.model_config_sha256.clone().unwrap_or_else(|| "n/a".into())),
        ("weights fingerprint sha256", |m| file_hash(m, "weights")),
        ("tokenizer.json sha256", |m| file_hash(m, "tokenizer.json")),
        ("preprocessor_config.json sha256", |m| file_hash(m, "preprocessor_config.json")),
        ("stimuli", |m| format!("{} (stimuli.json sha256 {})", m.provenance.stimuli_name, m.provenance.stimuli_sha256)),
        ("pooling", |m| m.provenance.pooling.clone()),
        ("layers stored", |m| m.layers.len().to_string()),
        ("made by", |m| format!("huescan {}", m.tool_version)),
    ];
    for (k, get) in fixed {
        let _ = write!(s, "<tr><th>{}</th>", esc(k));
        for set in &with {
            let _ = write!(s, "<td>{}</td>", esc(&set.manifest.as_ref().map(get).unwrap_or_default()));
        }
        s.push_str("</tr>");
    }
    for k in &keys {
        let _ = write!(s, "<tr><th>{}</th>", esc(k));
        for set in &with {
            let v = set.manifest.as_ref().and_then(|m| m.provenance.settings.get(k).cloned());
            let _ = write!(s, "<td>{}</td>", esc(&v.unwrap_or_else(|| "n/a".into())));
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table>");
    s
}

/// The summary across sets.
pub(super) fn summary_section(inputs: &RunInputs) -> Section {
    let mut t = Table::new(
        "One row per stimulus set: the layer the analysis chose and the shape that won there.",
        &["set", "labels", "samples", "layer", "chosen by", "winning shape", "held-out score", "composite"],
    );
    for set in &inputs.sets {
        let a = &set.analysis;
        let best = a.arbitration.first();
        t.row(
            false,
            vec![
                Cell::Text(set.name.clone()),
                Cell::Text(a.mode.to_string()),
                Cell::Num(a.n_samples as f64),
                Cell::Num(a.choice.layer as f64),
                Cell::Text(a.choice.criterion.clone()),
                Cell::Text(a.winner.to_string()),
                Cell::Num(best.map_or(f64::NAN, |r| r.test_score)),
                Cell::Num(best.map_or(f64::NAN, |r| r.composite_score)),
            ],
        );
    }
    Section {
        id: "summary".into(),
        title: "Summary".into(),
        children: vec![],
        html: format!("<section><h2 id=\"summary\">Summary</h2>{}</section>", t.render()),
    }
}

pub(super) fn figure(p: &Panel) -> String {
    let stem = esc(&href(&p.stem));
    format!(
        "<figure><img src=\"figures/{stem}.svg\" alt=\"{}\"><figcaption>{} <a href=\"figures/{stem}.png\">PNG</a> \
         <a href=\"figures/{stem}.svg\">SVG</a></figcaption></figure>",
        esc(&p.stem),
        esc(&p.caption)
    )
}

pub(super) fn set_links(run: &Path, rel: &str, name: &str) -> String {
    let files: Vec<String> = [
        "analysis/{}/summary.json",
        "analysis/{}/layer_scan.csv",
        "analysis/{}/discovery.csv",
        "analysis/{}/heldout.csv",
        "analysis/{}/arbitration.csv",
        "analysis/{}/joystick.csv",
        "analysis/{}/projection.safetensors",
        "steering/{}/summary.csv",
        "steering/{}/summary.json",
        "steering/{}/sweep.csv",
        "steering/{}/sweep.json",
        "activations/{}/manifest.json",
        "stimuli/{}/stimuli.json",
    ]
    .iter()
    .filter_map(|f| link(run, rel, &f.replace("{}", name)))
    .collect();
    format!("<p class=\"links\">Data: {}</p>", files.join(" "))
}

/// The set's section: figures, 3-D views, steering and tables.
pub(super) fn set_section(inputs: &RunInputs, rel: &str, index: usize, set: &SetInputs, figs: &SetFigures) -> Section {
    let id = |what: &str| format!("s{index}-{what}");
    let mut children = Vec::new();
    let mut s = format!("<section><h2 id=\"{}\">{}</h2>", id("top"), esc(&set.name));
    s.push_str(&set_links(&inputs.run, rel, &set.name));
    if let Some(p) = &figs.preview {
        let _ = write!(s, "<figure class=\"fixed\"><img src=\"figures/{}\" alt=\"stimuli\"><figcaption>Stimuli spread over the hue circle.</figcaption></figure>", esc(&href(p)));
    }
    for w in &set.analysis.warnings {
        let _ = write!(s, "<p class=\"warn\">⚠ {}</p>", esc(w));
    }
    let mut sub = |s: &mut String, what: &str, title: &str| {
        let _ = write!(s, "<h3 id=\"{}\">{}</h3>", id(what), esc(title));
        children.push((id(what), title.to_string()));
    };
    sub(&mut s, "scan", "Layer scan");
    let _ = write!(s, "<div class=\"grid\">{}</div>", figure(&figs.stress));
    sub(&mut s, "proj", "Projections: supervised (SMDS) and unsupervised (PCA)");
    s.push_str("<div class=\"grid\">");
    for p in &figs.projections {
        s.push_str(&figure(p));
    }
    if let Err(why) = &set.pca {
        let _ = write!(s, "<p class=\"meta\">PCA view: n/a ({})</p>", esc(why));
    }
    s.push_str("</div>");
    if !figs.views.is_empty() {
        sub(&mut s, "v3d", "Interactive 3-D views");
        s.push_str("<div class=\"grid\">");
        for v in &figs.views {
            s.push_str(&v.render());
        }
        s.push_str("</div>");
    }
    if let Some(p) = &figs.static3d {
        let _ = write!(s, "<details><summary>Static 3-D figure (for print)</summary>{}</details>", figure(p));
    }
    if let Some(p) = &figs.joystick {
        sub(&mut s, "joy", "Decoder-only joystick");
        let _ = write!(s, "<div class=\"grid\">{}</div>", figure(p));
    }
    if set.steering.is_some() {
        sub(&mut s, "steer", "In-model steering");
        s.push_str(&super::steering::section(set, figs));
        if let Ok(Some(flips)) = super::findings::html(&inputs.run, &set.name) {
            s.push_str(&flips);
        }
    }
    sub(&mut s, "tables", "Analysis tables");
    s.push_str(&super::tables::analysis_tables(&set.analysis));
    s.push_str("</section>");
    Section { id: id("top"), title: set.name.clone(), children, html: s }
}
