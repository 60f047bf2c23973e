//! CIFAR-100 binary format: reader, writer, deterministic validation split, synthetic generator,
//! and the batch pipeline (augmentation and normalization as tensor ops).
//!
//! Format (cifar-100-binary/train.bin, test.bin): per image 1 coarse-label byte, 1 fine-label
//! byte, then 3072 pixel bytes: 1024 red, 1024 green, 1024 blue, each 32x32 row-major.

use anyhow::{Context, Result, bail};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

pub const IMAGE_BYTES: usize = 3 * 32 * 32;
pub const RECORD_BYTES: usize = 2 + IMAGE_BYTES;
pub const NUM_CLASSES: i64 = 100;
pub const NUM_COARSE: u8 = 20;
/// The archive's top-level directory.
pub const SUBDIR: &str = "cifar-100-binary";
/// The validation split does not depend on the training seed: every trial of a study sees the
/// same held-out images.
const SPLIT_SEED: u64 = 0x00C1_FA21_0005_EED5;

/// Per-channel mean and standard deviation of CIFAR-100's training images (0..1 scale).
pub const MEAN: [f64; 3] = [0.5071, 0.4865, 0.4409];
pub const STD: [f64; 3] = [0.2673, 0.2564, 0.2762];

/// Images and labels as bytes, in file order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawSet {
    /// N * 3072 bytes, CHW per image.
    pub images: Vec<u8>,
    pub fine: Vec<u8>,
    pub coarse: Vec<u8>,
}

impl RawSet {
    pub fn len(&self) -> usize {
        self.fine.len()
    }
    pub fn is_empty(&self) -> bool {
        self.fine.is_empty()
    }
}

/// Read a CIFAR-100 binary file.
pub fn read_bin(path: &Path) -> Result<RawSet> {
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.is_empty() || bytes.len() % RECORD_BYTES != 0 {
        bail!(
            "{} is not a CIFAR-100 binary file: its size {} is not a positive multiple of {} bytes",
            path.display(),
            bytes.len(),
            RECORD_BYTES
        );
    }
    let n = bytes.len() / RECORD_BYTES;
    let mut set = RawSet {
        images: Vec::with_capacity(n * IMAGE_BYTES),
        fine: Vec::with_capacity(n),
        coarse: Vec::with_capacity(n),
    };
    for (i, rec) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
        let (coarse, fine) = (rec[0], rec[1]);
        if coarse >= NUM_COARSE || fine as i64 >= NUM_CLASSES {
            bail!(
                "{}: record {i} has labels coarse={coarse} fine={fine}; CIFAR-100 has 20 coarse and 100 fine classes",
                path.display()
            );
        }
        set.coarse.push(coarse);
        set.fine.push(fine);
        set.images.extend_from_slice(&rec[2..]);
    }
    Ok(set)
}

/// Write a CIFAR-100 binary file (atomically: temp file + rename).
pub fn write_bin(path: &Path, set: &RawSet) -> Result<()> {
    if set.images.len() != set.len() * IMAGE_BYTES || set.coarse.len() != set.len() {
        bail!("inconsistent RawSet: {} labels, {} image bytes", set.len(), set.images.len());
    }
    let mut buf = Vec::with_capacity(set.len() * RECORD_BYTES);
    for i in 0..set.len() {
        buf.push(set.coarse[i]);
        buf.push(set.fine[i]);
        buf.extend_from_slice(&set.images[i * IMAGE_BYTES..(i + 1) * IMAGE_BYTES]);
    }
    write_atomic(path, &buf)
}

/// Write a file via a temporary sibling and a rename, so readers never see half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_sibling(path);
    {
        let mut f = fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(bytes).and_then(|_| f.sync_all()).with_context(|| format!("cannot write {}", tmp.display()))?;
    }
    fs::rename(&tmp, path).with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
}

fn tmp_sibling(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

/// The directory holding train.bin/test.bin: `DIR/cifar-100-binary` or `DIR` itself.
pub fn find_dataset_dir(data: &Path) -> Result<PathBuf> {
    for cand in [data.join(SUBDIR), data.to_path_buf()] {
        if cand.join("train.bin").is_file() {
            return Ok(cand);
        }
    }
    bail!(
        "no CIFAR-100 data under {}: expected {}/{SUBDIR}/train.bin (or train.bin directly in it). \
         Get the real data with `alcf-trainer download --out {}` or make a synthetic set with \
         `alcf-trainer gen-data --out {}`",
        data.display(),
        data.display(),
        data.display(),
        data.display()
    )
}

/// A small deterministic RNG (splitmix64) for splits and synthetic data, independent of libtorch.
#[derive(Clone, Debug)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        SplitMix(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
    /// Approximately normal (sum of 4 uniforms), mean 0, standard deviation 1.
    pub fn normalish(&mut self) -> f64 {
        let s: f64 = (0..4).map(|_| self.next_f64()).sum();
        (s - 2.0) * 3f64.sqrt()
    }
}

/// Stratified deterministic split: from each class, `val_frac` of its images (rounded, at least
/// one when the class has two or more) go to validation. Both index lists come back shuffled.
pub fn stratified_split(labels: &[u8], val_frac: f64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = SplitMix::new(SPLIT_SEED);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); 256];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l as usize].push(i);
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for idx in by_class.iter_mut().filter(|v| !v.is_empty()) {
        rng.shuffle(idx);
        let mut n_val = (idx.len() as f64 * val_frac).round() as usize;
        if n_val == 0 && idx.len() >= 2 && val_frac > 0.0 {
            n_val = 1;
        }
        n_val = n_val.min(idx.len().saturating_sub(1));
        val.extend_from_slice(&idx[..n_val]);
        train.extend_from_slice(&idx[n_val..]);
    }
    rng.shuffle(&mut train);
    rng.shuffle(&mut val);
    (train, val)
}

/// Images as a uint8 tensor [N,3,32,32] and fine labels as int64 [N], on a device.
pub struct Split {
    pub x: Tensor,
    pub y: Tensor,
}

impl Split {
    pub fn len(&self) -> i64 {
        self.y.size()[0]
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Select `idx` from a raw set (in that order).
    pub fn from_raw(set: &RawSet, idx: &[usize], device: Device) -> Split {
        let mut images = Vec::with_capacity(idx.len() * IMAGE_BYTES);
        let mut labels = Vec::with_capacity(idx.len());
        for &i in idx {
            images.extend_from_slice(&set.images[i * IMAGE_BYTES..(i + 1) * IMAGE_BYTES]);
            labels.push(set.fine[i] as i64);
        }
        let n = idx.len() as i64;
        let x = Tensor::from_data_size(&images, &[n, 3, 32, 32], Kind::Uint8).to_device(device);
        let y = Tensor::from_slice(&labels).to_device(device);
        Split { x, y }
    }

    /// This split with its tensors moved by `put` (e.g. to an XPU).
    pub fn moved(self, put: impl Fn(Tensor) -> Result<Tensor>) -> Result<Split> {
        Ok(Split { x: put(self.x)?, y: put(self.y)? })
    }
}

/// Load train.bin, split off validation, apply the limits.
pub fn load_train_val(
    data: &Path,
    val_frac: f64,
    limit_train: i64,
    limit_val: i64,
    device: Device,
) -> Result<(Split, Split)> {
    let dir = find_dataset_dir(data)?;
    let raw = read_bin(&dir.join("train.bin"))?;
    let (mut train, mut val) = stratified_split(&raw.fine, val_frac);
    if limit_train > 0 {
        train.truncate(limit_train as usize);
    }
    if limit_val > 0 {
        val.truncate(limit_val as usize);
    }
    if train.is_empty() || val.is_empty() {
        bail!(
            "{}: {} images give {} training and {} validation images; need at least one of each (check --val-split/--limit-*)",
            dir.join("train.bin").display(),
            raw.len(),
            train.len(),
            val.len()
        );
    }
    Ok((Split::from_raw(&raw, &train, device), Split::from_raw(&raw, &val, device)))
}

/// Load test.bin whole.
pub fn load_test(data: &Path, device: Device) -> Result<Split> {
    let dir = find_dataset_dir(data)?;
    let raw = read_bin(&dir.join("test.bin"))?;
    let idx: Vec<usize> = (0..raw.len()).collect();
    Ok(Split::from_raw(&raw, &idx, device))
}

/// Random crop of a 4-pixel zero-padded image and random horizontal flip, per image, as two
/// gathers on the uint8 batch [B,3,32,32]. Uses libtorch's global generator.
///
/// The index tensors are made "like" slices of `x`, so they land on `x`'s device whatever it is
/// (tch's `Device` cannot name an XPU). `randint_like` draws exactly what `randint` with the same
/// shape and dtype draws, so the numbers are those of a `Tensor::randint` version.
pub fn augment(x: &Tensor) -> Tensor {
    let b = x.size()[0];
    let padded = x.constant_pad_nd([4i64, 4, 4, 4]);
    // [b, 1] and [32] int64 templates on x's device (pixel values unused).
    let col = x.select(3, 0).select(2, 0).narrow(1, 0, 1).to_kind(Kind::Int64);
    let ox = col.randint_like(9);
    let oy = col.randint_like(9);
    let flip = col.randint_like(2);
    let ar = x.get(0).get(0).get(0).to_kind(Kind::Int64).ones_like().cumsum(0, Kind::Int64).unsqueeze(0) - 1;
    let rows = &oy + &ar;
    // flip: column j reads 31 - j.  cols = ox + j + flip * (31 - 2j)
    let cols = &ox + &ar + &flip * (ar.neg() * 2 + 31);
    let t = padded.gather(2, &rows.view([b, 1, 32, 1]).expand([b, 3, 32, 40], false), false);
    t.gather(3, &cols.view([b, 1, 1, 32]).expand([b, 3, 32, 32], false), false)
}

/// Per-channel normalization constants as [1,3,1,1] tensors: x_float = x_u8 * scale + shift.
pub struct Normalizer {
    scale: Tensor,
    shift: Tensor,
}

impl Normalizer {
    pub fn new(device: Device) -> Self {
        let scale: Vec<f32> = STD.iter().map(|s| (1.0 / (255.0 * s)) as f32).collect();
        let shift: Vec<f32> = MEAN.iter().zip(STD).map(|(m, s)| (-m / s) as f32).collect();
        Normalizer {
            scale: Tensor::from_slice(&scale).view([1, 3, 1, 1]).to_device(device),
            shift: Tensor::from_slice(&shift).view([1, 3, 1, 1]).to_device(device),
        }
    }
    /// These constants with their tensors moved by `put` (e.g. to an XPU).
    pub fn moved(self, put: impl Fn(Tensor) -> Result<Tensor>) -> Result<Normalizer> {
        Ok(Normalizer { scale: put(self.scale)?, shift: put(self.shift)? })
    }
    pub fn apply(&self, x_u8: &Tensor) -> Tensor {
        (x_u8.to_kind(Kind::Float) * &self.scale) + &self.shift
    }
}

/// Parameters of the synthetic dataset.
#[derive(Clone, Debug)]
pub struct SynthSpec {
    pub train_per_class: usize,
    pub test_per_class: usize,
    pub seed: u64,
}

/// One synthetic image of class `c`: a class colour (5x5x4 levels give 100 distinct colours), an
/// oriented grating whose orientation and frequency depend on the class, a random phase and
/// shift, a brightness jitter, and pixel noise. A small CNN separates the classes in a few epochs.
fn synth_image(c: usize, rng: &mut SplitMix, out: &mut Vec<u8>) {
    let base = [40.0 + 44.0 * (c % 5) as f64, 40.0 + 44.0 * ((c / 5) % 5) as f64, 50.0 + 52.0 * (c / 25) as f64];
    let theta = (c % 4) as f64 * std::f64::consts::FRAC_PI_4;
    let freq = (1 + (c / 4) % 3) as f64 * 2.0 * std::f64::consts::PI / 16.0;
    let (dx, dy) = (theta.cos() * freq, theta.sin() * freq);
    let phase = rng.next_f64() * 2.0 * std::f64::consts::PI;
    let bright = rng.normalish() * 12.0;
    let amp = 35.0;
    for (ch, &b) in base.iter().enumerate() {
        let sign = if ch == 1 { -1.0 } else { 1.0 };
        for yy in 0..32 {
            for xx in 0..32 {
                let g = (dx * xx as f64 + dy * yy as f64 + phase).sin();
                let v = b + bright + sign * amp * g + rng.normalish() * 28.0;
                out.push(v.round().clamp(0.0, 255.0) as u8);
            }
        }
    }
}

/// Generate a synthetic set: `per_class` images of each of the 100 classes, in shuffled order.
pub fn synth_set(per_class: usize, seed: u64) -> RawSet {
    let mut rng = SplitMix::new(seed);
    let mut order: Vec<usize> = (0..per_class * NUM_CLASSES as usize).map(|i| i % NUM_CLASSES as usize).collect();
    rng.shuffle(&mut order);
    let mut set = RawSet {
        images: Vec::with_capacity(order.len() * IMAGE_BYTES),
        fine: Vec::with_capacity(order.len()),
        coarse: Vec::with_capacity(order.len()),
    };
    for c in order {
        synth_image(c, &mut rng, &mut set.images);
        set.fine.push(c as u8);
        set.coarse.push((c / 5) as u8);
    }
    set
}

/// Write a synthetic dataset in the official layout: OUT/cifar-100-binary/{train,test}.bin and the
/// label-name files. Returns the dataset directory.
pub fn write_synthetic(out: &Path, spec: &SynthSpec) -> Result<PathBuf> {
    if spec.train_per_class == 0 || spec.test_per_class == 0 {
        bail!("--train-per-class and --test-per-class must be at least 1");
    }
    let dir = out.join(SUBDIR);
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let train = synth_set(spec.train_per_class, spec.seed);
    let test = synth_set(spec.test_per_class, spec.seed.wrapping_add(0x7E57));
    write_bin(&dir.join("train.bin"), &train)?;
    write_bin(&dir.join("test.bin"), &test)?;
    let fine: String = (0..NUM_CLASSES).map(|i| format!("synthetic_{i:02}\n")).collect();
    let coarse: String = (0..NUM_COARSE).map(|i| format!("synthetic_group_{i:02}\n")).collect();
    write_atomic(&dir.join("fine_label_names.txt"), fine.as_bytes())?;
    write_atomic(&dir.join("coarse_label_names.txt"), coarse.as_bytes())?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_stratified_disjoint_and_deterministic() {
        let labels: Vec<u8> = (0..1000).map(|i| (i % 100) as u8).collect();
        let (t, v) = stratified_split(&labels, 0.1);
        assert_eq!(v.len(), 100);
        assert_eq!(t.len(), 900);
        let mut all: Vec<usize> = t.iter().chain(&v).copied().collect();
        all.sort();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        let mut classes: Vec<u8> = v.iter().map(|&i| labels[i]).collect();
        classes.sort();
        classes.dedup();
        assert_eq!(classes.len(), 100, "every class in validation");
        assert_eq!(stratified_split(&labels, 0.1), (t, v));
    }

    #[test]
    fn augment_keeps_shape_and_pixels() {
        tch::manual_seed(1);
        let x = Tensor::arange(2 * 3 * 32 * 32, (Kind::Int64, Device::Cpu))
            .remainder(251)
            .to_kind(Kind::Uint8)
            .view([2, 3, 32, 32]);
        let y = augment(&x);
        assert_eq!(y.size(), vec![2, 3, 32, 32]);
        assert_eq!(y.kind(), Kind::Uint8);
        // Each output row is a (possibly flipped, shifted, zero-padded) copy of an input row:
        // the centre pixel 4 px inside is always from the image.
        let s: i64 = y.to_kind(Kind::Int64).sum(Kind::Int64).int64_value(&[]);
        assert!(s > 0);
    }

    #[test]
    fn normalizer_maps_mean_to_zero() {
        let n = Normalizer::new(Device::Cpu);
        let px: Vec<u8> = MEAN.iter().flat_map(|m| std::iter::repeat_n((m * 255.0).round() as u8, 4)).collect();
        let x = Tensor::from_data_size(&px, &[1, 3, 2, 2], Kind::Uint8);
        let y = n.apply(&x);
        assert!(y.abs().max().double_value(&[]) < 0.01);
    }
}
