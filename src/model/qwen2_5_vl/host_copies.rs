//! The rule that keeps the hooked forward on the model's device, checked on the sources: outside the files
//! that load weights and preprocess inputs on the host, no line of this model or of [`crate::model::hooks`]
//! copies a tensor to the host (`to_vec0..3`, `to_scalar`, `Device::Cpu`) unless it is one of the copies
//! listed here, each of which moves a result, never an activation of the forward. A new host copy in the
//! forward path fails this test until it is either moved onto the device or listed with its reason.

use std::path::Path;

/// Files that run on the host by design: the checkpoint reader (weights are read there, then moved), the image
/// processor and resize (pixels are prepared there), the prompt and the config.
const HOST_FILES: &[&str] = &["checkpoint.rs", "config.rs", "processor.rs", "prompt.rs", "resize.rs", "host_copies.rs"];

/// Host copies allowed in the forward path's files, by a fragment of their line, with why.
const ALLOWED: &[(&str, &str)] = &[
    ("flat.sum_all()?.to_scalar::<f32>()", "generation: one scalar per token, to refuse NaN logits"),
    ("flat.to_vec1::<f32>()?.iter().any(", "generation: only once that scalar is not finite, for the error"),
    ("flat.argmax(0)?.to_scalar::<u32>()", "generation: the next token id decides the next step"),
    // The one way results leave the device: the pooled captures `(batch, width)` (or a batch's tokens when
    // asked), and the last position's logits when asked; `to_host` copies only the view's elements.
    ("t.force_contiguous()?.to_device(&Device::Cpu)", "to_host: every capture and logit that comes back"),
];

const HOST_COPY: &[&str] = &["to_vec0", "to_vec1", "to_vec2", "to_vec3", "to_scalar", "Device::Cpu"];

/// `(file, line number, line)` of every host copy in the non-test code of `text` not in [`ALLOWED`].
fn unlisted_copies(file: &str, text: &str) -> Vec<(String, usize, String)> {
    let code = text.split("\n#[cfg(test)]").next().unwrap_or(text);
    code.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim_start().starts_with("//"))
        .filter(|(_, line)| HOST_COPY.iter().any(|p| line.contains(p)))
        .filter(|(_, line)| !ALLOWED.iter().any(|(fragment, _)| line.contains(fragment)))
        .map(|(i, line)| (file.to_string(), i + 1, line.trim().to_string()))
        .collect()
}

#[test]
fn the_hooked_forward_copies_no_activation_to_the_host() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/model");
    let mut files = vec![root.join("hooks.rs")];
    let dir = root.join("qwen2_5_vl");
    let mut model: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    model.sort();
    files.extend(model.into_iter().filter(|p| {
        let name = p.file_name().unwrap().to_str().unwrap();
        name.ends_with(".rs") && !HOST_FILES.contains(&name)
    }));
    assert!(files.len() >= 5, "the forward's files: {files:?}");
    let found: Vec<_> = files
        .iter()
        .flat_map(|f| unlisted_copies(&f.display().to_string(), &std::fs::read_to_string(f).unwrap()))
        .collect();
    assert!(
        found.is_empty(),
        "host copies in the hooked forward (move them onto the device, or list them): {found:#?}"
    );
}

#[test]
fn the_rule_sees_a_host_copy() {
    let text = "fn f(x: &Tensor) {\n    let v = x.to_vec1::<f32>()?;\n    // x.to_vec2() in a comment\n}\n";
    assert_eq!(unlisted_copies("f.rs", text).len(), 1);
    assert!(unlisted_copies("f.rs", "fn f() {}\n#[cfg(test)]\nmod t { fn g() { x.to_vec1() } }").is_empty());
}
