//! Bicubic resize that reproduces Pillow 12's `Image.resize(..., BICUBIC)` on 8-bit RGB bit for bit, because that
//! is what transformers' PIL image processor feeds the model: Keys kernel with a = -0.5, support widened by the
//! scale when shrinking, weights normalised in f64 then rounded to 22-bit fixed point, horizontal pass first
//! into an 8-bit intermediate, then the vertical pass (vertical first for images over 100x taller than wide). (The `image` crate's CatmullRom is the same kernel with
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

/// Pillow 12 resizes an image taller than this many times its width vertically first (when shrinking its height).
const TALL_ASPECT: usize = 100;

/// One separable pass along the width: `(rows, w_in)` RGB to `(rows, w_out)`, 8-bit rounding as Pillow.
fn pass_horizontal(src: &[u8], rows: usize, w_in: usize, w_out: usize) -> Vec<u8> {
    let co = coeffs(w_in, w_out);
    let round = 1i64 << (PRECISION_BITS - 1);
    let mut out = vec![0u8; rows * w_out * 3];
    for y in 0..rows {
        let line = &src[y * w_in * 3..(y + 1) * w_in * 3];
        for (xx, (&(xmin, n), k)) in co.bounds.iter().zip(&co.weights).enumerate() {
            let mut acc = [round; 3];
            for (x, &kx) in k.iter().enumerate().take(n) {
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
    out
}

/// One separable pass along the height: `(h_in, cols)` RGB to `(h_out, cols)`.
fn pass_vertical(src: &[u8], h_in: usize, cols: usize, h_out: usize) -> Vec<u8> {
    let co = coeffs(h_in, h_out);
    let round = 1i64 << (PRECISION_BITS - 1);
    let mut out = vec![0u8; h_out * cols * 3];
    for (yy, (&(ymin, n), k)) in co.bounds.iter().zip(&co.weights).enumerate() {
        for x in 0..cols {
            let mut acc = [round; 3];
            for (y, &ky) in k.iter().enumerate().take(n) {
                let p = &src[((ymin + y) * cols + x) * 3..((ymin + y) * cols + x) * 3 + 3];
                for c in 0..3 {
                    acc[c] += p[c] as i64 * ky as i64;
                }
            }
            for c in 0..3 {
                out[(yy * cols + x) * 3 + c] = clip8(acc[c]);
            }
        }
    }
    out
}

/// Resizes to `(width, height)` exactly as Pillow 12's `Image.resize(..., BICUBIC)` does for an RGB image:
/// horizontal pass first, except for images more than 100 times taller than wide whose height shrinks.
/// (Pillow 13 also runs the vertical pass first for some other shrinks; those differ by a level at some pixels.)
pub fn resize_bicubic_pil(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (w_in, h_in) = (img.width() as usize, img.height() as usize);
    let (w_out, h_out) = (width as usize, height as usize);
    let mut buf = img.as_raw().to_vec();
    let vertical_first = h_in > w_in * TALL_ASPECT && h_out < h_in;
    let (mut h, mut w) = (h_in, w_in);
    let vertical = |buf: &mut Vec<u8>, h: &mut usize, w: usize| {
        if *h != h_out {
            *buf = pass_vertical(buf, *h, w, h_out);
            *h = h_out;
        }
    };
    if vertical_first {
        vertical(&mut buf, &mut h, w);
    }
    if w != w_out {
        buf = pass_horizontal(&buf, h, w, w_out);
        w = w_out;
    }
    vertical(&mut buf, &mut h, w);
    RgbImage::from_raw(width, height, buf).expect("buffer size matches")
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
