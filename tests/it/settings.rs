//! Every shared default is written once, in `src/settings.rs`: a default literal written again anywhere else in
//! `src/` (outside test modules and comments) fails here, so the alphas, the SMDS ridge, the tolerance, the
//! bootstrap and permutation counts, the default prompt and the rest cannot drift apart again. Flags that take
//! one of a set (`--lift`, `--pool`, `--normalise`, `--direction`) default to typed constants there, so their
//! spellings written as a `default_value` fail here too.

use std::path::{Path, PathBuf};

use huescan::settings;

/// Code (whitespace removed) that restates a shared default. Each entry names the constant to use instead.
const RESTATED: &[(&str, &str)] = &[
    ("\"-0.25:1.25:0.25\"", "settings::ALPHAS_SPEC"),
    ("[-0.25,0.0,0.25,0.5,0.75,1.0,1.25]", "settings::ALPHAS"),
    ("Whatcolouristhisimage", "settings::PROMPT"),
    ("\"circular,semicircular,euclidean\"", "settings::SHAPES"),
    ("\"simple-60,wild-360\"", "settings::SCAN_SETS"),
    ("(240.0,0.0),(0.0,120.0),(120.0,240.0)", "settings::PAIRS"),
    ("PairSpec::new(240.0,0.0)", "settings::PAIRS"),
    ("smds_alpha:1e-4", "settings::SMDS_ALPHA"),
    ("alpha_fit:1e-4", "settings::SMDS_ALPHA"),
    ("default_value_t=1e-4", "settings::SMDS_ALPHA"),
    ("tolerance:30.0", "settings::TOLERANCE_DEG"),
    ("tolerance_deg:30.0", "settings::TOLERANCE_DEG"),
    ("default_value_t=30.0", "settings::TOLERANCE_DEG"),
    ("bootstrap:1000", "settings::BOOTSTRAP"),
    ("default_value_t=1000", "settings::BOOTSTRAP"),
    ("permutations:100,", "settings::PERMUTATIONS"),
    ("default_value_t=100)", "settings::PERMUTATIONS"),
    ("default_value_t=100,", "settings::PERMUTATIONS"),
    ("w_test:0.7", "settings::W_TEST"),
    ("default_value_t=0.7", "settings::W_TEST"),
    ("default_value_t=4)", "settings::MAX_NEW_TOKENS"),
    ("default_value_t=4,", "settings::MAX_NEW_TOKENS"),
    ("max_new_tokens:4,", "settings::MAX_NEW_TOKENS"),
    // Flags that take one of a set default to a typed constant; their spellings are not written as defaults.
    ("default_value=\"pattern\"", "Lift::default()"),
    ("default_value=\"min-norm\"", "Lift::default()"),
    ("default_value=\"local-mean\"", "Lift::default()"),
    ("default_value=\"image-mean\"", "Pooling::default()"),
    ("default_value=\"none\"", "Normalisation::default()"),
    ("default_value=\"all\"", "settings::LAYERS or DirectionKind::ALL"),
    ("default_value=\"cpu\"", "settings::DEVICE"),
];

/// `(line number, needle, constant)` for each restated default in `text`, the non-test code of one file: the
/// part before its first `#[cfg(test)]`, comment lines left out.
fn restated(text: &str) -> Vec<(usize, &'static str, &'static str)> {
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    let mut found = Vec::new();
    for (i, line) in code.lines().enumerate() {
        let squeezed: String = line.chars().filter(|c| !c.is_whitespace()).collect();
        if squeezed.starts_with("//") {
            continue;
        }
        for &(needle, constant) in RESTATED {
            if squeezed.contains(needle) {
                found.push((i + 1, needle, constant));
            }
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_shared_default_is_written_once_in_settings() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(files.len() > 50, "found only {} source files under {}", files.len(), src.display());
    let mut problems = Vec::new();
    for file in files.iter().filter(|f| !f.ends_with("settings.rs")) {
        let text = std::fs::read_to_string(file).unwrap();
        for (line, needle, constant) in restated(&text) {
            problems.push(format!("{}:{line}: `{needle}` restates a default; use {constant}", file.display()));
        }
    }
    assert!(problems.is_empty(), "defaults written twice:\n{}", problems.join("\n"));
    // settings.rs itself holds each literal once.
    let text = std::fs::read_to_string(src.join("settings.rs")).unwrap();
    for (needle, constant) in [("Whatcolouristhisimage", "PROMPT"), ("\"-0.25:1.25:0.25\"", "ALPHAS_SPEC")] {
        let squeezed: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        assert_eq!(squeezed.matches(needle).count(), 1, "{constant} is written more than once in settings.rs");
    }
}

#[test]
fn the_guard_sees_a_restated_default_but_not_a_comment_or_a_test() {
    let code = "fn f() -> X {\n    X { smds_alpha: 1e-4, tolerance_deg : 30.0 }\n}\n// smds_alpha: 1e-4 in a comment\n";
    let hits = restated(code);
    assert_eq!(hits.len(), 2, "{hits:?}");
    assert_eq!((hits[0].0, hits[0].2), (2, "settings::SMDS_ALPHA"));
    assert!(restated("#[cfg(test)]\nmod tests { const A: f64 = X { bootstrap: 1000 }; }").is_empty());
    assert_eq!(restated("    #[arg(long, default_value_t = 1000)]").len(), 1);
    assert_eq!(restated("    #[arg(long, default_value = \"pattern\")]").len(), 1, "a set-valued default as text");
}

#[test]
fn the_two_spellings_of_a_default_agree() {
    assert_eq!(huescan::steer::parse_alphas(settings::ALPHAS_SPEC).unwrap(), settings::ALPHAS.to_vec());
    let shapes: Vec<huescan::manifold::Shape> = settings::SHAPES.split(',').map(|s| s.parse().unwrap()).collect();
    assert_eq!(shapes, huescan::manifold::Shape::NOTEBOOK.to_vec());
    assert_eq!(huescan::model::load::DEFAULT_PROMPT, settings::PROMPT);
    assert_eq!(huescan::model::qwen2_5_vl::DEFAULT_QUESTION, settings::PROMPT);
    let options = huescan::manifold::AnalyzeOptions::default();
    assert_eq!((options.n_bootstrap, options.n_permutations), (settings::BOOTSTRAP, settings::PERMUTATIONS));
    let sweep = huescan::steer::SweepOptions::default();
    assert_eq!((sweep.smds_alpha, sweep.tolerance_deg), (settings::SMDS_ALPHA, settings::TOLERANCE_DEG));
    assert_eq!((sweep.lift, sweep.normalisation), (huescan::steer::Lift::default(), Default::default()));
    assert_eq!(sweep.kinds, huescan::steer::DirectionKind::ALL.to_vec());
    // The autoencoder's f32 chromatic threshold is the one threshold, rounded to f32 as its literals would be.
    use huescan::model::autoencoder::{CHROMA_MIN_SATURATION, CHROMA_MIN_VALUE};
    assert_eq!((CHROMA_MIN_SATURATION, CHROMA_MIN_VALUE), (0.25f32, 0.15f32));
}
