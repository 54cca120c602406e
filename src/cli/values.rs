//! Numbers users type, checked at the edge: finite floats, fractions, and caps on counts that decide how long
//! a command runs. A cap stops a typo (`--bootstrap 1000000000`) from starting hours of work; the global
//! `--allow-large` flag lifts every cap for a user who means it.

use std::sync::atomic::{AtomicBool, Ordering};

/// Most answer tokens one image may generate without `--allow-large` (answers here are a colour word).
pub const MAX_NEW_TOKENS: usize = 4096;
/// Most bootstrap resamples or label permutations without `--allow-large`; 100x the defaults.
pub const MAX_RESAMPLES: usize = 100_000;
/// Most images one stimulus set may render without `--allow-large` (the largest bundled set has 1080).
pub const MAX_IMAGES: u64 = 100_000;

static ALLOW_LARGE: AtomicBool = AtomicBool::new(false);

/// Lifts the caps for this process (`--allow-large`).
pub fn set_allow_large(allow: bool) {
    ALLOW_LARGE.store(allow, Ordering::Relaxed);
}

/// Refuses `n` above `cap` unless `--allow-large` was given; `estimate` says what the run would cost.
pub fn check_cap(flag: &str, n: u64, cap: u64, estimate: &str) -> anyhow::Result<()> {
    if n > cap && !ALLOW_LARGE.load(Ordering::Relaxed) {
        anyhow::bail!(
            "{flag} {n} is above the cap of {cap} ({estimate}); lower it, or pass --allow-large if you mean it"
        );
    }
    Ok(())
}

/// A finite number (clap value parser): `nan`, `inf` and overflowing literals such as `1e400` are refused.
pub fn finite(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("`{s}` is not a number"))?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(format!("expected a finite number, got `{s}`"))
    }
}

/// A finite number > 0.
pub fn positive(s: &str) -> Result<f64, String> {
    let v = finite(s)?;
    if v > 0.0 {
        Ok(v)
    } else {
        Err(format!("expected a number > 0, got `{s}`"))
    }
}

/// A fraction in [0, 1].
pub fn fraction(s: &str) -> Result<f64, String> {
    let v = finite(s)?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("expected a number in [0, 1], got `{s}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_and_out_of_range_numbers_are_refused() {
        for bad in ["nan", "NaN", "inf", "-inf", "1e400", "x", ""] {
            assert!(finite(bad).is_err(), "{bad}");
        }
        assert_eq!(finite(" -90 ").unwrap(), -90.0);
        assert!(fraction("2").is_err() && fraction("-0.1").is_err());
        assert_eq!(fraction("0.7").unwrap(), 0.7);
        assert!(positive("0").is_err() && positive("1e-4").is_ok());
    }
}
