//! What a shell, a log file and a Slurm job see: exit codes, plain (uncoloured) warnings off a terminal,
//! periodic progress lines when stderr is not a terminal. Every command here runs with stderr piped, i.e.
//! not a terminal.

use crate::common::{fresh_dir, huescan};

#[test]
fn usage_errors_exit_2_and_runtime_failures_exit_1() {
    let out = huescan().arg("--no-such-flag").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "clap rejects the command line");
    let out = huescan().args(["analyze"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "a missing required argument is a usage error");
    let out = huescan().args(["report", "/nonexistent/run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "the command ran and failed");
    let help = String::from_utf8(huescan().arg("--help").output().unwrap().stdout).unwrap();
    assert!(help.contains("Exit codes: 0 success; 1") && help.contains("2 the command line is wrong"), "{help}");
}

#[test]
fn warnings_off_a_terminal_are_plain_sentences_unless_colour_is_forced() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = fresh_dir("conventions", "warnings");
    let analyze = |colour: Option<(&str, &str)>| {
        let mut cmd = huescan();
        cmd.args(["analyze", "--permutations", "0", "--bootstrap", "0", "--out"])
            .arg(&dir)
            .arg(root.join("tests/fixtures/joblib-converted"))
            .env_remove("NO_COLOR")
            .env_remove("CLICOLOR_FORCE");
        if let Some((k, v)) = colour {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stderr).unwrap()
    };
    let plain = analyze(None);
    assert!(plain.contains("warning: tiny_scan: only 12 samples"), "{plain}");
    assert!(!plain.contains('\x1b'), "no ANSI codes in a pipe: {plain:?}");
    assert!(!plain.contains("huescan::"), "no Rust module paths: {plain}");
    let forced = analyze(Some(("CLICOLOR_FORCE", "1")));
    assert!(forced.contains("\x1b[33mwarning:"), "CLICOLOR_FORCE colours a pipe: {forced:?}");
    let both = analyze(Some(("NO_COLOR", "1")));
    assert!(!both.contains('\x1b'), "NO_COLOR wins: {both:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn progress_off_a_terminal_is_plain_lines_with_count_rate_and_eta() {
    let dir = fresh_dir("conventions", "progress");
    let out = huescan().args(["stimuli", "render", "simple-60", "--out"]).arg(&dir).output().unwrap();
    assert!(out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("rendering: ")).collect();
    assert!(lines.first().is_some_and(|l| l.contains("/60 (") && l.contains("/s, eta")), "count, rate, ETA: {err}");
    assert!(lines.last().is_some_and(|l| l.starts_with("rendering: 60/60 done in ")), "a closing line: {err}");
    assert!(lines.iter().all(|l| !l.contains("0/0")), "no line before the count is known: {err}");
    assert!(!err.contains('\x1b') && !err.contains('\r'), "no control codes: {err:?}");
    let quiet = huescan().args(["--quiet", "stimuli", "render", "simple-60", "--out"]).arg(&dir).output().unwrap();
    assert!(String::from_utf8(quiet.stderr).unwrap().is_empty(), "--quiet prints nothing");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn version_names_the_commit_and_features_and_completions_cover_the_commands() {
    let v = String::from_utf8(huescan().arg("--version").output().unwrap().stdout).unwrap();
    assert!(
        v.starts_with(&format!("huescan {} (commit ", env!("CARGO_PKG_VERSION"))) && v.contains("; features: "),
        "{v}"
    );
    for shell in ["bash", "zsh", "fish"] {
        let out = huescan().args(["completions", shell]).output().unwrap();
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(out.status.success() && script.contains("huescan") && script.contains("export"), "{shell}");
    }
    let out = huescan().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "an unknown shell is a usage error");
}

#[test]
fn help_lists_only_the_options_that_apply_and_max_new_tokens_has_one_default() {
    let help = |cmd: &str| String::from_utf8(huescan().args([cmd, "--help"]).output().unwrap().stdout).unwrap();
    assert!(!help("ask").contains("--ae-"), "ask runs no autoencoder: {}", help("ask"));
    assert!(help("extract").contains("Colour autoencoder:") && help("extract").contains("--ae-epochs"));
    for cmd in ["steer", "scan", "ask"] {
        let h = help(cmd);
        let line = h.lines().skip_while(|l| !l.contains("--max-new-tokens")).take(6).collect::<Vec<_>>().join(" ");
        assert!(line.contains("[default: 4]"), "{cmd}: {line}");
    }
    // Flags that take one of a set list the set and their default.
    let short = |cmd: &str| String::from_utf8(huescan().args([cmd, "-h"]).output().unwrap().stdout).unwrap();
    let flag = |h: &str, name: &str| h.lines().skip_while(|l| !l.contains(name)).take(2).collect::<Vec<_>>().join(" ");
    let steer = short("steer");
    for (name, values, default) in [
        ("--direction", "[possible values: all, centroid, manifold, random]", "[default: all]"),
        ("--normalise", "[possible values: none, unit]", "[default: none]"),
        ("--lift", "[possible values: pattern, min-norm, local-mean]", "[default: local-mean]"),
        ("--dtype", "[possible values: f32, bf16, f16]", ""),
    ] {
        let line = flag(&steer, name);
        assert!(line.contains(values) && line.contains(default), "steer {name}: {line}");
    }
    let scan = short("scan");
    assert!(flag(&scan, "--pool").contains("[default: image-mean] [possible values: image-mean, last, tokens]"));
    assert!(flag(&scan, "--lift").contains("[default: local-mean] [possible values: pattern, min-norm, local-mean]"));
    assert!(flag(&short("extract"), "--pool").contains("[possible values: image-mean, last, tokens]"));
}
