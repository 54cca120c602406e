//! The report a researcher reads: `report/index.html` (opens from disk: no server, no network), figures as
//! SVG and PNG, built only from the files a run wrote (`analysis/<set>/…`, `stimuli/<set>/…`,
//! `steering/<set>/…`), so `huescan report` works offline on any run folder.

mod figures;
pub mod findings;
mod html;
mod sets;

use std::path::{Path, PathBuf};

pub use figures::{hue_colour, render, AlphaCurves, Figure, HueScatter, HueScatter3d, LayerLines};
pub use sets::SetReport;

/// What `build` wrote.
#[derive(Debug)]
pub struct Report {
    pub index: PathBuf,
    pub figures: Vec<PathBuf>,
    pub sets: Vec<String>,
}

/// Builds `<out>/index.html` and `<out>/figures/` from the run folder `run`.
/// `run` may also be the analysis folder itself (`huescan analyze --out DIR`); then its parent is the run.
pub fn build(run: &Path, out: &Path) -> crate::Result<Report> {
    let sets_in = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("summary.json").exists())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
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
        return Err(crate::Error::Msg(format!(
            "`{}` holds no analysis (expected analysis/<set>/summary.json); run `huescan analyze` first",
            run.display()
        )));
    }
    let fig_dir = out.join("figures");
    let mut sets = Vec::new();
    let mut figures = Vec::new();
    for name in &names {
        let set = sets::build_set(run, name, &fig_dir)?;
        figures.extend(set.figures.iter().map(|f| fig_dir.join(f)));
        sets.push(set);
    }
    let page = html::page(run, &sets);
    let index = out.join("index.html");
    crate::fsx::write_atomic(&index, page.as_bytes())?;
    Ok(Report { index, figures, sets: names })
}
