//! Unit tests of hook names, point selection and interventions (the device path against the host one).

use super::*;
use candle_core::Device;

#[test]
fn blocks_needed_counts_to_the_deepest_point_and_only_when_asked() {
    let mut hooks = HookSet::capture([HookPoint::ResidPre(0), HookPoint::ResidPost(4)]);
    assert_eq!(hooks.blocks_needed(36), None, "stop_early is off by default");
    hooks.stop_early = true;
    assert_eq!(hooks.blocks_needed(36), Some(5));
    assert_eq!(hooks.blocks_needed(5), None, "all five blocks is the whole model");
    hooks.interventions.push(Intervention {
        point: HookPoint::ResidPost(9),
        positions: Positions::All,
        sample: None,
        op: InterventionOp::Add { vector: vec![0.0], alpha: 1.0 },
    });
    assert_eq!(hooks.blocks_needed(36), Some(10));
    hooks.capture.push(HookPoint::LnFinalOut);
    assert_eq!(hooks.blocks_needed(36), None);
    let hooks = HookSet { stop_early: true, ..HookSet::capture([HookPoint::ResidPre(0)]) };
    assert_eq!(hooks.blocks_needed(36), Some(0), "the embeddings alone need no block");
}

#[test]
fn hidden_state_indices_round_trip_through_hook_names() {
    let n_blocks = 36;
    for i in 0..=n_blocks {
        let hp = HookPoint::from_hidden_state_index(i, n_blocks).unwrap();
        assert_eq!(hp.hidden_state_index(n_blocks), Some(i), "{hp}");
        assert_eq!(hp.to_string().parse::<HookPoint>().unwrap(), hp);
    }
    assert_eq!(HookPoint::from_hidden_state_index(5, 36).unwrap().to_string(), "blocks.4.hook_resid_post");
    assert_eq!(HookPoint::from_hidden_state_index(36, 36).unwrap(), HookPoint::LnFinalOut);
    assert_eq!(HookPoint::ResidPost(35).hidden_state_index(36), None, "raw last block output is not an HF entry");
    assert_eq!("resid_post7".parse::<HookPoint>().unwrap(), HookPoint::ResidPost(7));
    assert!("Blocks.x".parse::<HookPoint>().is_err());
}

#[test]
fn every_new_name_round_trips_and_orders_by_the_forward_pass() {
    let points = [
        HookPoint::VisualPatchEmbed,
        HookPoint::VisualResidPost(0),
        HookPoint::VisualResidPost(31),
        HookPoint::VisualMergerOut,
        HookPoint::ResidPre(0),
        HookPoint::AttnOut(0),
        HookPoint::ResidMid(0),
        HookPoint::MlpOut(0),
        HookPoint::ResidPost(0),
        HookPoint::AttnOut(1),
        HookPoint::ResidPost(35),
        HookPoint::LnFinalOut,
    ];
    for p in &points {
        assert_eq!(p.to_string().parse::<HookPoint>().unwrap(), *p, "{p}");
    }
    let mut shuffled = points.to_vec();
    shuffled.reverse();
    shuffled.sort_by_key(HookPoint::forward_order);
    assert_eq!(shuffled, points);
    assert_eq!("attn_out3".parse::<HookPoint>().unwrap(), HookPoint::AttnOut(3));
    assert_eq!(HookPoint::VisualMergerOut.component(), Component::Vision);
    assert_eq!(HookPoint::MlpOut(2).component(), Component::Language);
    assert!("visual.blocks.2.hook_attn_out".parse::<HookPoint>().is_err(), "not a vision point huescan has");
    assert!("visual.bottleneck".parse::<HookPoint>().is_err());
    assert!("blocks.1.hook_mlp_in".parse::<HookPoint>().is_err());
}

#[test]
fn globs_select_by_name_in_model_order_and_a_miss_is_an_error() {
    let all = [
        HookPoint::ResidPre(0),
        HookPoint::ResidPost(0),
        HookPoint::LnFinalOut,
        HookPoint::VisualPatchEmbed,
        HookPoint::VisualResidPost(0),
        HookPoint::VisualResidPost(1),
        HookPoint::VisualMergerOut,
        HookPoint::AttnOut(0),
        HookPoint::MlpOut(1),
        HookPoint::ResidPost(1),
    ];
    let names = |pat: &str| select_points(pat, &all).unwrap().iter().map(|p| p.to_string()).collect::<Vec<_>>();
    assert_eq!(names("visual.blocks.*"), ["visual.blocks.0.hook_resid_post", "visual.blocks.1.hook_resid_post"]);
    assert_eq!(names("blocks.*.hook_resid_post"), ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]);
    assert_eq!(
        names("ln_final.hook_out, blocks.0.*"),
        ["blocks.0.hook_resid_pre", "blocks.0.hook_resid_post", "ln_final.hook_out", "blocks.0.hook_attn_out"]
    );
    assert_eq!(select_points("*", &all).unwrap().len(), all.len());
    assert_eq!(names("visual.*.hook_*").len(), 3, "`.hook_` after a dot: not the patch embedding");
    assert_eq!(
        names("visual.*"),
        [
            "visual.hook_patch_embed",
            "visual.blocks.0.hook_resid_post",
            "visual.blocks.1.hook_resid_post",
            "visual.merger.hook_out"
        ]
    );
    let err = select_points("visual.blocks.*,blocks.*.hook_z", &all).unwrap_err().to_string();
    assert!(err.contains("`blocks.*.hook_z` matches no hook point"), "{err}");
    assert!(select_points("blocks.0.hook_resid_post,", &all).is_err(), "an empty pattern is a typo");
    assert!(glob_match("blocks.1*", "blocks.10.hook_mlp_out") && !glob_match("blocks.1", "blocks.10"));
    assert!(glob_match("a*b*c", "a.x.b.y.c") && !glob_match("a*b*c", "a.x.c.b"));
}

#[test]
fn apply_rows_touches_only_the_selected_rows_of_the_sample() {
    let xs = Tensor::new(&[[1f32, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]], &Device::Cpu).unwrap();
    let point = HookPoint::VisualResidPost(0);
    let mut hooks = HookSet::default();
    hooks.interventions.push(Intervention {
        point: point.clone(),
        positions: Positions::Indices(vec![1]),
        sample: Some(1),
        op: InterventionOp::Add { vector: vec![10.0, 20.0], alpha: 1.0 },
    });
    // Sample 0 owns rows 0..2, sample 1 rows 2..4.
    let rows = |b: usize, p: &Positions| match p {
        Positions::Indices(ix) => Ok(ix.iter().map(|i| 2 * b + i).collect()),
        _ => Ok((2 * b..2 * b + 2).collect()),
    };
    let out = hooks.apply_rows(&point, &xs, 2, &rows).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(out, vec![vec![1.0, 2.0], vec![3.0, 4.0], vec![5.0, 6.0], vec![17.0, 28.0]]);
    assert!(hooks.apply_rows(&point, &xs, 1, &rows).is_err(), "sample 1 of a batch of one");
}

#[test]
fn alpha_zero_is_bit_identical_and_add_adds() {
    let xs = Tensor::new(&[[[1.5f32, -2.0], [0.25, 4.0]]], &Device::Cpu).unwrap();
    let point = HookPoint::ResidPost(0);
    let mut hooks = HookSet::default();
    hooks.interventions.push(Intervention {
        point: point.clone(),
        positions: Positions::Last,
        sample: None,
        op: InterventionOp::Add { vector: vec![1.0, 1.0], alpha: 0.0 },
    });
    let last = |_b: usize, _p: &Positions| vec![1usize];
    let same = hooks.apply(&point, &xs, &last).unwrap();
    assert_eq!(same.to_vec3::<f32>().unwrap(), xs.to_vec3::<f32>().unwrap());
    hooks.interventions[0].op = InterventionOp::Add { vector: vec![1.0, 1.0], alpha: 2.0 };
    let moved = hooks.apply(&point, &xs, &last).unwrap().to_vec3::<f32>().unwrap();
    assert_eq!(moved, vec![vec![vec![1.5, -2.0], vec![2.25, 6.0]]]);
}

#[test]
fn patch_replaces_the_subspace_component() {
    let xs = Tensor::new(&[[[3.0f32, 4.0]]], &Device::Cpu).unwrap();
    let point = HookPoint::Named("bottleneck".into());
    let hooks = HookSet {
        capture: vec![],
        interventions: vec![Intervention {
            point: point.clone(),
            positions: Positions::All,
            sample: Some(0),
            op: InterventionOp::Patch { basis: vec![vec![1.0, 0.0]], target: vec![-1.0] },
        }],
        stop_early: false,
    };
    let out = hooks.apply(&point, &xs, &|_, _| vec![0]).unwrap().to_vec3::<f32>().unwrap();
    assert_eq!(out, vec![vec![vec![-1.0, 4.0]]]);
}

/// The host implementation `apply_rows` replaced: the whole tensor to f32 on the host, the change row by row
/// in sequential f32 arithmetic, back to the device.
fn host_reference(hooks: &HookSet, point: &HookPoint, xs: &Tensor, rows: &[Vec<usize>]) -> Tensor {
    let (n_rows, d) = xs.dims2().unwrap();
    let x32: Vec<f32> = xs.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let mut delta = vec![0f32; n_rows * d];
    for (iv, rows) in hooks.active_at(point).zip(rows) {
        for &r in rows {
            let (x, out) = (&x32[r * d..(r + 1) * d], &mut delta[r * d..(r + 1) * d]);
            match &iv.op {
                InterventionOp::Add { vector, alpha } => {
                    for (o, v) in out.iter_mut().zip(vector) {
                        *o += alpha * v;
                    }
                }
                InterventionOp::Patch { basis, target } => {
                    for (row, t) in basis.iter().zip(target) {
                        let coord: f32 = row.iter().zip(x).map(|(r, xi)| r * xi).sum();
                        for (o, r) in out.iter_mut().zip(row) {
                            *o += (t - coord) * r;
                        }
                    }
                }
            }
        }
    }
    let delta = Tensor::from_vec(delta, (n_rows, d), &Device::Cpu).unwrap();
    (xs.to_dtype(DType::F32).unwrap() + delta).unwrap().to_dtype(xs.dtype()).unwrap()
}

/// Several ops at overlapping and repeated rows, one per sample and one for all, in every float dtype: the
/// device path gives the host path's numbers (`Add` bit for bit, `Patch` within 1e-6 relative).
#[test]
fn device_deltas_match_the_host_implementation() {
    let (n_rows, d) = (6, 8);
    let x: Vec<f32> = (0..n_rows * d).map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.173).collect();
    let vector: Vec<f32> = (0..d).map(|i| (i as f32 * 0.7).sin()).collect();
    let norm = (d as f32).sqrt();
    let basis = vec![vec![1.0 / norm; d], (0..d).map(|i| if i % 2 == 0 { 0.5 } else { -0.5 }).collect()];
    let point = HookPoint::ResidPost(0);
    let iv = |positions, sample, op| Intervention { point: point.clone(), positions, sample, op };
    let add = |alpha| InterventionOp::Add { vector: vector.clone(), alpha };
    let patch = InterventionOp::Patch { basis, target: vec![0.25, -1.5] };
    // Sample b owns rows 3b..3b+3; `Indices` may repeat a row, which then changes twice.
    let rows_of = |b: usize, p: &Positions| -> candle_core::Result<Vec<usize>> {
        Ok(match p {
            Positions::Indices(ix) => ix.iter().map(|i| 3 * b + i).collect(),
            Positions::Last => vec![3 * b + 2],
            _ => (3 * b..3 * b + 3).collect(),
        })
    };
    let cases = [
        vec![iv(Positions::All, None, add(1.5))],
        vec![iv(Positions::Indices(vec![0, 2, 2]), Some(1), add(-0.3)), iv(Positions::All, None, add(2.0))],
        vec![iv(Positions::Last, None, add(0.7)), iv(Positions::All, Some(0), add(0.0))],
        vec![iv(Positions::All, None, patch.clone()), iv(Positions::Last, Some(1), add(0.9))],
        vec![iv(Positions::Indices(vec![1, 1]), Some(0), patch)],
    ];
    for dtype in [DType::F32, DType::BF16, DType::F16] {
        let xs = Tensor::from_vec(x.clone(), (n_rows, d), &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
        for (k, interventions) in cases.iter().enumerate() {
            let hooks = HookSet { interventions: interventions.clone(), ..HookSet::default() };
            let rows: Vec<Vec<usize>> = hooks
                .active_at(&point)
                .map(|iv| {
                    let samples = iv.sample.map_or(vec![0, 1], |b| vec![b]);
                    samples.into_iter().flat_map(|b| rows_of(b, &iv.positions).unwrap()).collect()
                })
                .collect();
            let want = host_reference(&hooks, &point, &xs, &rows);
            let got = hooks.apply_rows(&point, &xs, 2, &rows_of).unwrap();
            assert_eq!(got.dtype(), dtype);
            let flat = |t: &Tensor| t.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let (got, want) = (flat(&got), flat(&want));
            let has_patch = interventions.iter().any(|iv| matches!(iv.op, InterventionOp::Patch { .. }));
            if has_patch {
                let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
                let err = got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
                // bf16/f16 round the result; a last-bit difference before the cast may flip one rounding.
                let tol = if dtype == DType::F32 { 1e-6 } else { 1e-2 };
                assert!(err <= tol, "case {k}, {dtype:?}: relative error {err:.2e}");
            } else {
                assert_eq!(got, want, "case {k}, {dtype:?}: Add must be bit-identical to the host version");
            }
        }
    }
}
