//! Splits: the package's k-fold (contiguous, or shuffled with a seed), the notebook's deterministic periodic
//! train/test split, and cross-validated SMDS scores on precomputed fold operators.

use faer::Mat;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::gram::{ideal_embedding, project, LayerGram};
use super::metrics::{pairwise, score_all, score_primary, Scores};
use super::shapes::{LabelMode, Shape};
use super::{Error, Result, MIN_SAMPLES};

/// One cross-validation fold: positions (into the data the folds were made for) to fit on and to score.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fold {
    pub train: Vec<usize>,
    pub test: Vec<usize>,
}

/// The notebook's fold count for `n` training samples: `min(5, max(2, n // 10))`.
pub fn n_folds_for(n: usize) -> usize {
    (n / 10).clamp(2, 5)
}

fn check_folds(n: usize, k: usize) -> Result<()> {
    if k < 2 || k > n {
        return Err(Error::InvalidParam {
            name: "n_folds",
            value: k.to_string(),
            expected: "2 <= n_folds <= n_samples",
        });
    }
    Ok(())
}

fn blocks(order: &[usize], k: usize) -> Vec<Fold> {
    let n = order.len();
    let mut start = 0;
    (0..k)
        .map(|f| {
            let size = n / k + usize::from(f < n % k);
            let mut test: Vec<usize> = order[start..start + size].to_vec();
            test.sort_unstable();
            start += size;
            let mut in_test = vec![false; n];
            test.iter().for_each(|&i| in_test[i] = true);
            Fold { train: (0..n).filter(|&i| !in_test[i]).collect(), test }
        })
        .collect()
}

/// sklearn `KFold(k, shuffle=False)`: contiguous blocks in row order, the first `n % k` one sample larger. The
/// package's default; with rows sorted by hue every test fold is one arc.
pub fn kfold_contiguous(n: usize, k: usize) -> Result<Vec<Fold>> {
    check_folds(n, k)?;
    Ok(blocks(&(0..n).collect::<Vec<_>>(), k))
}

/// Contiguous blocks of a seeded shuffle (ChaCha8; not numpy's MT19937, so not the package's shuffled folds).
pub fn kfold_shuffled(n: usize, k: usize, seed: u64) -> Result<Vec<Fold>> {
    check_folds(n, k)?;
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    Ok(blocks(&order, k))
}

/// The notebook's `periodic_train_test_split`: sort by angle (stable, so duplicate hues keep row order), test =
/// every `round(1 / test_fraction)`-th sample (at least every 2nd) from `offset`. Returns `(train, test)` row
/// indices, ascending. Needs at least 8 samples.
pub fn periodic_train_test_split(
    hue_deg: &[f64],
    test_fraction: f64,
    offset: usize,
) -> Result<(Vec<usize>, Vec<usize>)> {
    let n = hue_deg.len();
    if n < MIN_SAMPLES {
        return Err(Error::TooFewSamples { got: n, min: MIN_SAMPLES });
    }
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        return Err(Error::InvalidParam {
            name: "test_fraction",
            value: test_fraction.to_string(),
            expected: "0 < test_fraction < 1",
        });
    }
    if let Some((index, &value)) = hue_deg.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(Error::NonFiniteLabel { index, value });
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| hue_deg[a].total_cmp(&hue_deg[b]));
    let step = ((1.0 / test_fraction).round_ties_even() as usize).max(2);
    let mut mask = vec![false; n];
    order.iter().skip(offset).step_by(step).for_each(|&i| mask[i] = true);
    let count = mask.iter().filter(|m| **m).count();
    if count == 0 || count >= n {
        mask.iter_mut().for_each(|m| *m = false);
        order.iter().step_by(step).for_each(|&i| mask[i] = true);
        if mask.iter().all(|m| *m) {
            mask[order[n - 1]] = false;
        }
    }
    Ok(((0..n).filter(|&i| !mask[i]).collect(), (0..n).filter(|&i| mask[i]).collect()))
}

/// Fold operators of one layer on one subset of its rows: everything a cross-validated score needs except the
/// labels, so every shape and every label permutation reuses them.
pub(crate) struct FoldOps {
    /// Folds as positions into `rows`.
    pub folds: Vec<Fold>,
    /// Per fold, the map from centred train coordinates to test projections (`gram::LayerGram::operator`).
    ops: Vec<Mat<f64>>,
}

impl FoldOps {
    pub(crate) fn new(gram: &LayerGram, rows: &[usize], folds: Vec<Fold>, alpha: f64) -> Result<Self> {
        let ops = folds
            .par_iter()
            .map(|f| {
                let train: Vec<usize> = f.train.iter().map(|&p| rows[p]).collect();
                let test: Vec<usize> = f.test.iter().map(|&p| rows[p]).collect();
                gram.operator(&train, &test, alpha)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(FoldOps { folds, ops })
    }

    /// All five scores per fold for `labels` (one per row of the subset).
    pub(crate) fn scores(&self, shape: Shape, labels: &[f64], mode: LabelMode, k: usize) -> Result<Vec<Scores>> {
        self.folds
            .par_iter()
            .zip(&self.ops)
            .map(|(f, m)| {
                let (z, d_ideal) = fold_projection(f, m, shape, labels, mode, k)?;
                Ok(score_all(d_ideal.view(), pairwise(z.view()).view()))
            })
            .collect()
    }

    /// Mean primary score over folds (the statistic of the permutation test).
    pub(crate) fn mean_primary(&self, shape: Shape, labels: &[f64], mode: LabelMode, k: usize) -> Result<f64> {
        let mut sum = 0.0;
        for (f, m) in self.folds.iter().zip(&self.ops) {
            let (z, d_ideal) = fold_projection(f, m, shape, labels, mode, k)?;
            sum += score_primary(d_ideal.view(), pairwise(z.view()).view());
        }
        Ok(sum / self.folds.len() as f64)
    }
}

fn fold_projection(
    f: &Fold,
    m: &Mat<f64>,
    shape: Shape,
    labels: &[f64],
    mode: LabelMode,
    k: usize,
) -> Result<(ndarray::Array2<f64>, ndarray::Array2<f64>)> {
    let train_labels: Vec<f64> = f.train.iter().map(|&p| labels[p]).collect();
    let test_labels: Vec<f64> = f.test.iter().map(|&p| labels[p]).collect();
    let y = ideal_embedding(shape, &train_labels, mode, k)?;
    Ok((project(m, &y), shape.distances(&test_labels, mode)?))
}

/// Mean and population standard deviation (`np.std`, ddof 0).
pub(crate) fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_folds_match_sklearn_kfold() {
        let f = kfold_contiguous(12, 5).unwrap();
        let sizes: Vec<usize> = f.iter().map(|x| x.test.len()).collect();
        assert_eq!(sizes, vec![3, 3, 2, 2, 2]);
        assert_eq!(f[1].test, vec![3, 4, 5]);
        assert_eq!(f[1].train.len(), 9);
        assert!(kfold_contiguous(3, 5).is_err());
    }

    #[test]
    fn shuffled_folds_partition_and_depend_on_seed() {
        let a = kfold_shuffled(50, 5, 1).unwrap();
        let mut all: Vec<usize> = a.iter().flat_map(|f| f.test.clone()).collect();
        all.sort_unstable();
        assert_eq!(all, (0..50).collect::<Vec<_>>());
        assert_ne!(a, kfold_shuffled(50, 5, 2).unwrap());
        assert_eq!(a, kfold_shuffled(50, 5, 1).unwrap());
    }

    #[test]
    fn periodic_split_takes_every_fifth_hue() {
        let hue: Vec<f64> = (0..60).rev().map(|i| i as f64 * 6.0).collect();
        let (train, test) = periodic_train_test_split(&hue, 0.2, 0).unwrap();
        assert_eq!((train.len(), test.len()), (48, 12));
        let test_hues: Vec<f64> = test.iter().map(|&i| hue[i]).collect();
        assert!(test_hues.iter().all(|h| (h / 6.0) as usize % 5 == 0));
        assert!(matches!(periodic_train_test_split(&hue[..7], 0.2, 0), Err(Error::TooFewSamples { got: 7, min: 8 })));
    }

    #[test]
    fn notebook_fold_count() {
        assert_eq!((n_folds_for(8), n_folds_for(48), n_folds_for(288)), (2, 4, 5));
    }
}
