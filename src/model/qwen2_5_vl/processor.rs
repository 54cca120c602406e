//! The Qwen2-VL image processor: `smart_resize`, bicubic resize, rescale + normalise, temporal duplication and
//! the merge-aware patch flattening that the vision tower expects (`pixel_values` of shape
//! `(grid_t·grid_h·grid_w, C·T·P·P)` plus `image_grid_thw`).
//!
//! Images are taken as `RgbImage`: an RGBA source must be converted by the caller (transformers' `convert("RGB")`
//! drops alpha); EXIF orientation is not applied, as in a plain `PIL.Image.open`.

use image::imageops::FilterType;
use image::RgbImage;

use super::config::ProcessorConfig;
use super::resize::resize_bicubic_pil;
use crate::model::Error;

/// Above this aspect ratio transformers refuses the image; so do we.
const MAX_ASPECT_RATIO: f64 = 200.0;

/// Output size `(height, width)` of `smart_resize`: both sides multiples of `factor`, area within
/// `[min_pixels, max_pixels]`, aspect ratio kept as closely as possible. Rounding is Python's half-to-even.
pub fn smart_resize(
    height: usize,
    width: usize,
    factor: usize,
    min_pixels: usize,
    max_pixels: usize,
) -> Result<(usize, usize), Error> {
    let what = format!("of {width}x{height} px");
    if height < factor || width < factor {
        return Err(Error::Image {
            what,
            msg: format!("both sides must be at least {factor} px (patch size x merge size); upscale it first"),
        });
    }
    let ratio = height.max(width) as f64 / height.min(width) as f64;
    if ratio > MAX_ASPECT_RATIO {
        return Err(Error::Image {
            what,
            msg: format!("aspect ratio {ratio:.1} exceeds {MAX_ASPECT_RATIO}; crop it to a less extreme shape"),
        });
    }
    let (h, w, f) = (height as f64, width as f64, factor as f64);
    let mut h_bar = (h / f).round_ties_even() as usize * factor;
    let mut w_bar = (w / f).round_ties_even() as usize * factor;
    if h_bar * w_bar > max_pixels {
        let beta = (h * w / max_pixels as f64).sqrt();
        h_bar = factor.max((h / beta / f).floor() as usize * factor);
        w_bar = factor.max((w / beta / f).floor() as usize * factor);
    } else if h_bar * w_bar < min_pixels {
        let beta = (min_pixels as f64 / (h * w)).sqrt();
        h_bar = (h * beta / f).ceil() as usize * factor;
        w_bar = (w * beta / f).ceil() as usize * factor;
    }
    Ok((h_bar, w_bar))
}

/// One preprocessed image.
#[derive(Debug, Clone)]
pub struct ProcessedImage {
    /// Row-major `(n_patches, patch_dim)`, f32, normalised.
    pub pixel_values: Vec<f32>,
    pub n_patches: usize,
    pub patch_dim: usize,
    /// `[grid_t, grid_h, grid_w]` in patches.
    pub grid_thw: [usize; 3],
}

impl ProcessedImage {
    /// Number of `<|image_pad|>` tokens (merged vision tokens) this image takes in the prompt.
    pub fn n_tokens(&self, merge_size: usize) -> usize {
        self.grid_thw.iter().product::<usize>() / (merge_size * merge_size)
    }
}

/// Which bicubic implementation resizes images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResizeFilter {
    /// Pillow's fixed-point BICUBIC, bit for bit: what transformers' PIL image processor does.
    #[default]
    PilBicubic,
    /// The `image` crate's CatmullRom: the same kernel, float arithmetic, vertical pass first; up to a few
    /// levels off Pillow on noisy images.
    CatmullRom,
}

/// The image processor of a checkpoint (`preprocessor_config.json`).
#[derive(Debug, Clone)]
pub struct ImageProcessor {
    pub cfg: ProcessorConfig,
    pub filter: ResizeFilter,
}

impl ImageProcessor {
    pub fn new(cfg: ProcessorConfig) -> Self {
        ImageProcessor { cfg, filter: ResizeFilter::default() }
    }

    /// The resized size `(height, width)` for an image of `(height, width)`.
    pub fn target_size(&self, height: usize, width: usize) -> Result<(usize, usize), Error> {
        let c = &self.cfg;
        smart_resize(height, width, c.patch_size * c.merge_size, c.min_pixels, c.max_pixels)
    }

    /// Resizes with [`Self::filter`] (bicubic) when the size is not already right, then turns the image into
    /// patches.
    pub fn preprocess(&self, img: &RgbImage) -> Result<ProcessedImage, Error> {
        let (h, w) = self.target_size(img.height() as usize, img.width() as usize)?;
        if (h, w) == (img.height() as usize, img.width() as usize) {
            Ok(self.patchify(img))
        } else {
            let resized = match self.filter {
                ResizeFilter::PilBicubic => resize_bicubic_pil(img, w as u32, h as u32),
                ResizeFilter::CatmullRom => image::imageops::resize(img, w as u32, h as u32, FilterType::CatmullRom),
            };
            Ok(self.patchify(&resized))
        }
    }

    /// Normalises an image already at a valid size and flattens it into patches. Row order: `t`, merged block row,
    /// merged block column, row within the block, column within the block; column order inside a row:
    /// channel, frame, pixel row, pixel column (transformers' 9-D transpose `(0,3,6,4,7,2,1,5,8)`).
    pub fn patchify(&self, img: &RgbImage) -> ProcessedImage {
        let c = &self.cfg;
        let (p, m, tp) = (c.patch_size, c.merge_size, c.temporal_patch_size);
        let (h, w) = (img.height() as usize, img.width() as usize);
        debug_assert!(h % (p * m) == 0 && w % (p * m) == 0);
        let (gh, gw) = (h / p, w / p);
        let chans = 3;
        let patch_dim = chans * tp * p * p;
        let n = gh * gw;
        // One image is one frame, repeated to fill the temporal patch, so every frame reads the same pixels.
        let mut norm = vec![0f32; chans * h * w];
        for (x, y, px) in img.enumerate_pixels() {
            for ch in 0..chans {
                let v = px.0[ch] as f32 * c.rescale_factor;
                norm[(ch * h + y as usize) * w + x as usize] = (v - c.image_mean[ch]) / c.image_std[ch];
            }
        }
        let mut out = vec![0f32; n * patch_dim];
        let mut row = 0;
        for hb in 0..gh / m {
            for wb in 0..gw / m {
                for mh in 0..m {
                    for mw in 0..m {
                        let (y0, x0) = ((hb * m + mh) * p, (wb * m + mw) * p);
                        let dst = &mut out[row * patch_dim..(row + 1) * patch_dim];
                        for ch in 0..chans {
                            for t in 0..tp {
                                for py in 0..p {
                                    let src = (ch * h + y0 + py) * w + x0;
                                    let off = ((ch * tp + t) * p + py) * p;
                                    dst[off..off + p].copy_from_slice(&norm[src..src + p]);
                                }
                            }
                        }
                        row += 1;
                    }
                }
            }
        }
        ProcessedImage { pixel_values: out, n_patches: n, patch_dim, grid_thw: [1, gh, gw] }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 12_845_056;

    #[test]
    fn smart_resize_matches_the_spec_table() {
        let cases = [
            ((480, 640), MAX, (476, 644)),
            ((294, 294), MAX, (280, 280)),
            ((350, 350), MAX, (336, 336)),
            ((448, 448), MAX, (448, 448)),
            ((50, 50), MAX, (56, 56)),
            ((1080, 1920), MAX, (1092, 1932)),
            ((1080, 1920), 1_003_520, (728, 1316)),
            ((3000, 4000), MAX, (2996, 4004)),
            ((126, 182), MAX, (112, 168)),
        ];
        for ((h, w), max, want) in cases {
            assert_eq!(smart_resize(h, w, 28, 3136, max).unwrap(), want, "{h}x{w} max {max}");
        }
    }

    #[test]
    fn tiny_and_extreme_images_are_rejected_with_a_reason() {
        let e = smart_resize(27, 100, 28, 3136, MAX).unwrap_err().to_string();
        assert!(e.contains("at least 28 px"), "{e}");
        let e = smart_resize(28, 28 * 201, 28, 3136, MAX).unwrap_err().to_string();
        assert!(e.contains("aspect ratio"), "{e}");
    }

    #[test]
    fn patch_rows_are_merge_blocks_in_raster_order_and_columns_are_c_t_y_x() {
        let proc = ImageProcessor::new(ProcessorConfig {
            image_mean: [0.0; 3],
            image_std: [1.0; 3],
            rescale_factor: 1.0,
            ..ProcessorConfig::default()
        });
        // 56 x 84: grid 4 x 6 patches; pixel value encodes (channel, y, x) so every element can be located.
        let img = RgbImage::from_fn(84, 56, |x, y| {
            image::Rgb([(x % 14) as u8, (y % 14) as u8, ((y / 14) * 6 + x / 14) as u8])
        });
        let out = proc.patchify(&img);
        assert_eq!(out.grid_thw, [1, 4, 6]);
        assert_eq!((out.n_patches, out.patch_dim), (24, 1176));
        assert_eq!(out.n_tokens(2), 6);
        for row in 0..24 {
            let (block, within) = (row / 4, row % 4);
            let (hb, wb, mh, mw) = (block / 3, block % 3, within / 2, within % 2);
            let patch = (hb * 2 + mh) * 6 + wb * 2 + mw;
            let r = &out.pixel_values[row * 1176..(row + 1) * 1176];
            for t in 0..2 {
                for py in 0..14 {
                    for px in 0..14 {
                        let at = |c: usize| r[c * 392 + t * 196 + py * 14 + px];
                        assert_eq!((at(0), at(1), at(2)), (px as f32, py as f32, patch as f32));
                    }
                }
            }
        }
    }
}
