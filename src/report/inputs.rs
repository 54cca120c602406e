//! What the report is a function of: the typed, versioned files a run wrote, read back with the structs that
//! wrote them (`Analysis`, `SweepFile`, `SummaryFile`, `Manifest`, `RunInfo`). A renamed field is a compile
//! error here, not a blank chart.

use std::path::{Path, PathBuf};

use ndarray::Array2;

use crate::manifold::{principal_components, Analysis};
use crate::runinfo::RunInfo;
use crate::steer::{SummaryFile, SweepFile};
use crate::store::{ActivationStore, Manifest, MappedFile};

/// Everything one run folder gives the report.
#[derive(Debug)]
pub struct RunInputs {
    pub run: PathBuf,
    pub info: Option<RunInfo>,
    pub sets: Vec<SetInputs>,
}

/// One stimulus set's inputs.
#[derive(Debug)]
pub struct SetInputs {
    pub name: String,
    pub analysis: Analysis,
    /// The SMDS projection `[n, k]` at `analysis.projection.layer` and its hues, from projection.safetensors.
    pub projection: Option<(Array2<f64>, Vec<f64>)>,
    /// Sample ids in analysis order: the store's when it is there and agrees, else `#i`.
    pub sample_ids: Vec<String>,
    /// The store's manifest (`activations/<set>/manifest.json`), for provenance.
    pub manifest: Option<Manifest>,
    /// Principal components of the projection layer, or why there are none.
    pub pca: Result<Pca, String>,
    pub steering: Option<Steering>,
}

/// PCA scores `[n, 3]` and the variance share of each component.
#[derive(Debug)]
pub struct Pca {
    pub scores: Array2<f64>,
    pub share: Vec<f64>,
}

/// `steering/<set>/sweep.json` and `summary.json`.
#[derive(Debug)]
pub struct Steering {
    pub sweep: SweepFile,
    pub summary: SummaryFile,
}

impl RunInputs {
    /// Reads every set in `names` from the run folder `run`.
    pub fn load(run: &Path, names: &[String]) -> crate::report::Result<Self> {
        let info = crate::runinfo::read(run)?;
        let sets = names.iter().map(|n| SetInputs::load(run, n)).collect::<crate::report::Result<_>>()?;
        Ok(RunInputs { run: run.to_path_buf(), info, sets })
    }
}

impl SetInputs {
    fn load(run: &Path, name: &str) -> crate::report::Result<Self> {
        let dir = run.join("analysis").join(name);
        let analysis: Analysis = crate::nan_json::read(&dir.join("summary.json"))?;
        let projection = read_projection(&dir.join("projection.safetensors"))?;
        let store_dir = run.join("activations").join(name);
        let store = store_dir.join("manifest.json").exists().then(|| ActivationStore::open(&store_dir)).transpose()?;
        let agrees = store.as_ref().is_some_and(|s| {
            s.hue_deg().len() == analysis.hue_deg.len()
                && s.hue_deg().iter().zip(&analysis.hue_deg).all(|(a, b)| (a - b).abs() < 1e-9)
        });
        let sample_ids = match &store {
            Some(s) if agrees => s.sample_ids(),
            _ => (0..analysis.n_samples).map(|i| format!("#{i}")).collect(),
        };
        let pca = match &store {
            None => Err(format!("no activation store at activations/{name}/ in the run folder")),
            Some(_) if !agrees => Err("the store's samples differ from the analysis's".to_string()),
            Some(s) => {
                let x = s.layer_2d(analysis.projection.layer)?;
                let (scores, share) = principal_components(x.view(), 3)?;
                Ok(Pca { scores, share })
            }
        };
        let steer_dir = run.join("steering").join(name);
        let steering = if steer_dir.join("sweep.json").exists() && steer_dir.join("summary.json").exists() {
            Some(Steering {
                sweep: crate::fsx::read_json(&steer_dir.join("sweep.json"))?,
                summary: crate::fsx::read_json(&steer_dir.join("summary.json"))?,
            })
        } else {
            None
        };
        Ok(SetInputs {
            name: name.to_string(),
            analysis,
            projection,
            sample_ids,
            manifest: store.map(|s| s.manifest().clone()),
            pca,
            steering,
        })
    }
}

fn read_projection(path: &Path) -> crate::report::Result<Option<(Array2<f64>, Vec<f64>)>> {
    if !path.exists() {
        return Ok(None);
    }
    let f = MappedFile::open(path)?;
    let (shape, coords) = f.read_f32("coords")?;
    let (_, hues) = f.read_f32("hue_deg")?;
    if shape.len() != 2 || shape[0] != hues.len() {
        return Err(crate::report::Error::Projection {
            path: path.to_path_buf(),
            msg: format!("coords have shape {shape:?} for {} hues, expected [n, k] with n = the hue count", hues.len()),
        });
    }
    let coords = Array2::from_shape_vec((shape[0], shape[1]), coords.into_iter().map(f64::from).collect())
        .map_err(|e| crate::report::Error::Projection { path: path.to_path_buf(), msg: e.to_string() })?;
    Ok(Some((coords, hues.into_iter().map(f64::from).collect())))
}
