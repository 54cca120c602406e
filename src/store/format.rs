//! Reading safetensors files of the store. Writing is [`crate::tensor_file`]'s (deterministic bytes); reading
//! goes through the `safetensors` crate over an mmap, so any conforming file (e.g. one written by Python) reads.

use std::collections::BTreeMap;
use std::path::Path;

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use super::Error;
pub use crate::tensor_file::{serialize_f32, serialize_raw, F32Tensor, RawTensor};

/// A memory-mapped safetensors file. Reading a tensor touches only that tensor's pages.
pub struct MappedFile {
    path: std::path::PathBuf,
    mmap: Mmap,
}

impl MappedFile {
    pub fn open(path: &Path) -> crate::store::Result<Self> {
        let file = crate::fsx::open_regular(path)?;
        // SAFETY: the store never modifies a file in place (every write is temp + rename), so the mapping
        // cannot change under us unless another program truncates the file, which the length checks in
        // `SafeTensors::deserialize` and the checksum catch.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| crate::fsx::Error::io("cannot mmap", path, e))?;
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
