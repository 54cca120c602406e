//! The one colour module: HSV (bit-for-bit the formulas of Python's `colorsys`, which the seed notebook uses),
//! the sRGB transfer function, OKLab/OKLCH with Björn Ottosson's published matrices
//! (<https://bottosson.github.io/posts/oklab/>), circular statistics on hue angles, and the rule for which
//! pixels carry a hue at all ([`CHROMATIC`]). A leaf: it depends on nothing else in the crate, so stimuli,
//! models, the manifold analysis, steering and the report can all use it without depending on each other.
//!
//! Conventions: RGB components are `f64` in `[0, 1]` (non-linear sRGB unless a name says `linear`); hues are in
//! degrees in `[0, 360)`; `colorsys` works in turns (`h / 360`), so its formulas are applied to `hue_deg / 360`.
//! A signed hue difference is always [`signed_hue_delta_deg`]`(from, to)`: how far, and which way, `to` lies
//! from `from` on the hue circle.

/// An HSV colour: hue in degrees `[0, 360)`, saturation and value in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hsv {
    pub hue_deg: f64,
    pub s: f64,
    pub v: f64,
}

/// An OKLCH colour: lightness `l` (OKLab L, 0 black to 1 white), chroma `c` and hue in degrees `[0, 360)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Oklch {
    pub l: f64,
    pub c: f64,
    pub hue_deg: f64,
}

/// Wraps an angle in degrees into `[0, 360)`.
pub fn wrap_deg(deg: f64) -> f64 {
    let w = deg.rem_euclid(360.0);
    // rem_euclid can round up to exactly 360.0 for tiny negative inputs.
    if w >= 360.0 {
        0.0
    } else {
        w
    }
}

/// How far hue `to` lies from hue `from`, in degrees in `[−180, 180)`: positive when the short way from `from`
/// to `to` is counter-clockwise (increasing hue, red → yellow → green), negative when it is clockwise. So
/// `from + signed_hue_delta_deg(from, to)` is `to` (mod 360), and `signed_hue_delta_deg(target, measured)` is a
/// measurement's signed error.
///
/// Exactly opposite hues give `−180` (clockwise): the range and the arithmetic `(to − from + 180) mod 360 − 180`
/// are the seed notebook's `circular_hue_error`, which the steering code has always used, so a half-turn pair
/// (`0:180`) is steered the way it always was and steering tables stay byte-identical.
pub fn signed_hue_delta_deg(from: f64, to: f64) -> f64 {
    let d = (to - from + 180.0).rem_euclid(360.0) - 180.0;
    // rem_euclid rounds up to exactly 360 for a tiny negative argument; that is −180, not +180.
    if d >= 180.0 {
        d - 360.0
    } else {
        d
    }
}

/// `colorsys.hsv_to_rgb` with the hue in degrees.
pub fn hsv_to_rgb(hsv: Hsv) -> [f64; 3] {
    let Hsv { hue_deg, s, v } = hsv;
    if s == 0.0 {
        return [v, v, v];
    }
    let h = wrap_deg(hue_deg) / 360.0;
    // colorsys: i = int(h*6.0); f = (h*6.0) - i; then i %= 6.
    let i = (h * 6.0).floor();
    let f = h * 6.0 - i;
    let p = v * (1.0 - s);
    let q = v * (1.0 - s * f);
    let t = v * (1.0 - s * (1.0 - f));
    match (i as i64).rem_euclid(6) {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

/// `colorsys.rgb_to_hsv` with the hue returned in degrees. Greys (max == min) get hue 0 and saturation 0, as
/// in `colorsys`; callers that need "no hue" check `s` first.
pub fn rgb_to_hsv(rgb: [f64; 3]) -> Hsv {
    let [r, g, b] = rgb;
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    let v = maxc;
    if minc == maxc {
        return Hsv { hue_deg: 0.0, s: 0.0, v };
    }
    let range = maxc - minc;
    let s = range / maxc;
    let rc = (maxc - r) / range;
    let gc = (maxc - g) / range;
    let bc = (maxc - b) / range;
    let h = if r == maxc {
        bc - gc
    } else if g == maxc {
        2.0 + rc - bc
    } else {
        4.0 + gc - rc
    };
    // colorsys: h = (h/6.0) % 1.0, Python's % takes the divisor's sign.
    let turns = (h / 6.0).rem_euclid(1.0);
    Hsv { hue_deg: wrap_deg(turns * 360.0), s, v }
}

/// 8-bit RGB to `[0, 1]` floats (divides by 255, as `colorsys` users do with PIL pixels).
pub fn rgb8_to_f64(px: [u8; 3]) -> [f64; 3] {
    px.map(|c| f64::from(c) / 255.0)
}

/// `[0, 1]` floats to 8-bit RGB, rounding to nearest (half away from zero) after clamping.
pub fn f64_to_rgb8(rgb: [f64; 3]) -> [u8; 3] {
    rgb.map(|c| (c.clamp(0.0, 1.0) * 255.0).round() as u8)
}

/// HSV hue and saturation/value of an 8-bit pixel.
pub fn hsv_of_rgb8(px: [u8; 3]) -> Hsv {
    rgb_to_hsv(rgb8_to_f64(px))
}

/// The sRGB electro-optical transfer function (IEC 61966-2-1): one non-linear component to linear light.
pub fn srgb_to_linear(c: f64) -> f64 {
    if c <= 0.04045 {
        c / 12.92
    } else {
        ((c + 0.055) / 1.055).powf(2.4)
    }
}

/// Inverse of [`srgb_to_linear`]. Negative inputs (out of gamut) are passed through the linear segment so
/// that gamut checks can still see them.
pub fn linear_to_srgb(c: f64) -> f64 {
    if c <= 0.0031308 {
        12.92 * c
    } else {
        1.055 * c.powf(1.0 / 2.4) - 0.055
    }
}

/// Linear sRGB to OKLab `[L, a, b]` (Ottosson's M1 for linear sRGB, cube root, M2).
pub fn linear_srgb_to_oklab(rgb: [f64; 3]) -> [f64; 3] {
    let [r, g, b] = rgb;
    let l = 0.4122214708 * r + 0.5363325363 * g + 0.0514459929 * b;
    let m = 0.2119034982 * r + 0.6806995451 * g + 0.1073969566 * b;
    let s = 0.0883024619 * r + 0.2817188376 * g + 0.6299787005 * b;
    let (l, m, s) = (l.cbrt(), m.cbrt(), s.cbrt());
    [
        0.2104542553 * l + 0.7936177850 * m - 0.0040720468 * s,
        1.9779984951 * l - 2.4285922050 * m + 0.4505937099 * s,
        0.0259040371 * l + 0.7827717662 * m - 0.8086757660 * s,
    ]
}

/// OKLab `[L, a, b]` to linear sRGB (Ottosson's inverse matrices). Out-of-gamut colours give components
/// outside `[0, 1]`.
pub fn oklab_to_linear_srgb(lab: [f64; 3]) -> [f64; 3] {
    let [big_l, a, b] = lab;
    let l = big_l + 0.3963377774 * a + 0.2158037573 * b;
    let m = big_l - 0.1055613458 * a - 0.0638541728 * b;
    let s = big_l - 0.0894841775 * a - 1.2914855480 * b;
    let (l, m, s) = (l * l * l, m * m * m, s * s * s);
    [
        4.0767416621 * l - 3.3077115913 * m + 0.2309699292 * s,
        -1.2684380046 * l + 2.6097574011 * m - 0.3413193965 * s,
        -0.0041960863 * l - 0.7034186147 * m + 1.7076147010 * s,
    ]
}

/// OKLab to OKLCH: `C = hypot(a, b)`, `h = atan2(b, a)` in degrees.
pub fn oklab_to_oklch(lab: [f64; 3]) -> Oklch {
    let [l, a, b] = lab;
    Oklch { l, c: a.hypot(b), hue_deg: wrap_deg(b.atan2(a).to_degrees()) }
}

pub fn oklch_to_oklab(lch: Oklch) -> [f64; 3] {
    let h = lch.hue_deg.to_radians();
    [lch.l, lch.c * h.cos(), lch.c * h.sin()]
}

/// Non-linear sRGB in `[0, 1]` to OKLCH.
pub fn srgb_to_oklch(rgb: [f64; 3]) -> Oklch {
    oklab_to_oklch(linear_srgb_to_oklab(rgb.map(srgb_to_linear)))
}

/// OKLCH to non-linear sRGB, or `None` when the colour lies outside the sRGB gamut by more than `1e-9` in any
/// linear component (no clipping: a clipped colour has silently shifted hue).
pub fn oklch_to_srgb(lch: Oklch) -> Option<[f64; 3]> {
    let lin = oklab_to_linear_srgb(oklch_to_oklab(lch));
    const EPS: f64 = 1e-9;
    if lin.iter().any(|&c| !(-EPS..=1.0 + EPS).contains(&c)) {
        return None;
    }
    Some(lin.map(|c| linear_to_srgb(c.clamp(0.0, 1.0))))
}

/// Weighted circular mean of angles in degrees and the mean resultant length `R` in `[0, 1]`
/// (`R = |Σ wᵢ e^{iθᵢ}| / Σ wᵢ`). `None` when there are no angles, the weights sum to zero, or `R < 1e-9`
/// (the angles cancel and no mean direction exists). A single angle with a positive weight is returned as it is
/// (wrapped to `[0, 360)`, `R = 1`), not through sin/cos, so a one-image readout reports the model's number
/// exactly.
pub fn circular_mean_deg(angles: impl IntoIterator<Item = (f64, f64)>) -> Option<(f64, f64)> {
    let (mut sx, mut sy, mut sw) = (0.0f64, 0.0f64, 0.0f64);
    let (mut n, mut first) = (0usize, 0.0f64);
    for (deg, w) in angles {
        if n == 0 {
            first = deg;
        }
        n += 1;
        let r = deg.to_radians();
        sx += w * r.cos();
        sy += w * r.sin();
        sw += w;
    }
    if sw <= 0.0 {
        return None;
    }
    if n == 1 {
        return Some((wrap_deg(first), 1.0));
    }
    let r = sx.hypot(sy) / sw;
    if r < 1e-9 {
        return None;
    }
    Some((wrap_deg(sy.atan2(sx).to_degrees()), r))
}

/// Unweighted circular mean of hues in degrees ([`circular_mean_deg`] with unit weights), without `R`.
pub fn circular_mean_hue_deg(hues: impl IntoIterator<Item = f64>) -> Option<f64> {
    circular_mean_deg(hues.into_iter().map(|h| (h, 1.0))).map(|(mean, _)| mean)
}

/// Which pixels count as chromatic when a hue is measured from an image: HSV saturation `s >= min_s` and
/// value `v >= min_v`. Below these, 8-bit quantisation makes the hue meaningless (at `s = 0.25, v = 0.15` the
/// channel range is ~10 levels, a hue resolution of ~6°) and a human sees grey.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChromaticThreshold {
    pub min_s: f64,
    pub min_v: f64,
}

/// The one chromatic threshold: stimulus hue labels and measurements, the photo rotation, spec checks and the
/// colour autoencoder's image input all use it, so "chromatic" means the same thing for a label and for a model.
pub const CHROMATIC: ChromaticThreshold = ChromaticThreshold { min_s: 0.25, min_v: 0.15 };

impl Default for ChromaticThreshold {
    fn default() -> Self {
        CHROMATIC
    }
}

impl ChromaticThreshold {
    pub fn is_chromatic(&self, hsv: Hsv) -> bool {
        hsv.s >= self.min_s && hsv.v >= self.min_v
    }
}

/// Unweighted circular mean HSV hue of the chromatic pixels of an 8-bit RGB buffer (`[r, g, b, r, g, b, ...]`),
/// with the chromatic pixel count. `None` when no pixel is chromatic or the hues cancel.
pub fn mean_chromatic_hue(rgb8: &[u8], threshold: ChromaticThreshold) -> Option<(f64, usize)> {
    let mut n = 0usize;
    let mean = circular_mean_deg(rgb8.chunks_exact(3).filter_map(|px| {
        let hsv = hsv_of_rgb8([px[0], px[1], px[2]]);
        threshold.is_chromatic(hsv).then(|| {
            n += 1;
            (hsv.hue_deg, 1.0)
        })
    }))?;
    Some((mean.0, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    // Expected values are what CPython 3.12 `colorsys` returns for the same inputs (hue in turns × 360).
    #[test]
    fn hsv_to_rgb_matches_colorsys() {
        let cases = [
            (0.0, 1.0, 1.0, [1.0, 0.0, 0.0]),
            (60.0, 1.0, 1.0, [1.0, 1.0, 0.0]),
            (120.0, 1.0, 1.0, [0.0, 1.0, 0.0]),
            (240.0, 1.0, 1.0, [0.0, 0.0, 1.0]),
            (300.0, 1.0, 1.0, [1.0, 0.0, 1.0]),
            // colorsys.hsv_to_rgb(0.1, 0.5, 0.8) == (0.8, 0.64, 0.4)
            (36.0, 0.5, 0.8, [0.8, 0.64, 0.4]),
            // colorsys.hsv_to_rgb(0.75, 0.25, 0.6) == (0.525, 0.45, 0.6)
            (270.0, 0.25, 0.6, [0.525, 0.45, 0.6]),
            (123.0, 0.0, 0.3, [0.3, 0.3, 0.3]),
        ];
        for (h, s, v, want) in cases {
            let got = hsv_to_rgb(Hsv { hue_deg: h, s, v });
            for k in 0..3 {
                assert!(close(got[k], want[k], 1e-12), "hsv({h},{s},{v}) -> {got:?}, want {want:?}");
            }
        }
    }

    #[test]
    fn rgb_to_hsv_matches_colorsys() {
        // colorsys.rgb_to_hsv(0.2, 0.4, 0.4) == (0.5, 0.5, 0.4)
        let hsv = rgb_to_hsv([0.2, 0.4, 0.4]);
        assert!(close(hsv.hue_deg, 180.0, 1e-12) && close(hsv.s, 0.5, 1e-12) && close(hsv.v, 0.4, 1e-12));
        // colorsys.rgb_to_hsv(1.0, 0.0, 0.5) == (0.9166666666666666, 1.0, 1.0): the negative branch wraps.
        let hsv = rgb_to_hsv([1.0, 0.0, 0.5]);
        assert!(close(hsv.hue_deg, 330.0, 1e-9), "{hsv:?}");
        // colorsys.rgb_to_hsv(0.5, 0.5, 0.5) == (0.0, 0.0, 0.5)
        assert_eq!(rgb_to_hsv([0.5, 0.5, 0.5]), Hsv { hue_deg: 0.0, s: 0.0, v: 0.5 });
        // 8-bit pixel (255, 26, 0): hue = 26/255 * 60 = 6.1176°.
        assert!(close(hsv_of_rgb8([255, 26, 0]).hue_deg, 26.0 / 255.0 * 60.0, 1e-9));
    }

    #[test]
    fn hsv_round_trips_over_the_circle() {
        for i in 0..3600 {
            let h = i as f64 * 0.1;
            let hsv = rgb_to_hsv(hsv_to_rgb(Hsv { hue_deg: h, s: 0.7, v: 0.9 }));
            assert!(signed_hue_delta_deg(h, hsv.hue_deg).abs() < 1e-9, "{h} -> {hsv:?}");
            assert!(close(hsv.s, 0.7, 1e-12) && close(hsv.v, 0.9, 1e-12));
        }
    }

    #[test]
    fn srgb_transfer_round_trips_and_hits_known_points() {
        assert_eq!(srgb_to_linear(0.0), 0.0);
        assert!(close(srgb_to_linear(1.0), 1.0, 1e-15));
        // 0.5 sRGB is 0.21404 linear (a standard table value).
        assert!(close(srgb_to_linear(0.5), 0.214041, 1e-6));
        for i in 0..=1000 {
            let c = i as f64 / 1000.0;
            assert!(close(linear_to_srgb(srgb_to_linear(c)), c, 1e-12));
        }
    }

    // Ottosson's post and CSS Color 4 give sRGB white as oklab(1 0 0) and sRGB red as
    // oklab(0.627955 0.224863 0.125846) = oklch(0.627955 0.257683 29.2339). The matrices are printed to 10
    // decimals, so agreement to 1e-5 is what they allow.
    #[test]
    fn oklab_of_white_and_red_match_ottosson() {
        let white = linear_srgb_to_oklab([1.0, 1.0, 1.0]);
        assert!(close(white[0], 1.0, 1e-5) && white[1].abs() < 1e-5 && white[2].abs() < 1e-5, "{white:?}");
        let red = linear_srgb_to_oklab([1.0, 0.0, 0.0]);
        assert!(close(red[0], 0.627955, 1e-5) && close(red[1], 0.224863, 1e-5) && close(red[2], 0.125846, 1e-5));
        let lch = srgb_to_oklch([1.0, 0.0, 0.0]);
        assert!(close(lch.c, 0.257683, 1e-5) && close(lch.hue_deg, 29.2339, 1e-3), "{lch:?}");
        // Green #00ff00: oklch(0.866440 0.294827 142.4953); blue #0000ff: oklab(0.452014 -0.032457 -0.311528),
        // hue 264.052°.
        let green = srgb_to_oklch([0.0, 1.0, 0.0]);
        assert!(close(green.l, 0.866440, 1e-5) && close(green.c, 0.294827, 1e-5), "{green:?}");
        assert!(close(green.hue_deg, 142.4953, 1e-3), "{green:?}");
        let blue = srgb_to_oklch([0.0, 0.0, 1.0]);
        assert!(close(blue.l, 0.452014, 1e-5) && close(blue.hue_deg, 264.052, 1e-3), "{blue:?}");
    }

    // The forward and inverse matrices are each printed to 10 decimals, so they are inverses only to ~1e-7.
    #[test]
    fn oklab_round_trips() {
        for &rgb in &[[0.1, 0.5, 0.9], [1.0, 1.0, 0.0], [0.3, 0.3, 0.3], [0.9, 0.2, 0.6]] {
            let back = oklab_to_linear_srgb(linear_srgb_to_oklab(rgb));
            for k in 0..3 {
                assert!(close(back[k], rgb[k], 1e-6), "{rgb:?} -> {back:?}");
            }
        }
    }

    #[test]
    fn oklch_gamut_check_accepts_inside_and_rejects_outside() {
        // The largest all-hue chroma at L = 0.75 is ~0.128 (reference doc §4.5): 0.125 fits every hue,
        // 0.15 does not.
        for h in 0..360 {
            assert!(oklch_to_srgb(Oklch { l: 0.75, c: 0.125, hue_deg: h as f64 }).is_some(), "hue {h}");
        }
        assert!((0..360).any(|h| oklch_to_srgb(Oklch { l: 0.75, c: 0.15, hue_deg: h as f64 }).is_none()));
    }

    #[test]
    fn circular_mean_handles_the_seam_and_cancellation() {
        let (m, r) = circular_mean_deg([(350.0, 1.0), (10.0, 1.0)]).unwrap();
        assert!(signed_hue_delta_deg(0.0, m).abs() < 1e-9 && r > 0.98);
        let (m, _) = circular_mean_deg([(10.0, 3.0), (40.0, 1.0)]).unwrap();
        assert!(m > 10.0 && m < 25.0, "weighted mean {m}");
        assert!(circular_mean_deg([(0.0, 1.0), (180.0, 1.0)]).is_none());
        assert!(circular_mean_deg(std::iter::empty()).is_none());
    }

    #[test]
    fn circular_mean_of_one_angle_is_that_angle() {
        assert_eq!(circular_mean_deg([(123.456, 1.0)]), Some((123.456, 1.0)));
        assert_eq!(circular_mean_hue_deg([-30.0]), Some(330.0));
        assert!(circular_mean_deg([(10.0, 0.0)]).is_none());
        let m = circular_mean_hue_deg([350.0, 10.0]).unwrap();
        assert!(m.min(360.0 - m) < 1e-9, "{m}");
    }

    #[test]
    fn signed_hue_delta_is_to_minus_from_and_wraps() {
        // Counter-clockwise (increasing hue) is positive, across the 0/360 seam too.
        assert_eq!(signed_hue_delta_deg(350.0, 10.0), 20.0);
        assert_eq!(signed_hue_delta_deg(10.0, 350.0), -20.0);
        assert_eq!(signed_hue_delta_deg(240.0, 0.0), 120.0);
        assert_eq!(signed_hue_delta_deg(0.0, 240.0), -120.0);
        // The range is [-180, 180): opposite hues are -180 whichever way round.
        assert_eq!(signed_hue_delta_deg(0.0, 180.0), -180.0);
        assert_eq!(signed_hue_delta_deg(180.0, 0.0), -180.0);
        assert_eq!(signed_hue_delta_deg(90.0, 90.0), 0.0);
        // One ulp past a half turn: the remainder rounds up to 360, which must still land in range.
        let d = signed_hue_delta_deg(0.0, -180.00000000000003);
        assert!((-180.0..180.0).contains(&d), "{d}");
        for i in 0..720 {
            let (from, to) = (i as f64 * 0.5, (i as f64 * 0.37).rem_euclid(360.0));
            let d = signed_hue_delta_deg(from, to);
            assert!((-180.0..180.0).contains(&d), "{from} -> {to}: {d}");
            assert!(signed_hue_delta_deg(to, wrap_deg(from + d)).abs() < 1e-9, "{from} + {d} is not {to}");
        }
        assert_eq!(wrap_deg(-0.0), 0.0);
        assert_eq!(wrap_deg(720.5), 0.5);
    }
}
