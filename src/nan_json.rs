//! Reading back the JSON huescan writes, where a float may be `null`.
//!
//! serde_json writes a non-finite `f64` as `null` (JSON has no NaN), and refuses to read `null` back into an
//! `f64`. Tables such as `summary.json` use NaN for "not computed" (no permutations, no bootstrap), so without
//! this the typed structs that wrote a file could not read it. [`from_slice`] deserialises any type through a
//! thin adaptor over [`serde_json::Value`] that turns `null` into NaN exactly where an `f64`/`f32` is expected;
//! everywhere else (`Option` fields, strings, enums) it behaves like serde_json.

use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// Deserialises `bytes` (JSON) into `T`, reading `null` floats as NaN.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    let value: Value = serde_json::from_slice(bytes)?;
    T::deserialize(NanAware(&value))
}

/// Reads a JSON file into `T` with [`from_slice`], naming the file in any error.
pub fn read<T: DeserializeOwned>(path: &std::path::Path) -> crate::fsx::Result<T> {
    let bytes = crate::fsx::read(path)?;
    from_slice(&bytes).map_err(|source| crate::fsx::Error::Json { path: path.to_path_buf(), source })
}

struct NanAware<'de>(&'de Value);

impl<'de> Deserializer<'de> for NanAware<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Array(items) => visitor.visit_seq(Seq(items.iter())),
            Value::Object(map) => visitor.visit_map(Map { entries: map.iter(), value: None }),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_f64(f64::NAN),
            other => other.deserialize_f64(visitor),
        }
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_f32(f32::NAN),
            other => other.deserialize_f32(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    // Enums in huescan's outputs are unit variants (shapes, label modes, direction kinds): serde_json's own
    // handling is exact for them.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 char str string bytes byte_buf unit unit_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

struct Seq<'de>(std::slice::Iter<'de, Value>);

impl<'de> SeqAccess<'de> for Seq<'de> {
    type Error = serde_json::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Self::Error> {
        self.0.next().map(|v| seed.deserialize(NanAware(v))).transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Map<'de> {
    entries: serde_json::map::Iter<'de>,
    value: Option<&'de Value>,
}

impl<'de> MapAccess<'de> for Map<'de> {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Self::Error> {
        let Some((k, v)) = self.entries.next() else { return Ok(None) };
        self.value = Some(v);
        seed.deserialize(Key(k)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Self::Error> {
        let v = self.value.take().ok_or_else(|| de::Error::custom("a map value was read before its key"))?;
        seed.deserialize(NanAware(v))
    }
}

/// An object key: a string, or an integer written as a string (`BTreeMap<usize, _>` keys), as serde_json reads
/// them.
struct Key<'de>(&'de str);

macro_rules! int_key {
    ($($method:ident => $visit:ident: $ty:ty),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            let n: $ty = self.0.parse().map_err(|_| de::Error::custom(format!("map key `{}` is not an integer", self.0)))?;
            visitor.$visit(n)
        }
    )*};
}

impl<'de> Deserializer<'de> for Key<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_borrowed_str(self.0)
    }

    int_key! {
        deserialize_u8 => visit_u8: u8, deserialize_u16 => visit_u16: u16, deserialize_u32 => visit_u32: u32,
        deserialize_u64 => visit_u64: u64, deserialize_i8 => visit_i8: i8, deserialize_i16 => visit_i16: i16,
        deserialize_i32 => visit_i32: i32, deserialize_i64 => visit_i64: i64,
    }

    serde::forward_to_deserialize_any! {
        bool i128 u128 f32 f64 char str string bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, Serialize, Deserialize)]
    struct Row {
        score: f64,
        pair: (f64, f64),
        maybe: Option<f64>,
        by_layer: BTreeMap<usize, Option<f64>>,
        scores: Wrapped,
    }

    #[derive(Debug, Serialize, Deserialize)]
    struct Wrapped([f64; 2]);

    #[test]
    fn nan_written_as_null_reads_back_as_nan_and_options_stay_none() {
        let row = Row {
            score: f64::NAN,
            pair: (1.5, f64::NAN),
            maybe: None,
            by_layer: BTreeMap::from([(3, Some(2.0)), (10, None)]),
            scores: Wrapped([f64::NAN, -0.25]),
        };
        let text = serde_json::to_vec(&row).unwrap();
        assert!(serde_json::from_slice::<Row>(&text).is_err(), "plain serde_json refuses null floats");
        let back: Row = from_slice(&text).unwrap();
        assert!(back.score.is_nan() && back.pair.0 == 1.5 && back.pair.1.is_nan());
        assert_eq!(back.maybe, None);
        assert_eq!(back.by_layer, row.by_layer);
        assert!(back.scores.0[0].is_nan() && back.scores.0[1] == -0.25);
        let wrong = br#"{"score": "high", "pair": [1, 2], "maybe": null, "by_layer": {}, "scores": [1, 2]}"#;
        assert!(from_slice::<Row>(wrong).unwrap_err().to_string().contains("invalid type"));
    }
}
