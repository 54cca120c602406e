//! Device and dtype choice: the only place that knows which GPU backends this build has.

use candle_core::{DType, Device};

use super::Error;

/// Parses `cpu`, `cuda`, `cuda:N` or `metal` into a device, explaining which cargo feature a missing
/// backend needs.
pub fn parse_device(spec: &str) -> Result<Device, Error> {
    let (kind, ordinal) = match spec.split_once(':') {
        Some((k, n)) => {
            let n = n.parse::<usize>().map_err(|_| bad_device(spec))?;
            (k, n)
        }
        None => (spec, 0),
    };
    match kind {
        "cpu" if ordinal == 0 => Ok(Device::Cpu),
        "cuda" => cuda(ordinal),
        "metal" => metal(ordinal),
        _ => Err(bad_device(spec)),
    }
}

fn bad_device(spec: &str) -> Error {
    Error::Msg(format!("invalid --device `{spec}`: expected `cpu`, `cuda`, `cuda:N` or `metal`"))
}

#[cfg(feature = "cuda")]
fn cuda(ordinal: usize) -> Result<Device, Error> {
    Device::new_cuda(ordinal).map_err(|e| Error::Msg(format!("cannot open CUDA device {ordinal}: {e}")))
}

#[cfg(not(feature = "cuda"))]
fn cuda(_: usize) -> Result<Device, Error> {
    Err(Error::Msg(
        "this huescan was built without CUDA support; rebuild with `cargo install --path . --features cuda`".into(),
    ))
}

#[cfg(feature = "metal")]
fn metal(ordinal: usize) -> Result<Device, Error> {
    Device::new_metal(ordinal).map_err(|e| Error::Msg(format!("cannot open Metal device {ordinal}: {e}")))
}

#[cfg(not(feature = "metal"))]
fn metal(_: usize) -> Result<Device, Error> {
    Err(Error::Msg(
        "this huescan was built without Metal support; rebuild with `cargo install --path . --features metal`".into(),
    ))
}

/// A compute dtype huescan runs a model in (`--dtype`, a preset's `dtype`): the candle dtypes a checkpoint is
/// loaded as, by the names [`parse_dtype`] and [`dtype_name`] use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Dtype {
    F32,
    Bf16,
    F16,
}

impl Dtype {
    /// The candle dtype.
    pub fn candle(self) -> DType {
        match self {
            Dtype::F32 => DType::F32,
            Dtype::Bf16 => DType::BF16,
            Dtype::F16 => DType::F16,
        }
    }
}

/// Parses `f32`, `bf16` or `f16`.
pub fn parse_dtype(spec: &str) -> Result<DType, Error> {
    match spec {
        "f32" => Ok(Dtype::F32),
        "bf16" => Ok(Dtype::Bf16),
        "f16" => Ok(Dtype::F16),
        _ => Err(Error::Msg(format!("invalid --dtype `{spec}`: expected f32, bf16 or f16"))),
    }
    .map(Dtype::candle)
}

/// The name `parse_dtype` accepts for `dtype`.
pub fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "f32",
        DType::BF16 => "bf16",
        DType::F16 => "f16",
        _ => "other",
    }
}

/// bf16 matmuls are several times slower than f32 on CPUs without native support, and f16 loses range; so a
/// preset's GPU dtype is used on GPUs only, and CPUs run f32 unless asked otherwise.
pub fn default_dtype(device: &Device, preset: Option<&str>) -> DType {
    match (device, preset) {
        (Device::Cpu, _) | (_, None) => DType::F32,
        (_, Some(p)) => parse_dtype(p).unwrap_or(DType::F32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_and_missing_backends_say_which_feature() {
        assert!(matches!(parse_device("cpu"), Ok(Device::Cpu)));
        assert!(parse_device("gpu").unwrap_err().to_string().contains("expected `cpu`"));
        assert!(parse_device("cuda:x").is_err());
        #[cfg(not(feature = "cuda"))]
        assert!(parse_device("cuda:1").unwrap_err().to_string().contains("--features cuda"));
        assert_eq!(parse_dtype("bf16").unwrap(), DType::BF16);
        assert!(parse_dtype("f64").is_err());
        use clap::ValueEnum;
        for d in Dtype::value_variants() {
            let name = d.to_possible_value().unwrap().get_name().to_string();
            assert_eq!((parse_dtype(&name).unwrap(), dtype_name(d.candle())), (d.candle(), name.as_str()));
        }
        assert_eq!(default_dtype(&Device::Cpu, Some("bf16")), DType::F32);
    }
}
