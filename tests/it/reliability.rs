//! The bad-input catalogue of issue 15 as table-driven cases: what a careless or hostile user types or leaves
//! on disk, and the one-line error huescan must answer with. Every case also checks that huescan neither
//! panicked (exit 101, "panicked" on stderr) nor aborted (134), and that it ended within a time limit (a FIFO
//! as a layer file used to block forever).

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::common::{fresh_dir, huescan, qwen_fixture};

/// Longest any case may run: every one is a refusal that should take well under a second of work.
const CASE_LIMIT: Duration = Duration::from_secs(60);

/// What a finished command left.
pub struct Ran {
    pub code: Option<i32>,
    pub stderr: String,
}

/// Waits for `child` at most `limit`, killing it past that (a hang is a failure, not a stuck test run).
pub fn wait_limited(mut child: Child, limit: Duration, what: &str) -> Ran {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {limit:?} (a hang)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    Ran { code: out.status.code(), stderr: String::from_utf8_lossy(&out.stderr).into_owned() }
}

pub fn run_in(dir: &Path, args: &[OsString]) -> Ran {
    let child = huescan()
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_limited(child, CASE_LIMIT, &format!("huescan {args:?}"))
}

pub fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// No panic, no abort, no Rust backtrace: the process ended through huescan's own error path.
fn assert_no_crash(what: &str, r: &Ran) {
    assert!(!matches!(r.code, Some(101) | Some(134) | None), "{what}: exit {:?}\n{}", r.code, r.stderr);
    assert!(!r.stderr.contains("panicked") && !r.stderr.contains("RUST_BACKTRACE"), "{what}: panicked\n{}", r.stderr);
}

/// A refusal: non-zero exit, and one line of stderr names the problem (`want`).
fn assert_refused(what: &str, r: &Ran, want: &str) {
    assert_no_crash(what, r);
    assert!(r.code != Some(0), "{what}: exit 0, expected a refusal containing {want:?}\n{}", r.stderr);
    assert!(
        r.stderr.lines().any(|l| l.contains(want)),
        "{what}: expected {want:?} on one line of stderr, got\n{}",
        r.stderr
    );
}

/// Copies a directory tree (plain files and folders).
pub fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// A 12-hue flat set: small enough that extraction and analysis take a moment.
pub const SPEC_12: &str = r#"
name = "rel-12"
kind = "flat-hsv"
width = 16
height = 16
[hues]
start = 0
end = 330
step = 30
[flat-hsv]
saturation = 1.0
value = 1.0
"#;

/// Rendered sets, autoencoder stores and an analysis, made once and shared read-only by the cases.
pub struct World {
    pub dir: PathBuf,
}

impl World {
    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.join(p)
    }
}

fn ok(dir: &Path, args: &[&str]) -> Ran {
    let r = run_in(dir, &os(args));
    assert!(r.code == Some(0), "huescan {args:?} failed:\n{}", r.stderr);
    r
}

pub fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = fresh_dir("reliability", "world");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("rel-12.toml"), SPEC_12).unwrap();
        let other = SPEC_12.replace("rel-12", "rel-12b").replace("saturation = 1.0", "saturation = 0.8");
        fs::write(dir.join("rel-12b.toml"), other).unwrap();
        ok(&dir, &["-q", "stimuli", "render", "rel-12.toml", "--out", "stim"]);
        ok(&dir, &["-q", "stimuli", "render", "rel-12b.toml", "--out", "stim-b"]);
        let ae = ["--model", "colour-autoencoder", "--ae-epochs", "30", "--ae-weights", "ae.safetensors"];
        for (stim, acts) in [("stim", "acts"), ("stim-b", "acts-b")] {
            ok(&dir, &[&["-q", "extract"][..], &ae, &["--stimuli", stim, "--out", acts]].concat());
        }
        let fast = ["--permutations", "5", "--bootstrap", "5"];
        ok(&dir, &[&["-q", "analyze", "acts", "--layers", "2", "--out", "analysis"][..], &fast].concat());
        World { dir }
    })
}

/// A copy of the world's store `name` that a case may break.
fn store_copy(name: &str, case: &str) -> PathBuf {
    let dir = fresh_dir("reliability", case);
    copy_tree(&world().path(name), &dir);
    dir
}

fn edit_manifest(store: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = store.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    edit(&mut m);
    fs::write(path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

fn ae_args() -> Vec<&'static str> {
    vec!["--model", "colour-autoencoder", "--ae-weights", "ae.safetensors", "--ae-epochs", "30"]
}

#[test]
fn command_line_numbers_and_ranges_are_checked_before_use() {
    let w = world();
    let ae = ae_args();
    let steer = |extra: &[&str]| -> Vec<String> {
        let base = ["steer", "--acts", "acts", "--stimuli", "stim", "--out", "steer-x"];
        [&base[..], &ae, extra].concat().iter().map(|s| s.to_string()).collect()
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        // Ranges are bounded before they are expanded (these allocated 32 GB and aborted).
        (strings(&["analyze", "acts", "--layers", "0-4000000000", "--out", "an-x"]), "layer 4000000000 does not exist"),
        (
            [&["extract"][..], &ae, &["--stimuli", "stim", "--out", "ex-x", "--layers", "0-4000000000"]]
                .concat()
                .iter()
                .map(|s| s.to_string())
                .collect(),
            "layer 4000000000 does not exist",
        ),
        (steer(&["--layer", "0-4000000000"]), "layer 4000000000 does not exist"),
        // NaN and Inf in user numbers (NaN reached an `expect`).
        (steer(&["--layer", "2", "--from", "nan", "--to", "0"]), "expected a finite number"),
        (steer(&["--layer", "2", "--from", "0", "--to", "1e400"]), "expected a finite number"),
        (steer(&["--layer", "2", "--tolerance", "nan"]), "expected a finite number"),
        // Alphas that overflow the activations give NaN rows: an error, not a table.
        (steer(&["--layer", "2", "--from", "240", "--to", "0", "--alphas", "1e300"]), "non-finite"),
        (strings(&["analyze", "acts", "--w-test", "2", "--out", "an-x"]), "expected a number in [0, 1]"),
        // Duplicate inputs would count as two sets agreeing.
        (strings(&["analyze", "acts", "./acts", "--out", "an-x"]), "is given twice"),
        // Caps with an explicit way past them.
        (strings(&["analyze", "acts", "--bootstrap", "1000000000", "--out", "an-x"]), "--allow-large"),
        (strings(&["analyze", "acts", "--permutations", "1000000000", "--out", "an-x"]), "above the cap"),
        (
            [
                &["ask", "--model", "qwen-tiny-random"][..],
                &["--image", "stim/hue_000.png", "--max-new-tokens", "100000000"],
            ]
            .concat()
            .iter()
            .map(|s| s.to_string())
            .collect(),
            "--max-new-tokens 100000000 is above the cap",
        ),
        (steer(&["--layer", "2", "--max-new-tokens", "100000000"]), "above the cap"),
        // Flags that do not apply are refused, not ignored.
        (
            [&["extract"][..], &ae, &["--stimuli", "stim", "--out", "ex-x", "--prompt", "which colour?"]]
                .concat()
                .iter()
                .map(|s| s.to_string())
                .collect(),
            "--prompt does not apply",
        ),
        (
            strings(&[
                "extract",
                "--model",
                "qwen-tiny-random",
                "--stimuli",
                "stim",
                "--out",
                "ex-q",
                "--prompt",
                "which?",
            ]),
            "--prompt does not apply",
        ),
        // steer checks its inputs against the store's provenance.
        (
            [&["steer", "--acts", "acts", "--stimuli", "stim-b", "--out", "steer-x", "--layer", "2"][..], &ae]
                .concat()
                .iter()
                .map(|s| s.to_string())
                .collect(),
            "is not the set the store was extracted from",
        ),
        (
            strings(&[
                "steer",
                "--acts",
                "acts",
                "--stimuli",
                "stim",
                "--out",
                "s",
                "--layer",
                "2",
                "--model",
                "qwen-tiny-random",
            ]),
            "the store was extracted from `colour-autoencoder`",
        ),
    ];
    for (args, want) in cases {
        let r = run_in(&w.dir, &args.iter().map(OsString::from).collect::<Vec<_>>());
        assert_refused(&format!("{args:?}"), &r, want);
    }
    assert!(!w.path("an-x").exists() && !w.path("steer-x").join("sweep.csv").exists(), "a refusal wrote output");
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[test]
fn closed_stdout_ends_quietly_and_a_full_one_is_an_error() {
    // `huescan stimuli list | head -0` and `huescan ask … | true`: the reader is gone before huescan writes.
    let image = qwen_fixture().join("image_a.png");
    let ask = [OsString::from("ask"), "--model".into(), "qwen-tiny-random".into(), "--image".into(), image.into()];
    for args in [os(&["stimuli", "list"]), ask.to_vec()] {
        let mut child = huescan().args(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        drop(child.stdout.take());
        let r = wait_limited(child, CASE_LIMIT, "closed stdout");
        assert_no_crash(&format!("{args:?} | closed"), &r);
        assert_eq!(r.code, Some(0), "{args:?}: a closed pipe is not an error: {}", r.stderr);
    }
    if Path::new("/dev/full").exists() {
        let full = fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
        let child = huescan().args(["stimuli", "list"]).stdout(full).stderr(Stdio::piped()).spawn().unwrap();
        let r = wait_limited(child, CASE_LIMIT, "stimuli list > /dev/full");
        assert_refused("stimuli list > /dev/full", &r, "cannot write `<standard output>`: out of space");
        // With stderr full too there is nobody to tell, but the exit code still says it, without a panic.
        let full = fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
        let status = huescan().args(["stimuli", "render", "no-such-set", "--out", "x"]).stderr(full).status().unwrap();
        assert_eq!(status.code(), Some(1), "a refusal with a full stderr");
    }
}

#[test]
fn hostile_or_absurd_stimulus_specs_are_refused() {
    let dir = fresh_dir("reliability", "specs");
    fs::create_dir_all(&dir).unwrap();
    let cases: Vec<(String, &str)> = vec![
        // 1e16 overflowed the milli-degree grid and wrote 1001 stimuli over each other with exit 0.
        (SPEC_12.replace("step = 30", "step = 1e16"), "`hues.step`: expected at most 360 degrees"),
        (SPEC_12.replace("end = 330", "end = 400"), "`hues.end`"),
        (SPEC_12.replace("start = 0", "start = -90"), "`hues.start`"),
        (SPEC_12.replace("step = 30", "step = nan"), "`hues.step`"),
        // A set name reaches folder names and the report: a safe alphabet only.
        (SPEC_12.replace("\"rel-12\"", r#""a\" onerror=\"alert(1)""#), "`name`"),
        (SPEC_12.replace("\"rel-12\"", "\"../../etc\""), "`name`"),
        (SPEC_12.replace("\"rel-12\"", "\"<svg>\""), "`name`"),
        (SPEC_12.replace("width = 16", "width = 0"), "`width`"),
        (SPEC_12.replace("width = 16", "width = -16"), "cannot parse stimulus spec"),
        // 360000 hues x 1000 variants: capped with an estimate, --allow-large to go beyond.
        (
            SPEC_12
                .replace("kind = \"flat-hsv\"", "kind = \"textured\"\nvariants = 1000")
                .replace("step = 30", "step = 0.001")
                .replace("end = 330", "end = 359.999")
                .replace("[flat-hsv]\nsaturation = 1.0\nvalue = 1.0", "[textured]"),
            "the image count 360000000 is above the cap",
        ),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let spec = dir.join(format!("s{i}.toml"));
        fs::write(&spec, text).unwrap();
        let r = run_in(&dir, &[OsString::from("stimuli"), "render".into(), spec.into(), "--out".into(), "out".into()]);
        assert_refused(&format!("spec {i} ({want})"), &r, want);
    }
    assert!(!dir.join("out").join("stimuli.json").exists());
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_truncated_photo_is_refused_with_its_name() {
    let dir = fresh_dir("reliability", "photo");
    let photos = dir.join("photos");
    fs::create_dir_all(&photos).unwrap();
    let img = image::RgbImage::from_fn(48, 48, |x, y| image::Rgb([200, (x * 4) as u8, (y * 2) as u8]));
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90).encode_image(&img).unwrap();
    fs::write(photos.join("whole.jpg"), &jpeg).unwrap();
    fs::write(photos.join("cut.jpg"), &jpeg[..jpeg.len() * 2 / 3]).unwrap();
    let spec =
        "name = \"p\"\nkind = \"photo\"\nwidth = 16\nheight = 16\n[hues]\nstart = 0\nend = 300\nstep = 60\n[photo]\n";
    fs::write(dir.join("p.toml"), spec).unwrap();
    let r = run_in(&dir, &os(&["stimuli", "render", "p.toml", "--photos", "photos", "--out", "out"]));
    assert_refused("truncated jpeg", &r, "cut.jpg");
    assert!(r.stderr.contains("truncated"), "{}", r.stderr);
    fs::remove_file(photos.join("cut.jpg")).unwrap();
    let r = run_in(&dir, &os(&["-q", "stimuli", "render", "p.toml", "--photos", "photos", "--out", "out"]));
    assert_eq!(r.code, Some(0), "a whole JPEG renders: {}", r.stderr);
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn manifests_that_contradict_their_data_are_refused() {
    type Edit = fn(&mut serde_json::Value);
    let cases: [(&str, Edit, &str); 6] = [
        ("hue-400", |m| m["samples"][0]["hue_deg"] = 400.0.into(), "expected a hue in [0, 360]"),
        ("hue-neg", |m| m["samples"][0]["hue_deg"] = (-90.0).into(), "expected a hue in [0, 360]"),
        ("dtype", |m| m["dtype"] = "f16".into(), "dtype is `f16`"),
        (
            "one-file",
            |m| {
                let f = m["layers"][0]["file"].clone();
                m["layers"][1]["file"] = f;
            },
            "which another layer already uses",
        ),
        ("name", |m| m["provenance"]["stimuli_name"] = "<img src=x onerror=alert(1)>".into(), "stimuli_name"),
        ("path", |m| m["layers"][0]["file"] = "../manifest.json".into(), "must be a plain name"),
    ];
    for (case, edit, want) in cases {
        let store = store_copy("acts", &format!("manifest-{case}"));
        edit_manifest(&store, edit);
        let r = run_in(&world().dir, &[OsString::from("store"), "inspect".into(), store.clone().into()]);
        assert_refused(case, &r, want);
        fs::remove_dir_all(store).unwrap();
    }
}

#[test]
fn only_regular_files_are_read_as_layers() {
    let store = store_copy("acts", "fifo");
    let layer = store.join("layer_000.safetensors");
    fs::remove_file(&layer).unwrap();
    let made = Command::new("mkfifo").arg(&layer).status().map(|s| s.success()).unwrap_or(false);
    if made {
        // Both used to block forever in open().
        let r = run_in(&world().dir, &[OsString::from("store"), "inspect".into(), store.clone().into()]);
        assert_refused("fifo inspect", &r, "not a regular file");
        let r =
            run_in(&world().dir, &[OsString::from("analyze"), store.clone().into(), "--out".into(), "an-fifo".into()]);
        assert_refused("fifo analyze", &r, "not a regular file");
        fs::remove_file(&layer).unwrap();
    }
    fs::create_dir(&layer).unwrap();
    let r = run_in(&world().dir, &[OsString::from("store"), "inspect".into(), store.clone().into()]);
    assert_refused("directory as layer", &r, "it is a directory");
    fs::remove_dir_all(store).unwrap();
}

#[test]
fn merge_refuses_to_overwrite_a_different_finished_store() {
    let w = world();
    let dir = fresh_dir("reliability", "merge");
    let mut args = vec!["-q", "extract"];
    args.extend(ae_args());
    let out = dir.to_string_lossy().into_owned();
    args.extend(["--stimuli", "stim", "--out", &out, "--shard", "0/1"]);
    ok(&w.dir, &args);
    // A finished store of another set already sits where the merge would write.
    for e in fs::read_dir(w.path("acts-b")).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    let before = fs::read(dir.join("manifest.json")).unwrap();
    let r = run_in(&w.dir, &[OsString::from("merge"), dir.clone().into()]);
    assert_refused("merge over another store", &r, "already holds a finished store");
    assert_eq!(fs::read(dir.join("manifest.json")).unwrap(), before, "the other store is untouched");
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_second_writer_is_told_who_holds_the_directory() {
    let w = world();
    let out = fresh_dir("reliability", "locked");
    let held = huescan::fsx::DirLock::acquire(&out, "reliability-test").unwrap();
    let mut args = vec!["extract"];
    args.extend(ae_args());
    let out_s = out.to_string_lossy().into_owned();
    args.extend(["--stimuli", "stim", "--out", &out_s]);
    let r = run_in(&w.dir, &os(&args));
    assert_refused("second writer", &r, "is being written by huescan reliability-test (pid");
    drop(held);
    let r = run_in(&w.dir, &os(&args));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    fs::remove_dir_all(out).unwrap();
}

#[test]
fn a_finished_store_is_reread_without_writing_and_stale_temps_are_removed() {
    let w = world();
    let store = store_copy("acts", "rerun");
    let before = tree(&store);
    let mut args = vec!["-q", "extract"];
    args.extend(ae_args());
    let out_s = store.to_string_lossy().into_owned();
    args.extend(["--stimuli", "stim", "--out", &out_s]);
    ok(&w.dir, &args);
    assert!(!store.join(".partial").exists(), "a re-run over a finished store made .partial/");
    assert_eq!(tree(&store), before, "a re-run over a finished store changed it");
    // A killed run's temporaries (pid 999999999 is no process) go at the next start, and the result is the same.
    fs::remove_file(store.join("manifest.json")).unwrap();
    fs::write(store.join(".layer_000.safetensors.tmp.999999999"), b"half a layer").unwrap();
    ok(&w.dir, &args);
    assert_eq!(tree(&store), before, "resumed store differs");
    let stim = fresh_dir("reliability", "rerender");
    copy_tree(&w.path("stim"), &stim);
    let stim_before = tree(&stim);
    fs::write(stim.join(".hue_000.png.tmp.999999999"), b"half a png").unwrap();
    ok(&w.dir, &["-q", "stimuli", "render", "rel-12.toml", "--out", &stim.to_string_lossy()]);
    assert_eq!(tree(&stim), stim_before);
    fs::remove_dir_all(store).unwrap();
    fs::remove_dir_all(stim).unwrap();
}

#[test]
fn analysis_outputs_are_byte_identical_across_runs() {
    let w = world();
    let a = fresh_dir("reliability", "proj-a");
    let fast = ["--permutations", "5", "--bootstrap", "5", "--layers", "2"];
    ok(&w.dir, &[&["-q", "analyze", "acts", "--out", &a.to_string_lossy()][..], &fast].concat());
    assert_eq!(tree(&a), tree(&w.path("analysis")), "projection.safetensors or another output differs between runs");
    fs::remove_dir_all(a).unwrap();
}

#[test]
fn report_names_the_sets_it_leaves_out_and_no_hostile_name_reaches_it() {
    let w = world();
    let run = fresh_dir("reliability", "report");
    copy_tree(&w.path("analysis"), &run.join("analysis"));
    fs::create_dir_all(run.join("analysis/nosummary")).unwrap();
    let hostile = run.join("analysis").join("a\" onerror=\"alert(1)");
    copy_tree(&w.path("analysis/rel-12"), &hostile);
    let r = run_in(&w.dir, &[OsString::from("report"), run.clone().into()]);
    assert_no_crash("report", &r);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("leaves out set `nosummary`") && r.stderr.contains("no summary.json"), "{}", r.stderr);
    assert!(r.stderr.contains("is not a set name"), "{}", r.stderr);
    let index = fs::read_to_string(run.join("report/index.html")).unwrap();
    assert!(!index.contains("onerror") && index.contains("rel-12"), "the hostile set reached the report");
    fs::remove_dir_all(run).unwrap();
}

/// A Qwen checkpoint folder whose config.json is `edit`ed from the fixture's (weights linked, not copied).
fn qwen_with_config(case: &str, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let src = qwen_fixture().join("model");
    let dir = fresh_dir("reliability", &format!("qwen-{case}"));
    fs::create_dir_all(&dir).unwrap();
    for e in fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "config.json" {
            std::os::unix::fs::symlink(e.path(), dir.join(e.file_name())).unwrap();
        }
    }
    let mut cfg: serde_json::Value = serde_json::from_slice(&fs::read(src.join("config.json")).unwrap()).unwrap();
    edit(&mut cfg);
    fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    dir
}

/// A text field, where the fixture has it: in text_config (new layout) or at the top (hub layout).
fn text_field<'a>(cfg: &'a mut serde_json::Value, key: &str) -> &'a mut serde_json::Value {
    if cfg.get("text_config").is_some_and(|t| t.get(key).is_some()) {
        &mut cfg["text_config"][key]
    } else {
        &mut cfg[key]
    }
}

#[test]
fn broken_model_configs_name_the_field() {
    type Edit = fn(&mut serde_json::Value);
    let cases: [(&str, Edit, &str); 7] = [
        ("window0", |c| c["vision_config"]["window_size"] = 0.into(), "`vision_config.window_size` must be"),
        ("patch0", |c| c["vision_config"]["patch_size"] = 0.into(), "`vision_config.patch_size` must be"),
        ("depth-neg", |c| c["vision_config"]["depth"] = (-1).into(), "`vision_config.depth` must be"),
        (
            "layers1e9",
            |c| *text_field(c, "num_hidden_layers") = 1_000_000_000.into(),
            "`num_hidden_layers` must be a whole number in 1..=4096",
        ),
        ("hidden0", |c| *text_field(c, "hidden_size") = 0.into(), "`hidden_size` must be"),
        ("eps-neg", |c| *text_field(c, "rms_norm_eps") = (-1.0).into(), "`rms_norm_eps` must be"),
        ("image-id", |c| c["image_token_id"] = 100_000.into(), "`image_token_id` 100000 is outside the vocabulary"),
    ];
    let image = qwen_fixture().join("image_a.png");
    for (case, edit, want) in cases {
        let dir = qwen_with_config(case, edit);
        let r = run_in(
            &world().dir,
            &[OsString::from("ask"), "--model".into(), dir.clone().into(), "--image".into(), image.clone().into()],
        );
        assert_refused(case, &r, want);
        fs::remove_dir_all(dir).unwrap();
    }
}

/// Full tree listing with contents, hidden files included, for byte-for-byte comparisons.
pub fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                out.push((p.strip_prefix(dir).unwrap().join(""), Vec::new()));
                stack.push(p);
            } else {
                out.push((p.strip_prefix(dir).unwrap().to_path_buf(), fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn nan_weights_make_generation_an_error_not_an_answer() {
    use candle_core::{DType, Device, Tensor};
    use huescan::model::qwen2_5_vl::{Prompt, Qwen25VlModel};
    use huescan::model::HookSet;
    let dir = tempfile::tempdir().unwrap();
    for e in fs::read_dir(qwen_fixture().join("model-newnames")).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    let file = dir.path().join("model.safetensors");
    let mut t = candle_core::safetensors::load(&file, &Device::Cpu).unwrap();
    let name = "model.language_model.norm.weight";
    let shape = t[name].dims().to_vec();
    t.insert(name.into(), Tensor::full(f32::NAN, shape, &Device::Cpu).unwrap());
    candle_core::safetensors::save(&t, &file).unwrap();
    // The model loads (NaN is a valid f32); `ask` used to answer token 0 four times with exit 0.
    let model = Qwen25VlModel::load(dir.path(), DType::F32, &Device::Cpu)
        .unwrap()
        .with_prompt(Prompt::Ids { prefix: vec![1, 502], suffix: vec![503, 2] });
    let image = image::open(qwen_fixture().join("image_a.png")).unwrap().to_rgb8();
    let sample = model.prepare(&image).unwrap();
    let e = model.generate(&sample, 4, &HookSet::default()).unwrap_err().to_string();
    assert!(e.contains("logits of generated token 1 are not finite") && !e.contains("--dtype f32"), "{e}");
}

#[test]
fn an_empty_colour_word_is_an_error_not_a_panic() {
    use std::io::Read;

    use candle_core::{DType, Device};
    use huescan::model::qwen2_5_vl::{ChatPrompt, Prompt, Qwen25VlModel};
    use huescan::model::Model;
    let gz = fs::read(qwen_fixture().join("tokenizer.json.gz")).unwrap();
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut json).unwrap();
    let tok = tokenizers::Tokenizer::from_bytes(&json).unwrap();
    let model = Qwen25VlModel::load(&qwen_fixture().join("model"), DType::F32, &Device::Cpu)
        .unwrap()
        .with_prompt(Prompt::Chat(ChatPrompt::new(tok, "Which colour?").unwrap()));
    let e = model.token_ids(&["red".into(), String::new()]).unwrap_err().to_string();
    assert!(e.contains("colour word is empty"), "{e}");
    assert!(model.token_ids(&["émeraude".into()]).is_ok(), "a non-ASCII first letter is not sliced by bytes");
}
