//! CPU f32 fast paths of the forward's hot spots; other devices and dtypes, and inputs that are not contiguous,
//! take candle's ops unchanged.
//!
//! - Linear layers (`y = x Wᵀ + b`) run their product through faer's matmul instead of candle's (the `gemm`
//!   crate): the extraction job is GEMM-bound at shapes with few rows (256 patches of one 224x224 image, ~80
//!   prompt tokens), where faer's kernels, which pick AVX-512 at run time, ran faster on this machine than
//!   `gemm` built for stable Rust (AVX2); see BENCHMARKS.md.
//! - The gated MLP's `silu(gate) * up` is one pass on candle's threads instead of two single-threaded ones
//!   (candle's CPU unary and binary maps run on one core), with the same formula, so the same bits.
//!
//! `HUESCAN_PLAIN_KERNELS=1` in the environment turns both off (candle's ops everywhere), so one binary can
//! time the two side by side (scripts/bench/extract_job.py --plain-kernels).

use candle_core::{CpuStorage, DType, Module, Shape, Storage, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

/// Elements per parallel task of the elementwise kernels (a few cache lines' worth of work per task is too
/// little to amortise rayon's scheduling).
const ELEMENTWISE_CHUNK: usize = 1 << 14;

/// Whether `HUESCAN_PLAIN_KERNELS` asks for candle's ops (read once).
fn plain() -> bool {
    static PLAIN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PLAIN.get_or_init(|| std::env::var_os("HUESCAN_PLAIN_KERNELS").is_some_and(|v| !v.is_empty() && v != "0"))
}

/// `f` on the f32 CPU data of a contiguous tensor, or `None` (another device, dtype or layout, or
/// `HUESCAN_PLAIN_KERNELS` set).
fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
    if plain() || !t.is_contiguous() {
        return None;
    }
    let (store, layout) = t.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(data)) = &*store else { return None };
    let start = layout.start_offset();
    Some(f(&data[start..start + t.elem_count()]))
}

/// `gate.silu()? * up` (`v / (1 + exp(-v))`, then the product: candle's f32 formula, so bit-identical to it).
pub fn silu_mul(gate: &Tensor, up: &Tensor) -> candle_core::Result<Tensor> {
    let out = (gate.shape() == up.shape())
        .then(|| {
            with_f32(gate, |g| {
                with_f32(up, |u| {
                    let mut out = vec![0f32; g.len()];
                    out.par_chunks_mut(ELEMENTWISE_CHUNK)
                        .zip(g.par_chunks(ELEMENTWISE_CHUNK).zip(u.par_chunks(ELEMENTWISE_CHUNK)))
                        .for_each(|(o, (g, u))| {
                            for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
                                *o = g / (1.0 + (-g).exp()) * u;
                            }
                        });
                    out
                })
            })
        })
        .flatten()
        .flatten();
    match out {
        Some(out) => Tensor::from_vec(out, gate.shape().clone(), gate.device()),
        None => gate.silu()? * up,
    }
}

/// A drop-in for `candle_nn::Linear` (same weights, same layout: `weight (out, in)`, optional `bias (out)`).
#[derive(Debug, Clone)]
pub struct Linear {
    inner: candle_nn::Linear,
}

/// `candle_nn::linear` with the faer product.
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> candle_core::Result<Linear> {
    Ok(Linear { inner: candle_nn::linear(in_dim, out_dim, vb)? })
}

/// `candle_nn::linear_no_bias` with the faer product.
pub fn linear_no_bias(in_dim: usize, out_dim: usize, vb: VarBuilder) -> candle_core::Result<Linear> {
    Ok(Linear { inner: candle_nn::linear_no_bias(in_dim, out_dim, vb)? })
}

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Linear { inner: candle_nn::Linear::new(weight, bias) }
    }
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let w = self.inner.weight();
        let (Some(&k), Ok((n, wk))) = (xs.dims().last(), w.dims2()) else { return self.inner.forward(xs) };
        if wk != k || k == 0 || xs.dtype() != DType::F32 || !xs.device().is_cpu() || plain() {
            return self.inner.forward(xs); // candle's message names the shapes
        }
        let m = xs.elem_count() / k;
        let bias = match self.inner.bias() {
            Some(b) if b.dtype() == DType::F32 => Some(b.flatten_all()?.to_vec1::<f32>()?),
            Some(_) => return self.inner.forward(xs),
            None => None,
        };
        let out = with_f32(xs, |x| with_f32(w, |wd| matmul_xwt(x, wd, bias.as_deref(), m, k, n))).flatten();
        let Some(out) = out else { return self.inner.forward(xs) };
        let mut shape = xs.dims().to_vec();
        *shape.last_mut().expect("rank >= 1") = n;
        Tensor::from_vec(out, Shape::from(shape), xs.device())
    }
}

/// Output columns per parallel task at least (a multiple of the kernels' register tile widths).
const MIN_COLUMNS_PER_TASK: usize = 64;

/// `x (m, k) · w (n, k)ᵀ (+ bias (n) on every row)`, row-major, on candle's thread count. The bias is written
/// first and the product accumulated onto it (one pass over the output less than candle's `broadcast_add`
/// after the product; equal to it up to summation order).
///
/// The threads split the output columns (so each packs its own share of `w`) and each runs faer's sequential
/// product, on rayon, the pool candle's matmul and softmax use. faer's threaded product runs on a pool of its
/// own (spindle) whose idle workers spin for up to ~65k pauses after every product; next to candle's pools on
/// the same two cores, that pool's spinning and barriers took ~14 % of the samples of a `perf` profile of the
/// extraction job (BENCHMARKS.md).
pub fn matmul_xwt(x: &[f32], w: &[f32], bias: Option<&[f32]>, m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut out = vec![0f32; m * n];
    if let Some(b) = bias {
        for row in out.chunks_exact_mut(n.max(1)) {
            row.copy_from_slice(b);
        }
    }
    if m == 0 || n == 0 {
        return out;
    }
    let accum = if bias.is_some() { faer::Accum::Add } else { faer::Accum::Replace };
    let tasks = candle_core::utils::get_num_threads().clamp(1, n.div_ceil(MIN_COLUMNS_PER_TASK));
    split_columns(
        faer::MatMut::from_row_major_slice_mut(&mut out, m, n),
        faer::MatRef::from_row_major_slice(x, m, k),
        faer::MatRef::from_row_major_slice(w, n, k).transpose(),
        accum,
        tasks,
    );
    out
}

/// `out (+)= x · wt` with the columns of `out` and `wt` cut into `tasks` contiguous parts run with rayon.
fn split_columns(
    out: faer::MatMut<'_, f32>,
    x: faer::MatRef<'_, f32>,
    wt: faer::MatRef<'_, f32>,
    accum: faer::Accum,
    tasks: usize,
) {
    if tasks <= 1 {
        faer::linalg::matmul::matmul(out, accum, x, wt, 1.0f32, faer::Par::Seq);
        return;
    }
    let left = tasks / 2;
    // Round the cut to whole register tiles; the last part takes the remainder.
    let cut = (out.ncols() * left / tasks).div_ceil(16) * 16;
    let cut = cut.min(out.ncols());
    let (out_l, out_r) = out.split_at_col_mut(cut);
    let (wt_l, wt_r) = wt.split_at_col(cut);
    rayon::join(|| split_columns(out_l, x, wt_l, accum, left), || split_columns(out_r, x, wt_r, accum, tasks - left));
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The faer path against candle's own Linear (the gemm crate) on shapes with and without a bias, rank 2 and
    /// 3, and a non-contiguous input (which takes candle's path).
    #[test]
    fn faer_linear_equals_candle_linear() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (37, 19), &dev).unwrap();
        let b = Tensor::randn(0f32, 1.0, 37, &dev).unwrap();
        for bias in [None, Some(b)] {
            let ours = Linear::new(w.clone(), bias.clone());
            let theirs = candle_nn::Linear::new(w.clone(), bias);
            for shape in [vec![5, 19], vec![2, 7, 19], vec![1, 19]] {
                let x = Tensor::randn(0f32, 1.0, shape.as_slice(), &dev).unwrap();
                let (a, e) = (ours.forward(&x).unwrap(), theirs.forward(&x).unwrap());
                assert_eq!(a.dims(), e.dims());
                let d = (a - e).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                assert!(d < 1e-4, "{shape:?}: {d}");
            }
            let xt = Tensor::randn(0f32, 1.0, (19, 6), &dev).unwrap().t().unwrap();
            let d = (ours.forward(&xt).unwrap() - theirs.forward(&xt).unwrap()).unwrap();
            assert_eq!(d.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap(), 0.0);
        }
    }

    /// Cutting the output columns across tasks (uneven cuts, a remainder) gives the one-task product.
    #[test]
    fn column_split_equals_one_task() {
        let (m, k, n) = (7, 33, 301);
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0).collect();
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 53) % 97) as f32 / 48.0 - 1.0).collect();
        let run = |tasks: usize| {
            let mut out = vec![0f32; m * n];
            split_columns(
                faer::MatMut::from_row_major_slice_mut(&mut out, m, n),
                faer::MatRef::from_row_major_slice(&x, m, k),
                faer::MatRef::from_row_major_slice(&w, n, k).transpose(),
                faer::Accum::Replace,
                tasks,
            );
            out
        };
        let one = run(1);
        for tasks in [2, 3, 5] {
            let got = run(tasks);
            let d = got.iter().zip(&one).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(d < 1e-5, "{tasks} tasks: {d}");
        }
        let naive: f32 = (0..k).map(|j| x[j] * w[(n - 1) * k + j]).sum();
        assert!((one[n - 1] - naive).abs() < 1e-4, "{} vs {naive}", one[n - 1]);
    }

    #[test]
    fn silu_mul_is_candles_silu_times_up_bit_for_bit() {
        let dev = Device::Cpu;
        // More than one parallel chunk, and a length that is not a multiple of it.
        let (g, u) = (
            Tensor::randn(0f32, 3.0, (3, ELEMENTWISE_CHUNK + 5), &dev).unwrap(),
            Tensor::randn(0f32, 1.0, (3, ELEMENTWISE_CHUNK + 5), &dev).unwrap(),
        );
        let want = (g.silu().unwrap() * &u).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let got = silu_mul(&g, &u).unwrap();
        assert_eq!(got.dims(), g.dims());
        assert_eq!(got.flatten_all().unwrap().to_vec1::<f32>().unwrap(), want);
        // A non-contiguous input takes candle's ops.
        let gt = g.t().unwrap();
        let ut = u.t().unwrap();
        let want = (gt.silu().unwrap() * &ut).unwrap();
        let diff = (silu_mul(&gt, &ut).unwrap() - want).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
    }
}
