//! `huescan store inspect` and `huescan merge`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::cli::{existing, Progress};
use crate::store::{self, ActivationStore};

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Store directory (the one holding manifest.json).
    pub dir: PathBuf,
    /// Print the manifest as JSON instead of a summary.
    #[arg(long)]
    pub json: bool,
    /// Skip reading every layer (checksums, NaN/Inf); only the manifest is checked.
    #[arg(long)]
    pub no_verify: bool,
}

/// What `store export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// One .npz: `X_<layer index>` float32 per layer, `hue_deg`, `sample_id`, `layer_index`, `hook`.
    Npz,
    /// A folder of the stimulus images with `metadata.jsonl` (`datasets.load_dataset("imagefolder", …)`).
    Datasets,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Store directory (the one holding manifest.json).
    pub dir: PathBuf,
    #[arg(long, value_enum, default_value_t = ExportFormat::Npz)]
    pub format: ExportFormat,
    /// Output: the .npz file, or the folder for `--format datasets`.
    #[arg(long)]
    pub out: PathBuf,
    /// npz: layers to export, `all` or indices/ranges like `0,4,8-12` (store indices).
    #[arg(long, default_value = crate::settings::LAYERS)]
    pub layers: String,
    /// datasets: the rendered stimulus set [default: the run folder's stimuli/<set> next to activations/<set>].
    #[arg(long)]
    pub stimuli: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The sharded run's output directory: shards are read from DIR/shards/shard-*/ and merged into DIR.
    pub dir: PathBuf,
    /// Merge these shard directories instead of DIR/shards/*.
    #[arg(long, num_args = 1..)]
    pub shards: Vec<PathBuf>,
}

pub fn inspect(args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let dir = existing(&args.dir, "store directory")?;
    let store = ActivationStore::open(&dir)?;
    let m = store.manifest();
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, m)?;
        writeln!(out)?;
    } else {
        let p = &m.provenance;
        writeln!(out, "store       {}", dir.display())?;
        writeln!(out, "model       {} (revision {})", p.model_id, p.model_revision.as_deref().unwrap_or("unknown"))?;
        for (file, hash) in &p.model_files_sha256 {
            writeln!(out, "checkpoint  {file} sha256 {}", short(hash))?;
        }
        writeln!(out, "stimuli     {} (sha256 {})", p.stimuli_name, short(&p.stimuli_sha256))?;
        writeln!(out, "pooling     {}", p.pooling)?;
        for (k, v) in &p.settings {
            writeln!(out, "setting     {k} = {v}")?;
        }
        let hues = store.hue_deg();
        let (lo, hi) = hues.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &h| (a.min(h), b.max(h)));
        writeln!(out, "samples     {} (hue {lo}..{hi} deg)", hues.len())?;
        match m.d_model {
            Some(d) => writeln!(out, "d_model     {d} ({})", m.dtype)?,
            None => writeln!(out, "d_model     per layer ({})", m.dtype)?,
        }
        writeln!(out, "layers      {} [{}]", m.layers.len(), m.layer_convention.split(':').next().unwrap_or(""))?;
        if let Some(s) = m.shard {
            writeln!(
                out,
                "shard       {}/{} (samples {}..{} of {})",
                s.index,
                s.count,
                s.offset,
                s.offset + m.samples.len(),
                s.total_samples
            )?;
        }
        writeln!(out, "made by     huescan {}", m.tool_version)?;
        for l in &m.layers {
            writeln!(out, "  {:>4}  {:<28} {:?}  {}", l.index, l.hook, l.shape, l.file)?;
        }
    }
    if args.no_verify {
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed = 0;
    for index in store.layer_indices() {
        if let Err(e) = store.layer(index) {
            eprintln!("layer {index}: {e}");
            failed += 1;
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {} layers failed verification", m.layers.len());
        return Ok(ExitCode::from(1));
    }
    if !args.json {
        writeln!(out, "verified    all {} layers (checksums, shapes, finite values)", m.layers.len())?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn merge(args: &MergeArgs, progress: &Progress) -> anyhow::Result<ExitCode> {
    let shards = if args.shards.is_empty() { store::find_shards(&args.dir)? } else { args.shards.clone() };
    if shards.is_empty() {
        anyhow::bail!(
            "no shards found in `{}`; run `huescan extract --shard i/n` first",
            args.dir.join("shards").display()
        );
    }
    let merged = store::merge(&shards, &args.dir)
        .with_context(|| format!("merging {} shards into `{}`", shards.len(), args.dir.display()))?;
    progress.say(format!(
        "merged {} shards: {} samples x {} layers into {}",
        shards.len(),
        merged.manifest().samples.len(),
        merged.manifest().layers.len(),
        args.dir.display()
    ));
    Ok(ExitCode::SUCCESS)
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

pub fn export(args: &ExportArgs, progress: &Progress) -> anyhow::Result<ExitCode> {
    let dir = existing(&args.dir, "store directory")?;
    let store = ActivationStore::open(&dir)?;
    match args.format {
        ExportFormat::Npz => {
            let stored = store.layer_indices();
            let layers = if args.layers == "all" {
                stored
            } else {
                let wanted = super::extract::parse_layers(&args.layers, stored.iter().max().map_or(0, |m| m + 1))?;
                if let Some(l) = wanted.iter().find(|l| !stored.contains(l)) {
                    anyhow::bail!("the store has no layer {l}; it holds {stored:?}");
                }
                wanted
            };
            let names = store::export::write_npz(&store, &layers, &args.out)?;
            progress.say(format!("wrote {} arrays ({}) to {}", names.len(), names.join(", "), args.out.display()));
        }
        ExportFormat::Datasets => {
            let name = &store.manifest().provenance.stimuli_name;
            let stimuli = match &args.stimuli {
                Some(s) => s.clone(),
                None => dir
                    .parent()
                    .and_then(|p| p.parent())
                    .map(|run| run.join("stimuli").join(name))
                    .ok_or_else(|| anyhow::anyhow!("pass --stimuli: the store is not inside a run folder"))?,
            };
            let stimuli = existing(&stimuli, "stimulus folder (pass --stimuli)")?;
            let n = store::export::write_datasets_folder(&stimuli, &args.out)?;
            progress.say(format!(
                "wrote {n} images and metadata.jsonl to {} (datasets.load_dataset(\"imagefolder\", data_dir=...))",
                args.out.display()
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}
