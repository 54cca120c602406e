//! Procedural textured ("wild") stimuli whose dominant chromatic hue is the label while lightness, saturation,
//! pattern and layout vary.
//!
//! Why the label stays the dominant hue: every chromatic tone is `hsv(label + δ, s, v)` with `|δ| ≤ jitter`,
//! every other tone is a pure grey, and every later operation (alpha blending with a grey or with a tone,
//! shading, shadows, lighting, grain) either mixes colours or scales RGB without clipping. Adding a grey and
//! scaling leave HSV hue unchanged, so only the deliberate `δ`s and blends between them move hues. As a last
//! step the image's hues are rotated so that the circular mean hue of its chromatic pixels is exactly the label
//! (before 8-bit quantisation): the jitter is re-centred, not removed.

use image::RgbImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::spec::{Family, TexturedParams};
use crate::colour::{
    circular_mean_deg, f64_to_rgb8, hsv_to_rgb, rgb_to_hsv, signed_hue_delta_deg, ChromaticThreshold, Hsv,
};

type Rgb = [f64; 3];

/// Chromatic tones never go below these, so lighting (which scales by at least `MIN_LIGHT`) keeps them above
/// the chromatic threshold (s ≥ 0.25, v ≥ 0.15) and measured hues stay meaningful.
const TONE_S: (f64, f64) = (0.35, 1.0);
const TONE_V: (f64, f64) = (0.35, 1.0);
const MIN_LIGHT: f64 = 0.6;
/// A drawn image with fewer chromatic pixels than this is re-drawn: the label must be visible.
const MIN_CHROMATIC_FRACTION: f64 = 0.15;
const MAX_ATTEMPTS: usize = 8;

struct Canvas {
    w: usize,
    h: usize,
    px: Vec<Rgb>,
}

impl Canvas {
    fn filled(w: usize, h: usize, c: Rgb) -> Canvas {
        Canvas { w, h, px: vec![c; w * h] }
    }

    fn for_each(&mut self, mut f: impl FnMut(f64, f64, &mut Rgb)) {
        for y in 0..self.h {
            for x in 0..self.w {
                // Sample at pixel centres.
                f(x as f64 + 0.5, y as f64 + 0.5, &mut self.px[y * self.w + x]);
            }
        }
    }

    fn min_side(&self) -> f64 {
        self.w.min(self.h) as f64
    }
}

fn lerp(a: Rgb, b: Rgb, t: f64) -> Rgb {
    [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t]
}

/// Multiplies by `k`, but never past white in the brightest channel, so the hue cannot change by clipping.
fn scale(c: Rgb, k: f64) -> Rgb {
    let max = c[0].max(c[1]).max(c[2]);
    let k = if max > 0.0 { k.min(1.0 / max) } else { k };
    c.map(|x| x * k)
}

fn smoothstep(e0: f64, e1: f64, x: f64) -> f64 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Coverage of a pixel by a shape with signed distance `sdf` (pixels, negative inside): a 1-pixel ramp.
fn coverage(sdf: f64) -> f64 {
    (0.5 - sdf).clamp(0.0, 1.0)
}

struct Painter<'a> {
    rng: ChaCha8Rng,
    label: f64,
    params: &'a TexturedParams,
}

impl Painter<'_> {
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.rng.random::<f64>()
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random::<f64>() < p
    }

    fn chromatic(&mut self) -> Rgb {
        let j = self.params.hue_jitter_deg;
        let hue_deg = self.label + self.uniform(-j, j);
        let s = self.uniform(TONE_S.0, TONE_S.1);
        let v = self.uniform(TONE_V.0, TONE_V.1);
        hsv_to_rgb(Hsv { hue_deg, s, v })
    }

    fn grey(&mut self) -> Rgb {
        let g = self.uniform(0.06, 0.96);
        [g, g, g]
    }

    fn tone(&mut self, p_chromatic: f64) -> Rgb {
        if self.chance(p_chromatic) {
            self.chromatic()
        } else {
            self.grey()
        }
    }

    /// Value noise in `[0, 1]`: random lattice values, smoothstep-bilinear interpolation, `octaves` octaves
    /// halving the cell each time, stretched to the full range.
    fn value_noise(&mut self, w: usize, h: usize, base_cell: f64, octaves: u32) -> Vec<f64> {
        let mut field = vec![0.0; w * h];
        let mut amp = 1.0;
        for k in 0..octaves {
            let cell = (base_cell / f64::from(1u32 << k)).max(2.0);
            let gw = (w as f64 / cell).ceil() as usize + 2;
            let gh = (h as f64 / cell).ceil() as usize + 2;
            let lattice: Vec<f64> = (0..gw * gh).map(|_| self.rng.random::<f64>()).collect();
            for y in 0..h {
                let fy = (y as f64 + 0.5) / cell;
                let (iy, ty) = (fy.floor() as usize, smoothstep(0.0, 1.0, fy.fract()));
                for x in 0..w {
                    let fx = (x as f64 + 0.5) / cell;
                    let (ix, tx) = (fx.floor() as usize, smoothstep(0.0, 1.0, fx.fract()));
                    let at = |i: usize, j: usize| lattice[j * gw + i];
                    let top = at(ix, iy) + (at(ix + 1, iy) - at(ix, iy)) * tx;
                    let bottom = at(ix, iy + 1) + (at(ix + 1, iy + 1) - at(ix, iy + 1)) * tx;
                    field[y * w + x] += amp * (top + (bottom - top) * ty);
                }
            }
            amp *= 0.5;
        }
        let (lo, hi) = field.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let span = (hi - lo).max(1e-12);
        field.iter_mut().for_each(|v| *v = (*v - lo) / span);
        field
    }

    fn background(&mut self, w: usize, h: usize) -> Canvas {
        match self.rng.random_range(0..4) {
            0 => {
                let g = self.grey();
                Canvas::filled(w, h, g)
            }
            1 => {
                let (a, b) = (self.grey(), self.grey());
                let angle = self.uniform(0.0, std::f64::consts::TAU);
                let mut c = Canvas::filled(w, h, a);
                let (dx, dy) = (angle.cos(), angle.sin());
                let extent = (w as f64).hypot(h as f64);
                c.for_each(|x, y, p| *p = lerp(a, b, (0.5 + (x * dx + y * dy) / extent).clamp(0.0, 1.0)));
                c
            }
            2 => {
                let t = self.chromatic();
                Canvas::filled(w, h, t)
            }
            _ => {
                let (a, b) = (self.grey(), self.chromatic());
                let cell = self.uniform(0.2, 0.6) * w.min(h) as f64;
                let noise = self.value_noise(w, h, cell, 3);
                let mut c = Canvas::filled(w, h, a);
                for (p, n) in c.px.iter_mut().zip(noise) {
                    *p = lerp(a, b, n);
                }
                c
            }
        }
    }

    fn draw_value_noise(&mut self, w: usize, h: usize) -> Canvas {
        let a = self.chromatic();
        let b = self.tone(0.5);
        let cell = self.uniform(0.08, 0.5) * w.min(h) as f64;
        let octaves = self.rng.random_range(1..=4);
        let noise = self.value_noise(w, h, cell, octaves);
        let posterise = self.chance(0.35);
        let threshold = self.uniform(0.35, 0.65);
        let mut c = Canvas::filled(w, h, a);
        for (p, n) in c.px.iter_mut().zip(noise) {
            let t = if posterise { smoothstep(threshold - 0.02, threshold + 0.02, n) } else { n };
            *p = lerp(b, a, t);
        }
        c
    }

    fn draw_stripes(&mut self, w: usize, h: usize) -> Canvas {
        let (a, b) = (self.chromatic(), self.tone(0.5));
        let angle = self.uniform(0.0, std::f64::consts::PI);
        let period = self.uniform(6.0, (w.min(h) as f64 / 3.0).max(7.0));
        let duty = self.uniform(0.3, 0.7);
        let (dx, dy) = (angle.cos(), angle.sin());
        let mut c = Canvas::filled(w, h, b);
        c.for_each(|x, y, p| {
            let u = (x * dx + y * dy) / period;
            let f = u - u.floor();
            // Signed distance to the nearest stripe edge in pixels, negative inside stripe `a`.
            let sdf = if f < duty { -(f.min(duty - f)) } else { (f - duty).min(1.0 - f) } * period;
            *p = lerp(b, a, coverage(sdf));
        });
        c
    }

    fn draw_checks(&mut self, w: usize, h: usize) -> Canvas {
        let (a, b) = (self.chromatic(), self.tone(0.5));
        let angle = self.uniform(0.0, std::f64::consts::FRAC_PI_2);
        let cell = self.uniform(6.0, (w.min(h) as f64 / 3.0).max(7.0));
        let (cs, sn) = (angle.cos(), angle.sin());
        let mut c = Canvas::filled(w, h, b);
        c.for_each(|x, y, p| {
            let (u, v) = ((x * cs + y * sn) / cell, (-x * sn + y * cs) / cell);
            let edge = |t: f64| (t - t.floor()).min(1.0 - (t - t.floor())) * cell;
            let inside = (u.floor() + v.floor()).rem_euclid(2.0) == 0.0;
            let d = edge(u).min(edge(v));
            *p = lerp(b, a, coverage(if inside { -d } else { d }));
        });
        c
    }

    fn draw_blobs(&mut self, w: usize, h: usize) -> Canvas {
        let mut c = self.background(w, h);
        let n = self.rng.random_range(3..=10);
        for i in 0..n {
            let tone = if i == 0 { self.chromatic() } else { self.tone(0.8) };
            let (cx, cy) = (self.uniform(0.0, w as f64), self.uniform(0.0, h as f64));
            let sigma = self.uniform(0.06, 0.25) * c.min_side();
            let aspect = self.uniform(0.5, 2.0);
            let opacity = self.uniform(0.6, 1.0);
            c.for_each(|x, y, p| {
                let (ex, ey) = ((x - cx) / (sigma * aspect), (y - cy) / sigma);
                *p = lerp(*p, tone, opacity * (-0.5 * (ex * ex + ey * ey)).exp());
            });
        }
        c
    }

    fn draw_objects(&mut self, w: usize, h: usize) -> Canvas {
        let mut c = self.background(w, h);
        let n = self.rng.random_range(2..=7);
        let (sdx, sdy) = (self.uniform(-6.0, 6.0), self.uniform(2.0, 8.0));
        for i in 0..n {
            let shape = self.shape(c.min_side(), w, h);
            let tone = if i == 0 { self.chromatic() } else { self.tone(0.75) };
            let shade_dir = self.uniform(0.0, std::f64::consts::TAU);
            let shade = self.uniform(0.0, 0.35);
            let (cx, cy, size) = shape.centre_and_size();
            c.for_each(|x, y, p| {
                // A soft drop shadow darkens (scales) what lies under the shape's offset copy.
                let shadow = (0.5 - shape.sdf(x - sdx, y - sdy) / 4.0).clamp(0.0, 1.0);
                *p = scale(*p, 1.0 - 0.45 * shadow);
                let a = coverage(shape.sdf(x, y));
                if a > 0.0 {
                    let along = ((x - cx) * shade_dir.cos() + (y - cy) * shade_dir.sin()) / size;
                    let lit = scale(tone, (1.0 + shade * along).clamp(MIN_LIGHT, 1.25));
                    *p = lerp(*p, lit, a);
                }
            });
        }
        c
    }

    fn shape(&mut self, side: f64, w: usize, h: usize) -> Shape {
        let (cx, cy) = (self.uniform(0.1, 0.9) * w as f64, self.uniform(0.1, 0.9) * h as f64);
        let r = self.uniform(0.08, 0.3) * side;
        match self.rng.random_range(0..4) {
            0 => Shape::Disc { cx, cy, r },
            1 => Shape::Rect {
                cx,
                cy,
                hw: r,
                hh: r * self.uniform(0.4, 1.6),
                angle: self.uniform(0.0, std::f64::consts::PI),
            },
            2 => {
                let rot = self.uniform(0.0, std::f64::consts::TAU);
                let pts = [0.0, 1.0, 2.0].map(|k| {
                    let a = rot + k * std::f64::consts::TAU / 3.0 + self.uniform(-0.3, 0.3);
                    (cx + r * a.cos(), cy + r * a.sin())
                });
                Shape::Triangle { pts, cx, cy, r }
            }
            _ => Shape::Ring { cx, cy, r, half_width: r * self.uniform(0.12, 0.35) },
        }
    }

    fn lighting(&mut self, c: &mut Canvas) {
        let extent = (c.w as f64).hypot(c.h as f64);
        match self.rng.random_range(0..3) {
            0 => {
                let angle = self.uniform(0.0, std::f64::consts::TAU);
                let (k0, k1) = (self.uniform(MIN_LIGHT, 1.0), self.uniform(0.9, 1.25));
                let (dx, dy) = (angle.cos(), angle.sin());
                let (mx, my) = (c.w as f64 / 2.0, c.h as f64 / 2.0);
                c.for_each(|x, y, p| {
                    let t = (0.5 + ((x - mx) * dx + (y - my) * dy) / extent).clamp(0.0, 1.0);
                    *p = scale(*p, k0 + (k1 - k0) * t);
                });
            }
            1 => {
                let (lx, ly) = (self.uniform(0.0, c.w as f64), self.uniform(0.0, c.h as f64));
                let (centre, edge) = (self.uniform(1.0, 1.25), self.uniform(MIN_LIGHT, 0.9));
                c.for_each(|x, y, p| {
                    let d = ((x - lx).hypot(y - ly) / extent).min(1.0);
                    *p = scale(*p, centre + (edge - centre) * d * d);
                });
            }
            _ => {}
        }
        if self.chance(0.5) {
            let amount = self.uniform(0.02, 0.06);
            for p in c.px.iter_mut() {
                let k = 1.0 + amount * (2.0 * self.rng.random::<f64>() - 1.0);
                *p = scale(*p, k);
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Shape {
    Disc { cx: f64, cy: f64, r: f64 },
    Rect { cx: f64, cy: f64, hw: f64, hh: f64, angle: f64 },
    Triangle { pts: [(f64, f64); 3], cx: f64, cy: f64, r: f64 },
    Ring { cx: f64, cy: f64, r: f64, half_width: f64 },
}

impl Shape {
    fn centre_and_size(&self) -> (f64, f64, f64) {
        match *self {
            Shape::Disc { cx, cy, r } | Shape::Triangle { cx, cy, r, .. } | Shape::Ring { cx, cy, r, .. } => {
                (cx, cy, r)
            }
            Shape::Rect { cx, cy, hw, hh, .. } => (cx, cy, hw.max(hh)),
        }
    }

    /// Signed distance in pixels, negative inside. Exact for disc, ring and rectangle; for the triangle the
    /// maximum of the three edge half-plane distances, exact inside and near edges, which is all a 1-pixel
    /// anti-aliasing ramp needs.
    fn sdf(&self, x: f64, y: f64) -> f64 {
        match *self {
            Shape::Disc { cx, cy, r } => (x - cx).hypot(y - cy) - r,
            Shape::Ring { cx, cy, r, half_width } => ((x - cx).hypot(y - cy) - r).abs() - half_width,
            Shape::Rect { cx, cy, hw, hh, angle } => {
                let (c, s) = (angle.cos(), angle.sin());
                let (u, v) = ((x - cx) * c + (y - cy) * s, -(x - cx) * s + (y - cy) * c);
                let (qx, qy) = (u.abs() - hw, v.abs() - hh);
                qx.max(0.0).hypot(qy.max(0.0)) + qx.max(qy).min(0.0)
            }
            Shape::Triangle { pts, .. } => {
                // Orientation-independent: flip so the centroid is inside every half-plane.
                let (gx, gy) = ((pts[0].0 + pts[1].0 + pts[2].0) / 3.0, (pts[0].1 + pts[1].1 + pts[2].1) / 3.0);
                (0..3)
                    .map(|i| {
                        let (a, b) = (pts[i], pts[(i + 1) % 3]);
                        let (ex, ey) = (b.0 - a.0, b.1 - a.1);
                        let len = ex.hypot(ey).max(1e-9);
                        let side = |px: f64, py: f64| (ex * (py - a.1) - ey * (px - a.0)) / len;
                        let sign = if side(gx, gy) > 0.0 { -1.0 } else { 1.0 };
                        sign * side(x, y)
                    })
                    .fold(f64::MIN, f64::max)
            }
        }
    }
}

fn chromatic_fraction(c: &Canvas, thr: ChromaticThreshold) -> f64 {
    let n = c.px.iter().filter(|p| thr.is_chromatic(rgb_to_hsv(**p))).count();
    n as f64 / c.px.len() as f64
}

/// Rotates every pixel's hue so that the circular mean hue of the chromatic pixels equals `label`.
fn recentre(c: &mut Canvas, label: f64, thr: ChromaticThreshold) {
    let offsets = c.px.iter().filter_map(|p| {
        let hsv = rgb_to_hsv(*p);
        thr.is_chromatic(hsv).then(|| (signed_hue_delta_deg(label, hsv.hue_deg), 1.0))
    });
    let Some((mean, _)) = circular_mean_deg(offsets) else { return };
    let shift = -signed_hue_delta_deg(0.0, mean);
    for p in c.px.iter_mut() {
        let hsv = rgb_to_hsv(*p);
        if hsv.s > 0.0 {
            *p = hsv_to_rgb(Hsv { hue_deg: hsv.hue_deg + shift, ..hsv });
        }
    }
}

/// Renders one textured image of `width × height` whose chromatic pixels have circular mean hue `hue_deg`,
/// entirely determined by `seed` (a ChaCha8 stream) and `params`.
pub fn render_textured(params: &TexturedParams, width: u32, height: u32, hue_deg: f64, seed: u64) -> RgbImage {
    let (w, h) = (width as usize, height as usize);
    let thr = ChromaticThreshold::default();
    let mut p = Painter { rng: ChaCha8Rng::seed_from_u64(seed), label: hue_deg, params };
    let mut canvas = None;
    for _ in 0..MAX_ATTEMPTS {
        let family = params.families[p.rng.random_range(0..params.families.len())];
        let mut c = match family {
            Family::ValueNoise => p.draw_value_noise(w, h),
            Family::Stripes => p.draw_stripes(w, h),
            Family::Checks => p.draw_checks(w, h),
            Family::Blobs => p.draw_blobs(w, h),
            Family::Objects => p.draw_objects(w, h),
        };
        p.lighting(&mut c);
        if chromatic_fraction(&c, thr) >= MIN_CHROMATIC_FRACTION {
            canvas = Some(c);
            break;
        }
    }
    // Every attempt came out mostly grey (rare): fall back to noise between two chromatic tones, which is
    // chromatic everywhere.
    let mut canvas = canvas.unwrap_or_else(|| {
        let (a, b) = (p.chromatic(), p.chromatic());
        let noise = p.value_noise(w, h, 0.3 * w.min(h) as f64, 3);
        Canvas { w, h, px: noise.into_iter().map(|n| lerp(a, b, n)).collect() }
    });
    recentre(&mut canvas, hue_deg, thr);
    let mut img = RgbImage::new(width, height);
    for (dst, src) in img.pixels_mut().zip(&canvas.px) {
        dst.0 = f64_to_rgb8(*src);
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::colour::mean_chromatic_hue;

    #[test]
    fn scaling_and_grey_blends_keep_the_hue() {
        let c = hsv_to_rgb(Hsv { hue_deg: 200.0, s: 0.8, v: 0.7 });
        for k in [0.3, 0.9, 1.4, 3.0] {
            assert!(signed_hue_delta_deg(200.0, rgb_to_hsv(scale(c, k)).hue_deg).abs() < 1e-9);
        }
        for t in [0.1, 0.5, 0.9] {
            assert!(signed_hue_delta_deg(200.0, rgb_to_hsv(lerp(c, [0.4, 0.4, 0.4], t)).hue_deg).abs() < 1e-9);
        }
    }

    #[test]
    fn each_family_centres_its_hue_on_the_label() {
        for family in Family::ALL {
            let params = TexturedParams { families: vec![family], hue_jitter_deg: 8.0 };
            for (i, hue) in [0.0, 97.0, 233.0, 359.0].into_iter().enumerate() {
                let img = render_textured(&params, 48, 40, hue, i as u64);
                let (mean, n) = mean_chromatic_hue(img.as_raw(), ChromaticThreshold::default()).unwrap();
                assert!(n > 48 * 40 / 10, "{family:?} at {hue}: only {n} chromatic pixels");
                assert!(signed_hue_delta_deg(hue, mean).abs() < 3.0, "{family:?} at {hue}: mean {mean}");
            }
        }
    }

    #[test]
    fn triangle_sdf_is_negative_inside_for_both_windings() {
        let ccw = Shape::Triangle { pts: [(0.0, 0.0), (10.0, 0.0), (0.0, 10.0)], cx: 3.0, cy: 3.0, r: 5.0 };
        let cw = Shape::Triangle { pts: [(0.0, 0.0), (0.0, 10.0), (10.0, 0.0)], cx: 3.0, cy: 3.0, r: 5.0 };
        for s in [ccw, cw] {
            assert!(s.sdf(2.0, 2.0) < 0.0 && s.sdf(9.0, 9.0) > 0.0);
        }
    }
}
