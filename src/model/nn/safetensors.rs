//! Safetensors checkpoints, for every model family: one `model.safetensors` or many shards listed in
//! `model.safetensors.index.json`. Every header is parsed (and sanity-checked against the file size) before any
//! weight is read, so a bad file names the tensor at fault.
//!
//! Weights are read with positioned reads straight into the tensors' own buffers rather than memory-mapped:
//! candle's CPU tensors own their memory, so a mapping only adds the file's resident pages on top of that copy
//! (peak RSS twice the weights); reading gives a peak of about the weights (plus one tensor when casting).

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;

use crate::model::Error;

const INDEX_FILE: &str = "model.safetensors.index.json";
const SINGLE_FILE: &str = "model.safetensors";

/// Fills `buf` from `offset` without moving a shared cursor.
#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

/// Where one tensor's bytes are.
#[derive(Debug, Clone)]
pub struct Entry {
    file: usize,
    dtype: DType,
    pub shape: Vec<usize>,
    /// Absolute byte offset in the file and length.
    offset: u64,
    len: usize,
}

/// The parsed headers of every shard, with the files kept open for positioned reads.
pub struct Shards {
    files: Vec<(PathBuf, File)>,
    /// Every tensor by its stored name.
    pub index: HashMap<String, Entry>,
}

#[derive(serde::Deserialize)]
struct HeaderEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

/// Refuses headers larger than this (a corrupt length prefix would otherwise allocate gigabytes).
const MAX_HEADER_BYTES: u64 = 100 << 20;

impl Shards {
    /// Opens `paths` and parses their headers.
    pub fn open(paths: &[PathBuf]) -> Result<Self, Error> {
        let mut files = Vec::with_capacity(paths.len());
        let mut index = HashMap::new();
        for (i, path) in paths.iter().enumerate() {
            let bad = |msg: String| Error::Checkpoint {
                path: path.clone(),
                msg: format!("not a readable safetensors file ({msg}); re-download this shard"),
            };
            let file = crate::fsx::open_regular(path).map_err(|e| bad(e.to_string()))?;
            let file_len = file.metadata().map_err(|e| bad(e.to_string()))?.len();
            let mut len8 = [0u8; 8];
            read_at(&file, &mut len8, 0).map_err(|e| bad(format!("no header: {e}")))?;
            let n = u64::from_le_bytes(len8);
            if n > MAX_HEADER_BYTES || 8 + n > file_len {
                return Err(bad(format!("header length {n} does not fit a file of {file_len} bytes")));
            }
            let mut header = vec![0u8; n as usize];
            read_at(&file, &mut header, 8).map_err(|e| bad(e.to_string()))?;
            let map: HashMap<String, serde_json::Value> =
                serde_json::from_slice(&header).map_err(|e| bad(format!("header is not json: {e}")))?;
            let data_start = 8 + n;
            for (name, v) in map {
                if name == "__metadata__" {
                    continue;
                }
                let h: HeaderEntry = serde_json::from_value(v).map_err(|e| bad(format!("entry `{name}`: {e}")))?;
                let dtype = match h.dtype.as_str() {
                    "F32" => DType::F32,
                    "BF16" => DType::BF16,
                    "F16" => DType::F16,
                    other => return Err(bad(format!("tensor `{name}` has dtype {other}; expected F32, BF16 or F16"))),
                };
                let [start, end] = h.data_offsets;
                let want = h.shape.iter().product::<usize>() * dtype.size_in_bytes();
                if end < start || (end - start) as usize != want || data_start + end > file_len {
                    return Err(bad(format!(
                        "tensor `{name}` has offsets {start}..{end}, inconsistent with its shape or the file size"
                    )));
                }
                index.insert(name, Entry { file: i, dtype, shape: h.shape, offset: data_start + start, len: want });
            }
            files.push((path.clone(), file));
        }
        Ok(Shards { files, index })
    }

    /// Reads one tensor by its stored name, cast to `dtype` on `device`.
    pub fn read(&self, name: &str, dtype: DType, device: &Device) -> candle_core::Result<Tensor> {
        let e = self.index.get(name).ok_or_else(|| candle_core::Error::Msg(format!("no tensor `{name}`")))?;
        let (path, file) = &self.files[e.file];
        let io =
            |err: std::io::Error| candle_core::Error::Msg(format!("reading `{name}` from {}: {err}", path.display()));
        let t = if e.dtype == DType::F32 {
            // Read straight into the f32 buffer the tensor will own: no intermediate copy.
            let mut buf = vec![0f32; e.len / 4];
            // SAFETY: f32 has no invalid bit patterns, the byte view covers exactly the vector's initialised
            // elements, and safetensors stores little-endian data, which is what these targets use.
            let bytes = unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr() as *mut u8, e.len) };
            read_at(file, bytes, e.offset).map_err(io)?;
            Tensor::from_vec(buf, e.shape.as_slice(), &Device::Cpu)?
        } else {
            let mut bytes = vec![0u8; e.len];
            read_at(file, &mut bytes, e.offset).map_err(io)?;
            Tensor::from_raw_buffer(&bytes, e.dtype, &e.shape, &Device::Cpu)?
        };
        t.to_dtype(dtype)?.to_device(device)
    }
}

impl SimpleBackend for Shards {
    fn get(&self, s: Shape, name: &str, _: candle_nn::Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let t = self.read(name, dtype, dev)?;
        if t.shape() != &s {
            candle_core::bail!("tensor `{name}` has shape {:?}, expected {:?}", t.dims(), s.dims());
        }
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.read(name, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }
}

/// The safetensors files of a directory: the shards named by the index, or the single file.
pub fn shard_files(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let err = |path: &Path, msg: String| Error::Checkpoint { path: path.to_path_buf(), msg };
    if !dir.is_dir() {
        return Err(err(dir, "not a directory; expected a checkpoint folder with config.json and safetensors".into()));
    }
    let index = dir.join(INDEX_FILE);
    if index.exists() {
        let text = std::fs::read_to_string(&index).map_err(|e| err(&index, format!("cannot read: {e}")))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| err(&index, format!("not json: {e}")))?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| err(&index, "no `weight_map` object".into()))?;
        let names: BTreeSet<&str> = map.values().filter_map(|f| f.as_str()).collect();
        let files: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
        if let Some(missing) = files.iter().find(|f| !f.exists()) {
            return Err(err(missing, format!("shard listed in {INDEX_FILE} is missing; download it again")));
        }
        if files.is_empty() {
            return Err(err(&index, "the weight map lists no files".into()));
        }
        return Ok(files);
    }
    let single = dir.join(SINGLE_FILE);
    if single.exists() {
        return Ok(vec![single]);
    }
    Err(err(dir, format!("neither {INDEX_FILE} nor {SINGLE_FILE} found")))
}
