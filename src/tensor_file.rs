//! Deterministic safetensors bytes, for every writer (stores, steering vectors, projections, the autoencoder's
//! weights).
//!
//! The `safetensors` crate serialises `__metadata__` from a `HashMap`, so two runs writing the same tensors
//! can produce different bytes. huescan promises that a sharded-then-merged store is byte-identical to a
//! single run, so it writes the (simple) format itself: an 8-byte little-endian header length, a JSON header
//! with sorted keys padded with spaces to a multiple of 8, then the raw little-endian data. A leaf module:
//! writing needs nothing of any stage, so the model can save weights without depending on the store.

use std::collections::BTreeMap;

use serde_json::json;

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
