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

/// `x (m, k) · w (n, k)ᵀ (+ bias (n) on every row)`, row-major, on candle's thread count. The bias is written
/// first and the product accumulated onto it (one pass over the output less than candle's `broadcast_add`
/// after the product; equal to it up to summation order).
pub fn matmul_xwt(x: &[f32], w: &[f32], bias: Option<&[f32]>, m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut out: Vec<f32> = match bias {
        Some(b) => b.iter().copied().cycle().take(m * n).collect(),
        None => vec![0f32; m * n],
    };
    if m == 0 || n == 0 {
        return out;
    }
    let threads = candle_core::utils::get_num_threads();
    let par = if threads > 1 { faer::Par::rayon(threads) } else { faer::Par::Seq };
    let accum = if bias.is_some() { faer::Accum::Add } else { faer::Accum::Replace };
    faer::linalg::matmul::matmul(
        faer::MatMut::from_row_major_slice_mut(&mut out, m, n),
        accum,
        faer::MatRef::from_row_major_slice(x, m, k),
        faer::MatRef::from_row_major_slice(w, n, k).transpose(),
        1.0f32,
        par,
    );
    out
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
