//! Training configuration: defaults, `params.json`, command-line flags, and validation.
//!
//! Precedence: explicit command-line flag > `params.json` > built-in default. Every value is
//! validated before any data is read or any model is built; errors name the flag or key and the
//! allowed range.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

macro_rules! choice_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [&'static str] = &[$($text),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s.to_ascii_lowercase().as_str() {
                    $($text => Ok($name::$variant),)+
                    _ => Err(format!("'{}' is not one of {}", s, $name::ALL.join(", "))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

choice_enum!(
    /// Network architecture.
    ModelKind {
        ResNet18 => "resnet18",
        ResNet34 => "resnet34",
        ResNet50 => "resnet50",
        Vgg16 => "vgg16",
        DenseNet121 => "densenet121",
        Cnn => "cnn",
    }
);

choice_enum!(
    /// Optimizer.
    OptimizerKind {
        Sgd => "sgd",
        AdamW => "adamw",
    }
);

choice_enum!(
    /// Learning-rate schedule (all with optional linear warmup).
    ScheduleKind {
        Cosine => "cosine",
        Step => "step",
        Constant => "constant",
    }
);

/// Where to train.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceSpec {
    Auto,
    Cpu,
    Cuda(usize),
    /// An Intel XPU (Aurora's GPU tiles); needs a build with the `xpu` feature (see `xpu`).
    Xpu(usize),
}

impl FromStr for DeviceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let l = s.to_ascii_lowercase();
        match l.as_str() {
            "auto" => Ok(DeviceSpec::Auto),
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" | "gpu" => Ok(DeviceSpec::Cuda(0)),
            "xpu" => Ok(DeviceSpec::Xpu(0)),
            _ => match (l.strip_prefix("cuda:"), l.strip_prefix("xpu:")) {
                (Some(n), _) if n.parse::<usize>().is_ok() => Ok(DeviceSpec::Cuda(n.parse().unwrap())),
                (_, Some(n)) if n.parse::<usize>().is_ok() => Ok(DeviceSpec::Xpu(n.parse().unwrap())),
                _ => Err(format!("'{s}' is not one of auto, cpu, cuda, cuda:N, xpu, xpu:N")),
            },
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Auto => f.write_str("auto"),
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
            DeviceSpec::Xpu(n) => write!(f, "xpu:{n}"),
        }
    }
}

/// Everything that determines a training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub model: ModelKind,
    /// Channels of the first layer of the plain CNN (doubled per stage, capped at 8x).
    pub width: i64,
    /// Number of conv layers of the plain CNN.
    pub depth: i64,
    pub dropout: f64,
    pub optimizer: OptimizerKind,
    pub lr: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub schedule: ScheduleKind,
    pub warmup_epochs: f64,
    /// Step schedule: multiply the rate by `lr_gamma` every `lr_step_size` epochs (0 = epochs/3).
    pub lr_step_size: i64,
    pub lr_gamma: f64,
    pub label_smoothing: f64,
    pub batch_size: i64,
    pub epochs: i64,
    pub seed: u64,
    /// Fraction of the training set held out for validation (stratified, deterministic).
    pub val_split: f64,
    /// Use only the first N training images (after the split); 0 = all.
    pub limit_train: i64,
    /// Use only the first N validation images; 0 = all.
    pub limit_val: i64,
    /// Random crop (4 px zero padding) + horizontal flip on training batches.
    pub augment: bool,
    pub data: PathBuf,
    pub device: DeviceSpec,
    /// Intra-op threads; 0 = one per available core.
    pub threads: i64,
    /// Also evaluate on test.bin after the last epoch (adds test_* to result.json).
    pub eval_test: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            model: ModelKind::ResNet18,
            width: 32,
            depth: 4,
            dropout: 0.0,
            optimizer: OptimizerKind::Sgd,
            lr: 0.1,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 5e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            schedule: ScheduleKind::Cosine,
            warmup_epochs: 0.0,
            lr_step_size: 0,
            lr_gamma: 0.1,
            label_smoothing: 0.0,
            batch_size: 128,
            epochs: 30,
            seed: 0,
            val_split: 0.1,
            limit_train: 0,
            limit_val: 0,
            augment: true,
            data: PathBuf::from("data/cifar-100"),
            device: DeviceSpec::Auto,
            threads: 0,
            eval_test: false,
        }
    }
}

/// The keys `params.json` may carry (flag names with `_` for `-`; `-` is accepted too).
pub const PARAM_KEYS: &[&str] = &[
    "model",
    "width",
    "depth",
    "dropout",
    "optimizer",
    "lr",
    "momentum",
    "nesterov",
    "weight_decay",
    "beta1",
    "beta2",
    "eps",
    "schedule",
    "warmup_epochs",
    "lr_step_size",
    "lr_gamma",
    "label_smoothing",
    "batch_size",
    "epochs",
    "seed",
    "val_split",
    "limit_train",
    "limit_val",
    "augment",
    "data",
    "device",
    "threads",
    "eval_test",
];

fn want_f64(key: &str, v: &Value) -> Result<f64> {
    match v {
        Value::Number(n) => n.as_f64().with_context(|| format!("'{key}': {n} is not a number")),
        Value::String(s) => {
            s.trim().parse::<f64>().map_err(|_| anyhow::anyhow!("'{key}': expected a number, got \"{s}\""))
        }
        other => bail!("'{key}': expected a number, got {other}"),
    }
}

fn want_i64(key: &str, v: &Value) -> Result<i64> {
    if let Value::Number(n) = v
        && let Some(i) = n.as_i64()
    {
        return Ok(i);
    }
    let f = want_f64(key, v).map_err(|_| anyhow::anyhow!("'{key}': expected an integer, got {v}"))?;
    if f.fract() != 0.0 || !f.is_finite() || f.abs() > 9.0e15 {
        bail!("'{key}': expected an integer, got {v}");
    }
    Ok(f as i64)
}

fn want_bool(key: &str, v: &Value) -> Result<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Number(n) if n.as_f64() == Some(0.0) => Ok(false),
        Value::Number(n) if n.as_f64() == Some(1.0) => Ok(true),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => bail!("'{key}': expected true or false, got \"{s}\""),
        },
        other => bail!("'{key}': expected true or false, got {other}"),
    }
}

fn want_str(key: &str, v: &Value) -> Result<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        other => bail!("'{key}': expected a string, got {other}"),
    }
}

fn want_choice<T: FromStr<Err = String>>(key: &str, v: &Value) -> Result<T> {
    let s = want_str(key, v)?;
    s.parse::<T>().map_err(|e| anyhow::anyhow!("'{key}': {e}"))
}

impl TrainConfig {
    /// Set one parameter from a JSON value (a `params.json` entry).
    pub fn set_param(&mut self, key: &str, v: &Value) -> Result<()> {
        let k = key.replace('-', "_");
        match k.as_str() {
            "model" => self.model = want_choice(key, v)?,
            "width" => self.width = want_i64(key, v)?,
            "depth" => self.depth = want_i64(key, v)?,
            "dropout" => self.dropout = want_f64(key, v)?,
            "optimizer" => self.optimizer = want_choice(key, v)?,
            "lr" => self.lr = want_f64(key, v)?,
            "momentum" => self.momentum = want_f64(key, v)?,
            "nesterov" => self.nesterov = want_bool(key, v)?,
            "weight_decay" => self.weight_decay = want_f64(key, v)?,
            "beta1" => self.beta1 = want_f64(key, v)?,
            "beta2" => self.beta2 = want_f64(key, v)?,
            "eps" => self.eps = want_f64(key, v)?,
            "schedule" => self.schedule = want_choice(key, v)?,
            "warmup_epochs" => self.warmup_epochs = want_f64(key, v)?,
            "lr_step_size" => self.lr_step_size = want_i64(key, v)?,
            "lr_gamma" => self.lr_gamma = want_f64(key, v)?,
            "label_smoothing" => self.label_smoothing = want_f64(key, v)?,
            "batch_size" => self.batch_size = want_i64(key, v)?,
            "epochs" => self.epochs = want_i64(key, v)?,
            "seed" => {
                let s = want_i64(key, v)?;
                if s < 0 {
                    bail!("'{key}': must be >= 0, got {s}");
                }
                self.seed = s as u64
            }
            "val_split" => self.val_split = want_f64(key, v)?,
            "limit_train" => self.limit_train = want_i64(key, v)?,
            "limit_val" => self.limit_val = want_i64(key, v)?,
            "augment" => self.augment = want_bool(key, v)?,
            "data" => self.data = PathBuf::from(want_str(key, v)?),
            "device" => self.device = want_choice(key, v)?,
            "threads" => self.threads = want_i64(key, v)?,
            "eval_test" => self.eval_test = want_bool(key, v)?,
            _ => bail!("unknown parameter '{key}' (known: {})", PARAM_KEYS.join(", ")),
        }
        Ok(())
    }

    /// Apply a `params.json` file: a JSON object name -> value.
    pub fn apply_params_file(&mut self, path: &Path) -> Result<()> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read params file {}", path.display()))?;
        let v: Value =
            serde_json::from_str(&text).with_context(|| format!("params file {} is not valid JSON", path.display()))?;
        let Value::Object(map) = v else {
            bail!("params file {} must hold a JSON object (name -> value)", path.display());
        };
        for (k, v) in &map {
            self.set_param(k, v).with_context(|| format!("in params file {}", path.display()))?;
        }
        Ok(())
    }

    /// Check every value; the error names the flag (`--x`) and the allowed range.
    pub fn validate(&self) -> Result<()> {
        fn range_f(name: &str, v: f64, lo: f64, hi: f64, lo_open: bool, hi_open: bool) -> Result<()> {
            let ok =
                v.is_finite() && (if lo_open { v > lo } else { v >= lo }) && (if hi_open { v < hi } else { v <= hi });
            if !ok {
                bail!(
                    "--{name} (params key '{}') must be in {}{lo}, {hi}{}, got {v}",
                    name.replace('-', "_"),
                    if lo_open { "(" } else { "[" },
                    if hi_open { ")" } else { "]" }
                );
            }
            Ok(())
        }
        fn range_i(name: &str, v: i64, lo: i64, hi: i64) -> Result<()> {
            if v < lo || v > hi {
                bail!("--{name} (params key '{}') must be an integer in [{lo}, {hi}], got {v}", name.replace('-', "_"));
            }
            Ok(())
        }
        range_i("width", self.width, 1, 1024)?;
        range_i("depth", self.depth, 1, 16)?;
        range_f("dropout", self.dropout, 0.0, 1.0, false, true)?;
        range_f("lr", self.lr, 0.0, 10.0, true, false)?;
        range_f("momentum", self.momentum, 0.0, 1.0, false, true)?;
        if self.nesterov && self.optimizer == OptimizerKind::Sgd && self.momentum == 0.0 {
            bail!("--nesterov needs --momentum > 0");
        }
        range_f("weight-decay", self.weight_decay, 0.0, 1.0, false, false)?;
        range_f("beta1", self.beta1, 0.0, 1.0, false, true)?;
        range_f("beta2", self.beta2, 0.0, 1.0, false, true)?;
        range_f("eps", self.eps, 0.0, 1.0, true, false)?;
        range_i("epochs", self.epochs, 1, 100_000)?;
        range_f("warmup-epochs", self.warmup_epochs, 0.0, self.epochs as f64, false, false)?;
        range_i("lr-step-size", self.lr_step_size, 0, 100_000)?;
        range_f("lr-gamma", self.lr_gamma, 0.0, 1.0, true, false)?;
        range_f("label-smoothing", self.label_smoothing, 0.0, 1.0, false, true)?;
        range_i("batch-size", self.batch_size, 1, 65_536)?;
        range_f("val-split", self.val_split, 0.0, 0.9, true, false)?;
        range_i("limit-train", self.limit_train, 0, i64::MAX)?;
        range_i("limit-val", self.limit_val, 0, i64::MAX)?;
        range_i("threads", self.threads, 0, 4096)?;
        if self.data.as_os_str().is_empty() {
            bail!("--data must name the dataset directory");
        }
        Ok(())
    }

    /// The settings that must match for `--resume` to continue a checkpoint.
    pub fn fingerprint(&self) -> Value {
        let mut v = serde_json::to_value(self).expect("config serializes");
        if let Value::Object(m) = &mut v {
            // Where and how fast it runs does not change the result on one device.
            for k in ["data", "device", "threads", "eval_test"] {
                m.remove(k);
            }
        }
        v
    }

    pub fn effective_step_size(&self) -> i64 {
        if self.lr_step_size > 0 { self.lr_step_size } else { (self.epochs / 3).max(1) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn params_override_defaults_and_coerce_types() {
        let mut c = TrainConfig::default();
        c.set_param("model", &json!("cnn")).unwrap();
        c.set_param("batch_size", &json!("64")).unwrap();
        c.set_param("batch-size", &json!(32.0)).unwrap();
        c.set_param("nesterov", &json!(1)).unwrap();
        c.set_param("lr", &json!(0.01)).unwrap();
        assert_eq!(c.model, ModelKind::Cnn);
        assert_eq!(c.batch_size, 32);
        assert!(c.nesterov);
        assert_eq!(c.lr, 0.01);
        c.validate().unwrap();
    }

    #[test]
    fn unknown_and_bad_params_are_named() {
        let mut c = TrainConfig::default();
        let e = c.set_param("learning_rate", &json!(0.1)).unwrap_err();
        assert!(e.to_string().contains("unknown parameter 'learning_rate'"), "{e}");
        let e = c.set_param("model", &json!("resnet9")).unwrap_err();
        assert!(e.to_string().contains("'model'") && e.to_string().contains("resnet18"), "{e}");
        let e = c.set_param("epochs", &json!(2.5)).unwrap_err();
        assert!(e.to_string().contains("'epochs'"), "{e}");
    }

    #[test]
    fn validation_names_the_flag_and_range() {
        let c = TrainConfig { lr: -1.0, ..Default::default() };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("--lr") && e.contains("(0, 10]"), "{e}");
        let c = TrainConfig { dropout: 1.0, ..Default::default() };
        assert!(c.validate().unwrap_err().to_string().contains("--dropout"));
        let c = TrainConfig { warmup_epochs: 5.0, epochs: 2, ..Default::default() };
        assert!(c.validate().unwrap_err().to_string().contains("--warmup-epochs"));
    }

    #[test]
    fn device_parses() {
        assert_eq!("auto".parse::<DeviceSpec>().unwrap(), DeviceSpec::Auto);
        assert_eq!("cuda:2".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(2));
        assert_eq!("CUDA".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        assert_eq!("xpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Xpu(0));
        assert_eq!("XPU:11".parse::<DeviceSpec>().unwrap(), DeviceSpec::Xpu(11));
        for bad in ["tpu", "xpu:", "xpu:-1", "cuda:x"] {
            let e = bad.parse::<DeviceSpec>().unwrap_err();
            assert!(e.contains("xpu:N"), "{bad}: {e}");
        }
        assert_eq!(DeviceSpec::Xpu(2).to_string(), "xpu:2");
    }
}
