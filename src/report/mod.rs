//! The report a researcher reads: `report/index.html` (opens from disk: no server, no network), figures as
//! SVG and PNG, built only from the files a run wrote (`run.json`, `analysis/<set>/…`, `activations/<set>/
//! manifest.json`, `stimuli/<set>/…`, `steering/<set>/…`), so `huescan report` works offline on any run folder.
//!
//! The report is a function of typed inputs ([`inputs`]): the structs that wrote each file read it back.

mod figures;
pub mod findings;
mod heatmap;
mod html;
pub mod inputs;
mod sets;
mod steering;
mod table;
mod tables;
mod view3d;

use std::path::{Path, PathBuf};

pub use figures::{hue_colour, render, AlphaCurves, Figure, HueScatter, HueScatter3d, LayerLines};
pub use html::Section;
pub use table::esc;

/// What `build` wrote.
#[derive(Debug)]
pub struct Report {
    pub index: PathBuf,
    pub figures: Vec<PathBuf>,
    pub sets: Vec<String>,
}

fn sets_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("summary.json").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| crate::stimuli::check_set_name(n).is_ok())
        .collect();
    names.sort();
    names
}

/// Result alias of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a report could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Fs(#[from] crate::fsx::Error),
    #[error(transparent)]
    Stimuli(#[from] crate::stimuli::Error),
    #[error(transparent)]
    Model(#[from] crate::model::Error),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error(transparent)]
    Manifold(#[from] crate::manifold::Error),
    #[error(transparent)]
    Steer(#[from] crate::steer::Error),
    #[error("`{run}` holds no analysis (expected analysis/<set>/summary.json); run `huescan analyze` first")]
    NoAnalysis { run: PathBuf },
    #[error("`{path}`: {msg}; re-run `huescan analyze`")]
    Projection { path: PathBuf, msg: String },
    #[error("{action} `{path}`: {msg}")]
    Image { action: &'static str, path: PathBuf, msg: String },
    #[error("cannot draw figure `{stem}`: {msg}")]
    Figure { stem: String, msg: String },
}

/// Builds `<out>/index.html` and `<out>/figures/` from the run folder `run`.
/// `run` may also be the analysis folder itself (`huescan analyze --out DIR`); then its parent is the run.
pub fn build(run: &Path, out: &Path) -> Result<Report> {
    let mut names = sets_in(&run.join("analysis"));
    let owned_run;
    let run = if names.is_empty() && !sets_in(run).is_empty() && run.file_name().is_some_and(|n| n == "analysis") {
        names = sets_in(run);
        owned_run = run.parent().unwrap_or(run).to_path_buf();
        owned_run.as_path()
    } else {
        run
    };
    if names.is_empty() {
        return Err(Error::NoAnalysis { run: run.to_path_buf() });
    }
    warn_skipped_sets(&run.join("analysis"));
    let inputs = inputs::RunInputs::load(run, &names)?;
    let fig_dir = out.join("figures");
    crate::fsx::create_dir_all(&fig_dir)?;
    crate::fsx::remove_stale_temps(out)?;
    crate::fsx::remove_stale_temps(&fig_dir)?;
    let rel = relative_prefix(out, run);
    let mut sections = vec![html::summary_section(&inputs)];
    let mut figures = Vec::new();
    for (i, set) in inputs.sets.iter().enumerate() {
        let figs = sets::draw(run, i, set, &fig_dir)?;
        figures.extend(figs.files.iter().map(|f| fig_dir.join(f)));
        sections.push(html::set_section(&inputs, &rel, i, set, &figs));
    }
    let page = html::page(&inputs, &rel, &sections);
    let index = out.join("index.html");
    crate::fsx::write_atomic(&index, page.as_bytes())?;
    Ok(Report { index, figures, sets: names })
}

/// The relative URL prefix from the report folder `out` to the run folder `run` (`../` for the default
/// `<run>/report`), so data links work when the two folders are copied together. Falls back to an absolute
/// `file://` prefix when no relative path exists.
fn relative_prefix(out: &Path, run: &Path) -> String {
    let (Ok(out), Ok(run)) = (std::fs::canonicalize(out), std::fs::canonicalize(run)) else {
        return "../".into();
    };
    let (o, r): (Vec<_>, Vec<_>) = (out.components().collect(), run.components().collect());
    let common = o.iter().zip(&r).take_while(|(a, b)| a == b).count();
    if common == 0 {
        return format!("file://{}/", run.display());
    }
    let mut prefix = "../".repeat(o.len() - common);
    for c in &r[common..] {
        prefix.push_str(&c.as_os_str().to_string_lossy());
        prefix.push('/');
    }
    prefix
}

/// Says which folders of `analysis/` the report leaves out and why, so a set never silently vanishes.
fn warn_skipped_sets(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !e.path().is_dir() {
            continue;
        }
        if let Err(why) = crate::stimuli::check_set_name(&name) {
            tracing::warn!("report leaves out `{}`: its name is not a set name ({why})", e.path().display());
        } else if !e.path().join("summary.json").is_file() {
            tracing::warn!(
                "report leaves out set `{name}`: `{}` has no summary.json (re-run `huescan analyze`)",
                e.path().display()
            );
        }
    }
}
