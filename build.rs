//! Build metadata for `huescan --version`: the git commit the binary was built from and the enabled
//! features. Not a git checkout (a crates.io tarball, a copied folder) or no `git` on PATH: the commit reads
//! `unknown` and the build goes on.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string()).filter(|s| !s.is_empty())
}

fn main() {
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
