//! llama.cpp control vectors (GGUF v3), written and read back.
//!
//! Layout, as `common_control_vector_load_one` and `llama_adapter_cvec` read it: `general.architecture =
//! controlvector`, `controlvector.model_hint` (string), `controlvector.layer_count` (u32, the number of
//! direction tensors, as repeng writes it), and 1-D F32 tensors `direction.{k}` of length n_embd. llama.cpp adds
//! `direction.{k}` to the output of block `k` (0-based, right after the block's final residual add), at every
//! position, and rejects `k = 0` (its buffer has no slot for block 0).
//!
//! huescan's layer index `i` (HF `hidden_states[i]`) is the output of block `l = i - 1`, hook
//! `blocks.{l}.hook_resid_post`, so a vector steered at index `i` is exported as `direction.{i-1}`. Only
//! `hook_resid_post` vectors of blocks 1.. can be exported; anything else is a clear error rather than a silently
//! shifted file. Note that llama.cpp applies the vector at *every* position, whatever the recipe's positions:
//! the file records the positions the sweep steered (`huescan.positions`), and `huescan steer --gguf` warns
//! when they are not `all`.
//!
//! `controlvector.model_hint` is the model's llama.cpp architecture name (what `general.architecture` of the
//! model's own GGUF says, and what llama.cpp's `cvector-generator` copies), e.g. `qwen2vl` for Qwen2.5-VL;
//! see [`llama_cpp_architecture`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::{Error, SteeringVector};
use crate::model::{HookPoint, Model};

pub const ARCHITECTURE: &str = "controlvector";
const MAGIC: &[u8; 4] = b"GGUF";
const VERSION: u32 = 3;
const ALIGNMENT: usize = 32;
const TYPE_U32: u32 = 4;
const TYPE_STRING: u32 = 8;
const GGML_TYPE_F32: u32 = 0;

/// The llama.cpp architecture name of a Hugging Face `model_type`, as llama.cpp's `convert_hf_to_gguf.py`
/// maps it (Qwen2-VL and Qwen2.5-VL both convert to `qwen2vl`); `None` where llama.cpp has none.
pub fn llama_cpp_architecture(model_type: &str) -> Option<&'static str> {
    match model_type {
        "qwen2_5_vl" | "qwen2_vl" => Some("qwen2vl"),
        "qwen2" => Some("qwen2"),
        "llama" => Some("llama"),
        _ => None,
    }
}

/// The llama.cpp architecture of `model`'s text decoder ([`llama_cpp_architecture`] of its `model_type`), the
/// `controlvector.model_hint` of its control vectors; `None` for a model llama.cpp has no architecture for.
pub fn model_hint(model: &dyn Model) -> Option<&'static str> {
    model.text_output().and_then(|t| llama_cpp_architecture(t.model_type()))
}

/// What [`write_per_vector`] wrote and what it left out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Export {
    /// The files written, in the order of the vectors.
    pub written: Vec<PathBuf>,
    /// Why vectors were left out (block 0, points that are no block output): each reason once, sorted.
    pub left_out: BTreeSet<String>,
    /// The steered positions of the written vectors, each once, sorted; llama.cpp steers every position, so
    /// any but `all` means something else in llama.cpp than in the sweep.
    pub positions: BTreeSet<String>,
}

/// One llama.cpp control vector per steering vector, `dir/{stem}.gguf` ([`super::Recipe::file_stem`]):
/// llama.cpp applies every direction in a file at once, and a sweep measures one layer at a time. Vectors
/// llama.cpp cannot apply (block 0, non-block points) are left out, with the reason in [`Export::left_out`].
pub fn write_per_vector(dir: &Path, vectors: &[SteeringVector], model_hint: &str) -> crate::steer::Result<Export> {
    let mut export = Export::default();
    for v in vectors {
        match block_index(&v.recipe.hook) {
            Ok(_) => {
                let path = dir.join(format!("{}.gguf", v.recipe.file_stem()));
                crate::fsx::write_atomic(&path, &to_bytes(&[v], model_hint)?)?;
                export.written.push(path);
                export.positions.insert(v.recipe.positions.clone());
            }
            Err(e) => {
                export.left_out.insert(e.to_string());
            }
        }
    }
    Ok(export)
}

/// The metadata key holding the token positions the vectors were steered at (`image`, `all`, `last`, `i,j`).
pub const POSITIONS_KEY: &str = "huescan.positions";

/// A metadata value of the kinds huescan writes.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U32(u32),
    String(String),
}

/// A parsed control-vector file.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlVector {
    pub metadata: BTreeMap<String, Value>,
    /// llama.cpp block index `k` → direction `[n_embd]`.
    pub directions: BTreeMap<usize, Vec<f32>>,
}

impl ControlVector {
    /// The huescan hook point of `direction.{k}`: `blocks.{k}.hook_resid_post`.
    pub fn hook_point(k: usize) -> HookPoint {
        HookPoint::ResidPost(k)
    }
}

/// llama.cpp's block index for a vector steered at `hook`: `k` for `blocks.{k}.hook_resid_post`, `k >= 1`.
pub fn block_index(hook: &str) -> Result<usize, Error> {
    match hook.parse::<HookPoint>() {
        Ok(HookPoint::ResidPost(0)) => Err(Error::Gguf {
            msg: "the vector is steered at blocks.0.hook_resid_post (layer index 1); llama.cpp cannot apply a \
                  control vector to block 0 (`direction.0` is rejected); steer at layer index 2 or later"
                .into(),
        }),
        Ok(HookPoint::ResidPost(k)) => Ok(k),
        _ => Err(Error::Gguf {
            msg: format!(
                "the vector is steered at `{hook}`; llama.cpp control vectors only act on block outputs \
                 (`blocks.{{k}}.hook_resid_post`, layer index k + 1)"
            ),
        }),
    }
}

/// Serialises `vectors` (all of one width, at distinct blocks) as a control-vector GGUF, with each vector's
/// recipe as `huescan.direction.{k}.recipe` metadata (llama.cpp ignores it).
pub fn to_bytes(vectors: &[&SteeringVector], model_hint: &str) -> Result<Vec<u8>, Error> {
    to_bytes_with(vectors, model_hint, true)
}

/// [`to_bytes`], optionally without the recipes: then the bytes equal what llama.cpp's `gguf` Python package
/// writes for the same vectors the way repeng exports them (checked against a fixture it wrote).
pub fn to_bytes_with(vectors: &[&SteeringVector], model_hint: &str, recipes: bool) -> Result<Vec<u8>, Error> {
    let first = vectors.first().ok_or_else(|| Error::Gguf { msg: "no vectors given".into() })?;
    let d = first.d_model();
    let mut by_block: BTreeMap<usize, &SteeringVector> = BTreeMap::new();
    for v in vectors {
        if v.d_model() != d {
            return Err(Error::Width { what: format!("vector at `{}`", v.recipe.hook), expected: d, got: v.d_model() });
        }
        let k = block_index(&v.recipe.hook)?;
        if by_block.insert(k, v).is_some() {
            return Err(Error::Gguf { msg: format!("two vectors at block {k}; export one per layer") });
        }
    }
    let mut kv: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(ARCHITECTURE.into())),
        (format!("{ARCHITECTURE}.model_hint"), Value::String(model_hint.into())),
        (format!("{ARCHITECTURE}.layer_count"), Value::U32(by_block.len() as u32)),
    ];
    // Ignored by llama.cpp; keeps the provenance with the file.
    if recipes {
        let positions = &first.recipe.positions;
        if let Some(v) = vectors.iter().find(|v| &v.recipe.positions != positions) {
            return Err(Error::Gguf {
                msg: format!(
                    "the vectors were steered at different positions (`{positions}` and `{}`); export one file per \
                     position mode",
                    v.recipe.positions
                ),
            });
        }
        kv.push((POSITIONS_KEY.into(), Value::String(positions.clone())));
    }
    for (k, v) in by_block.iter().filter(|_| recipes) {
        let recipe = serde_json::to_string(&v.recipe).expect("plain data");
        kv.push((format!("huescan.direction.{k}.recipe"), Value::String(recipe)));
    }
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(by_block.len() as u64).to_le_bytes());
    out.extend_from_slice(&(kv.len() as u64).to_le_bytes());
    for (key, value) in &kv {
        put_string(&mut out, key);
        match value {
            Value::U32(x) => {
                out.extend_from_slice(&TYPE_U32.to_le_bytes());
                out.extend_from_slice(&x.to_le_bytes());
            }
            Value::String(s) => {
                out.extend_from_slice(&TYPE_STRING.to_le_bytes());
                put_string(&mut out, s);
            }
        }
    }
    let stride = (d * 4).div_ceil(ALIGNMENT) * ALIGNMENT;
    for (i, k) in by_block.keys().enumerate() {
        put_string(&mut out, &format!("direction.{k}"));
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&(d as u64).to_le_bytes());
        out.extend_from_slice(&GGML_TYPE_F32.to_le_bytes());
        out.extend_from_slice(&((i * stride) as u64).to_le_bytes());
    }
    pad(&mut out);
    for v in by_block.values() {
        for x in &v.vector {
            out.extend_from_slice(&x.to_le_bytes());
        }
        pad(&mut out);
    }
    Ok(out)
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn pad(out: &mut Vec<u8>) {
    while out.len() % ALIGNMENT != 0 {
        out.push(0);
    }
}

/// Parses a control-vector GGUF (the subset of GGUF v3 that control vectors use: scalar and string metadata,
/// 1-D F32 tensors). Written independently of [`to_bytes`] from the GGUF spec, so the round trip checks both.
pub fn from_bytes(bytes: &[u8]) -> Result<ControlVector, Error> {
    let bad = |msg: &str| Error::Gguf { msg: format!("not a readable control vector: {msg}") };
    let mut r = Reader { bytes, pos: 0 };
    if r.take(4).ok_or_else(|| bad("truncated"))? != MAGIC {
        return Err(bad("no GGUF magic"));
    }
    let version = r.u32().ok_or_else(|| bad("truncated"))?;
    if !(2..=3).contains(&version) {
        return Err(bad(&format!("GGUF version {version}, expected 2 or 3")));
    }
    let n_tensors = r.u64().ok_or_else(|| bad("truncated"))? as usize;
    let n_kv = r.u64().ok_or_else(|| bad("truncated"))? as usize;
    let mut metadata = BTreeMap::new();
    let mut alignment = ALIGNMENT;
    for _ in 0..n_kv {
        let key = r.string().ok_or_else(|| bad("truncated key"))?;
        let ty = r.u32().ok_or_else(|| bad("truncated"))?;
        let value = match ty {
            TYPE_U32 => Value::U32(r.u32().ok_or_else(|| bad("truncated"))?),
            TYPE_STRING => Value::String(r.string().ok_or_else(|| bad("truncated string"))?),
            other => return Err(bad(&format!("metadata `{key}` has type {other}, which control vectors do not use"))),
        };
        if key == "general.alignment" {
            if let Value::U32(a) = value {
                alignment = a as usize;
            }
        }
        metadata.insert(key, value);
    }
    let mut infos = Vec::with_capacity(n_tensors);
    for _ in 0..n_tensors {
        let name = r.string().ok_or_else(|| bad("truncated tensor name"))?;
        let n_dims = r.u32().ok_or_else(|| bad("truncated"))?;
        let dims: Vec<u64> = (0..n_dims).map(|_| r.u64()).collect::<Option<_>>().ok_or_else(|| bad("truncated"))?;
        let ty = r.u32().ok_or_else(|| bad("truncated"))?;
        let offset = r.u64().ok_or_else(|| bad("truncated"))? as usize;
        if ty != GGML_TYPE_F32 || dims.len() != 1 {
            return Err(bad(&format!("tensor `{name}` is not a 1-D F32 tensor")));
        }
        infos.push((name, dims[0] as usize, offset));
    }
    let data_start = r.pos.div_ceil(alignment) * alignment;
    let mut directions = BTreeMap::new();
    for (name, len, offset) in infos {
        let k: usize = name
            .strip_prefix("direction.")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(&format!("tensor `{name}` is not named `direction.<block>`")))?;
        let start = data_start + offset;
        let raw =
            bytes.get(start..start + 4 * len).ok_or_else(|| bad(&format!("tensor `{name}` runs past the end")))?;
        let v = raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        directions.insert(k, v);
    }
    Ok(ControlVector { metadata, directions })
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let s = self.bytes.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn string(&mut self) -> Option<String> {
        let n = self.u64()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}
