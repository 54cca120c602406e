//! Deterministic safetensors files.
//!
//! The `safetensors` crate serialises `__metadata__` from a `HashMap`, so two runs writing the same tensors
//! can produce different bytes. huescan promises that a sharded-then-merged store is byte-identical to a
//! single run, so it writes the (simple) format itself: an 8-byte little-endian header length, a JSON header
//! with sorted keys padded with spaces to a multiple of 8, then the raw little-endian data. Reading goes
//! through the `safetensors` crate over an mmap, so any conforming file (e.g. one written by Python) reads.

use std::collections::BTreeMap;
use std::path::Path;

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use serde_json::json;

use super::Error;

/// One f32 tensor to write.
pub struct F32Tensor<'a> {
    pub name: &'a str,
    pub shape: &'a [usize],
    pub data: &'a [f32],
}

/// Serialises tensors (f32) and string metadata into safetensors bytes, deterministically.
pub fn serialize_f32(tensors: &[F32Tensor<'_>], metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let mut order: Vec<&F32Tensor<'_>> = tensors.iter().collect();
    order.sort_by_key(|t| t.name);
    for t in &order {
        assert_eq!(t.shape.iter().product::<usize>(), t.data.len(), "tensor `{}` shape/data mismatch", t.name);
    }
    let entries: Vec<(&str, &str, &[usize], usize)> =
        order.iter().map(|t| (t.name, "F32", t.shape, t.data.len() * 4)).collect();
    let (mut out, total) = header(&entries, metadata);
    out.reserve(total);
    for t in &order {
        extend_le(&mut out, t.data);
    }
    out
}

/// One tensor given as its little-endian bytes and safetensors dtype name (`F64`, `F32`, ...).
pub struct RawTensor<'a> {
    pub name: &'a str,
    pub dtype: &'static str,
    pub shape: &'a [usize],
    pub bytes: &'a [u8],
}

/// Like [`serialize_f32`] for tensors of any dtype, given as bytes: the same sorted, padded header, so
/// outputs such as `projection.safetensors` are byte-identical across runs.
pub fn serialize_raw(tensors: &[RawTensor<'_>], metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let mut order: Vec<&RawTensor<'_>> = tensors.iter().collect();
    order.sort_by_key(|t| t.name);
    let entries: Vec<(&str, &str, &[usize], usize)> =
        order.iter().map(|t| (t.name, t.dtype, t.shape, t.bytes.len())).collect();
    let (mut out, total) = header(&entries, metadata);
    out.reserve(total);
    for t in &order {
        out.extend_from_slice(t.bytes);
    }
    out
}

/// The length prefix and JSON header for `(name, dtype, shape, byte length)` entries in file order, and the
/// total data length.
fn header(entries: &[(&str, &str, &[usize], usize)], metadata: &BTreeMap<String, String>) -> (Vec<u8>, usize) {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert("__metadata__".into(), json!(metadata));
    }
    let mut offset = 0usize;
    for &(name, dtype, shape, bytes) in entries {
        header.insert(
            name.to_string(),
            json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    // serde_json's Map is a BTreeMap without the `preserve_order` feature, so keys come out sorted.
    let mut header = serde_json::to_vec(&serde_json::Value::Object(header)).expect("plain JSON");
    while header.len() % 8 != 0 {
        header.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + header.len());
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    (out, offset)
}

/// Appends `data` as little-endian bytes.
fn extend_le(out: &mut Vec<u8>, data: &[f32]) {
    #[cfg(target_endian = "little")]
    {
        // SAFETY: f32 has no padding and any byte pattern is a valid u8; on a little-endian target the
        // in-memory bytes are exactly the file's little-endian encoding.
        let bytes = unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), size_of_val(data)) };
        out.extend_from_slice(bytes);
    }
    #[cfg(not(target_endian = "little"))]
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// A memory-mapped safetensors file. Reading a tensor touches only that tensor's pages.
pub struct MappedFile {
    path: std::path::PathBuf,
    mmap: Mmap,
}

impl MappedFile {
    pub fn open(path: &Path) -> crate::Result<Self> {
        let file = crate::fsx::open_regular(path)?;
        // SAFETY: the store never modifies a file in place (every write is temp + rename), so the mapping
        // cannot change under us unless another program truncates the file, which the length checks in
        // `SafeTensors::deserialize` and the checksum catch.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| crate::Error::io("cannot mmap", path, e))?;
        Ok(MappedFile { path: path.to_path_buf(), mmap })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.mmap
    }

    fn parse(&self) -> Result<SafeTensors<'_>, Error> {
        SafeTensors::deserialize(&self.mmap)
            .map_err(|e| Error::Corrupt { path: self.path.clone(), msg: format!("not a valid safetensors file ({e})") })
    }

    /// Names of the tensors in the file.
    pub fn names(&self) -> Result<Vec<String>, Error> {
        Ok(self.parse()?.names().into_iter().map(String::from).collect())
    }

    /// Reads tensor `name` as f32 (F32, F16, BF16 and F64 are converted), with its shape.
    pub fn read_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), Error> {
        let st = self.parse()?;
        let view = st
            .tensor(name)
            .map_err(|_| Error::Corrupt { path: self.path.clone(), msg: format!("has no tensor `{name}`") })?;
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            Dtype::F64 => {
                data.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32).collect()
            }
            Dtype::F16 => data.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            Dtype::BF16 => data.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            other => {
                return Err(Error::Corrupt {
                    path: self.path.clone(),
                    msg: format!("tensor `{name}` has dtype {other:?}; expected F32, F16, BF16 or F64"),
                })
            }
        };
        Ok((view.shape().to_vec(), values))
    }

    /// The `__metadata__` map.
    pub fn metadata(&self) -> Result<BTreeMap<String, String>, Error> {
        let (_, meta) = SafeTensors::read_metadata(&self.mmap)
            .map_err(|e| Error::Corrupt { path: self.path.clone(), msg: format!("unreadable header ({e})") })?;
        Ok(meta.metadata().clone().map(|m| m.into_iter().collect()).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_is_deterministic() {
        let data = vec![1.0f32, -2.5, 3.25, f32::MIN_POSITIVE, 0.0, 7.0];
        let mut meta = BTreeMap::new();
        meta.insert("z".to_string(), "last".to_string());
        meta.insert("a".to_string(), "first".to_string());
        let t = [F32Tensor { name: "acts", shape: &[2, 3], data: &data }];
        let a = serialize_f32(&t, &meta);
        let b = serialize_f32(&t, &meta);
        assert_eq!(a, b);
        let header_len = u64::from_le_bytes(a[..8].try_into().unwrap()) as usize;
        assert_eq!(header_len % 8, 0);
        let st = SafeTensors::deserialize(&a).unwrap();
        let v = st.tensor("acts").unwrap();
        assert_eq!(v.shape(), &[2, 3]);
        assert_eq!(v.data().len(), 24);
        let dir = std::env::temp_dir().join(format!("huescan-fmt-{}", std::process::id()));
        let path = dir.join("x.safetensors");
        crate::fsx::write_atomic(&path, &a).unwrap();
        let m = MappedFile::open(&path).unwrap();
        assert_eq!(m.read_f32("acts").unwrap(), (vec![2, 3], data));
        assert_eq!(m.metadata().unwrap(), meta);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
