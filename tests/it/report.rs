//! The report as a reader gets it: built from a run folder's typed files, with every piece of text from disk
//! escaped, the unsupervised view beside the supervised one, data links, and the same bytes on every run.

use crate::common::{fresh_dir, huescan};

fn ok(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{cmd:?} failed:\n{stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned() + &stderr
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn hostile_text_is_escaped_everywhere_and_the_page_is_byte_identical_across_runs() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = fresh_dir("report", "hostile");
    ok(huescan()
        .args(["analyze", "--permutations", "0", "--bootstrap", "0", "--out"])
        .arg(dir.join("analysis"))
        .arg(root.join("tests/fixtures/joblib-converted")));
    copy_dir(&root.join("tests/fixtures/joblib-converted"), &dir.join("activations/tiny_scan"));
    // Set names are refused at every input edge (tests/it/reliability.rs), but text from disk still reaches the
    // page: a run.json whose model and command line carry markup must be escaped wherever they are written.
    let evil = "<svg onload=alert(1)>\"'&x";
    let info = serde_json::json!({"model": evil, "command_line": ["huescan", "scan", evil], "started_unix_s": 1});
    std::fs::write(dir.join("run.json"), serde_json::to_string(&info).unwrap()).unwrap();
    ok(huescan().arg("report").arg(&dir));
    let index = std::fs::read_to_string(dir.join("report/index.html")).unwrap();
    assert!(!index.contains("<svg onload"), "run.json text reached the page unescaped");
    assert!(index.contains("&lt;svg onload=alert(1)&gt;&quot;&#39;&amp;x"));
    for e in std::fs::read_dir(dir.join("report/figures")).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "svg") {
            let svg = std::fs::read_to_string(&path).unwrap();
            assert!(!svg.contains("<svg onload"), "{} holds the raw text", path.display());
        }
    }
    // Supervised and unsupervised views side by side, the interactive views, and "n/a" for what was not
    // computed (no permutations), never a bare NaN.
    assert!(index.contains("-projection2d.svg") && index.contains("-pca2d.svg"), "SMDS and PCA figures");
    assert!(index.contains("class=\"view3d\"") && index.contains("data-views3d"));
    assert!(index.contains(">n/a</td>") && !index.contains("NaN"));
    // Data links are relative to the report folder.
    assert!(index.contains("href=\"../analysis/tiny_scan/layer_scan.csv\""));
    // Another folder at the same depth gets the same bytes (figures included); so does a re-run.
    let again = dir.join("again");
    ok(huescan().arg("report").arg(&dir).arg("--out").arg(&again));
    ok(huescan().arg("report").arg(&dir).arg("--out").arg(&again));
    assert!(std::fs::read(again.join("index.html")).unwrap() == index.as_bytes(), "index.html differs");
    for e in std::fs::read_dir(dir.join("report/figures")).unwrap() {
        let name = e.unwrap().file_name();
        let (x, y) =
            (std::fs::read(dir.join("report/figures").join(&name)), std::fs::read(again.join("figures").join(&name)));
        assert!(x.unwrap() == y.unwrap(), "{name:?} differs");
    }
    std::fs::remove_dir_all(dir).unwrap();
}
