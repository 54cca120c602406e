//! Stimulus rendering end to end: bundled specs, determinism, measured hues against labels, the gap and OKLCH
//! sets, photo mode, manifests, and every spec error.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use huescan::colour::{
    hsv_of_rgb8, mean_chromatic_hue, rgb8_to_f64, signed_hue_delta_deg, srgb_to_oklch, ChromaticThreshold,
};
use huescan::stimuli::render::{render_one, stimuli};
use huescan::stimuli::{bundled, render, Error, RenderOptions, StimulusManifest, StimulusSpec};

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = crate::common::fresh_dir("stimuli", name);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn spec(text: &str) -> StimulusSpec {
    StimulusSpec::from_toml_str(text, Path::new("test.toml")).unwrap()
}

fn spec_err(text: &str) -> Error {
    StimulusSpec::from_toml_str(text, Path::new("test.toml")).unwrap_err()
}

/// serde_json (without `float_roundtrip`) may read a float back one ulp off, so floats compare to 1e-12.
fn same_manifest(a: &StimulusManifest, b: &StimulusManifest) {
    let strip = |m: &StimulusManifest| {
        let mut m = m.clone();
        m.stimuli.iter_mut().for_each(|r| {
            (r.hsv_hue_deg, r.oklch_hue_deg, r.oklch_l, r.oklch_c, r.chromatic_fraction) = (0.0, 0.0, 0.0, 0.0, 0.0)
        });
        m
    };
    assert!(strip(a) == strip(b), "manifests differ beyond their measured floats");
    for (x, y) in a.stimuli.iter().zip(&b.stimuli) {
        let fx = [x.hsv_hue_deg, x.oklch_hue_deg, x.oklch_l, x.oklch_c, x.chromatic_fraction];
        let fy = [y.hsv_hue_deg, y.oklch_hue_deg, y.oklch_l, y.oklch_c, y.chromatic_fraction];
        assert!(fx.iter().zip(fy).all(|(p, q)| (p - q).abs() <= 1e-12), "{}: {fx:?} vs {fy:?}", x.id);
    }
}

fn load_rgb(path: &Path) -> image::RgbImage {
    image::open(path).unwrap().to_rgb8()
}

fn textured_spec(size: u32, step: u32, variants: u32) -> String {
    format!(
        r#"
name = "wild-small"
kind = "textured"
seed = 7
width = {size}
height = {size}
variants = {variants}
[hues]
start = 0
end = 359
step = {step}
[textured]
"#
    )
}

const FLAT: &str = r#"
name = "flat"
kind = "flat-hsv"
width = 16
height = 16
[hues]
start = 0
end = 354
step = 6
[flat-hsv]
saturation = 1.0
value = 1.0
"#;

#[test]
fn every_bundled_spec_parses_and_every_spec_file_is_bundled() {
    let names: Vec<&str> = bundled().iter().map(|b| b.name).collect();
    assert_eq!(names, ["simple-60", "wild-360", "gap-teal-blue", "oklch-72", "photo-36"]);
    for b in bundled() {
        let s = b.spec().unwrap_or_else(|e| panic!("{}: {e}", b.path));
        assert_eq!(s.name, b.name, "{}: name must match the file name", b.path);
        assert!(!b.description().is_empty());
        let on_disk = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(b.path)).unwrap();
        assert_eq!(on_disk, b.toml);
    }
    let mut files: Vec<String> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("stimuli"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    files.sort();
    let mut bundled_files: Vec<String> = bundled().iter().map(|b| format!("{}.toml", b.name)).collect();
    bundled_files.sort();
    assert_eq!(files, bundled_files, "every stimuli/*.toml must be listed in stimuli::bundled()");

    let counts: Vec<usize> = bundled().iter().map(|b| b.spec().unwrap().hue_mdegs().len()).collect();
    assert_eq!(counts, [60, 360, 44, 72, 36]);
    assert!(StimulusSpec::resolve("wild-360").is_ok() && StimulusSpec::resolve("stimuli/oklch-72.toml").is_ok());
    assert!(matches!(StimulusSpec::resolve("no-such-set"), Err(Error::UnknownSpec { .. })));
}

#[test]
fn rendering_twice_is_byte_identical_whatever_the_thread_count() {
    let s = spec(&textured_spec(40, 24, 2));
    let (a, b) = (TempDir::new("twice-a"), TempDir::new("twice-b"));
    let ma = render(&s, &a.0, &RenderOptions::default()).unwrap();
    let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let mb = one_thread.install(|| render(&s, &b.0, &RenderOptions::default())).unwrap();
    assert!(ma == mb, "manifests differ");
    assert_eq!(ma.stimuli.len(), 15 * 2);
    for rec in &ma.stimuli {
        assert_eq!(std::fs::read(a.0.join(&rec.file)).unwrap(), std::fs::read(b.0.join(&rec.file)).unwrap());
    }
    let json = |d: &Path| std::fs::read(d.join("stimuli.json")).unwrap();
    assert_eq!(json(&a.0), json(&b.0));

    // Any image renders alone from (spec, stimulus): what a shard of a Slurm array would do.
    let list = stimuli(&s, s.variants);
    let lone = &list[17];
    let img = render_one(&s, lone, &[]);
    assert_eq!(img, load_rgb(&a.0.join(&lone.file)));
    assert_eq!(lone.file, "hue_192_v1.png");
}

#[test]
fn simple_60_flat_hues_equal_labels_within_half_a_degree() {
    let s = StimulusSpec::resolve("simple-60").unwrap();
    let out = TempDir::new("simple");
    let calls = AtomicUsize::new(0);
    let last = AtomicUsize::new(0);
    let progress = |done: usize, total: usize| {
        calls.fetch_add(1, Ordering::Relaxed);
        last.fetch_max(done, Ordering::Relaxed);
        assert_eq!(total, 60);
    };
    let m = render(&s, &out.0, &RenderOptions { photos: None, progress: Some(&progress) }).unwrap();
    assert_eq!((calls.load(Ordering::Relaxed), last.load(Ordering::Relaxed)), (60, 60));
    assert_eq!(m.stimuli.len(), 60);
    for (i, rec) in m.stimuli.iter().enumerate() {
        assert_eq!(rec.hue_deg, 6.0 * i as f64);
        assert_eq!(rec.file, format!("hue_{:03}.png", 6 * i));
        let img = load_rgb(&out.0.join(&rec.file));
        assert_eq!(img.dimensions(), (224, 224));
        let first = img.get_pixel(0, 0).0;
        assert!(img.pixels().all(|p| p.0 == first), "{} is not flat", rec.file);
        let hsv = hsv_of_rgb8(first);
        // 8-bit rounding moves the hue by at most 0.5/255 of a 60° sextant, 0.12°.
        assert!(signed_hue_delta_deg(rec.hue_deg, hsv.hue_deg).abs() <= 0.5, "{}: {hsv:?}", rec.file);
        assert!(hsv.s == 1.0 && hsv.v == 1.0);
        assert!((rec.hsv_hue_deg - hsv.hue_deg).abs() < 1e-6);
        assert!((rec.chromatic_fraction - 1.0).abs() < 1e-12);
    }
    same_manifest(&StimulusManifest::load(&out.0).unwrap(), &m);
}

// The whole wild-360 label grid at a reduced size: every image's chromatic pixels (HSV s >= 0.25,
// v >= 0.15) have circular mean hue within 3° of the label. 3° is the issue's tolerance; the residual comes
// from 8-bit quantisation and pixels crossing the chromatic threshold after rounding.
#[test]
fn textured_mean_chromatic_hue_is_within_3_degrees_for_all_360_hues() {
    let s = spec(&textured_spec(48, 1, 1));
    let out = TempDir::new("wild");
    let m = render(&s, &out.0, &RenderOptions::default()).unwrap();
    assert_eq!(m.stimuli.len(), 360);
    let mut worst: f64 = 0.0;
    for rec in &m.stimuli {
        let img = load_rgb(&out.0.join(&rec.file));
        let (mean, n) = mean_chromatic_hue(img.as_raw(), ChromaticThreshold::default()).unwrap();
        let err = signed_hue_delta_deg(rec.hue_deg, mean).abs();
        worst = worst.max(err);
        assert!(err <= 3.0, "{}: mean chromatic hue {mean:.2}, label {}", rec.file, rec.hue_deg);
        assert!(n as f64 >= 0.1 * 48.0 * 48.0, "{}: only {n} chromatic pixels", rec.file);
        assert!(signed_hue_delta_deg(mean, rec.hsv_hue_deg).abs() < 1e-6);
    }
    eprintln!("textured: worst |mean chromatic hue - label| over 360 images = {worst:.3} deg");
    // Lightness and saturation really vary across the set (not one colour re-hued).
    let ls: Vec<f64> = m.stimuli.iter().map(|r| r.oklch_l).collect();
    let spread = ls.iter().cloned().fold(f64::MIN, f64::max) - ls.iter().cloned().fold(f64::MAX, f64::min);
    assert!(spread > 0.2, "mean lightness spans only {spread}");
    // The bundled set itself, full size, every 30th hue (all 360 take ~70 s in a debug build; measured worst
    // 0.99°, see the report).
    let wild = StimulusSpec::resolve("wild-360").unwrap();
    for s in stimuli(&wild, 1).iter().step_by(30) {
        let img = render_one(&wild, s, &[]);
        assert_eq!(img.dimensions(), (224, 224));
        let (mean, n) = mean_chromatic_hue(img.as_raw(), ChromaticThreshold::default()).unwrap();
        assert!(signed_hue_delta_deg(s.hue_deg(), mean).abs() <= 3.0, "wild-360 {}: mean {mean:.2}", s.id);
        assert!(n as f64 >= 0.1 * 224.0 * 224.0, "wild-360 {}: only {n} chromatic pixels", s.id);
    }
    let cs: Vec<f64> = m.stimuli.iter().map(|r| r.oklch_c).collect();
    let spread = cs.iter().cloned().fold(f64::MIN, f64::max) - cs.iter().cloned().fold(f64::MAX, f64::min);
    assert!(spread > 0.05, "mean chroma spans only {spread}");
}

#[test]
fn gap_set_holds_out_teal_to_blue() {
    let s = StimulusSpec::resolve("gap-teal-blue").unwrap();
    let out = TempDir::new("gap");
    let m = render(&s, &out.0, &RenderOptions::default()).unwrap();
    assert_eq!(m.stimuli.len(), 44);
    let slice = s.hold_out.unwrap();
    for rec in &m.stimuli {
        assert!(!slice.contains_deg(rec.hue_deg), "{} is in the held-out slice", rec.file);
        let px = load_rgb(&out.0.join(&rec.file)).get_pixel(0, 0).0;
        assert!(!slice.contains_deg(hsv_of_rgb8(px).hue_deg), "{} measures inside the slice", rec.file);
    }
    let hues = m.hues_deg();
    assert!(hues.contains(&144.0) && hues.contains(&246.0) && !hues.contains(&150.0) && !hues.contains(&240.0));
}

#[test]
fn oklch_set_has_its_oklch_hue_and_constant_lightness() {
    let s = StimulusSpec::resolve("oklch-72").unwrap();
    let out = TempDir::new("oklch");
    let m = render(&s, &out.0, &RenderOptions::default()).unwrap();
    assert_eq!(m.stimuli.len(), 72);
    let mut hsv_steps = Vec::new();
    for rec in &m.stimuli {
        let px = load_rgb(&out.0.join(&rec.file)).get_pixel(0, 0).0;
        let lch = srgb_to_oklch(rgb8_to_f64(px));
        // Quantisation bounds: hue 0.5° (measured worst ~0.33°), L and C one 8-bit step (~0.003).
        assert!(signed_hue_delta_deg(rec.hue_deg, lch.hue_deg).abs() <= 0.5, "{}: {lch:?}", rec.file);
        assert!((lch.l - 0.75).abs() <= 0.005 && (lch.c - 0.125).abs() <= 0.005, "{}: {lch:?}", rec.file);
        assert!(signed_hue_delta_deg(lch.hue_deg, rec.oklch_hue_deg).abs() < 1e-6);
        hsv_steps.push(rec.hsv_hue_deg);
    }
    // The recorded HSV hues are not the OKLCH labels: the two labelings differ, which is the point of the set.
    let max_gap =
        (0..72).map(|i| signed_hue_delta_deg(hsv_steps[i], hsv_steps[(i + 1) % 72]).abs()).fold(0.0, f64::max);
    assert!(max_gap > 7.0, "hsv steps look uniform ({max_gap})");
}

fn write_photo(dir: &Path, name: &str) -> image::RgbImage {
    // A synthetic "photo": a hue ramp 20..60° with varying saturation and value, a grey band and black.
    let img = image::RgbImage::from_fn(40, 30, |x, y| {
        if y < 6 {
            image::Rgb([128, 128, 128])
        } else if x < 3 {
            image::Rgb([0, 0, 0])
        } else {
            let hsv = huescan::colour::Hsv {
                hue_deg: 20.0 + x as f64,
                s: 0.3 + 0.7 * (y as f64 / 30.0),
                v: 0.4 + 0.6 * (x as f64 / 40.0),
            };
            image::Rgb(huescan::colour::f64_to_rgb8(huescan::colour::hsv_to_rgb(hsv)))
        }
    });
    img.save(dir.join(name)).unwrap();
    img
}

#[test]
fn photo_mode_rotates_hue_and_keeps_saturation_and_value() {
    let dir = TempDir::new("photos");
    let photos = dir.0.join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    let original = write_photo(&photos, "a.png");
    // A larger JPEG with an upper-case extension: decoded, centre-cropped and resized to the spec's size.
    let big = image::imageops::resize(&original, 80, 50, image::imageops::FilterType::Triangle);
    big.save_with_format(photos.join("b.JPG"), image::ImageFormat::Jpeg).unwrap();
    std::fs::write(photos.join("notes.txt"), "not a photo").unwrap();
    let text = r#"
name = "photo"
kind = "photo"
width = 40
height = 30
[hues]
start = 0
end = 350
step = 50
[photo]
"#;
    let s = spec(text);
    let out = dir.0.join("out");
    let opts = RenderOptions { photos: Some(photos.clone()), progress: None };
    let m = render(&s, &out, &opts).unwrap();
    assert_eq!(m.stimuli.len(), 8 * 2);
    let thr = ChromaticThreshold::default();
    for rec in &m.stimuli {
        let img = load_rgb(&out.join(&rec.file));
        assert_eq!(img.dimensions(), (40, 30));
        let (mean, _) = mean_chromatic_hue(img.as_raw(), thr).unwrap();
        assert!(signed_hue_delta_deg(rec.hue_deg, mean).abs() <= 1.0, "{}: {mean}", rec.file);
        if rec.variant == 1 {
            assert_eq!(rec.source.as_deref(), Some("b.JPG"));
            assert!(rec.file.ends_with("_v1.png"));
            continue;
        }
        assert_eq!(rec.source.as_deref(), Some("a.png"));
        assert!(rec.file.ends_with("_v0.png"));
        for (p, q) in original.pixels().zip(img.pixels()) {
            let (a, b) = (hsv_of_rgb8(p.0), hsv_of_rgb8(q.0));
            if a.s == 0.0 {
                assert_eq!(p, q, "greys stay grey");
                continue;
            }
            // V is the max channel, so it survives rounding within half a level; S within a few levels at v ≥ 0.4.
            assert!((a.v - b.v).abs() <= 1.0 / 255.0 + 1e-12, "{}: v {a:?} -> {b:?}", rec.file);
            assert!((a.s - b.s).abs() <= 0.02, "{}: s {a:?} -> {b:?}", rec.file);
        }
    }
    // A relative `[photo] dir` is resolved against the spec file's folder.
    let spec_path = dir.0.join("photo.toml");
    std::fs::write(&spec_path, text.replace("[photo]", "[photo]\ndir = \"photos\"")).unwrap();
    let from_file = StimulusSpec::from_path(&spec_path).unwrap();
    let m_rel = render(&from_file, &dir.0.join("out-rel"), &RenderOptions::default()).unwrap();
    assert!(m_rel.stimuli == m.stimuli, "relative photo dir renders differently");

    // Same photos, same bytes.
    let out2 = dir.0.join("out2");
    assert!(render(&s, &out2, &opts).unwrap() == m, "photo manifests differ");

    // A missing, empty or grey-only folder is a clear error.
    let err = |dir: Option<PathBuf>| {
        let o = RenderOptions { photos: dir, progress: None };
        render(&s, &dir_out(&out), &o).unwrap_err()
    };
    assert!(matches!(err(None), Error::PhotoDirMissing { path: None }));
    assert!(matches!(err(Some(dir.0.join("nope"))), Error::PhotoDirMissing { path: Some(_) }));
    let empty = dir.0.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert!(matches!(err(Some(empty.clone())), Error::NoPhotos { .. }));
    image::RgbImage::from_pixel(8, 8, image::Rgb([90, 90, 90])).save(empty.join("grey.png")).unwrap();
    assert!(matches!(err(Some(empty.clone())), Error::PhotoAchromatic { .. }));
    // Equal thirds of red, green and blue: the hues cancel and leave no dominant hue.
    let rgb =
        image::RgbImage::from_fn(9, 9, |x, _| image::Rgb([[255, 0, 0], [0, 255, 0], [0, 0, 255]][x as usize / 3]));
    std::fs::remove_file(empty.join("grey.png")).unwrap();
    rgb.save(empty.join("rgb.png")).unwrap();
    assert!(matches!(err(Some(empty)), Error::PhotoNoDominantHue { .. }));
}

fn dir_out(base: &Path) -> PathBuf {
    base.with_file_name("out-errors")
}

#[test]
fn manifest_load_detects_tampering_and_out_dir_mixing() {
    let out = TempDir::new("manifest");
    let s = spec(FLAT);
    render(&s, &out.0, &RenderOptions::default()).unwrap();
    assert!(StimulusManifest::load(&out.0).is_ok());

    // A PNG changed after rendering.
    std::fs::write(out.0.join("hue_006.png"), b"not the png").unwrap();
    assert!(matches!(StimulusManifest::load(&out.0), Err(Error::ChecksumMismatch { .. })));
    // A different set into the same folder.
    let other = spec(&FLAT.replace("step = 6", "step = 5"));
    assert!(matches!(render(&other, &out.0, &RenderOptions::default()), Err(Error::OutDirInUse { .. })));
    // Re-rendering the same set repairs it.
    render(&s, &out.0, &RenderOptions::default()).unwrap();
    assert!(StimulusManifest::load(&out.0).is_ok());

    let path = out.0.join("stimuli.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("huescan-stimuli/1", "huescan-stimuli/0")).unwrap();
    assert!(matches!(StimulusManifest::load(&out.0), Err(Error::ManifestInvalid { .. })));
    std::fs::write(&path, text.replace("\"hue_012.png\"", "\"../hue_012.png\"")).unwrap();
    assert!(matches!(StimulusManifest::load(&out.0), Err(Error::ManifestInvalid { .. })));
    std::fs::write(&path, text.replace("\"hue_012.png\"", "\"hue_006.png\"")).unwrap();
    assert!(matches!(StimulusManifest::load(&out.0), Err(Error::ManifestInvalid { .. })));
}

#[test]
fn fractional_steps_get_fixed_decimal_names() {
    let s = spec(&FLAT.replace("end = 354\nstep = 6", "end = 1\nstep = 0.25"));
    let names: Vec<String> = stimuli(&s, 1).into_iter().map(|x| x.file).collect();
    assert_eq!(names, ["hue_000p00.png", "hue_000p25.png", "hue_000p50.png", "hue_000p75.png", "hue_001p00.png"]);
}

fn field_of(e: Error) -> String {
    match e {
        Error::SpecInvalid { field, .. } => field.to_string(),
        other => panic!("expected SpecInvalid, got {other}"),
    }
}

#[test]
fn each_bad_spec_gives_a_clear_error() {
    // Unknown keys, at top level and in a section, name the key.
    for text in [FLAT.replace("width = 16", "width = 16\ncolour = 1"), FLAT.replace("step = 6", "step = 6\nstop = 3")] {
        match spec_err(&text) {
            Error::SpecParse { message, .. } => assert!(message.contains("unknown field"), "{message}"),
            other => panic!("expected SpecParse, got {other}"),
        }
    }
    assert!(matches!(spec_err(&FLAT.replace("kind = \"flat-hsv\"", "kind = \"flat-hsl\"")), Error::SpecParse { .. }));
    assert!(matches!(spec_err(&FLAT.replace("height = 16\n", "")), Error::SpecParse { .. }));

    let cases: &[(&str, &str, &str)] = &[
        ("start = 0\nend = 354", "start = 200\nend = 100", "hues"),
        ("step = 6", "step = 0", "hues.step"),
        ("step = 6", "step = -6", "hues.step"),
        ("step = 6", "step = 0.0001", "hues.step"),
        ("start = 0", "start = -10", "hues.start"),
        ("end = 354", "end = 360", "hues.end"),
        ("width = 16", "width = 0", "width"),
        ("height = 16", "height = 0", "height"),
        ("name = \"flat\"", "name = \"Flat Set\"", "name"),
        ("saturation = 1.0", "saturation = 1.5", "flat-hsv.saturation"),
        ("value = 1.0", "value = 0.0", "flat-hsv.value"),
        ("saturation = 1.0", "saturation = 0.1", "flat-hsv"),
        ("width = 16", "width = 16\nvariants = 3", "variants"),
        ("[flat-hsv]", "[hold-out]\nfrom = 0\nto = 359.999\n[flat-hsv]", "hold-out"),
        ("[flat-hsv]", "[hold-out]\nfrom = 400\nto = 10\n[flat-hsv]", "hold-out.from"),
        ("[flat-hsv]\nsaturation = 1.0\nvalue = 1.0", "[flat-oklch]\nlightness = 0.7\nchroma = 0.1", "kind"),
        ("[flat-hsv]\nsaturation = 1.0\nvalue = 1.0", "", "kind"),
    ];
    for (from, to, field) in cases {
        assert!(FLAT.contains(from), "test case does not apply: {from}");
        let e = spec_err(&FLAT.replace(from, to));
        let msg = e.to_string();
        assert!(msg.starts_with("invalid stimulus spec `test.toml`"), "{msg}");
        assert_eq!(field_of(e), *field, "{from} -> {to}: {msg}");
    }

    let oklch = FLAT
        .replace("kind = \"flat-hsv\"", "kind = \"flat-oklch\"")
        .replace("[flat-hsv]\nsaturation = 1.0\nvalue = 1.0", "[flat-oklch]\nlightness = 0.75\nchroma = 0.14");
    match spec_err(&oklch) {
        e @ Error::OutOfGamut { hue_deg, .. } => {
            assert!(e.to_string().contains(&format!("hue {hue_deg} degrees")), "{e}");
        }
        other => panic!("expected OutOfGamut, got {other}"),
    }
    assert!(spec_err(&textured_spec(8, 1, 1)).to_string().contains("at least 16 pixels"));
    assert!(spec_err(&textured_spec(32, 1, 1).replace("[textured]", "[textured]\nfamilies = []"))
        .to_string()
        .contains("at least one family"));
    assert!(spec_err(&textured_spec(32, 1, 1).replace("[textured]", "[textured]\nhue-jitter-deg = 45"))
        .to_string()
        .contains("hue-jitter-deg"));
    let photo = "name = \"p\"\nkind = \"photo\"\nwidth = 8\nheight = 8\nvariants = 2\n[hues]\nstart = 0\nend = 10\nstep = 1\n[photo]\n";
    assert_eq!(field_of(spec_err(photo)), "variants");
}
