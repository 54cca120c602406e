//! `huescan stimuli render` and `huescan stimuli list`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::cli::{values, Progress};
use crate::stimuli::{self, RenderOptions, StimulusSpec};

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// A spec file (`stimuli/wild-360.toml`) or a bundled set's name (`wild-360`; see `huescan stimuli list`).
    pub spec: String,
    /// Output folder: one PNG per stimulus plus stimuli.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Hue-rotate the photos in this folder (overrides a photo spec's `[photo] dir`).
    #[arg(long)]
    pub photos: Option<PathBuf>,
}

pub fn render(args: &RenderArgs, progress: &Progress) -> anyhow::Result<ExitCode> {
    let spec = StimulusSpec::resolve(&args.spec)?;
    let n = spec.hue_mdegs().len() as u64 * u64::from(spec.variants);
    let png_mb = n as f64 * f64::from(spec.width) * f64::from(spec.height) * 3.0 / 1e6;
    values::check_cap("the image count", n, values::MAX_IMAGES, &format!("up to {png_mb:.0} MB of PNGs"))?;
    let _lock = crate::fsx::DirLock::acquire(&args.out, "stimuli render")?;
    let bar = progress.bar(0, "rendering");
    let tick = |done: usize, total: usize| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    };
    let opts = RenderOptions { photos: args.photos.clone(), progress: Some(&tick) };
    let manifest = stimuli::render(&spec, &args.out, &opts)?;
    bar.finish_and_clear();
    progress.say(format!(
        "rendered {} `{}` stimuli ({}x{} {}) into {}",
        manifest.stimuli.len(),
        manifest.spec_name,
        manifest.width,
        manifest.height,
        manifest.kind,
        args.out.display()
    ));
    Ok(ExitCode::SUCCESS)
}

pub fn list() -> anyhow::Result<ExitCode> {
    for b in stimuli::bundled() {
        outln!("{:<16} {:<28} {}", b.name, b.path, b.description());
    }
    Ok(ExitCode::SUCCESS)
}
