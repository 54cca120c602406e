//! Softmax attention inside segments (the vision tower's windows and images) as one CPU f32 pass per head:
//! scores, scale, softmax and the value product of every segment of a head in one rayon task, each product
//! on faer's sequential kernel.
//!
//! candle's path for the same work ran each segment's two products as a loop of small serial `gemm` calls
//! (one per head and window, all on the calling thread), the scale as another serial pass, and the softmax
//! as one rayon task per 64-float row; in `perf record -a` of the batch-8 extraction job that left the other
//! core idle for the attention's length (BENCHMARKS.md). Here the heads are the parallel tasks, and a head's
//! segments run one after another in its task, so the result of a segment does not depend on how many
//! segments (images, windows) the batch holds.

use candle_core::{DType, Tensor};
use rayon::prelude::*;

use super::kernels::{clear_upper_vector_state, with_f32};

/// `softmax(q kᵀ · scale) v` inside each segment `[cu[i], cu[i+1])` of `q, k, v` (`(1, heads, n, head_dim)`),
/// query rows in chunks of at most `chunk`; `None` where the inputs are not contiguous f32 on the CPU (or
/// `HUESCAN_PLAIN_KERNELS` is set), so the caller runs candle's ops.
///
/// Each score row goes through candle's steps in candle's order (`q·kᵀ` by one product, then the scale, then
/// a max-subtracted `exp` and a division by the row sum); only the products' summation order differs (faer's
/// kernel, not `gemm`'s), within 1e-6 of candle's result in the tests.
pub fn segment_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    cu: &[usize],
    scale: f64,
    chunk: usize,
) -> Option<candle_core::Result<Tensor>> {
    let Ok((1, heads, n, head_dim)) = q.dims4() else { return None };
    let same = |t: &Tensor| t.dims() == q.dims() && t.dtype() == DType::F32;
    if !same(k) || !same(v) || q.dtype() != DType::F32 || !q.device().is_cpu() || chunk == 0 || n * head_dim == 0 {
        return None;
    }
    if cu.first() != Some(&0) || cu.last() != Some(&n) || cu.windows(2).any(|w| w[1] < w[0]) {
        return None; // candle's narrow names the bad segment
    }
    let out = with_f32(q, |q| {
        with_f32(k, |k| {
            with_f32(v, |v| {
                let per_head = n * head_dim;
                let mut out = vec![0f32; heads * per_head];
                out.par_chunks_mut(per_head).enumerate().for_each(|(h, out)| {
                    let head = h * per_head..(h + 1) * per_head;
                    let dims = Dims { head_dim, chunk, scale: scale as f32 };
                    head_attention(out, &q[head.clone()], &k[head.clone()], &v[head], cu, dims);
                });
                out
            })
        })
    })???;
    Some(Tensor::from_vec(out, (1, heads, n, head_dim), q.device()))
}

/// The vision tower's attention from its fused projection: `qkv (n, 3 · heads · head_dim)` (each row `q`, then
/// `k`, then `v`, head after head), rotary `cos, sin (n, head_dim / 2)` on `q` and `k`, softmax attention
/// inside each segment of `cu`, returned as `(n, heads · head_dim)`; `None` where the inputs are not
/// contiguous f32 on the CPU (or `HUESCAN_PLAIN_KERNELS` is set), so the caller runs candle's ops.
///
/// The same numbers as splitting `qkv` into heads with candle's ops, `candle_nn::rotary_emb::rope` on `q` and
/// `k` and [`segment_attention`], bit for bit (tested), in one rayon task per head: each task gathers its
/// head's rows with the rotary applied (candle's formula) and attends, and the heads' outputs are interleaved
/// back into rows in one more parallel pass. Through candle's ops the head split was three strided copies of
/// the whole `(n, 3 · width)` activation and the merge a fourth, each on one thread while the other core
/// waited, plus two zero-filled rotary outputs.
#[allow(clippy::too_many_arguments)]
pub fn qkv_segment_attention(
    qkv: &Tensor,
    heads: usize,
    cos: &Tensor,
    sin: &Tensor,
    cu: &[usize],
    scale: f64,
    chunk: usize,
) -> Option<candle_core::Result<Tensor>> {
    let (n, three_width) = qkv.dims2().ok()?;
    let width = three_width / 3;
    let head_dim = width.checked_div(heads)?;
    let half = head_dim / 2;
    let table = |t: &Tensor| t.dims() == [n, half] && t.dtype() == DType::F32;
    if qkv.dtype() != DType::F32 || !qkv.device().is_cpu() || 3 * heads * head_dim != three_width {
        return None;
    }
    if !table(cos) || !table(sin) || head_dim % 2 != 0 || chunk == 0 || n * head_dim == 0 {
        return None;
    }
    if cu.first() != Some(&0) || cu.last() != Some(&n) || cu.windows(2).any(|w| w[1] < w[0]) {
        return None;
    }
    let out = with_f32(qkv, |qkv| {
        with_f32(cos, |cos| {
            with_f32(sin, |sin| {
                let dims = Dims { head_dim, chunk, scale: scale as f32 };
                let per_head: Vec<Vec<f32>> = (0..heads)
                    .into_par_iter()
                    .map(|h| {
                        let (q, k, v) = head_rows(qkv, cos, sin, h, width, head_dim);
                        let mut out = vec![0f32; n * head_dim];
                        head_attention(&mut out, &q, &k, &v, cu, dims);
                        out
                    })
                    .collect();
                let mut out = vec![0f32; n * width];
                out.par_chunks_mut(width * ROWS_PER_TASK).enumerate().for_each(|(block, rows)| {
                    for (i, row) in rows.chunks_exact_mut(width).enumerate() {
                        let r = block * ROWS_PER_TASK + i;
                        for (dst, head) in row.chunks_exact_mut(head_dim).zip(&per_head) {
                            dst.copy_from_slice(&head[r * head_dim..(r + 1) * head_dim]);
                        }
                    }
                });
                out
            })
        })
    })???;
    Some(Tensor::from_vec(out, (n, width), qkv.device()))
}

/// Rows per task of the pass that interleaves the heads' outputs.
const ROWS_PER_TASK: usize = 64;

/// Head `h`'s `(q, k, v)`, `(n, head_dim)` each, out of the `(n, 3 · width)` projection, with the rotary on
/// `q` and `k` as `candle_nn::rotary_emb::rope` computes it (non-interleaved halves, the same operations in
/// the same order, so the same bits).
fn head_rows(
    qkv: &[f32],
    cos: &[f32],
    sin: &[f32],
    h: usize,
    width: usize,
    head_dim: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let half = head_dim / 2;
    let n = cos.len() / half.max(1);
    let (mut q, mut k, mut v) = (vec![0f32; n * head_dim], vec![0f32; n * head_dim], vec![0f32; n * head_dim]);
    let rows = qkv.chunks_exact(3 * width).zip(cos.chunks_exact(half).zip(sin.chunks_exact(half)));
    for (r, (row, (c, s))) in rows.enumerate() {
        let dst = r * head_dim..(r + 1) * head_dim;
        let at = |part: usize| &row[part * width + h * head_dim..part * width + (h + 1) * head_dim];
        rotate(&mut q[dst.clone()], at(0), c, s);
        rotate(&mut k[dst.clone()], at(1), c, s);
        v[dst].copy_from_slice(at(2));
    }
    (q, k, v)
}

/// `dst = x·cos + rotate_half(x)·sin` for one row: candle's CPU rope kernel, term for term.
#[inline(always)]
fn rotate(dst: &mut [f32], x: &[f32], cos: &[f32], sin: &[f32]) {
    let half = cos.len();
    let (x1, x2) = x.split_at(half);
    let (d1, d2) = dst.split_at_mut(half);
    for i in 0..half {
        d1[i] = x1[i] * cos[i] - x2[i] * sin[i];
        d2[i] = x1[i] * sin[i] + x2[i] * cos[i];
    }
}

/// What every segment of a head shares.
#[derive(Clone, Copy)]
struct Dims {
    head_dim: usize,
    chunk: usize,
    scale: f32,
}

/// One head: every segment of `q, k, v` (`(n, head_dim)` row-major each) into `out`.
fn head_attention(out: &mut [f32], q: &[f32], k: &[f32], v: &[f32], cu: &[usize], d: Dims) {
    let hd = d.head_dim;
    let longest = cu.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    let mut scores = vec![0f32; d.chunk.min(longest) * longest];
    for w in cu.windows(2) {
        let (start, len) = (w[0], w[1] - w[0]);
        let keys = faer::MatRef::from_row_major_slice(&k[start * hd..(start + len) * hd], len, hd);
        let values = faer::MatRef::from_row_major_slice(&v[start * hd..(start + len) * hd], len, hd);
        for q0 in (0..len).step_by(d.chunk) {
            let rows = d.chunk.min(len - q0);
            let (r0, r1) = ((start + q0) * hd, (start + q0 + rows) * hd);
            let s = &mut scores[..rows * len];
            faer::linalg::matmul::matmul(
                faer::MatMut::from_row_major_slice_mut(s, rows, len),
                faer::Accum::Replace,
                faer::MatRef::from_row_major_slice(&q[r0..r1], rows, hd),
                keys.transpose(),
                1.0f32,
                faer::Par::Seq,
            );
            clear_upper_vector_state();
            s.chunks_exact_mut(len).for_each(|row| softmax_scaled(row, d.scale));
            faer::linalg::matmul::matmul(
                faer::MatMut::from_row_major_slice_mut(&mut out[r0..r1], rows, hd),
                faer::Accum::Replace,
                faer::MatRef::from_row_major_slice(s, rows, len),
                values,
                1.0f32,
                faer::Par::Seq,
            );
            clear_upper_vector_state();
        }
    }
}

/// `row ← softmax(row · scale)` in candle's order: scale, max, `exp(x − max)`, divide by the sum.
fn softmax_scaled(row: &mut [f32], scale: f32) {
    let mut max = f32::NEG_INFINITY;
    for x in row.iter_mut() {
        *x *= scale;
        max = max.max(*x);
    }
    let mut sum = 0f32;
    for x in row.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    row.iter_mut().for_each(|x| *x /= sum);
}

/// candle's ops one segment at a time, all query rows at once: the plain definition the fused pass and the
/// vision tower's batched path are tested against.
#[cfg(test)]
pub(crate) fn candle_reference(q: &Tensor, k: &Tensor, v: &Tensor, cu: &[usize], scale: f64) -> Tensor {
    let outs: Vec<Tensor> = cu
        .windows(2)
        .filter(|w| w[1] > w[0])
        .map(|w| {
            let (s, l) = (w[0], w[1] - w[0]);
            let (qs, ks, vs) = (q.narrow(2, s, l).unwrap(), k.narrow(2, s, l).unwrap(), v.narrow(2, s, l).unwrap());
            let att = candle_nn::ops::softmax_last_dim(&(qs.matmul(&ks.t().unwrap()).unwrap() * scale).unwrap());
            att.unwrap().matmul(&vs).unwrap()
        })
        .collect();
    Tensor::cat(&outs, 2).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn fused_segments_equal_candles_ops() {
        let dev = Device::Cpu;
        // Equal windows, a short one, an empty one, then a long segment split into query chunks.
        let cu = [0, 8, 16, 24, 29, 29, 49];
        let shape = (1, 3, 49, 16);
        let (q, k, v) = (
            Tensor::randn(0f32, 1.0, shape, &dev).unwrap(),
            Tensor::randn(0f32, 1.0, shape, &dev).unwrap(),
            Tensor::randn(0f32, 1.0, shape, &dev).unwrap(),
        );
        let want = candle_reference(&q, &k, &v, &cu, 0.25);
        for chunk in [3, 8, 64] {
            let got = segment_attention(&q, &k, &v, &cu, 0.25, chunk).unwrap().unwrap();
            let diff = (got - &want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff < 1e-6, "chunk {chunk}: {diff}");
        }
    }

    #[test]
    fn a_segment_gives_the_same_bits_alone_and_among_others() {
        let dev = Device::Cpu;
        let shape = (1, 2, 40, 8);
        let (q, k, v) = (
            Tensor::randn(0f32, 1.0, shape, &dev).unwrap(),
            Tensor::randn(0f32, 1.0, shape, &dev).unwrap(),
            Tensor::randn(0f32, 1.0, shape, &dev).unwrap(),
        );
        let all = segment_attention(&q, &k, &v, &[0, 20, 40], 0.3, 16).unwrap().unwrap();
        let part = |t: &Tensor| t.narrow(2, 20, 20).unwrap().contiguous().unwrap();
        let alone = segment_attention(&part(&q), &part(&k), &part(&v), &[0, 20], 0.3, 16).unwrap().unwrap();
        let (a, b) = (part(&all).flatten_all().unwrap().to_vec1::<f32>().unwrap(), alone.flatten_all().unwrap());
        let b = b.to_vec1::<f32>().unwrap();
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
    }

    /// The fused path from `qkv` against candle's head split, rope and the per-head segment attention, bit for
    /// bit, over windows, an empty segment and query chunks.
    #[test]
    fn qkv_attention_equals_the_head_split_rope_and_segment_attention_bit_for_bit() {
        let dev = Device::Cpu;
        let (n, heads, head_dim) = (49, 3, 8);
        let width = heads * head_dim;
        let cu = [0, 8, 16, 24, 29, 29, 49];
        let qkv = Tensor::randn(0f32, 1.0, (n, 3 * width), &dev).unwrap();
        let angles = Tensor::randn(0f32, 2.0, (n, head_dim / 2), &dev).unwrap();
        let (cos, sin) = (angles.cos().unwrap(), angles.sin().unwrap());
        let split = qkv.reshape((n, 3, heads, head_dim)).unwrap().permute((1, 2, 0, 3)).unwrap();
        let part = |i: usize| split.get(i).unwrap().unsqueeze(0).unwrap().contiguous().unwrap();
        let q = candle_nn::rotary_emb::rope(&part(0), &cos, &sin).unwrap();
        let k = candle_nn::rotary_emb::rope(&part(1), &cos, &sin).unwrap();
        for chunk in [3, 64] {
            let want = segment_attention(&q, &k, &part(2), &cu, 0.3, chunk).unwrap().unwrap();
            let want = want.squeeze(0).unwrap().transpose(0, 1).unwrap().reshape((n, width)).unwrap();
            let got = qkv_segment_attention(&qkv, heads, &cos, &sin, &cu, 0.3, chunk).unwrap().unwrap();
            assert_eq!(got.dims(), [n, width]);
            let bits = |t: &Tensor| {
                t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            };
            assert_eq!(bits(&got), bits(&want), "chunk {chunk}");
        }
        let odd = Tensor::zeros((n, 3 * 3 * 5), DType::F32, &dev).unwrap();
        let table = Tensor::zeros((n, 2), DType::F32, &dev).unwrap();
        assert!(qkv_segment_attention(&odd, 3, &table, &table, &cu, 1.0, 4).is_none(), "an odd head width");
        assert!(qkv_segment_attention(&qkv, heads, &table, &table, &cu, 1.0, 4).is_none(), "tables of another width");
        assert!(qkv_segment_attention(&qkv, heads, &cos, &sin, &[0, 50], 1.0, 4).is_none(), "a segment past the rows");
    }

    #[test]
    fn other_inputs_are_left_to_candle() {
        let dev = Device::Cpu;
        let q = Tensor::zeros((1, 2, 4, 8), DType::F32, &dev).unwrap();
        assert!(segment_attention(&q, &q, &q, &[0, 5], 1.0, 4).is_none(), "segments past the sequence");
        let f64s = q.to_dtype(DType::F64).unwrap();
        assert!(segment_attention(&f64s, &f64s, &f64s, &[0, 4], 1.0, 4).is_none());
        let strided = Tensor::zeros((1, 4, 2, 8), DType::F32, &dev).unwrap().transpose(1, 2).unwrap();
        assert!(segment_attention(&strided, &strided, &strided, &[0, 4], 1.0, 4).is_none());
        let empty = Tensor::zeros((1, 2, 0, 8), DType::F32, &dev).unwrap();
        assert!(segment_attention(&empty, &empty, &empty, &[0], 1.0, 4).is_none(), "nothing to attend");
    }
}
