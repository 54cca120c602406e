//! CPU f32 fast paths of the forward's hot spots; other devices and dtypes, and inputs that are not contiguous,
//! take candle's ops unchanged.
//!
//! - Linear layers (`y = x Wᵀ + b`) run their product through faer's matmul instead of candle's (the `gemm`
//!   crate): the extraction job is GEMM-bound at shapes with few rows (256 patches of one 224x224 image, ~80
//!   prompt tokens), where faer's kernels, which pick AVX-512 at run time, ran faster on this machine than
//!   `gemm` built for stable Rust (AVX2); see BENCHMARKS.md.
//!   With few rows the product runs into a column-major buffer so that faer does not pack the whole weight
//!   matrix on every call, and after each product the thread clears the upper vector-register state that
//!   faer's assembly kernels leave behind (see [`matmul_xwt`]).
//! - The gated MLP's `silu(gate) * up` is one pass on candle's threads instead of two single-threaded ones
//!   (candle's CPU unary and binary maps run on one core), with a vectorised `exp`, within 4 ulp of candle's.
//!
//! `HUESCAN_PLAIN_KERNELS=1` in the environment turns both off, and the fused attention of
//! [`super::attention`] too (candle's ops everywhere), so one binary can time the two side by side
//! (scripts/bench/extract_job.py --plain-kernels).

use candle_core::{CpuStorage, DType, Module, Shape, Storage, Tensor};
use candle_nn::VarBuilder;
use faer::prelude::{Reborrow, ReborrowMut};
use rayon::prelude::*;

/// Elements per parallel task of the elementwise kernels (a few cache lines' worth of work per task is too
/// little to amortise rayon's scheduling).
pub(crate) const ELEMENTWISE_CHUNK: usize = 1 << 14;

/// Whether `HUESCAN_PLAIN_KERNELS` asks for candle's ops (read once).
fn plain() -> bool {
    static PLAIN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PLAIN
        .get_or_init(|| std::env::var_os(crate::env::HUESCAN_PLAIN_KERNELS).is_some_and(|v| !v.is_empty() && v != "0"))
}

/// `f` on the f32 CPU data of a contiguous tensor, or `None` (another device, dtype or layout, or
/// `HUESCAN_PLAIN_KERNELS` set).
pub(crate) fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
    if plain() || !t.is_contiguous() {
        return None;
    }
    let (store, layout) = t.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(data)) = &*store else { return None };
    let start = layout.start_offset();
    Some(f(&data[start..start + t.elem_count()]))
}

/// `gate.silu()? * up`, i.e. `g / (1 + exp(-g)) * u`, in one pass on rayon with a vectorised `exp`
/// (`exp_f32`; candle's formula calls libm's scalar `expf` per element). Within 4 ulp of candle's result;
/// the same bits whatever the split into tasks, the batch or the CPU's vector width.
pub fn silu_mul(gate: &Tensor, up: &Tensor) -> candle_core::Result<Tensor> {
    let out = (gate.shape() == up.shape())
        .then(|| {
            with_f32(gate, |g| {
                with_f32(up, |u| {
                    let mut out = vec![0f32; g.len()];
                    out.par_chunks_mut(ELEMENTWISE_CHUNK)
                        .zip(g.par_chunks(ELEMENTWISE_CHUNK).zip(u.par_chunks(ELEMENTWISE_CHUNK)))
                        .for_each(|(o, (g, u))| silu_mul_slice(o, g, u));
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

/// `o = g / (1 + exp(-g)) * u` elementwise, compiled for AVX2 when the CPU has it (8 lanes a step). Plain
/// multiplies and adds only (no fused multiply-add), so the vector and scalar builds give the same bits.
fn silu_mul_slice(o: &mut [f32], g: &[f32], u: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { silu_mul_avx2(o, g, u) };
    }
    silu_mul_portable(o, g, u)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn silu_mul_avx2(o: &mut [f32], g: &[f32], u: &[f32]) {
    silu_mul_portable(o, g, u)
}

#[inline(always)]
fn silu_mul_portable(o: &mut [f32], g: &[f32], u: &[f32]) {
    for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
        *o = g / (1.0 + exp_f32(-g)) * u;
    }
}

/// `eˣ` in f32 within 1 ulp for `x` in [-87, 88], `e⁻⁸⁷` below (0 next to the 1 that SiLU adds to it) and
/// infinity above; NaN stays NaN. Branch-free, so loops over it vectorise: Cephes' `expf` (range reduction
/// `x = n ln 2 + r`, `|r| ≤ ln 2 / 2`, with ln 2 in two parts; a degree-5 polynomial in `r`; `2ⁿ` built in
/// the exponent bits).
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // 1.5 * 2^23: adding it rounds to an integer (to nearest even) held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    // 0.693359375 exactly: 9 significant bits, so `n * LN2_HI` is exact for every n used.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let (big, x) = (x > 88.0, x.clamp(-87.0, 88.0));
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // n in [-126, 127]: 2^n is a normal float with exponent field n + 127.
    let scale = f32::from_bits(t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127) << 23);
    if big {
        f32::INFINITY
    } else {
        e * scale
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
        keep_freed_buffers();
        let m = xs.elem_count() / k;
        let bias = match self.inner.bias() {
            Some(b) if b.dtype() == DType::F32 && b.elem_count() == n => Some(b.flatten_all()?.to_vec1::<f32>()?),
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

/// Runs `f`, a whole forward, on one of rayon's worker threads instead of the caller's.
///
/// The products split their columns over rayon's pool. Called from the main thread, every product handed
/// its halves to the pool and the main thread slept until both were done, so each of the forward's
/// hundreds of products paid two cross-thread wake-ups (in a VM, a halted virtual CPU to wake each time);
/// in `perf record -a` of the batch-1 job the main thread's share and the idle share of both cores fell
/// from 5.6 % and 13.6 % to 1.5 % and 7.6 % with this and the in-task copy of `xwt_via_column_major`
/// together (BENCHMARKS.md). On a worker the forward's own thread runs one half of each product itself. A
/// caller already on a worker runs `f` in place, and so does every forward on another device (a GPU's
/// work is queued from the calling thread, as before).
pub fn on_compute_threads<R: Send>(device: &candle_core::Device, f: impl FnOnce() -> R + Send) -> R {
    if device.is_cpu() {
        rayon::scope(|_| f())
    } else {
        f()
    }
}

/// Has glibc's `malloc` keep the forward's freed activations for reuse instead of handing them back to the
/// kernel (once per process). The library calls it on its first product; a program should call it first
/// thing in `main`, before any other thread allocates, or the one-arena setting below does not take.
///
/// By default glibc serves blocks above a threshold (128 KiB, growing up to 32 MiB) with fresh `mmap`s and
/// trims the heap top above 128 KiB, so a forward's activations of up to tens of MB each were unmapped when
/// dropped and page-faulted (and zeroed by the kernel) again on the next layer: 5–9 % of the batch-8 job's
/// samples, half of them on the main thread while both rayon workers waited (`perf record -a`,
/// BENCHMARKS.md). With a fixed 32 MiB threshold (glibc's ceiling) and a 1 GiB trim threshold, a freed block
/// is reused by the next layer's output. Blocks above 32 MiB (large weights) are still mapped and unmapped;
/// what stays is at most the forward's own peak of live activations.
///
/// And one arena for every thread: the forward runs on a rayon worker ([`on_compute_threads`]), and a
/// thread's own glibc arena is made of heaps of at most 64 MiB that are unmapped whenever they empty, so
/// the batch-8 job's 28–31 MB activations kept faulting fresh pages there whatever the thresholds say
/// (`clear_page_erms` and the fault path ~2.5 % of the samples); in the main arena the trim threshold
/// holds. The forward's allocations are few and large, and the parallel analysis allocates a few matrices per
/// permutation next to milliseconds of arithmetic (small blocks come from glibc's per-thread caches without
/// the lock), so the shared arena's lock costs nothing measurable. A/B (BENCHMARKS.md): batch-8 loop
/// 9.87–10.00 s → 9.19–9.38 s, batch 1 unchanged. A `MALLOC_ARENA_MAX` in the environment is left in charge.
pub fn keep_freed_buffers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: `mallopt` only sets allocator parameters; all three are valid for glibc (a failure returns
        // 0 and leaves the defaults, which are only slower).
        unsafe {
            if std::env::var_os(crate::env::MALLOC_ARENA_MAX).is_none() {
                libc::mallopt(libc::M_ARENA_MAX, 1);
            }
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        }
    });
}

/// Output columns per parallel task at least (a multiple of the kernels' register tile widths).
const MIN_COLUMNS_PER_TASK: usize = 64;

/// Rows of the output per parallel task (at least) of the fills.
const FILL_ROWS: usize = 16;

/// `x (m, k) · w (n, k)ᵀ (+ bias (n) on every row)`, row-major, on candle's thread count. The bias is written
/// first and the product accumulated onto it (one pass over the output less than candle's `broadcast_add`
/// after the product; equal to it up to summation order).
///
/// The threads split the output columns and each runs faer's sequential product, on rayon, the pool candle's
/// matmul and softmax use. faer's threaded product runs on a pool of its own (spindle) whose idle workers spin
/// for up to ~65k pauses after every product; next to candle's pools on the same two cores, that pool's
/// spinning and barriers took ~14 % of the samples of a `perf` profile of the extraction job (BENCHMARKS.md).
///
/// With few rows (`2m ≤ k`: one image's patches, a prompt's tokens) the product goes through a column-major
/// output (`xwt_via_column_major`), where faer packs `x` and reads `w` as it is stored, instead of packing
/// all of `w` on every call; above that, packing `w` pays for itself and the output is written in place
/// (`xwt_row_major`). Both give the same bits (tested), so the choice does not make results depend on the
/// batch size.
pub fn matmul_xwt(x: &[f32], w: &[f32], bias: Option<&[f32]>, m: usize, k: usize, n: usize) -> Vec<f32> {
    // The fills below write every output element only with a bias of the output's width (and `Linear`
    // passes no other), so this is the one check.
    assert!(bias.is_none_or(|b| b.len() == n), "a bias of {n} elements for {n} output columns");
    if 2 * m <= k {
        xwt_via_column_major(x, w, bias, m, k, n)
    } else {
        xwt_row_major(x, w, bias, m, k, n)
    }
}

/// The task count for `n` output columns.
fn column_tasks(n: usize) -> usize {
    candle_core::utils::get_num_threads().clamp(1, n.div_ceil(MIN_COLUMNS_PER_TASK))
}

/// [`matmul_xwt`] into the row-major output directly. faer sees `outᵀ = w · xᵀ` (it makes the destination
/// column-major), so it packs `w`, the left operand, into panels on every call (`2k` flops per packed
/// element per row of `x`).
fn xwt_row_major(x: &[f32], w: &[f32], bias: Option<&[f32]>, m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut out = filled(m, n, bias);
    if m == 0 || n == 0 {
        return out;
    }
    let accum = if bias.is_some() { faer::Accum::Add } else { faer::Accum::Replace };
    split_columns(
        faer::MatMut::from_row_major_slice_mut(&mut out, m, n),
        faer::MatRef::from_row_major_slice(x, m, k),
        faer::MatRef::from_row_major_slice(w, n, k).transpose(),
        accum,
        column_tasks(n),
        0,
        &|_, _| {},
    );
    out
}

/// [`matmul_xwt`] into a column-major buffer, then copied into row-major order. faer then sees `out = x · wᵀ`
/// as given: it packs `x` (small) and its kernels read `wᵀ`'s columns, `w`'s contiguous rows, in place. The
/// bias goes into the buffer first, so every element is summed in the same order as in [`xwt_row_major`].
/// On this machine (single-thread CPU-time rates, BENCHMARKS.md) 1.1–1.5x the row-major product at 64–256
/// rows, level at 632.
///
/// Each column task copies its own columns into the output right after its product, while they are still
/// in cache and on the thread that has them: as a separate parallel pass after the product the copy was
/// ~7 % of the batch-1 job's samples, nearly all on one thread while the other waited to be woken
/// (`perf record -a`, BENCHMARKS.md).
fn xwt_via_column_major(x: &[f32], w: &[f32], bias: Option<&[f32]>, m: usize, k: usize, n: usize) -> Vec<f32> {
    if m == 0 || n == 0 {
        return vec![0f32; m * n];
    }
    // The column-major buffer is the row-major `(n, m)` matrix whose rows are `out`'s columns.
    let mut cols = match bias {
        // SAFETY: the closure writes all `m` elements of each of the `n` columns (`b[j]` exists: `b.len() == n`).
        Some(b) => unsafe { filled_rows_with(n, m, |j, col| col.iter_mut().for_each(|c| _ = c.write(b[j]))) },
        None => filled(n, m, None),
    };
    let accum = if bias.is_some() { faer::Accum::Add } else { faer::Accum::Replace };
    let mut out = Vec::with_capacity(m * n);
    let dst = RowMajorDst { ptr: out.spare_capacity_mut().as_mut_ptr(), rows: m, width: n };
    split_columns(
        faer::MatMut::from_column_major_slice_mut(&mut cols, m, n),
        faer::MatRef::from_row_major_slice(x, m, k),
        faer::MatRef::from_row_major_slice(w, n, k).transpose(),
        accum,
        column_tasks(n),
        0,
        // SAFETY: `split_columns` hands every column of `out` to exactly one task, so no two threads write
        // one element.
        &|col0, finished| unsafe { dst.copy_columns(col0, finished) },
    );
    // SAFETY: the capacity is `m * n`, and the column ranges the tasks copied cover `0..n` for every row.
    unsafe { out.set_len(m * n) };
    out
}

/// The uninitialised row-major `(rows, width)` output, written by column ranges from several tasks.
struct RowMajorDst {
    ptr: *mut std::mem::MaybeUninit<f32>,
    rows: usize,
    width: usize,
}

// SAFETY: tasks write disjoint column ranges, so no element is written twice or read at all.
unsafe impl Sync for RowMajorDst {}

impl RowMajorDst {
    /// Writes the columns `col0..` of every row from `finished` (those columns of the column-major product
    /// buffer), in tiles of [`TILE`]x[`TILE`]: a tile reads `TILE` column segments of one cache line each and
    /// writes `TILE` row segments, so both sides stay in L1 (2–4x the element-by-element walk in a scratch
    /// bench at 256x3420).
    ///
    /// # Safety
    /// No other thread may write columns `col0..col0 + finished.ncols()` of the output.
    unsafe fn copy_columns(&self, col0: usize, finished: faer::MatRef<'_, f32>) {
        let (m, n) = (self.rows, self.width);
        let range = col0..col0 + finished.ncols();
        assert!(finished.nrows() == m && range.end <= n, "columns of the output");
        let Some(cols) = finished.try_as_col_major() else { unreachable!("the product buffer is column-major") };
        let col = |j: usize| cols.col(j - range.start).as_slice();
        let mut tile = [[0f32; TILE]; TILE];
        for i0 in (0..m).step_by(TILE) {
            let r = TILE.min(m - i0);
            for j0 in range.clone().step_by(TILE) {
                let c = TILE.min(range.end - j0);
                for jj in 0..c {
                    for (t, &v) in tile.iter_mut().zip(&col(j0 + jj)[i0..i0 + r]) {
                        t[jj] = v;
                    }
                }
                for (i, t) in tile.iter().take(r).enumerate() {
                    // SAFETY: row `i0 + i < m`, columns `j0..j0 + c` inside `range`, inside the allocation of
                    // `m * n`; only this task writes them (the caller's obligation).
                    let row = unsafe { std::slice::from_raw_parts_mut(self.ptr.add((i0 + i) * n + j0), c) };
                    for (d, &v) in row.iter_mut().zip(&t[..c]) {
                        d.write(v);
                    }
                }
            }
        }
    }
}

/// Rows and columns of one tile of the transposing copy.
const TILE: usize = 16;

/// A row-major `(rows, width)` buffer with every row a copy of `bias` (zeros without one), written on rayon.
fn filled(rows: usize, width: usize, bias: Option<&[f32]>) -> Vec<f32> {
    match bias {
        Some(b) => {
            assert_eq!(b.len(), width, "a bias of the output's width");
            // SAFETY: `b` has `width` elements (checked above), so the zip writes the whole row.
            unsafe { filled_rows_with(rows, width, |_, row| row.iter_mut().zip(b).for_each(|(d, &v)| _ = d.write(v))) }
        }
        // SAFETY: every element of every row is written.
        None => unsafe { filled_rows_with(rows, width, |_, row| row.iter_mut().for_each(|c| _ = c.write(0.0))) },
    }
}

/// A row-major `(rows, width)` buffer whose row `i` is written by `write(i, row)`, which must write every
/// element, on rayon in blocks of rows.
///
/// The outputs are fresh allocations of up to tens of MB per product: written on one thread (`vec![0; len]`
/// and a serial fill) they were ~4 % of the batch-8 job's samples on the main thread while both rayon workers
/// waited (page faults and `memcpy`, `perf record -a`, BENCHMARKS.md). Rows go out in blocks of
/// [`FILL_ROWS`] or more so that each task has enough to do.
///
/// # Safety
/// `write` must write every element of the row it is given; the buffer is returned as initialised.
unsafe fn filled_rows_with(
    rows: usize,
    width: usize,
    write: impl Fn(usize, &mut [std::mem::MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    let len = rows * width;
    let mut out = Vec::with_capacity(len);
    if let Some(per_chunk) = ELEMENTWISE_CHUNK.checked_div(width) {
        let block = FILL_ROWS.max(per_chunk);
        out.spare_capacity_mut()[..len].par_chunks_mut(block * width).enumerate().for_each(|(c, chunk)| {
            for (r, row) in chunk.chunks_exact_mut(width).enumerate() {
                write(c * block + r, row);
            }
        });
    }
    // SAFETY: the capacity is at least `len`, and `write` wrote all `width` elements of each of the `rows`
    // rows (the caller's obligation).
    unsafe { out.set_len(len) };
    out
}

/// `vzeroupper` on x86-64 with AVX (a no-op elsewhere), after faer's products.
///
/// faer's AVX-512 kernels (private-gemm-x86, assembly) return without `vzeroupper`, so the thread that ran
/// them keeps the upper halves of its vector registers marked in use. Every SSE-encoded instruction it runs
/// afterwards, which is all of candle's elementwise code and huescan's own loops (built for baseline
/// x86-64), then merges with that state: in a `perf` profile of the extraction job the SiLU pass and glibc's
/// `expf` under it took ~40 % of the samples, most of them on that stall (BENCHMARKS.md). Rust code built
/// with AVX enabled, such as the `gemm` crate's kernels behind candle's matmul, clears the state itself.
#[inline]
pub(crate) fn clear_upper_vector_state() {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: the CPU has AVX (checked just above). `vzeroupper` zeroes bits 128 and up of the vector
        // registers, which no value lives in across this call (they are caller-saved in every x86-64 ABI).
        unsafe { std::arch::x86_64::_mm256_zeroupper() }
    }
}

/// `out (+)= x · wt` with the columns of `out` and `wt` cut into `tasks` contiguous parts run with rayon; each
/// part then calls `done(first column, its finished part of out)`, counting columns from `col0`.
fn split_columns(
    out: faer::MatMut<'_, f32>,
    x: faer::MatRef<'_, f32>,
    wt: faer::MatRef<'_, f32>,
    accum: faer::Accum,
    tasks: usize,
    col0: usize,
    done: &(dyn Fn(usize, faer::MatRef<'_, f32>) + Sync),
) {
    if tasks <= 1 {
        let mut out = out;
        faer::linalg::matmul::matmul(out.rb_mut(), accum, x, wt, 1.0f32, faer::Par::Seq);
        clear_upper_vector_state();
        done(col0, out.rb());
        return;
    }
    let left = tasks / 2;
    // Round the cut to whole register tiles; the last part takes the remainder.
    let cut = (out.ncols() * left / tasks).div_ceil(16) * 16;
    let cut = cut.min(out.ncols());
    let (out_l, out_r) = out.split_at_col_mut(cut);
    let (wt_l, wt_r) = wt.split_at_col(cut);
    rayon::join(
        || split_columns(out_l, x, wt_l, accum, left, col0, done),
        || split_columns(out_r, x, wt_r, accum, tasks - left, col0 + cut, done),
    );
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
                0,
                &|_, _| {},
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

    /// `split_columns` hands every column to exactly one task's `done`, after that task's product: what
    /// the in-task copy of the column-major route relies on.
    #[test]
    fn every_column_is_reported_done_once_after_its_product() {
        let (m, k, n) = (3, 5, 301);
        let x = vec![1f32; m * k];
        let w = vec![1f32; n * k];
        for tasks in [1, 2, 3, 5, 8] {
            let mut out = vec![0f32; m * n];
            let seen = std::sync::Mutex::new(Vec::new());
            split_columns(
                faer::MatMut::from_column_major_slice_mut(&mut out, m, n),
                faer::MatRef::from_row_major_slice(&x, m, k),
                faer::MatRef::from_row_major_slice(&w, n, k).transpose(),
                faer::Accum::Replace,
                tasks,
                0,
                &|col0, finished| {
                    let all_done = (0..finished.ncols()).all(|j| (0..m).all(|i| finished[(i, j)] == k as f32));
                    assert!(all_done, "columns from {col0} reported before their product");
                    seen.lock().unwrap().push(col0..col0 + finished.ncols());
                },
            );
            let mut seen = seen.into_inner().unwrap();
            seen.sort_by_key(|r| r.start);
            assert_eq!(seen.len(), tasks, "one range per task");
            assert!(seen.windows(2).all(|p| p[0].end == p[1].start), "{tasks} tasks: {seen:?}");
            assert_eq!((seen[0].start, seen[seen.len() - 1].end), (0, n), "{tasks} tasks: {seen:?}");
        }
    }

    /// The two ways of running the product give the same bits, with and without a bias, over several depth
    /// blocks of faer's kernels (512) and with remainders of their register tiles.
    #[test]
    fn column_major_route_equals_row_major_route_bit_for_bit() {
        for (m, k, n) in [(5, 700, 37), (79, 1300, 301), (130, 1100, 97), (1, 600, 64)] {
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0).collect();
            let w: Vec<f32> = (0..n * k).map(|i| ((i * 53) % 97) as f32 / 48.0 - 1.0).collect();
            let b: Vec<f32> = (0..n).map(|i| i as f32 * 0.37 - 3.0).collect();
            for bias in [None, Some(b.as_slice())] {
                let (rows, cols) = (xwt_row_major(&x, &w, bias, m, k, n), xwt_via_column_major(&x, &w, bias, m, k, n));
                let same = rows.iter().zip(&cols).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{m}x{k}x{n}, bias {}", bias.is_some());
            }
        }
    }

    /// Both routes against a plain triple loop at sizes whose outputs span several blocks of the parallel
    /// fills and of the transposing copy (so a block that is skipped or written twice shows).
    #[test]
    fn products_over_several_fill_blocks_equal_the_definition() {
        for (m, k, n) in [(130, 200, 301), (40, 700, 1000)] {
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0).collect();
            let w: Vec<f32> = (0..n * k).map(|i| ((i * 53) % 97) as f32 / 48.0 - 1.0).collect();
            let b: Vec<f32> = (0..n).map(|i| i as f32 * 0.37 - 3.0).collect();
            for bias in [None, Some(b.as_slice())] {
                let got = matmul_xwt(&x, &w, bias, m, k, n);
                for (i, j) in (0..m).flat_map(|i| (0..n).map(move |j| (i, j))) {
                    let dot: f64 = (0..k).map(|t| x[i * k + t] as f64 * w[j * k + t] as f64).sum();
                    let want = dot + bias.map_or(0.0, |b| b[j] as f64);
                    let d = (got[i * n + j] as f64 - want).abs();
                    assert!(
                        d < 1e-3,
                        "{m}x{k}x{n} bias {} at ({i}, {j}): {} vs {want}",
                        bias.is_some(),
                        got[i * n + j]
                    );
                }
            }
        }
    }

    /// Within 4 ulp (relative) of candle's `silu(gate) * up`, and equal to it where candle's path runs.
    #[test]
    fn silu_mul_is_candles_silu_times_up_within_4_ulp() {
        let dev = Device::Cpu;
        // More than one parallel chunk, and a length that is not a multiple of it.
        let (g, u) = (
            Tensor::randn(0f32, 3.0, (3, ELEMENTWISE_CHUNK + 5), &dev).unwrap(),
            Tensor::randn(0f32, 1.0, (3, ELEMENTWISE_CHUNK + 5), &dev).unwrap(),
        );
        let want = (g.silu().unwrap() * &u).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let got = silu_mul(&g, &u).unwrap();
        assert_eq!(got.dims(), g.dims());
        for (a, b) in got.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().zip(&want) {
            assert!((a - b).abs() <= 4.0 * f32::EPSILON * b.abs().max(f32::MIN_POSITIVE), "{a} vs {b}");
        }
        // A non-contiguous input takes candle's ops.
        let gt = g.t().unwrap();
        let ut = u.t().unwrap();
        let want = (gt.silu().unwrap() * &ut).unwrap();
        let diff = (silu_mul(&gt, &ut).unwrap() - want).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
    }

    /// The vectorised build and the portable one give the same bits, far into both tails and at NaN.
    #[test]
    fn silu_mul_vector_and_scalar_builds_agree_bit_for_bit() {
        let g: Vec<f32> = (0..4099).map(|i| (i as f32 - 2049.0) * 0.07).chain([f32::NAN, 1e30, -1e30]).collect();
        let u: Vec<f32> = (0..g.len()).map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0).collect();
        let (mut fast, mut plain) = (vec![0f32; g.len()], vec![0f32; g.len()]);
        silu_mul_slice(&mut fast, &g, &u);
        silu_mul_portable(&mut plain, &g, &u);
        assert!(fast.iter().zip(&plain).all(|(a, b)| a.to_bits() == b.to_bits()));
        assert!(fast[fast.len() - 3].is_nan());
        assert_eq!(fast[fast.len() - 2], 1e30 * u[g.len() - 2]);
        assert_eq!(fast[fast.len() - 1], 0.0);
    }

    /// `exp_f32` within 1 ulp of the exact value on a fine grid of its range, and clamped outside it.
    #[test]
    fn exp_f32_is_within_one_ulp() {
        for i in 0..=175_000 {
            let x = (-87.0 + i as f64 * 1e-3) as f32;
            let (got, want) = (exp_f32(x) as f64, (x as f64).exp());
            let ulp = {
                let w = want as f32;
                (f32::from_bits(w.to_bits() + 1) - w) as f64
            };
            assert!((got - want).abs() <= ulp, "exp({x}) = {got}, want {want}");
        }
        assert_eq!(exp_f32(-200.0), exp_f32(-87.0));
        assert_eq!(exp_f32(88.5), f32::INFINITY);
        assert!(exp_f32(f32::NAN).is_nan());
    }
}
