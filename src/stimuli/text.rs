//! Text prompt sets: prompts without an image, each with a hue label, for text-only controls ("What colour is
//! a banana?"). `extract` and `steer` take such a file wherever they take a rendered image set (`--stimuli`),
//! so a text control goes through the same store, analysis and steering as the images.
//!
//! ```toml
//! name = "colour-objects"
//! description = "objects with a typical colour"
//!
//! [[prompt]]
//! id = "banana"                # unique; letters, digits, `-` and `_`
//! hue-deg = 55                 # the label, degrees in [0, 360)
//! text = "What colour is a banana? Answer with one word."
//! # ids = [499, 17, 42]        # optional: the prompt's ids, for a model without a tokenizer
//! ```

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;

use super::Error;

/// The file extension that marks a text prompt set (a rendered image set is a folder).
pub const TEXT_SET_EXTENSION: &str = "toml";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct TextSetWire {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    prompt: Vec<TextPrompt>,
}

/// One text-only stimulus.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TextPrompt {
    pub id: String,
    /// The label, degrees in `[0, 360)`.
    pub hue_deg: f64,
    /// The whole question, asked without an image.
    pub text: String,
    /// The prompt as token ids, for a model without a tokenizer (raw-id prompts such as the test fixture), which
    /// cannot spell `text`; models with a tokenizer use `text`.
    #[serde(default)]
    pub ids: Option<Vec<u32>>,
}

/// A validated text prompt set, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct TextPromptSet {
    pub name: String,
    pub description: String,
    pub prompts: Vec<TextPrompt>,
    /// SHA-256 of the file's bytes (pins the exact prompts in a store's provenance).
    pub sha256: String,
}

impl TextPromptSet {
    /// Whether `path` names a text prompt set rather than a rendered image set.
    pub fn is_text_set(path: &Path) -> bool {
        path.is_file() && path.extension().is_some_and(|e| e == TEXT_SET_EXTENSION)
    }

    /// Reads and validates a text prompt set file.
    pub fn from_path(path: &Path) -> crate::stimuli::Result<TextPromptSet> {
        let bytes = crate::fsx::read(path)?;
        let text = String::from_utf8(bytes.clone())
            .map_err(|_| Error::SpecParse { path: path.to_path_buf(), message: "the file is not UTF-8".into() })?;
        let mut set = TextPromptSet::from_toml_str(&text, path)?;
        set.sha256 = crate::fsx::sha256_hex(&bytes);
        Ok(set)
    }

    /// Parses and validates the TOML text of a set (`path` only names it in errors; `sha256` is of `text`).
    pub fn from_toml_str(text: &str, path: &Path) -> Result<TextPromptSet, Error> {
        let wire: TextSetWire =
            toml::from_str(text).map_err(|e| Error::SpecParse { path: path.to_path_buf(), message: e.to_string() })?;
        let bad =
            |field: &'static str, message: String| Error::SpecInvalid { path: path.to_path_buf(), field, message };
        if wire.prompt.is_empty() {
            return Err(bad("prompt", "the set has no `[[prompt]]` entries; add at least one".into()));
        }
        let mut ids = HashSet::new();
        for p in &wire.prompt {
            let plain = !p.id.is_empty() && p.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !plain {
                return Err(bad("id", format!("`{}` is not a plain id (letters, digits, `-`, `_`)", p.id)));
            }
            if !ids.insert(p.id.as_str()) {
                return Err(bad("id", format!("`{}` appears twice", p.id)));
            }
            if !(p.hue_deg.is_finite() && (0.0..360.0).contains(&p.hue_deg)) {
                return Err(bad(
                    "hue-deg",
                    format!("prompt `{}` has {}, expected degrees in [0, 360)", p.id, p.hue_deg),
                ));
            }
            if p.text.trim().is_empty() {
                return Err(bad("text", format!("prompt `{}` has no text", p.id)));
            }
        }
        Ok(TextPromptSet {
            name: wire.name,
            description: wire.description,
            prompts: wire.prompt,
            sha256: crate::fsx::sha256_hex(text.as_bytes()),
        })
    }

    /// The labels in file order, in degrees.
    pub fn hues_deg(&self) -> Vec<f64> {
        self.prompts.iter().map(|p| p.hue_deg).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> Result<TextPromptSet, Error> {
        TextPromptSet::from_toml_str(toml, Path::new("t.toml"))
    }

    #[test]
    fn the_bundled_set_parses_and_bad_sets_are_refused_with_the_field_named() {
        let text = include_str!("../../stimuli/text/colour-objects.toml");
        let set = parse(text).unwrap();
        assert!(set.prompts.len() >= 6 && set.prompts.iter().any(|p| p.id == "banana"));
        assert_eq!(set.sha256, crate::fsx::sha256_hex(text.as_bytes()));
        let one = |body: &str| format!("name = \"x\"\n[[prompt]]\n{body}\n");
        for (body, want) in [
            ("id = \"a b\"\nhue-deg = 1\ntext = \"q\"", "not a plain id"),
            ("id = \"a\"\nhue-deg = 360\ntext = \"q\"", "expected degrees in [0, 360)"),
            ("id = \"a\"\nhue-deg = 1\ntext = \" \"", "has no text"),
            ("id = \"a\"\nhue-deg = 1\ntext = \"q\"\ncolour = 2", "unknown field"),
        ] {
            let err = parse(&one(body)).unwrap_err().to_string();
            assert!(err.contains(want), "{body}: {err}");
        }
        let twice = format!(
            "{}[[prompt]]\nid = \"a\"\nhue-deg = 2\ntext = \"r\"\n",
            one("id = \"a\"\nhue-deg = 1\ntext = \"q\"")
        );
        assert!(parse(&twice).unwrap_err().to_string().contains("`a` appears twice"));
        assert!(parse("name = \"x\"\n").unwrap_err().to_string().contains("no `[[prompt]]` entries"));
    }
}
