//! Bicubic resize that reproduces Pillow's `Image.resize(..., BICUBIC)` on 8-bit RGB bit for bit, because that
//! is what transformers' PIL image processor feeds the model: Keys kernel with a = -0.5, support widened by the
//! scale when shrinking, weights normalised in f64 then rounded to 22-bit fixed point, horizontal pass first
//! into an 8-bit intermediate, then the vertical pass. (The `image` crate's CatmullRom is the same kernel with
//! another pass order and float rounding; it lands up to a few levels away on noisy images.)

use image::RgbImage;

/// Fixed-point precision of Pillow's 8-bit resampler: 32 bits minus 8 for the pixel, minus 2 for headroom.
const PRECISION_BITS: u32 = 32 - 8 - 2;
/// The bicubic kernel's support in input pixels at scale 1.
const BICUBIC_SUPPORT: f64 = 2.0;

fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Per output pixel: first input index and fixed-point weights.
struct Coeffs {
    bounds: Vec<(usize, usize)>,
    weights: Vec<Vec<i32>>,
}

fn coeffs(in_size: usize, out_size: usize) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = BICUBIC_SUPPORT * filterscale;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = Vec::with_capacity(out_size);
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // Truncation toward zero, as the C casts do.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let k: Vec<f64> = (xmin..xmax).map(|x| bicubic((x as f64 - center + 0.5) * ss)).collect();
        let total: f64 = k.iter().sum();
        let one = (1u32 << PRECISION_BITS) as f64;
        let fixed = k
            .iter()
            .map(|&w| {
                let w = if total != 0.0 { w / total } else { w };
                if w < 0.0 {
                    (-0.5 + w * one) as i32
                } else {
                    (0.5 + w * one) as i32
                }
            })
            .collect();
        bounds.push((xmin, xmax - xmin));
        weights.push(fixed);
    }
    Coeffs { bounds, weights }
}

fn clip8(v: i64) -> u8 {
    if v >= (1i64 << PRECISION_BITS << 8) {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

/// Resizes to `(width, height)` exactly as Pillow's BICUBIC does for an RGB image.
pub fn resize_bicubic_pil(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (w_in, h_in) = (img.width() as usize, img.height() as usize);
    let (w_out, h_out) = (width as usize, height as usize);
    let src = img.as_raw();
    let round = 1i64 << (PRECISION_BITS - 1);
    let need_h = w_out != w_in;
    let need_v = h_out != h_in;
    let vert = coeffs(h_in, h_out);
    // Only the rows the vertical pass reads go through the horizontal pass (Pillow's row box).
    let (row_first, row_last) = if need_v {
        let (f, _) = vert.bounds[0];
        let (l, n) = vert.bounds[h_out - 1];
        (f, l + n)
    } else {
        (0, h_in)
    };
    let (tmp, tmp_w, row_offset) = if need_h {
        let horiz = coeffs(w_in, w_out);
        let rows = row_last - row_first;
        let mut out = vec![0u8; rows * w_out * 3];
        for y in 0..rows {
            let line = &src[(y + row_first) * w_in * 3..(y + row_first + 1) * w_in * 3];
            for (xx, ((xmin, n), k)) in horiz.bounds.iter().zip(&horiz.weights).enumerate() {
                let mut acc = [round; 3];
                for (x, &kx) in k.iter().enumerate().take(*n) {
                    let p = &line[(xmin + x) * 3..(xmin + x) * 3 + 3];
                    for c in 0..3 {
                        acc[c] += p[c] as i64 * kx as i64;
                    }
                }
                for c in 0..3 {
                    out[(y * w_out + xx) * 3 + c] = clip8(acc[c]);
                }
            }
        }
        (out, w_out, row_first)
    } else {
        (src.to_vec(), w_in, 0)
    };
    if !need_v {
        return RgbImage::from_raw(width, height, tmp).expect("buffer size matches");
    }
    let mut out = vec![0u8; h_out * tmp_w * 3];
    for (yy, ((ymin, n), k)) in vert.bounds.iter().zip(&vert.weights).enumerate() {
        let ymin = ymin - row_offset;
        for x in 0..tmp_w {
            let mut acc = [round; 3];
            for (y, &ky) in k.iter().enumerate().take(*n) {
                let p = &tmp[((ymin + y) * tmp_w + x) * 3..((ymin + y) * tmp_w + x) * 3 + 3];
                for c in 0..3 {
                    acc[c] += p[c] as i64 * ky as i64;
                }
            }
            for c in 0..3 {
                out[(yy * tmp_w + x) * 3 + c] = clip8(acc[c]);
            }
        }
    }
    RgbImage::from_raw(width, height, out).expect("buffer size matches")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_weights_sum_to_one_in_fixed_point_and_identity_keeps_pixels() {
        let c = coeffs(182, 168);
        for k in &c.weights {
            let s: i64 = k.iter().map(|&w| w as i64).sum();
            assert!((s - (1 << PRECISION_BITS)).abs() <= k.len() as i64, "{s}");
        }
        let img = RgbImage::from_fn(30, 20, |x, y| image::Rgb([x as u8 * 7, y as u8 * 11, (x * y) as u8]));
        assert_eq!(resize_bicubic_pil(&img, 30, 20), img);
    }

    #[test]
    fn flat_image_stays_flat_when_shrunk_or_grown() {
        let img = RgbImage::from_pixel(37, 53, image::Rgb([200, 17, 90]));
        for (w, h) in [(28, 28), (56, 84), (30, 53)] {
            let out = resize_bicubic_pil(&img, w, h);
            assert!(out.pixels().all(|p| p.0 == [200, 17, 90]), "{w}x{h}");
        }
    }
}
