//! Saving and loading trained autoencoders as safetensors. The tensors carry the seed's PyTorch names
//! (`encoder.0.weight`, ...); the header metadata carries the full [`TrainConfig`] (architecture, data,
//! seed, epochs) and the final loss, so a file says how it was made.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use safetensors::{Dtype, SafeTensors};

use super::{Autoencoder, TrainConfig, LAYERS};
use crate::fsx;
use crate::model::Error;
use crate::tensor_file::{serialize_f32, F32Tensor};

/// Value of the `format` metadata key; bump when the layout changes.
pub(crate) const FORMAT: &str = "huescan-colour-autoencoder-v1";

impl Autoencoder {
    /// Writes the weights and their provenance to `path` (atomically).
    pub fn save(&self, path: &Path) -> crate::model::Result<()> {
        let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
        {
            let data = self.varmap.data().lock().expect("VarMap lock");
            for name in tensor_names() {
                let t = data[&name].as_tensor();
                tensors.push((name, t.dims().to_vec(), t.flatten_all()?.to_vec1::<f32>()?));
            }
        }
        let cfg = serde_json::to_string(&self.train_cfg).map_err(|e| Error::Msg(e.to_string()))?;
        let metadata = BTreeMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("train_config".to_string(), cfg),
            ("seed".to_string(), self.train_cfg.seed.to_string()),
            ("epochs".to_string(), self.train_cfg.epochs.to_string()),
            ("final_loss".to_string(), self.final_loss.to_string()),
        ]);
        // The store's serialiser, not `safetensors::serialize`: that one writes its metadata map in hash order,
        // so the same weights gave different bytes from run to run.
        let views: Vec<F32Tensor<'_>> =
            tensors.iter().map(|(name, shape, data)| F32Tensor { name, shape, data }).collect();
        Ok(fsx::write_atomic(path, &serialize_f32(&views, &metadata))?)
    }

    /// Reads a file written by [`Autoencoder::save`]. A missing, truncated, foreign or mis-shaped file is a
    /// clear error naming the path.
    pub fn load(path: &Path) -> crate::model::Result<Self> {
        let bytes = fsx::read(path)?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| {
            checkpoint(path, format!("is not a readable safetensors file ({e}); expected weights saved by huescan"))
        })?;
        let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| checkpoint(path, e.to_string()))?;
        let meta = header.metadata().clone().unwrap_or_default();
        match meta.get("format") {
            Some(f) if f == FORMAT => {}
            got => {
                return Err(checkpoint(
                    path,
                    format!(
                        "has metadata format {got:?}, expected `{FORMAT}`; it was not written by huescan's colour \
                         autoencoder (retrain with `train_or_load` or point to the right file)"
                    ),
                ))
            }
        }
        let cfg_json = meta.get("train_config").ok_or_else(|| checkpoint(path, "has no `train_config` metadata"))?;
        let train_cfg: TrainConfig = serde_json::from_str(cfg_json)
            .map_err(|e| checkpoint(path, format!("has an unreadable `train_config` ({e})")))?;
        train_cfg.check()?;
        let final_loss = meta.get("final_loss").and_then(|s| s.parse::<f32>().ok()).unwrap_or(f32::NAN);

        let device = Device::Cpu;
        let varmap = VarMap::new();
        {
            let mut data = varmap.data().lock().expect("a fresh VarMap is not shared");
            let expected = expected_shapes(&train_cfg);
            for (name, shape) in &expected {
                let view = st.tensor(name).map_err(|_| checkpoint(path, format!("has no tensor `{name}`")))?;
                if view.dtype() != Dtype::F32 {
                    return Err(checkpoint(path, format!("tensor `{name}` is {:?}, expected F32", view.dtype())));
                }
                if view.shape() != shape.as_slice() {
                    return Err(Error::TensorShape {
                        name: name.clone(),
                        expected: shape.clone(),
                        got: view.shape().to_vec(),
                    });
                }
                let values: Vec<f32> =
                    view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
                if values.iter().any(|x| !x.is_finite()) {
                    return Err(checkpoint(path, format!("tensor `{name}` has non-finite values")));
                }
                data.insert(name.clone(), Var::from_tensor(&Tensor::from_vec(values, shape.as_slice(), &device)?)?);
            }
            if let Some(extra) = st.names().into_iter().find(|n| !expected.iter().any(|(e, _)| e == n)) {
                return Err(checkpoint(path, format!("has an unexpected tensor `{extra}` for this architecture")));
            }
        }
        Ok(Autoencoder::from_varmap(path.display().to_string(), train_cfg, final_loss, varmap)?)
    }
}

fn checkpoint(path: &Path, msg: impl Into<String>) -> Error {
    Error::Checkpoint { path: path.to_path_buf(), msg: msg.into() }
}

fn tensor_names() -> Vec<String> {
    LAYERS.iter().flat_map(|l| [format!("{l}.weight"), format!("{l}.bias")]).collect()
}

fn expected_shapes(cfg: &TrainConfig) -> Vec<(String, Vec<usize>)> {
    LAYERS
        .iter()
        .zip(cfg.model.layer_dims())
        .flat_map(|(l, (d_in, d_out))| [(format!("{l}.weight"), vec![d_out, d_in]), (format!("{l}.bias"), vec![d_out])])
        .collect()
}
