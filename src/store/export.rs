//! Exports for the tools researchers already use: a NumPy `.npz` of a store (what smds, scikit-learn and
//! plain numpy read) and a Hugging Face `datasets` image folder of a stimulus set (`metadata.jsonl` next to
//! the images, what `load_dataset("imagefolder", data_dir=…)` reads).
//!
//! The `.npz` is written by hand: a ZIP archive of stored (uncompressed) `.npy` files, NPY format 1.0, with a
//! fixed timestamp so the same store always gives the same bytes. Arrays, by name (pick layers by name, never
//! by position: a `--layers 0,2` store has no `X_1`):
//!
//! - `X_{index}`: float32 `[n_samples, d]` (or `[n_samples, pos, d]` for token stores), one per layer index;
//! - `hue_deg`: float64 `[n_samples]`; `sample_id`: unicode `[n_samples]`;
//! - `layer_index`: int64 `[n_layers]` and `hook`: unicode `[n_layers]`, in the same order.

use std::fmt::Write as _;
use std::path::Path;

use super::ActivationStore;
use crate::stimuli::StimulusManifest;

/// One array of the archive: its NPY dtype descriptor, shape and little-endian bytes.
struct Npy {
    name: String,
    descr: String,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl Npy {
    fn bytes(&self) -> Vec<u8> {
        let shape = match self.shape.as_slice() {
            [n] => format!("({n},)"),
            dims => format!("({})", dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
        };
        let mut header = format!("{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}", self.descr);
        // magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple of 64, ending '\n'.
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&self.data);
        out
    }

    /// A unicode array (`<U{width}`, UTF-32 little-endian, padded with NULs), which numpy loads without pickle.
    fn strings(name: &str, values: &[String]) -> Npy {
        let width = values.iter().map(|s| s.chars().count()).max().unwrap_or(0).max(1);
        let mut data = Vec::with_capacity(values.len() * width * 4);
        for s in values {
            let n = s.chars().count();
            for c in s.chars() {
                data.extend_from_slice(&(c as u32).to_le_bytes());
            }
            data.extend(std::iter::repeat_n(0u8, (width - n) * 4));
        }
        Npy { name: name.into(), descr: format!("<U{width}"), shape: vec![values.len()], data }
    }
}

/// CRC-32 (IEEE 802.3, as ZIP uses).
fn crc32(bytes: &[u8]) -> u32 {
    let mut table = [0u32; 256];
    for (i, t) in table.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
        }
        *t = c;
    }
    !bytes.iter().fold(!0u32, |c, &b| table[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8))
}

/// A stored ZIP archive of `files` (name, bytes). Refuses archives past the 4 GiB that ZIP without zip64 holds.
fn zip(files: &[(String, Vec<u8>)]) -> crate::store::Result<Vec<u8>> {
    // 1980-01-01 00:00, the earliest DOS date: a fixed stamp keeps the bytes identical across runs.
    const DOS_DATE: u16 = 0x21;
    let too_big = || crate::store::Error::Export {
        msg: "the export is larger than 4 GiB, which an .npz without zip64 cannot hold; export fewer layers \
                  (--layers)"
            .into(),
    };
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in files {
        let offset = u32::try_from(out.len()).map_err(|_| too_big())?;
        let size = u32::try_from(data.len()).map_err(|_| too_big())?;
        let crc = crc32(data);
        let common = |v: &mut Vec<u8>| {
            v.extend_from_slice(&20u16.to_le_bytes()); // version needed: 2.0
            v.extend_from_slice(&0u16.to_le_bytes()); // flags
            v.extend_from_slice(&0u16.to_le_bytes()); // method: stored
            v.extend_from_slice(&0u16.to_le_bytes()); // time
            v.extend_from_slice(&DOS_DATE.to_le_bytes());
            v.extend_from_slice(&crc.to_le_bytes());
            v.extend_from_slice(&size.to_le_bytes());
            v.extend_from_slice(&size.to_le_bytes());
            v.extend_from_slice(&(name.len() as u16).to_le_bytes());
            v.extend_from_slice(&0u16.to_le_bytes()); // extra length
        };
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        common(&mut out);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes()); // version made by
        common(&mut central);
        central.extend_from_slice(&[0u8; 6]); // comment length, disk number, internal attributes
        central.extend_from_slice(&0u32.to_le_bytes()); // external attributes
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd_offset = u32::try_from(out.len()).map_err(|_| too_big())?;
    let cd_size = central.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0u8; 4]); // disk numbers
    out.extend_from_slice(&(files.len() as u16).to_le_bytes());
    out.extend_from_slice(&(files.len() as u16).to_le_bytes());
    out.extend_from_slice(&cd_size.to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    Ok(out)
}

/// Writes `layers` of `store` (every stored layer when empty) and its labels as an `.npz` at `path`; returns
/// the array names.
pub fn write_npz(store: &ActivationStore, layers: &[usize], path: &Path) -> crate::store::Result<Vec<String>> {
    let m = store.manifest();
    let layers: Vec<usize> = if layers.is_empty() { store.layer_indices() } else { layers.to_vec() };
    let mut arrays = Vec::new();
    let mut hooks = Vec::new();
    for &index in &layers {
        let x = store.layer(index)?;
        hooks.push(m.layer(index)?.hook.clone());
        let data = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        arrays.push(Npy { name: format!("X_{index}"), descr: "<f4".into(), shape: x.shape().to_vec(), data });
    }
    let hue = store.hue_deg();
    arrays.push(Npy {
        name: "hue_deg".into(),
        descr: "<f8".into(),
        shape: vec![hue.len()],
        data: hue.iter().flat_map(|v| v.to_le_bytes()).collect(),
    });
    arrays.push(Npy::strings("sample_id", &store.sample_ids()));
    arrays.push(Npy {
        name: "layer_index".into(),
        descr: "<i8".into(),
        shape: vec![layers.len()],
        data: layers.iter().flat_map(|&l| (l as i64).to_le_bytes()).collect(),
    });
    arrays.push(Npy::strings("hook", &hooks));
    let names: Vec<String> = arrays.iter().map(|a| a.name.clone()).collect();
    let files: Vec<(String, Vec<u8>)> = arrays.iter().map(|a| (format!("{}.npy", a.name), a.bytes())).collect();
    crate::fsx::write_atomic(path, &zip(&files)?)?;
    Ok(names)
}

/// Copies the stimulus set in `stimuli` (checked against its `stimuli.json`) to `out` as a Hugging Face
/// `datasets` image folder: the PNGs plus `metadata.jsonl`, one line per image with `file_name` and every
/// label. Seeds are written as strings, so readers that parse numbers as doubles (JavaScript, jq) keep every
/// digit. Returns the number of images.
pub fn write_datasets_folder(stimuli: &Path, out: &Path) -> crate::store::Result<usize> {
    let m = StimulusManifest::load(stimuli)?;
    crate::fsx::create_dir_all(out)?;
    let mut lines = String::new();
    for r in &m.stimuli {
        let bytes = crate::fsx::read(&r.path(stimuli))?;
        crate::fsx::write_atomic(&out.join(&r.file), &bytes)?;
        let row = serde_json::json!({
            "file_name": r.file,
            "id": r.id,
            "hue_deg": r.hue_deg,
            "hsv_hue_deg": r.hsv_hue_deg,
            "oklch_hue_deg": r.oklch_hue_deg,
            "oklch_l": r.oklch_l,
            "oklch_c": r.oklch_c,
            "chromatic_fraction": r.chromatic_fraction,
            "variant": r.variant,
            "seed": r.seed.to_string(),
            "sha256": r.sha256,
            "set": m.spec_name,
        });
        let _ = writeln!(lines, "{}", serde_json::to_string(&row).expect("plain JSON"));
    }
    crate::fsx::write_atomic(&out.join("metadata.jsonl"), lines.as_bytes())?;
    Ok(m.stimuli.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_and_npy_headers_follow_their_specs() {
        // The check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        let a = Npy { name: "x".into(), descr: "<f4".into(), shape: vec![2, 3], data: vec![0; 24] };
        let b = a.bytes();
        assert_eq!(&b[..8], b"\x93NUMPY\x01\x00");
        let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        let header = std::str::from_utf8(&b[10..10 + hlen]).unwrap();
        assert!(
            header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }") && header.ends_with('\n')
        );
        let s = Npy::strings("id", &["ab".into(), "é".into()]);
        assert_eq!(s.descr, "<U2");
        assert_eq!(s.data, [97, 0, 0, 0, 98, 0, 0, 0, 0xE9, 0, 0, 0, 0, 0, 0, 0]);
    }
}
