//! kill -9 and re-run: each command is killed at several points of its run, in the same folder, then run to
//! the end; the folder must then be byte-for-byte the tree of an uninterrupted run (temporary files, `.partial/`
//! and lock contents included). `scripts/kill_campaign.sh` does the same with many more kills per command.

use std::ffi::OsString;
use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use crate::common::{fresh_dir, huescan};
use crate::reliability::{copy_tree, os, run_in, tree, world};

/// Where in an uninterrupted run (as a fraction of its duration) the kills land.
const KILL_POINTS: [f64; 4] = [0.1, 0.3, 0.55, 0.8];

/// Runs `args` in a folder prepared by `setup`: once uninterrupted (the reference tree), then, from the same
/// starting state at the same path, killed at each of [`KILL_POINTS`] in turn and finally run to the end.
/// Returns how many kills landed while the command was still running.
fn kill_and_resume(name: &str, setup: &dyn Fn(&Path), args: &[&str]) -> usize {
    let dir = fresh_dir("kill", name);
    fs::create_dir_all(&dir).unwrap();
    setup(&dir);
    let start = Instant::now();
    let r = run_in(&dir, &os(args));
    assert_eq!(r.code, Some(0), "{name}: reference run failed:\n{}", r.stderr);
    let took = start.elapsed();
    let reference = tree(&dir);

    fs::remove_dir_all(&dir).unwrap();
    fs::create_dir_all(&dir).unwrap();
    setup(&dir);
    let mut interrupted = 0;
    for point in KILL_POINTS {
        let mut child = huescan()
            .current_dir(&dir)
            .args(args.iter().map(OsString::from))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(took.mul_f64(point));
        if child.try_wait().unwrap().is_none() {
            interrupted += 1;
        }
        child.kill().unwrap_or(());
        child.wait().unwrap();
    }
    let r = run_in(&dir, &os(args));
    assert_eq!(r.code, Some(0), "{name}: run after kills failed:\n{}", r.stderr);
    let after = tree(&dir);
    let names =
        |t: &[(std::path::PathBuf, Vec<u8>)]| t.iter().map(|(p, _)| p.display().to_string()).collect::<Vec<_>>();
    assert_eq!(names(&after), names(&reference), "{name}: files differ after kill -9 and re-run");
    for ((p, a), (_, b)) in after.iter().zip(&reference) {
        assert!(a == b, "{name}: `{}` differs after kill -9 and re-run", p.display());
    }
    fs::remove_dir_all(&dir).unwrap();
    interrupted
}

fn copy_from_world(dir: &Path, items: &[&str]) {
    for item in items {
        let from = world().path(item);
        if from.is_dir() {
            copy_tree(&from, &dir.join(item));
        } else {
            fs::copy(&from, dir.join(item)).unwrap();
        }
    }
}

const AE: [&str; 6] = ["--model", "colour-autoencoder", "--ae-weights", "ae.safetensors", "--ae-epochs", "30"];

#[test]
fn render_and_extract_survive_kill_9() {
    let n = kill_and_resume("render", &|_| {}, &["-q", "stimuli", "render", "simple-60", "--out", "stim"]);
    eprintln!("render: {n} of {} kills interrupted it", KILL_POINTS.len());
    let setup = |d: &Path| {
        copy_from_world(d, &["ae.safetensors"]);
        let r = run_in(d, &os(&["-q", "stimuli", "render", "simple-60", "--out", "stim"]));
        assert_eq!(r.code, Some(0), "{}", r.stderr);
    };
    let args = [&["-q", "extract"][..], &AE, &["--stimuli", "stim", "--out", "acts"]].concat();
    let n = kill_and_resume("extract", &setup, &args);
    eprintln!("extract: {n} of {} kills interrupted it", KILL_POINTS.len());
}

#[test]
fn merge_analyze_steer_and_report_survive_kill_9() {
    let shards = |d: &Path| {
        copy_from_world(d, &["ae.safetensors", "stim"]);
        for s in ["0/2", "1/2"] {
            let args = [&["-q", "extract"][..], &AE, &["--stimuli", "stim", "--out", "sharded", "--shard", s]].concat();
            let r = run_in(d, &os(&args));
            assert_eq!(r.code, Some(0), "{}", r.stderr);
        }
    };
    let counts = [
        ("merge", kill_and_resume("merge", &shards, &["-q", "merge", "sharded"])),
        (
            "analyze",
            kill_and_resume(
                "analyze",
                &|d| copy_from_world(d, &["acts"]),
                &["-q", "analyze", "acts", "--out", "analysis", "--permutations", "20", "--bootstrap", "50"],
            ),
        ),
        (
            "steer",
            kill_and_resume(
                "steer",
                &|d| copy_from_world(d, &["acts", "stim", "ae.safetensors"]),
                &[
                    &["-q", "steer"][..],
                    &AE,
                    &["--acts", "acts", "--stimuli", "stim", "--layer", "2", "--out", "steer"],
                ]
                .concat(),
            ),
        ),
        (
            "report",
            kill_and_resume(
                "report",
                &|d| copy_tree(&world().path("analysis"), &d.join("run/analysis")),
                &["-q", "report", "run"],
            ),
        ),
    ];
    for (name, n) in counts {
        eprintln!("{name}: {n} of {} kills interrupted it", KILL_POINTS.len());
    }
}
