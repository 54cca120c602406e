//! Rendering a spec to PNG files plus `stimuli.json`: flat colours, procedural textures (see `texture`) and
//! hue-rotated photos; per-image seeds; pixel measurements recorded in the manifest.
//!
//! Photo mode, precisely: a photo's *dominant hue* `d` is the circular mean HSV hue of its chromatic pixels
//! (after resizing). For target hue `t` every pixel with `s > 0` gets hue `h + (t − d)` and keeps its own `s`
//! and `v`; greys stay as they are. The photo's internal hue contrasts survive, and its dominant hue becomes
//! `t` (circular means commute with rotation), so the label means the same thing it means for textured sets.
//!
//! Determinism: every image depends only on (spec, hue, variant) through its own ChaCha8 seed, never on thread
//! scheduling, so debug and release builds, any thread count and any shard give the same bytes (tested; the
//! debug and release renders of wild-360 were compared byte for byte). Across operating systems the one
//! caveat is the platform `libm` (`exp`, `sin`, `powf`, ...), which may differ in the last bit; that changes a
//! pixel only when a value lands within ~1e-13 of an 8-bit rounding boundary.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use image::codecs::png::{CompressionType, FilterType as PngFilter, PngEncoder};
use image::{ExtendedColorType, ImageEncoder, RgbImage};
use rayon::prelude::*;

use super::manifest::{decimals_needed, stimulus_id, StimulusManifest, StimulusRecord, MANIFEST_FORMAT};
use super::spec::{Kind, StimulusSpec, MDEG_PER_DEG};
use super::texture::render_textured;
use super::Error;
use crate::colour::{
    circular_mean_deg, f64_to_rgb8, hsv_of_rgb8, hsv_to_rgb, linear_srgb_to_oklab, oklab_to_oklch, oklch_to_srgb,
    rgb8_to_f64, rgb_to_hsv, signed_hue_delta_deg, srgb_to_linear, srgb_to_oklch, wrap_deg, ChromaticThreshold, Hsv,
    Oklch,
};
use crate::fsx;

/// A photo's chromatic hues must have a mean resultant length at least this (1 = one hue, 0 = spread evenly).
pub const MIN_PHOTO_RESULTANT: f64 = 0.1;

/// Options the caller (the CLI) adds to a spec.
#[derive(Default)]
pub struct RenderOptions<'a> {
    /// Overrides a photo spec's `[photo] dir`.
    pub photos: Option<PathBuf>,
    /// Called as `progress(done, total)` after each image is written, from worker threads.
    pub progress: Option<&'a (dyn Fn(usize, usize) + Sync)>,
}

/// One image to render: its place in the set and everything needed to draw it alone.
#[derive(Debug, Clone, PartialEq)]
pub struct Stimulus {
    pub id: String,
    pub file: String,
    pub hue_mdeg: i64,
    pub variant: u32,
    pub seed: u64,
}

impl Stimulus {
    pub fn hue_deg(&self) -> f64 {
        self.hue_mdeg as f64 / MDEG_PER_DEG as f64
    }
}

/// A photo prepared for hue rotation: resized pixels and dominant hue.
pub struct Photo {
    pub file: String,
    pub sha256: String,
    pub image: RgbImage,
    pub dominant_hue_deg: f64,
}

/// The seed of one image: the first 8 bytes (little-endian) of
/// `SHA-256("huescan-stimuli-v1" ‖ spec seed ‖ hue in milli-degrees ‖ variant)`, all integers little-endian.
/// Any image can thus be rendered alone, and shards render identically to a whole run.
pub fn image_seed(spec_seed: u64, hue_mdeg: i64, variant: u32) -> u64 {
    let mut bytes = b"huescan-stimuli-v1".to_vec();
    bytes.extend_from_slice(&spec_seed.to_le_bytes());
    bytes.extend_from_slice(&hue_mdeg.to_le_bytes());
    bytes.extend_from_slice(&variant.to_le_bytes());
    let hex = fsx::sha256_hex(&bytes);
    let first: [u8; 8] = std::array::from_fn(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex digest"));
    u64::from_le_bytes(first)
}

/// The stimuli of a spec in manifest order (hue, then variant). `n_variants` is the spec's `variants`, or the
/// number of photos for a photo set.
pub fn stimuli(spec: &StimulusSpec, n_variants: u32) -> Vec<Stimulus> {
    let hues = spec.hue_mdegs();
    let decimals = decimals_needed(&hues);
    let suffix = n_variants > 1 || matches!(spec.kind, Kind::Photo { .. });
    hues.iter()
        .flat_map(|&h| (0..n_variants).map(move |v| (h, v)))
        .map(|(hue_mdeg, variant)| {
            let id = stimulus_id(hue_mdeg, decimals, suffix.then_some(variant));
            Stimulus {
                file: format!("{id}.png"),
                id,
                hue_mdeg,
                variant,
                seed: image_seed(spec.seed, hue_mdeg, variant),
            }
        })
        .collect()
}

/// The flat colour for one hue, as 8-bit sRGB.
///
/// HSV: `colorsys.hsv_to_rgb` rounded to nearest. OKLCH: of the 8 floor/ceil neighbours of the exact colour,
/// the one whose OKLCH hue is closest to the label (ties: nearest in OKLab). Plain rounding misses the hue by
/// up to ~0.45° at C = 0.125; this choice keeps it under ~0.33° while L and C stay within one quantisation
/// step (±0.003).
pub fn flat_colour(kind: &Kind, hue_deg: f64) -> Option<[u8; 3]> {
    match *kind {
        Kind::FlatHsv { saturation, value } => Some(f64_to_rgb8(hsv_to_rgb(Hsv { hue_deg, s: saturation, v: value }))),
        Kind::FlatOklch { lightness, chroma } => {
            let target = Oklch { l: lightness, c: chroma, hue_deg };
            let exact = oklch_to_srgb(target)?.map(|c| c * 255.0);
            let target_lab = crate::colour::oklch_to_oklab(target);
            let mut best: Option<((f64, f64), [u8; 3])> = None;
            for corner in 0..8u32 {
                let px: [u8; 3] = std::array::from_fn(|k| {
                    let c = if corner >> k & 1 == 1 { exact[k].ceil() } else { exact[k].floor() };
                    c.clamp(0.0, 255.0) as u8
                });
                let lab = linear_srgb_to_oklab(rgb8_to_f64(px).map(srgb_to_linear));
                let lch = oklab_to_oklch(lab);
                let dist = (0..3).map(|k| (lab[k] - target_lab[k]).powi(2)).sum::<f64>();
                let key = (signed_hue_delta_deg(hue_deg, lch.hue_deg).abs(), dist);
                if best.is_none_or(|(b, _)| key < b) {
                    best = Some((key, px));
                }
            }
            best.map(|(_, px)| px)
        }
        Kind::Textured(_) | Kind::Photo { .. } => None,
    }
}

/// Lists the photos of `dir` (`.png`, `.jpg`, `.jpeg`, any case; sorted by name), resizes each to fill
/// `width × height` (centre crop, Lanczos3) and finds its dominant hue.
pub fn load_photos(dir: &Path, width: u32, height: u32) -> crate::stimuli::Result<Vec<Photo>> {
    if !dir.is_dir() {
        return Err(Error::PhotoDirMissing { path: Some(dir.to_path_buf()) });
    }
    let entries = std::fs::read_dir(dir).map_err(|e| fsx::Error::io("cannot list", dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| fsx::Error::io("cannot list", dir, e))?.path();
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        if path.is_file() && matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg")) {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(Error::NoPhotos { dir: dir.to_path_buf() });
    }
    files
        .par_iter()
        .map(|path| {
            let bytes = fsx::read(path)?;
            check_jpeg_complete(path, &bytes)?;
            let decoded = image::load_from_memory(&bytes)
                .map_err(|e| Error::PhotoUnreadable { path: path.clone(), message: e.to_string() })?;
            let image = decoded.resize_to_fill(width, height, image::imageops::FilterType::Lanczos3).to_rgb8();
            let thr = ChromaticThreshold::default();
            let hues: Vec<(f64, f64)> = image
                .pixels()
                .map(|p| hsv_of_rgb8(p.0))
                .filter(|hsv| thr.is_chromatic(*hsv))
                .map(|hsv| (hsv.hue_deg, 1.0))
                .collect();
            if hues.is_empty() {
                return Err(Error::PhotoAchromatic { path: path.clone() });
            }
            let (dominant_hue_deg, r) = circular_mean_deg(hues).unwrap_or((0.0, 0.0));
            // With hues spread all round the circle the mean direction is noise, and so would be the labels.
            if r < MIN_PHOTO_RESULTANT {
                return Err(Error::PhotoNoDominantHue { path: path.clone(), r, min: MIN_PHOTO_RESULTANT });
            }
            let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            Ok(Photo { file, sha256: fsx::sha256_hex(&bytes), image, dominant_hue_deg })
        })
        .collect()
}

/// The JPEG decoder fills a truncated file's missing rows with grey and reports success, which would bake grey
/// into every stimulus made from the photo; a complete JPEG ends with the end-of-image marker `FF D9`
/// (trailing zero padding allowed), so one that does not is refused with the file named.
fn check_jpeg_complete(path: &Path, bytes: &[u8]) -> crate::stimuli::Result<()> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Ok(());
    }
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    if bytes[..end].ends_with(&[0xFF, 0xD9]) {
        return Ok(());
    }
    Err(Error::PhotoUnreadable {
        path: path.to_path_buf(),
        message: "the JPEG is truncated (no end-of-image marker); re-copy or re-export it".into(),
    })
}

/// Rotates every pixel's HSV hue by `target − dominant`, keeping each pixel's saturation and value.
pub fn hue_rotate(photo: &Photo, target_hue_deg: f64) -> RgbImage {
    let shift = signed_hue_delta_deg(photo.dominant_hue_deg, target_hue_deg);
    let mut out = photo.image.clone();
    for px in out.pixels_mut() {
        let hsv = rgb_to_hsv(rgb8_to_f64(px.0));
        if hsv.s > 0.0 {
            px.0 = f64_to_rgb8(hsv_to_rgb(Hsv { hue_deg: hsv.hue_deg + shift, ..hsv }));
        }
    }
    out
}

/// Draws one stimulus. `photos` must hold the loaded photos for a photo spec (variant = photo index).
pub fn render_one(spec: &StimulusSpec, stimulus: &Stimulus, photos: &[Photo]) -> RgbImage {
    let hue = stimulus.hue_deg();
    match &spec.kind {
        Kind::FlatHsv { .. } | Kind::FlatOklch { .. } => {
            let px = flat_colour(&spec.kind, hue).expect("spec validation checked the gamut of every hue");
            RgbImage::from_pixel(spec.width, spec.height, image::Rgb(px))
        }
        Kind::Textured(params) => render_textured(params, spec.width, spec.height, hue, stimulus.seed),
        Kind::Photo { .. } => hue_rotate(&photos[stimulus.variant as usize], hue),
    }
}

/// What a written image measures as: see [`StimulusRecord`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    pub hsv_hue_deg: f64,
    pub oklch_hue_deg: f64,
    pub oklch_l: f64,
    pub oklch_c: f64,
    pub chromatic_fraction: f64,
}

/// Measures an 8-bit image. `None` when no pixel is chromatic or the chromatic hues cancel.
pub fn measure(img: &RgbImage, thr: ChromaticThreshold) -> Option<Measured> {
    let n = (img.width() as usize * img.height() as usize).max(1);
    let (mut hsv_hues, mut ok_hues) = (Vec::new(), Vec::new());
    let (mut sum_l, mut sum_c) = (0.0, 0.0);
    for px in img.pixels() {
        let lch = srgb_to_oklch(rgb8_to_f64(px.0));
        sum_l += lch.l;
        sum_c += lch.c;
        let hsv = hsv_of_rgb8(px.0);
        if thr.is_chromatic(hsv) {
            hsv_hues.push((hsv.hue_deg, 1.0));
            ok_hues.push((lch.hue_deg, lch.c));
        }
    }
    let chromatic_fraction = hsv_hues.len() as f64 / n as f64;
    let (hsv_hue_deg, _) = circular_mean_deg(hsv_hues)?;
    let (oklch_hue_deg, _) = circular_mean_deg(ok_hues)?;
    // Rounded to 1e-6 so stimuli.json reads cleanly; no measurement here is that precise anyway. A hue that
    // rounds up to 360 wraps to 0.
    let r = |x: f64| (x * 1e6).round() / 1e6;
    Some(Measured {
        hsv_hue_deg: wrap_deg(r(hsv_hue_deg)),
        oklch_hue_deg: wrap_deg(r(oklch_hue_deg)),
        oklch_l: r(sum_l / n as f64),
        oklch_c: r(sum_c / n as f64),
        chromatic_fraction: r(chromatic_fraction),
    })
}

/// Encodes as PNG with fixed settings (default deflate, adaptive filter, no metadata) so that equal pixels
/// give equal bytes.
pub fn encode_png(img: &RgbImage) -> Vec<u8> {
    let mut buf = Vec::new();
    PngEncoder::new_with_quality(&mut buf, CompressionType::Default, PngFilter::Adaptive)
        .write_image(img.as_raw(), img.width(), img.height(), ExtendedColorType::Rgb8)
        .expect("encoding an in-memory RGB8 buffer cannot fail");
    buf
}

/// Renders every stimulus of `spec` into `out_dir` (created if needed) and writes `stimuli.json` last, so a
/// folder with a manifest is complete. Files are written atomically; images render in parallel (rayon).
///
/// Refuses an `out_dir` holding `hue_*.png` files that this set would not write, so two sets never mix.
pub fn render(spec: &StimulusSpec, out_dir: &Path, opts: &RenderOptions) -> crate::stimuli::Result<StimulusManifest> {
    let photos = match &spec.kind {
        Kind::Photo { dir } => {
            let dir = opts.photos.clone().or_else(|| dir.clone()).ok_or(Error::PhotoDirMissing { path: None })?;
            load_photos(&dir, spec.width, spec.height)?
        }
        _ => Vec::new(),
    };
    let n_variants = if photos.is_empty() { spec.variants } else { photos.len() as u32 };
    let list = stimuli(spec, n_variants);
    check_unique_files(&spec.origin, &list)?;
    check_out_dir(out_dir, &list)?;
    fsx::create_dir_all(out_dir)?;
    fsx::remove_stale_temps(out_dir)?;

    let thr = ChromaticThreshold::default();
    let done = AtomicUsize::new(0);
    let total = list.len();
    let records = list
        .par_iter()
        .map(|s| {
            let img = render_one(spec, s, &photos);
            let measured = measure(&img, thr).ok_or_else(|| Error::Achromatic { id: s.id.clone() })?;
            let png = encode_png(&img);
            fsx::write_atomic(&out_dir.join(&s.file), &png)?;
            if let Some(progress) = opts.progress {
                progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
            }
            let photo = photos.get(s.variant as usize);
            Ok(StimulusRecord {
                id: s.id.clone(),
                file: s.file.clone(),
                hue_deg: s.hue_deg(),
                hsv_hue_deg: measured.hsv_hue_deg,
                oklch_hue_deg: measured.oklch_hue_deg,
                oklch_l: measured.oklch_l,
                oklch_c: measured.oklch_c,
                chromatic_fraction: measured.chromatic_fraction,
                variant: s.variant,
                seed: s.seed,
                seed_string: s.seed.to_string(),
                sha256: fsx::sha256_hex(&png),
                source: photo.map(|p| p.file.clone()),
                source_sha256: photo.map(|p| p.sha256.clone()),
            })
        })
        .collect::<crate::stimuli::Result<Vec<_>>>()?;

    let manifest = StimulusManifest {
        format: MANIFEST_FORMAT.to_string(),
        spec_name: spec.name.clone(),
        spec_sha256: spec.sha256.clone(),
        kind: spec.kind.name().to_string(),
        width: spec.width,
        height: spec.height,
        chromatic_min_s: thr.min_s,
        chromatic_min_v: thr.min_v,
        stimuli: records,
    };
    manifest.write(out_dir)?;
    Ok(manifest)
}

/// Two stimuli written to one file would silently overwrite each other (a 1e16 hue step once made 394 of
/// 1001 do so, with exit 0).
fn check_unique_files(origin: &Path, list: &[Stimulus]) -> Result<(), Error> {
    let mut names = HashSet::new();
    match list.iter().find(|s| !names.insert(s.file.as_str())) {
        None => Ok(()),
        Some(dup) => Err(Error::SpecInvalid {
            path: origin.to_path_buf(),
            field: "hues",
            message: format!("two stimuli would both be written to `{}`; use a grid whose hues differ", dup.file),
        }),
    }
}

fn check_out_dir(out_dir: &Path, list: &[Stimulus]) -> crate::stimuli::Result<()> {
    let Ok(entries) = std::fs::read_dir(out_dir) else { return Ok(()) };
    let ours: HashSet<&str> = list.iter().map(|s| s.file.as_str()).collect();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("hue_") && name.ends_with(".png") && !ours.contains(name.as_str()) {
            return Err(Error::OutDirInUse { dir: out_dir.to_path_buf(), file: name });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_stimuli_sharing_a_file_are_refused() {
        let s =
            |hue_mdeg: i64, file: &str| Stimulus { id: file.into(), file: file.into(), hue_mdeg, variant: 0, seed: 0 };
        assert!(check_unique_files(Path::new("t.toml"), &[s(0, "hue_0.png"), s(1, "hue_1.png")]).is_ok());
        let e = check_unique_files(Path::new("t.toml"), &[s(0, "hue_0.png"), s(1, "hue_0.png")]).unwrap_err();
        assert!(e.to_string().contains("two stimuli would both be written to `hue_0.png`"), "{e}");
    }

    #[test]
    fn image_seeds_differ_by_hue_variant_and_spec_seed() {
        let a = image_seed(0, 6000, 0);
        assert_eq!(a, image_seed(0, 6000, 0));
        assert_ne!(a, image_seed(0, 6000, 1));
        assert_ne!(a, image_seed(0, 7000, 0));
        assert_ne!(a, image_seed(1, 6000, 0));
    }

    #[test]
    fn oklch_flat_colour_keeps_hue_within_half_a_degree_over_the_circle() {
        let kind = Kind::FlatOklch { lightness: 0.75, chroma: 0.125 };
        for h10 in 0..3600 {
            let hue = h10 as f64 / 10.0;
            let px = flat_colour(&kind, hue).unwrap();
            let lch = srgb_to_oklch(rgb8_to_f64(px));
            assert!(signed_hue_delta_deg(hue, lch.hue_deg).abs() < 0.35, "hue {hue}: {lch:?}");
            assert!((lch.l - 0.75).abs() < 0.004 && (lch.c - 0.125).abs() < 0.004, "hue {hue}: {lch:?}");
        }
    }
}
