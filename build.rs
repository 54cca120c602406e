//! Build metadata for `huescan --version`: the git commit the binary was built from and the enabled
//! features. Not a git checkout (a crates.io tarball, a copied folder) or no `git` on PATH: the commit reads
//! `unknown` and the build goes on.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string()).filter(|s| !s.is_empty())
}

/// Every `models/*.toml` is a bundled preset: writes the `(name, text)` table `src/model/preset.rs` includes,
/// sorted by name, so adding a preset is adding its file.
fn bundle_presets() {
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let dir = root.join("models");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("models/ holds the presets")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".toml").map(str::to_string))
        .collect();
    names.sort();
    let mut table = String::from("&[\n");
    for n in &names {
        let path = dir.join(format!("{n}.toml"));
        table.push_str(&format!("    ({n:?}, include_str!({:?})),\n", path.display().to_string()));
    }
    table.push_str("]\n");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("presets.rs");
    std::fs::write(out, table).expect("OUT_DIR is writable");
    println!("cargo:rerun-if-changed=models");
}

fn main() {
    bundle_presets();
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=HUESCAN_GIT_COMMIT={commit}");
    let features: Vec<&str> = [("CARGO_FEATURE_CUDA", "cuda"), ("CARGO_FEATURE_METAL", "metal")]
        .iter()
        .filter(|(var, _)| std::env::var_os(var).is_some())
        .map(|(_, name)| *name)
        .collect();
    let features = if features.is_empty() { "cpu only".to_string() } else { features.join(", ") };
    println!("cargo:rustc-env=HUESCAN_FEATURES={features}");
    println!("cargo:rerun-if-changed=build.rs");
    // Rebuild when HEAD moves: HEAD itself (a checkout) and the branch it points at (a commit).
    if let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) {
        println!("cargo:rerun-if-changed={head}");
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(path) = git(&["rev-parse", "--git-path", &branch]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
