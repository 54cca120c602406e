//! Stimulus-set specs: the TOML wire format (`SpecWire`, kebab-case, unknown keys rejected) and the validated
//! [`StimulusSpec`] that rendering takes.
//!
//! ```toml
//! name = "simple-60"
//! description = "flat HSV squares, 60 hues"
//! kind = "flat-hsv"            # flat-hsv | flat-oklch | textured | photo
//! seed = 0
//! width = 224
//! height = 224
//! variants = 1                 # images per hue; textured only (photo: one variant per photo)
//!
//! [hues]                       # degrees; start and end inclusive; multiples of 0.001°
//! start = 0
//! end = 354
//! step = 6
//!
//! [hold-out]                   # optional: hues in [from, to] (inclusive, cyclic) are not rendered
//! from = 150
//! to = 240
//!
//! [flat-hsv]                   # exactly the section of the chosen kind
//! saturation = 1.0
//! value = 1.0
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::Error;
use crate::colour::{oklch_to_srgb, ChromaticThreshold, Hsv, Oklch};

/// Hue angles are handled as integer milli-degrees so that grids, hold-out slices and file names never
/// suffer floating-point drift (0.1 + 0.2 ≠ 0.3).
pub const MDEG_PER_DEG: i64 = 1000;
const FULL_TURN_MDEG: i64 = 360 * MDEG_PER_DEG;
const MAX_SIDE: u32 = 4096;
const MIN_TEXTURED_SIDE: u32 = 16;
const MAX_VARIANTS: u32 = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct SpecWire {
    name: String,
    #[serde(default)]
    description: String,
    kind: KindWire,
    #[serde(default)]
    seed: u64,
    width: u32,
    height: u32,
    variants: Option<u32>,
    hues: HuesWire,
    hold_out: Option<HoldOutWire>,
    flat_hsv: Option<FlatHsvWire>,
    flat_oklch: Option<FlatOklchWire>,
    textured: Option<TexturedWire>,
    photo: Option<PhotoWire>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum KindWire {
    FlatHsv,
    FlatOklch,
    Textured,
    Photo,
}

impl KindWire {
    fn section(self) -> &'static str {
        match self {
            KindWire::FlatHsv => "flat-hsv",
            KindWire::FlatOklch => "flat-oklch",
            KindWire::Textured => "textured",
            KindWire::Photo => "photo",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct HuesWire {
    start: f64,
    end: f64,
    step: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct HoldOutWire {
    from: f64,
    to: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FlatHsvWire {
    saturation: f64,
    value: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FlatOklchWire {
    lightness: f64,
    chroma: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct TexturedWire {
    families: Option<Vec<Family>>,
    hue_jitter_deg: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct PhotoWire {
    dir: Option<PathBuf>,
}

/// A procedural texture family of the textured kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// Multi-octave value noise blending two tones, sometimes posterised into a camouflage pattern.
    ValueNoise,
    /// Rotated stripes of two tones with soft edges.
    Stripes,
    /// Rotated checkerboard of two tones.
    Checks,
    /// Soft Gaussian blobs of several tones on a background.
    Blobs,
    /// Discs, rectangles, triangles and rings with shading and drop shadows on a background.
    Objects,
}

impl Family {
    pub const ALL: [Family; 5] = [Family::ValueNoise, Family::Stripes, Family::Checks, Family::Blobs, Family::Objects];
}

/// Parameters of the textured kind.
#[derive(Debug, Clone, PartialEq)]
pub struct TexturedParams {
    /// Families drawn from uniformly per image (no duplicates, at least one).
    pub families: Vec<Family>,
    /// Each chromatic tone's hue is drawn uniformly from `label ± hue_jitter_deg` before the image's hues are
    /// re-centred on the label.
    pub hue_jitter_deg: f64,
}

/// What the set renders.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// One flat colour per image: `hsv(hue, saturation, value)` (the seed notebook's squares).
    FlatHsv { saturation: f64, value: f64 },
    /// One flat colour per image at fixed OKLCH lightness and chroma; checked to be inside sRGB for every hue.
    FlatOklch { lightness: f64, chroma: f64 },
    /// Procedural textures whose dominant chromatic hue is the label.
    Textured(TexturedParams),
    /// The user's photographs hue-rotated to each label; `dir` is resolved against the spec file's folder and
    /// may be overridden at render time.
    Photo { dir: Option<PathBuf> },
}

impl Kind {
    /// The name used in the TOML `kind` key and in `stimuli.json`.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::FlatHsv { .. } => "flat-hsv",
            Kind::FlatOklch { .. } => "flat-oklch",
            Kind::Textured(_) => "textured",
            Kind::Photo { .. } => "photo",
        }
    }
}

/// An inclusive hue grid in milli-degrees: `start, start + step, …, ≤ end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HueGrid {
    pub start_mdeg: i64,
    pub end_mdeg: i64,
    pub step_mdeg: i64,
}

/// A cyclic, inclusive slice of hues left out of the set: `from ≤ h ≤ to`, or, when `from > to`, the slice
/// that wraps through 0°.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldOut {
    pub from_mdeg: i64,
    pub to_mdeg: i64,
}

impl HoldOut {
    pub fn contains_mdeg(&self, h: i64) -> bool {
        if self.from_mdeg <= self.to_mdeg {
            (self.from_mdeg..=self.to_mdeg).contains(&h)
        } else {
            h >= self.from_mdeg || h <= self.to_mdeg
        }
    }

    /// Whether a (measured, fractional) hue in degrees lies in the slice.
    pub fn contains_deg(&self, deg: f64) -> bool {
        let (from, to) = (self.from_mdeg as f64 / 1000.0, self.to_mdeg as f64 / 1000.0);
        if from <= to {
            (from..=to).contains(&deg)
        } else {
            deg >= from || deg <= to
        }
    }
}

/// A validated stimulus-set spec.
#[derive(Debug, Clone, PartialEq)]
pub struct StimulusSpec {
    pub name: String,
    pub description: String,
    pub kind: Kind,
    pub seed: u64,
    pub width: u32,
    pub height: u32,
    /// Images per hue (always 1 for flat kinds; for photo, replaced by the number of photos at render time).
    pub variants: u32,
    pub hues: HueGrid,
    pub hold_out: Option<HoldOut>,
    /// Lower-case hex SHA-256 of the TOML text the spec was parsed from.
    pub sha256: String,
    /// Where the spec came from (a file path, or `stimuli/<name>.toml` for a bundled spec); used in errors and
    /// to resolve a relative photo directory.
    pub origin: PathBuf,
}

impl StimulusSpec {
    /// Parses and validates TOML `text`; `origin` names it in errors and anchors a relative `[photo] dir`.
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<StimulusSpec, Error> {
        let wire: SpecWire = toml::from_str(text)
            .map_err(|e| Error::SpecParse { path: origin.to_path_buf(), message: e.to_string().trim().to_string() })?;
        validate(wire, origin, crate::fsx::sha256_hex(text.as_bytes()))
    }

    /// The hues of the set in milli-degrees, ascending, hold-out slice removed.
    pub fn hue_mdegs(&self) -> Vec<i64> {
        let HueGrid { start_mdeg, end_mdeg, step_mdeg } = self.hues;
        (0..)
            .map_while(|i: i64| i.checked_mul(step_mdeg).and_then(|d| d.checked_add(start_mdeg)))
            .take_while(|&h| h <= end_mdeg)
            .filter(|&h| !self.hold_out.is_some_and(|s| s.contains_mdeg(h)))
            .collect()
    }
}

fn invalid(origin: &Path, field: &'static str, message: String) -> Error {
    Error::SpecInvalid { path: origin.to_path_buf(), field, message }
}

/// Degrees to milli-degrees, insisting on a finite multiple of 0.001° (so names and grids are exact).
fn to_mdeg(origin: &Path, field: &'static str, deg: f64) -> Result<i64, Error> {
    let m = deg * MDEG_PER_DEG as f64;
    // Beyond one turn no hue field means anything, and a huge value would saturate the i64 cast.
    if deg.is_finite() && deg.abs() > 360.0 {
        return Err(invalid(origin, field, format!("expected at most 360 degrees, got {deg}")));
    }
    if !deg.is_finite() || (m - m.round()).abs() > 1e-6 {
        return Err(invalid(origin, field, format!("expected a finite multiple of 0.001 degrees, got {deg}")));
    }
    Ok(m.round() as i64)
}

fn hue_in_circle(origin: &Path, field: &'static str, deg: f64) -> Result<i64, Error> {
    let m = to_mdeg(origin, field, deg)?;
    if !(0..FULL_TURN_MDEG).contains(&m) {
        return Err(invalid(origin, field, format!("expected a hue in [0, 360) degrees, got {deg}")));
    }
    Ok(m)
}

fn unit_interval(origin: &Path, field: &'static str, x: f64, allow_zero: bool) -> Result<f64, Error> {
    let ok = x.is_finite() && x <= 1.0 && if allow_zero { x >= 0.0 } else { x > 0.0 };
    if !ok {
        let range = if allow_zero { "[0, 1]" } else { "(0, 1]" };
        return Err(invalid(origin, field, format!("expected a number in {range}, got {x}")));
    }
    Ok(x)
}

/// Longest set name: it names folders and appears in reports.
pub const MAX_SET_NAME: usize = 64;

/// A set name names output folders and is written into reports (HTML, SVG, CSV), so it is restricted at the
/// edge to a safe alphabet: 1..=64 of a-z, 0-9, `-`, `_`, not starting with `-` or `_`. Nothing that reads a
/// name from a file (stimuli.json, a store manifest, a run folder) lets another one through.
pub fn check_set_name(name: &str) -> Result<(), String> {
    let ok = (1..=MAX_SET_NAME).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && !name.starts_with(['-', '_']);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected a set name of 1..={MAX_SET_NAME} characters a-z, 0-9, `-`, `_` (not starting with `-` or \
             `_`; it names output folders), got {name:?}"
        ))
    }
}

fn validate(mut w: SpecWire, origin: &Path, sha256: String) -> Result<StimulusSpec, Error> {
    check_set_name(&w.name).map_err(|msg| invalid(origin, "name", msg))?;
    for (field, side) in [("width", w.width), ("height", w.height)] {
        if side == 0 || side > MAX_SIDE {
            return Err(invalid(origin, field, format!("expected 1..={MAX_SIDE} pixels, got {side}")));
        }
    }
    let (hues, hold_out) = hue_grid(&w, origin)?;
    let kind = kind_params(&mut w, origin)?;
    let variants = variant_count(&kind, w.variants, origin)?;
    let spec = StimulusSpec {
        name: w.name,
        description: w.description,
        kind,
        seed: w.seed,
        width: w.width,
        height: w.height,
        variants,
        hues,
        hold_out,
        sha256,
        origin: origin.to_path_buf(),
    };
    check_hues_drawable(&spec, origin)?;
    Ok(spec)
}

/// The `[hues]` grid in milli-degrees and the optional `[hold-out]` slice.
fn hue_grid(w: &SpecWire, origin: &Path) -> Result<(HueGrid, Option<HoldOut>), Error> {
    let start_mdeg = hue_in_circle(origin, "hues.start", w.hues.start)?;
    let end_mdeg = hue_in_circle(origin, "hues.end", w.hues.end)?;
    let step_mdeg = to_mdeg(origin, "hues.step", w.hues.step)?;
    if step_mdeg <= 0 {
        return Err(invalid(origin, "hues.step", format!("expected a step > 0 degrees, got {}", w.hues.step)));
    }
    if end_mdeg < start_mdeg {
        return Err(invalid(
            origin,
            "hues",
            format!(
                "the range is inverted (start {} > end {}); hue ranges run upwards from start to end, both in \
                 [0, 360); use [hold-out] to leave out a slice",
                w.hues.start, w.hues.end
            ),
        ));
    }
    let hues = HueGrid { start_mdeg, end_mdeg, step_mdeg };
    let hold_out = match &w.hold_out {
        None => None,
        Some(h) => Some(HoldOut {
            from_mdeg: hue_in_circle(origin, "hold-out.from", h.from)?,
            to_mdeg: hue_in_circle(origin, "hold-out.to", h.to)?,
        }),
    };
    Ok((hues, hold_out))
}

/// The kind's parameters from its section, which must be the only kind section present.
fn kind_params(w: &mut SpecWire, origin: &Path) -> Result<Kind, Error> {
    // Exactly the section of the chosen kind may be present, so a typo in `kind` cannot silently ignore the
    // parameters the author wrote.
    let present = [
        (KindWire::FlatHsv, w.flat_hsv.is_some()),
        (KindWire::FlatOklch, w.flat_oklch.is_some()),
        (KindWire::Textured, w.textured.is_some()),
        (KindWire::Photo, w.photo.is_some()),
    ];
    if let Some((other, _)) = present.iter().find(|(k, p)| *p && *k != w.kind) {
        return Err(invalid(
            origin,
            "kind",
            format!(
                "kind is `{}` but the spec has a [{}] section; remove it or change `kind`",
                w.kind.section(),
                other.section()
            ),
        ));
    }
    let missing = |k: KindWire| invalid(origin, "kind", format!("kind `{0}` needs a [{0}] section", k.section()));

    Ok(match w.kind {
        KindWire::FlatHsv => flat_hsv_params(w.flat_hsv.take().ok_or_else(|| missing(w.kind))?, origin)?,
        KindWire::FlatOklch => {
            let s = w.flat_oklch.take().ok_or_else(|| missing(w.kind))?;
            let lightness = unit_interval(origin, "flat-oklch.lightness", s.lightness, false)?;
            if !(s.chroma.is_finite() && s.chroma > 0.0) {
                return Err(invalid(origin, "flat-oklch.chroma", format!("expected a chroma > 0, got {}", s.chroma)));
            }
            Kind::FlatOklch { lightness, chroma: s.chroma }
        }
        KindWire::Textured => {
            textured_params(w.textured.take().ok_or_else(|| missing(w.kind))?, (w.width, w.height), origin)?
        }
        KindWire::Photo => {
            let p = w.photo.take().ok_or_else(|| missing(w.kind))?;
            let base = origin.parent().unwrap_or(Path::new(""));
            Kind::Photo { dir: p.dir.map(|d| if d.is_absolute() { d } else { base.join(d) }) }
        }
    })
}

fn flat_hsv_params(s: FlatHsvWire, origin: &Path) -> Result<Kind, Error> {
    let saturation = unit_interval(origin, "flat-hsv.saturation", s.saturation, false)?;
    let value = unit_interval(origin, "flat-hsv.value", s.value, false)?;
    // Below the chromatic threshold a colour reads as grey and its hue cannot be measured back.
    let thr = ChromaticThreshold::default();
    if !thr.is_chromatic(Hsv { hue_deg: 0.0, s: saturation, v: value }) {
        return Err(invalid(
            origin,
            "flat-hsv",
            format!(
                "saturation {saturation} and value {value} make a near-grey; expected saturation >= {} and \
                 value >= {}",
                thr.min_s, thr.min_v
            ),
        ));
    }
    Ok(Kind::FlatHsv { saturation, value })
}

fn textured_params(t: TexturedWire, (width, height): (u32, u32), origin: &Path) -> Result<Kind, Error> {
    let families = t.families.unwrap_or_else(|| Family::ALL.to_vec());
    if families.is_empty() {
        return Err(invalid(origin, "textured.families", "expected at least one family".into()));
    }
    if families.iter().enumerate().any(|(i, f)| families[..i].contains(f)) {
        return Err(invalid(origin, "textured.families", "a family is listed twice".into()));
    }
    let hue_jitter_deg = t.hue_jitter_deg.unwrap_or(8.0);
    if !(0.0..=30.0).contains(&hue_jitter_deg) {
        return Err(invalid(
            origin,
            "textured.hue-jitter-deg",
            format!("expected 0..=30 degrees (more blurs the label), got {hue_jitter_deg}"),
        ));
    }
    for (field, side) in [("width", width), ("height", height)] {
        if side < MIN_TEXTURED_SIDE {
            return Err(invalid(
                origin,
                field,
                format!("textured images need at least {MIN_TEXTURED_SIDE} pixels a side, got {side}"),
            ));
        }
    }
    Ok(Kind::Textured(TexturedParams { families, hue_jitter_deg }))
}

/// Images per hue: textured sets may draw several, flat and photo sets exactly one.
fn variant_count(kind: &Kind, variants: Option<u32>, origin: &Path) -> Result<u32, Error> {
    let variants = match (kind, variants) {
        (Kind::Textured(_), v) => v.unwrap_or(1),
        (Kind::Photo { .. }, Some(_)) => {
            return Err(invalid(origin, "variants", "photo sets have one variant per photo; remove `variants`".into()))
        }
        (Kind::Photo { .. }, None) => 1,
        (_, None | Some(1)) => 1,
        (_, Some(v)) => {
            return Err(invalid(
                origin,
                "variants",
                format!("flat images of one hue are identical, so variants must be 1, got {v}"),
            ))
        }
    };
    if variants == 0 || variants > MAX_VARIANTS {
        return Err(invalid(origin, "variants", format!("expected 1..={MAX_VARIANTS}, got {variants}")));
    }
    Ok(variants)
}

/// The grid must keep at least one hue after the hold-out, and a flat OKLCH set must fit the sRGB gamut at
/// every hue.
fn check_hues_drawable(spec: &StimulusSpec, origin: &Path) -> Result<(), Error> {
    let hue_mdegs = spec.hue_mdegs();
    if hue_mdegs.is_empty() {
        return Err(invalid(origin, "hold-out", "the hold-out slice removes every hue; the set would be empty".into()));
    }
    if let Kind::FlatOklch { lightness, chroma } = spec.kind {
        if let Some(&h) = hue_mdegs.iter().find(|&&h| {
            oklch_to_srgb(Oklch { l: lightness, c: chroma, hue_deg: h as f64 / MDEG_PER_DEG as f64 }).is_none()
        }) {
            return Err(Error::OutOfGamut {
                path: origin.to_path_buf(),
                lightness,
                chroma,
                hue_deg: h as f64 / 1000.0,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
name = "t"
kind = "flat-hsv"
width = 8
height = 8
[hues]
start = 0
end = 354
step = 6
[flat-hsv]
saturation = 1.0
value = 1.0
"#;

    fn parse(text: &str) -> Result<StimulusSpec, Error> {
        StimulusSpec::from_toml_str(text, Path::new("t.toml"))
    }

    #[test]
    fn absurd_hue_numbers_and_names_are_refused() {
        let e = parse(&BASE.replace("step = 6", "step = 1e16")).unwrap_err().to_string();
        assert!(e.contains("hues.step") && e.contains("at most 360"), "{e}");
        for name in ["a\\\" onerror=x", "-x", "", &"a".repeat(65)] {
            let e = parse(&BASE.replace("name = \"t\"", &format!("name = {name:?}"))).unwrap_err().to_string();
            assert!(e.contains("`name`"), "{name}: {e}");
        }
    }

    #[test]
    fn grid_is_inclusive_and_exact() {
        let spec = parse(BASE).unwrap();
        let hues = spec.hue_mdegs();
        assert_eq!(hues.len(), 60);
        assert_eq!((hues[0], hues[59]), (0, 354_000));
        let frac = parse(&BASE.replace("end = 354\nstep = 6", "end = 1\nstep = 0.1")).unwrap();
        assert_eq!(frac.hue_mdegs(), (0..=10).map(|i| i * 100).collect::<Vec<_>>());
    }

    #[test]
    fn hold_out_is_inclusive_and_cyclic() {
        let s = HoldOut { from_mdeg: 150_000, to_mdeg: 240_000 };
        assert!(s.contains_mdeg(150_000) && s.contains_mdeg(240_000) && !s.contains_mdeg(240_001));
        let wrap = HoldOut { from_mdeg: 350_000, to_mdeg: 10_000 };
        assert!(wrap.contains_mdeg(0) && wrap.contains_mdeg(355_000) && !wrap.contains_mdeg(180_000));
        assert!(wrap.contains_deg(359.5) && !wrap.contains_deg(10.5));
    }

    #[test]
    fn gamut_error_names_the_first_failing_hue() {
        let text = BASE
            .replace("kind = \"flat-hsv\"", "kind = \"flat-oklch\"")
            .replace("[flat-hsv]\nsaturation = 1.0\nvalue = 1.0", "[flat-oklch]\nlightness = 0.75\nchroma = 0.2");
        match parse(&text) {
            Err(Error::OutOfGamut { hue_deg, .. }) => {
                assert!(oklch_to_srgb(Oklch { l: 0.75, c: 0.2, hue_deg }).is_none());
                let earlier = (0..).map(|i| i as f64 * 6.0).take_while(|&h| h < hue_deg);
                assert!(earlier.into_iter().all(|h| oklch_to_srgb(Oklch { l: 0.75, c: 0.2, hue_deg: h }).is_some()));
            }
            other => panic!("expected OutOfGamut, got {other:?}"),
        }
    }
}
