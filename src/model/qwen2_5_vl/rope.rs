//! Positions: the vision tower's 2-D rotary table and window permutation, and the decoder's 3-axis M-RoPE
//! (`get_rope_index` positions and their cos/sin tables). Positions are integers computed on the host; tables
//! are built in f32 (as transformers does with autocast off) and only then cast to the model dtype.

use candle_core::{Device, Tensor};

use crate::model::Error;

/// `(row, col)` of every patch of every image, in the merge-aware order of `pixel_values`: each run of
/// `merge²` patches is one 2x2 block, blocks in raster order, repeated per temporal frame.
pub fn vision_patch_positions(grids: &[[usize; 3]], merge: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for &[t, h, w] in grids {
        for _ in 0..t {
            for hb in 0..h / merge {
                for wb in 0..w / merge {
                    for mh in 0..merge {
                        for mw in 0..merge {
                            out.push((hb * merge + mh, wb * merge + mw));
                        }
                    }
                }
            }
        }
    }
    out
}

/// Half-width cos/sin tables `(n_patches, head_dim / 2)` for the vision rotary: the first half of each row is
/// driven by the patch row, the second by the patch column, with `inv_freq[j] = theta^(-4j/head_dim)`.
pub fn vision_cos_sin(
    positions: &[(usize, usize)],
    head_dim: usize,
    theta: f64,
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    let spatial = head_dim / 2;
    let inv_freq: Vec<f32> =
        (0..spatial / 2).map(|j| 1.0 / (theta as f32).powf((2 * j) as f32 / spatial as f32)).collect();
    let n = positions.len();
    let (mut cos, mut sin) = (Vec::with_capacity(n * spatial), Vec::with_capacity(n * spatial));
    for &(r, c) in positions {
        for p in [r, c] {
            for f in &inv_freq {
                let a = p as f32 * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
    }
    Ok((Tensor::from_vec(cos, (n, spatial), device)?, Tensor::from_vec(sin, (n, spatial), device)?))
}

/// The window permutation of the merged tokens and the window boundaries in patches.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowIndex {
    /// `window_index[k]` = the merged token (raster order over all images) that goes to slot `k`.
    pub index: Vec<usize>,
    /// Cumulative window lengths in patches, starting at 0, empty windows removed.
    pub cu_seqlens: Vec<usize>,
}

/// Windows of `window_size / merge / patch` merged tokens per side, tiled over each image with padding on the
/// bottom/right (a side that is a multiple of the window still gets a whole padding window, as upstream; those
/// empty windows vanish when consecutive equal boundaries are removed).
pub fn window_index(grids: &[[usize; 3]], merge: usize, window_size: usize, patch: usize) -> WindowIndex {
    let win = window_size / merge / patch;
    let unit = merge * merge;
    let mut index = Vec::new();
    let mut cu = vec![0usize];
    let mut offset = 0;
    for &[t, h, w] in grids {
        let (lh, lw) = (h / merge, w / merge);
        let (nwh, nww) = ((lh + win - lh % win) / win, (lw + win - lw % win) / win);
        for ti in 0..t {
            for a in 0..nwh {
                for b in 0..nww {
                    let mut count = 0;
                    for r in a * win..((a + 1) * win).min(lh) {
                        for c in b * win..((b + 1) * win).min(lw) {
                            index.push(offset + (ti * lh + r) * lw + c);
                            count += 1;
                        }
                    }
                    let last = *cu.last().unwrap_or(&0);
                    if count > 0 {
                        cu.push(last + count * unit);
                    }
                }
            }
        }
        offset += t * lh * lw;
    }
    WindowIndex { index, cu_seqlens: cu }
}

/// Boundaries of full attention in patches: every frame of every image is its own segment.
pub fn full_cu_seqlens(grids: &[[usize; 3]]) -> Vec<usize> {
    let mut cu = vec![0];
    for &[t, h, w] in grids {
        for _ in 0..t {
            let last = *cu.last().unwrap_or(&0);
            cu.push(last + h * w);
        }
    }
    cu
}

/// M-RoPE positions of one sequence: rows temporal, height, width.
#[derive(Debug, Clone, PartialEq)]
pub struct MropePositions {
    pub axes: [Vec<i64>; 3],
    /// `max position + 1 - seq_len`: the offset of generated tokens (position = cache length + delta).
    pub delta: i64,
}

/// transformers' `get_rope_index` for one unpadded sequence with images only: text tokens advance all three axes
/// together; the run of image-pad tokens of image `i` takes `(base, base + row, base + col)` over its merged grid,
/// and text resumes at `base + max(rows, cols)`.
pub fn rope_index(
    input_ids: &[u32],
    grids: &[[usize; 3]],
    image_token_id: u32,
    merge: usize,
) -> Result<MropePositions, Error> {
    let mut axes: [Vec<i64>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    let mut next = 0i64;
    let mut i = 0;
    let mut images = grids.iter();
    while i < input_ids.len() {
        if input_ids[i] != image_token_id {
            for a in &mut axes {
                a.push(next);
            }
            next += 1;
            i += 1;
            continue;
        }
        let &[t, h, w] = images.next().ok_or_else(|| {
            Error::Msg(format!("the prompt has more image-pad runs than the {} image(s) given", grids.len()))
        })?;
        let (lh, lw) = (h / merge, w / merge);
        let n = t * lh * lw;
        let run = input_ids[i..].iter().take_while(|&&id| id == image_token_id).count();
        if run < n {
            return Err(Error::Msg(format!(
                "an image of grid {t}x{h}x{w} needs {n} image-pad tokens in a row, the prompt has {run}"
            )));
        }
        // Images contribute no temporal advance (second_per_grid_t = 0 upstream).
        for _ in 0..t {
            for r in 0..lh {
                for c in 0..lw {
                    axes[0].push(next);
                    axes[1].push(next + r as i64);
                    axes[2].push(next + c as i64);
                }
            }
        }
        next += lh.max(lw).max(1) as i64;
        i += n;
    }
    if images.next().is_some() {
        return Err(Error::Msg(format!(
            "{} image(s) given but the prompt has fewer image-pad runs; put one `<|image_pad|>` run per image",
            grids.len()
        )));
    }
    let max = axes.iter().flat_map(|a| a.iter().copied()).max().unwrap_or(-1);
    Ok(MropePositions { delta: max + 1 - input_ids.len() as i64, axes })
}

/// Half-width M-RoPE tables for a batch: `(batch, seq, head_dim / 2)` f32. Frequency slot `j` takes its angle
/// from axis `k` where `j` falls in the `k`-th chunk of `sections` (chunked T|H|W, not interleaved).
pub fn mrope_cos_sin(
    batch: &[&[Vec<i64>; 3]],
    head_dim: usize,
    theta: f64,
    sections: &[usize],
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    let half = head_dim / 2;
    let inv_freq: Vec<f32> = (0..half).map(|j| 1.0 / (theta as f32).powf((2 * j) as f32 / head_dim as f32)).collect();
    let axis_of: Vec<usize> = sections.iter().enumerate().flat_map(|(k, &n)| std::iter::repeat_n(k, n)).collect();
    let seq = batch.first().map(|a| a[0].len()).unwrap_or(0);
    let (mut cos, mut sin) = (Vec::new(), Vec::new());
    for axes in batch {
        if axes.iter().any(|a| a.len() != seq) {
            candle_core::bail!("m-rope positions of unequal lengths in one batch");
        }
        for s in 0..seq {
            for j in 0..half {
                let a = axes[axis_of[j]][s] as f32 * inv_freq[j];
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
    }
    let shape = (batch.len(), seq, half);
    Ok((Tensor::from_vec(cos, shape, device)?, Tensor::from_vec(sin, shape, device)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vision_positions_follow_merge_blocks() {
        let got = vision_patch_positions(&[[1, 4, 4]], 2);
        let want = [
            (0, 0),
            (0, 1),
            (1, 0),
            (1, 1),
            (0, 2),
            (0, 3),
            (1, 2),
            (1, 3),
            (2, 0),
            (2, 1),
            (3, 0),
            (3, 1),
            (2, 2),
            (2, 3),
            (3, 2),
            (3, 3),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn window_index_matches_the_spec_examples() {
        let wi = window_index(&[[1, 12, 20]], 2, 112, 14);
        let want: Vec<usize> = vec![
            0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23, 30, 31, 32, 33, 4, 5, 6, 7, 14, 15, 16, 17, 24, 25, 26, 27, 34,
            35, 36, 37, 8, 9, 18, 19, 28, 29, 38, 39, 40, 41, 42, 43, 50, 51, 52, 53, 44, 45, 46, 47, 54, 55, 56, 57,
            48, 49, 58, 59,
        ];
        assert_eq!(wi.index, want);
        assert_eq!(wi.cu_seqlens, vec![0, 64, 128, 160, 192, 224, 240]);

        let wi = window_index(&[[1, 32, 32]], 2, 112, 14);
        assert_eq!(wi.cu_seqlens, (0..=16).map(|k| k * 64).collect::<Vec<_>>());
        assert_eq!(&wi.index[..16], &[0, 1, 2, 3, 16, 17, 18, 19, 32, 33, 34, 35, 48, 49, 50, 51]);
        let mut sorted = wi.index.clone();
        sorted.sort();
        assert_eq!(sorted, (0..256).collect::<Vec<_>>());
    }

    #[test]
    fn window_index_offsets_second_image() {
        let wi = window_index(&[[1, 4, 4], [1, 4, 4]], 2, 112, 14);
        assert_eq!(wi.index, vec![0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(wi.cu_seqlens, vec![0, 16, 32]);
        assert_eq!(full_cu_seqlens(&[[1, 4, 4], [1, 8, 6]]), vec![0, 16, 64]);
    }

    #[test]
    fn rope_index_matches_the_toy_and_448_examples() {
        let (t, img) = (1u32, 9u32);
        let ids: Vec<u32> = [vec![t; 5], vec![img; 6], vec![t; 4]].concat();
        let p = rope_index(&ids, &[[1, 4, 6]], img, 2).unwrap();
        assert_eq!(p.axes[0], vec![0, 1, 2, 3, 4, 5, 5, 5, 5, 5, 5, 8, 9, 10, 11]);
        assert_eq!(p.axes[1], vec![0, 1, 2, 3, 4, 5, 5, 5, 6, 6, 6, 8, 9, 10, 11]);
        assert_eq!(p.axes[2], vec![0, 1, 2, 3, 4, 5, 6, 7, 5, 6, 7, 8, 9, 10, 11]);
        assert_eq!(p.delta, -3);

        let ids: Vec<u32> = [vec![t; 15], vec![img; 256], vec![t; 13]].concat();
        let p = rope_index(&ids, &[[1, 32, 32]], img, 2).unwrap();
        assert_eq!(p.delta, -240);
        assert_eq!(*p.axes[2].last().unwrap(), 43);
        assert_eq!((p.axes[0][15], p.axes[1][15 + 255], p.axes[2][15 + 255]), (15, 30, 30));
    }

    #[test]
    fn rope_index_rejects_count_mismatch() {
        let ids = [1u32, 9, 9, 9, 1];
        assert!(rope_index(&ids, &[[1, 4, 4]], 9, 2).unwrap_err().to_string().contains("needs 4"));
        assert!(rope_index(&[1, 2], &[[1, 4, 4]], 9, 2).is_err());
        let p = rope_index(&[1, 2, 3], &[], 9, 2).unwrap();
        assert_eq!((p.axes[1].clone(), p.delta), (vec![0, 1, 2], 0));
    }

    #[test]
    fn mrope_table_picks_axis_per_chunk() {
        let axes = [vec![1i64], vec![2], vec![3]];
        let (cos, _) = mrope_cos_sin(&[&axes], 16, 1e6, &[2, 3, 3], &Device::Cpu).unwrap();
        let cos: Vec<f32> = cos.flatten_all().unwrap().to_vec1().unwrap();
        let inv = |j: usize| 1.0 / 1e6f32.powf(2.0 * j as f32 / 16.0);
        for (j, axis_pos) in [(0, 1.0f32), (1, 1.0), (2, 2.0), (4, 2.0), (5, 3.0), (7, 3.0)] {
            assert!((cos[j] - (axis_pos * inv(j)).cos()).abs() < 1e-7, "slot {j}");
        }
    }
}
