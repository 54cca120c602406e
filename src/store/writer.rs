//! Writing a store in resumable chunks.
//!
//! The extraction loop asks for [`StoreWriter::pending_chunks`], runs the model on each, and hands the
//! activations to [`StoreWriter::write_chunk`]. Each chunk lands in `.partial/` as a safetensors file plus a
//! `.sha256` sidecar written after it; a chunk counts as done only when both exist, the file hashes to the
//! sidecar and it was made from the same inputs. A killed run therefore redoes at most the chunk it was in.
//! [`StoreWriter::finish`] assembles one file per layer, writes the manifest last and removes `.partial/`.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use ndarray::{ArrayD, Axis, IxDyn};

use super::format::{self, F32Tensor, MappedFile};
use super::manifest::{self, LayerEntry, Manifest, Provenance, SampleEntry, ShardInfo};
use super::{ActivationStore, Error, ACTS};
use crate::fsx;

/// What a store (or one shard of it) will hold.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreSpec {
    pub provenance: Provenance,
    /// How the layer indices are to be read; `model::LAYER_CONVENTION` for transformer decoders.
    pub layer_convention: String,
    /// `(layer index, hook name)`, in the order they are stored.
    pub layers: Vec<(usize, String)>,
    /// The samples this store holds, in order.
    pub samples: Vec<SampleEntry>,
    pub shard: Option<ShardInfo>,
}

impl StoreSpec {
    /// SHA-256 over everything that determines the stored numbers and layout.
    fn inputs_sha256(&self, chunk_size: usize) -> String {
        let key = serde_json::json!({
            "format_version": manifest::FORMAT_VERSION,
            "provenance": self.provenance,
            "layer_convention": self.layer_convention,
            "layers": self.layers,
            "samples": self.samples,
            "shard": self.shard,
            "chunk_size": chunk_size,
        });
        fsx::sha256_hex(key.to_string().as_bytes())
    }
}

/// A block of consecutive samples processed and saved together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub index: usize,
    /// Sample positions within this store's `samples`.
    pub range: Range<usize>,
}

pub struct StoreWriter {
    dir: PathBuf,
    spec: StoreSpec,
    chunk_size: usize,
    inputs_sha256: String,
    done: Vec<bool>,
    /// Per-layer sample shape (without the sample axis), fixed by the first chunk.
    sample_shapes: BTreeMap<usize, Vec<usize>>,
    /// Per layer index, the transformers module of the point ([`StoreWriter::with_modules`]).
    modules: BTreeMap<usize, String>,
    /// Per sample, its prompt layout ([`StoreWriter::set_tokens`]).
    tokens: Option<Vec<manifest::SampleTokens>>,
    /// Held while this writer may write (none when the store was already finished).
    lock: Option<fsx::DirLock>,
}

impl StoreWriter {
    /// Opens `dir` for writing `spec` in chunks of `chunk_size` samples, resuming finished chunks of an
    /// earlier run with the same inputs. Fails if `dir` already holds a finished store of other inputs.
    pub fn create(dir: &Path, spec: StoreSpec, chunk_size: usize) -> crate::store::Result<Self> {
        assert!(chunk_size > 0, "chunk size must be positive");
        if spec.layers.is_empty() {
            return Err(Error::Manifest { msg: "no layers requested".into() });
        }
        let inputs_sha256 = spec.inputs_sha256(chunk_size);
        let n_chunks = spec.samples.len().div_ceil(chunk_size);
        let mut writer = StoreWriter {
            dir: dir.to_path_buf(),
            spec,
            chunk_size,
            inputs_sha256,
            done: vec![false; n_chunks],
            sample_shapes: BTreeMap::new(),
            modules: BTreeMap::new(),
            tokens: None,
            lock: None,
        };
        writer.check_existing_store()?;
        // A finished store of these inputs is only read: no lock taken, no `.partial/` made, so a re-run over
        // it works on read-only media and leaves the tree as it was.
        if writer.is_complete() {
            writer.tidy_finished();
            return Ok(writer);
        }
        writer.lock = Some(fsx::DirLock::acquire(dir, "extract")?);
        // The holder of the lock may have finished between the check above and taking the lock.
        if writer.is_complete() {
            return Ok(writer);
        }
        fsx::remove_stale_temps(dir)?;
        fsx::remove_stale_temps(&dir.join(".partial"))?;
        fsx::create_dir_all(&dir.join(".partial"))?;
        writer.scan_partial()?;
        Ok(writer)
    }

    /// Records, per layer index, the transformers module path of the stored point in the manifest.
    pub fn with_modules(mut self, modules: BTreeMap<usize, String>) -> Self {
        self.modules = modules;
        self
    }

    /// Records each sample's prompt layout (one entry per sample, in order) in the manifest.
    pub fn set_tokens(&mut self, tokens: Vec<manifest::SampleTokens>) {
        self.tokens = Some(tokens);
    }

    /// Removes what a run killed between writing `manifest.json` and removing `.partial/` left in a finished
    /// store. Best effort and only when there is something to remove, so a clean finished store is never
    /// written to (read-only media keep any leftovers).
    fn tidy_finished(&self) {
        let partial = self.dir.join(".partial");
        if partial.exists() {
            if let Ok(_lock) = fsx::DirLock::acquire(&self.dir, "extract") {
                let _ = std::fs::remove_dir_all(&partial);
            }
        }
        fsx::DirLock::tidy(&self.dir);
    }

    /// True when `dir` already holds a finished store made from exactly these inputs.
    pub fn is_complete(&self) -> bool {
        self.existing_manifest().ok().flatten().is_some_and(|m| self.same_inputs(&m))
    }

    fn existing_manifest(&self) -> crate::store::Result<Option<Manifest>> {
        let path = self.dir.join("manifest.json");
        if !path.exists() {
            return Ok(None);
        }
        Ok(Some(fsx::read_json(&path)?))
    }

    fn same_inputs(&self, m: &Manifest) -> bool {
        m.provenance == self.spec.provenance
            && m.layer_convention == self.spec.layer_convention
            && m.samples == self.spec.samples
            && m.shard == self.spec.shard
            && m.layers.iter().map(|l| (l.index, l.hook.clone())).collect::<Vec<_>>() == self.spec.layers
    }

    fn check_existing_store(&self) -> crate::store::Result<()> {
        match self.existing_manifest() {
            Ok(Some(m)) if !self.same_inputs(&m) => Err(Error::Conflict {
                path: self.dir.clone(),
                msg: "its manifest differs in model, stimuli, settings, layers or samples".into(),
            }),
            Ok(_) => Ok(()),
            // An unreadable manifest is never trusted: it will be rewritten by `finish`.
            Err(_) => Ok(()),
        }
    }

    fn chunk_path(&self, index: usize) -> PathBuf {
        self.dir.join(".partial").join(format!("chunk_{index:05}.safetensors"))
    }

    fn sidecar_path(&self, index: usize) -> PathBuf {
        self.dir.join(".partial").join(format!("chunk_{index:05}.sha256"))
    }

    /// Marks chunks done whose files are whole, match their checksum and came from the same inputs.
    fn scan_partial(&mut self) -> crate::store::Result<()> {
        for index in 0..self.done.len() {
            let (path, sidecar) = (self.chunk_path(index), self.sidecar_path(index));
            if !path.exists() || !sidecar.exists() {
                continue;
            }
            let expected = fsx::read_to_string(&sidecar)?;
            let ok = fsx::sha256_file(&path)? == expected.trim()
                && MappedFile::open(&path)
                    .and_then(|f| f.metadata())
                    .is_ok_and(|m| m.get("inputs_sha256") == Some(&self.inputs_sha256));
            if ok {
                self.done[index] = true;
            } else {
                tracing::warn!(chunk = index, "discarding chunk that is truncated, corrupt or from other inputs");
                let _ = std::fs::remove_file(&sidecar);
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(())
    }

    /// All chunks, in order.
    pub fn chunks(&self) -> Vec<Chunk> {
        (0..self.done.len())
            .map(|index| {
                let start = index * self.chunk_size;
                Chunk { index, range: start..(start + self.chunk_size).min(self.spec.samples.len()) }
            })
            .collect()
    }

    /// Chunks still to compute.
    pub fn pending_chunks(&self) -> Vec<Chunk> {
        if self.is_complete() {
            return Vec::new();
        }
        self.chunks().into_iter().filter(|c| !self.done[c.index]).collect()
    }

    /// The samples this writer stores.
    pub fn samples(&self) -> &[SampleEntry] {
        &self.spec.samples
    }

    /// Saves the activations of `chunk`: for every requested layer index, an array whose first axis is the
    /// chunk's samples. Rejects missing layers, wrong sample counts, inconsistent shapes and NaN/Inf (naming
    /// the layer and the sample).
    pub fn write_chunk(&mut self, chunk: &Chunk, acts: &BTreeMap<usize, ArrayD<f32>>) -> crate::store::Result<()> {
        let n = chunk.range.len();
        let mut tensors = Vec::with_capacity(self.spec.layers.len());
        let names: Vec<String> = self.spec.layers.iter().map(|(i, _)| format!("layer.{i}")).collect();
        let mut owned = Vec::with_capacity(self.spec.layers.len());
        let mut chunk_shapes = BTreeMap::new();
        for (index, hook) in &self.spec.layers {
            let a = acts.get(index).ok_or_else(|| Error::Mismatch {
                what: format!("activations for chunk {}", chunk.index),
                expected: format!("layer {index} ({hook})"),
                got: format!("layers {:?}", acts.keys().collect::<Vec<_>>()),
            })?;
            if a.shape().first() != Some(&n) {
                return Err(Error::Mismatch {
                    what: format!("layer {index} sample count in chunk {}", chunk.index),
                    expected: n.to_string(),
                    got: format!("shape {:?}", a.shape()),
                });
            }
            let sample_shape = a.shape()[1..].to_vec();
            match self.sample_shapes.get(index) {
                None => {
                    chunk_shapes.insert(*index, sample_shape.clone());
                }
                Some(s) if *s != sample_shape => {
                    return Err(Error::Mismatch {
                        what: format!("per-sample shape of layer {index}"),
                        expected: format!("{s:?} (as in earlier chunks)"),
                        got: format!("{sample_shape:?}"),
                    })
                }
                Some(_) => {}
            }
            if let Some((s, v)) = first_non_finite(a) {
                return Err(Error::NonFinite {
                    layer: *index,
                    hook: hook.clone(),
                    sample: self.spec.samples[chunk.range.start + s].id.clone(),
                    value: v,
                    hint: super::non_finite_hint(self.spec.provenance.settings.get("dtype").map(String::as_str)),
                });
            }
            owned.push((a.shape().to_vec(), a.as_standard_layout().iter().copied().collect::<Vec<f32>>()));
        }
        for (name, (shape, data)) in names.iter().zip(&owned) {
            tensors.push(F32Tensor { name, shape, data });
        }
        let mut meta = BTreeMap::new();
        meta.insert("inputs_sha256".to_string(), self.inputs_sha256.clone());
        meta.insert("range".to_string(), format!("{}..{}", chunk.range.start, chunk.range.end));
        let path = self.chunk_path(chunk.index);
        let bytes = format::serialize_f32(&tensors, &meta);
        fsx::write_atomic(&path, &bytes)?;
        fsx::write_atomic(&self.sidecar_path(chunk.index), fsx::sha256_hex(&bytes).as_bytes())?;
        self.done[chunk.index] = true;
        for (index, shape) in chunk_shapes {
            self.sample_shapes.entry(index).or_insert(shape);
        }
        Ok(())
    }

    /// Assembles the layer files and the manifest. Every chunk must be done.
    pub fn finish(self) -> crate::store::Result<ActivationStore> {
        if self.is_complete() {
            return ActivationStore::open(&self.dir);
        }
        if let Some(missing) = self.done.iter().position(|d| !d) {
            return Err(Error::Mismatch {
                what: "finished chunks".into(),
                expected: format!("all {} chunks", self.done.len()),
                got: format!("chunk {missing} missing"),
            });
        }
        let files: Vec<MappedFile> =
            (0..self.done.len()).map(|c| MappedFile::open(&self.chunk_path(c))).collect::<crate::store::Result<_>>()?;
        let n = self.spec.samples.len();
        let mut layers = Vec::with_capacity(self.spec.layers.len());
        for (index, hook) in &self.spec.layers {
            let mut data = Vec::new();
            let mut sample_shape: Option<Vec<usize>> = None;
            for (c, f) in files.iter().enumerate() {
                let (shape, values) = f.read_f32(&format!("layer.{index}"))?;
                if sample_shape.as_ref().is_some_and(|s| s[..] != shape[1..]) {
                    return Err(Error::Corrupt {
                        path: self.chunk_path(c),
                        msg: format!(
                            "layer {index} has per-sample shape {:?}, other chunks {sample_shape:?}",
                            &shape[1..]
                        ),
                    });
                }
                sample_shape = Some(shape[1..].to_vec());
                data.extend_from_slice(&values);
            }
            let sample_shape = sample_shape.unwrap_or_default();
            let mut shape = vec![n];
            shape.extend_from_slice(&sample_shape);
            let mut entry = write_layer(&self.dir, *index, hook, &shape, &data)?;
            entry.module = self.modules.get(index).cloned();
            layers.push(entry);
        }
        drop(files);
        write_manifest(
            &self.dir,
            &self.spec.provenance,
            &self.spec.layer_convention,
            layers,
            self.spec.samples.clone(),
            self.spec.shard,
            self.tokens,
        )?;
        let _ = std::fs::remove_dir_all(self.dir.join(".partial"));
        let store = ActivationStore::open(&self.dir);
        drop(self.lock);
        store
    }
}

/// Writes one layer file and returns its manifest entry. The file's bytes depend only on the layer and its
/// data, so a merge reproduces a single run's files exactly.
pub(crate) fn write_layer(
    dir: &Path,
    index: usize,
    hook: &str,
    shape: &[usize],
    data: &[f32],
) -> crate::store::Result<LayerEntry> {
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), manifest::FORMAT.to_string());
    meta.insert("hook".to_string(), hook.to_string());
    meta.insert("layer".to_string(), index.to_string());
    let bytes = format::serialize_f32(&[F32Tensor { name: ACTS, shape, data }], &meta);
    let file = manifest::layer_file_name(index);
    fsx::write_atomic(&dir.join(&file), &bytes)?;
    let component = hook.parse::<crate::model::HookPoint>().ok().map(|p| p.component().as_str().to_string());
    Ok(LayerEntry {
        index,
        hook: hook.to_string(),
        file,
        shape: shape.to_vec(),
        sha256: fsx::sha256_hex(&bytes),
        component,
        module: None,
    })
}

pub(crate) fn write_manifest(
    dir: &Path,
    provenance: &Provenance,
    layer_convention: &str,
    layers: Vec<LayerEntry>,
    samples: Vec<SampleEntry>,
    shard: Option<ShardInfo>,
    tokens: Option<Vec<manifest::SampleTokens>>,
) -> crate::store::Result<Manifest> {
    let manifest = Manifest {
        format: manifest::FORMAT.to_string(),
        format_version: manifest::FORMAT_VERSION,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        layer_convention: layer_convention.to_string(),
        provenance: provenance.clone(),
        dtype: "f32".to_string(),
        d_model: uniform_width(&layers),
        layers,
        samples,
        shard,
        tokens,
    };
    manifest.validate()?;
    fsx::write_json(&dir.join("manifest.json"), &manifest)?;
    Ok(manifest)
}

/// The common last dimension of all layers, or `None` when they differ (e.g. an autoencoder's layers).
fn uniform_width(layers: &[LayerEntry]) -> Option<usize> {
    let first = layers.first()?.shape.last().copied();
    layers.iter().all(|l| l.shape.last().copied() == first).then_some(first).flatten()
}

/// `(sample position, value)` of the first NaN/Inf along axis 0.
pub(crate) fn first_non_finite(a: &ArrayD<f32>) -> Option<(usize, f32)> {
    if a.iter().all(|v| v.is_finite()) {
        return None;
    }
    a.axis_iter(Axis(0)).enumerate().find_map(|(s, row)| row.iter().find(|v| !v.is_finite()).map(|v| (s, *v)))
}

/// Convenience for callers holding plain rows: stacks `[n][d]` into an `[n, d]` array.
pub fn stack_rows(rows: &[Vec<f32>]) -> ArrayD<f32> {
    let d = rows.first().map_or(0, Vec::len);
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    ArrayD::from_shape_vec(IxDyn(&[rows.len(), d]), flat).expect("rows of equal width")
}
