use alcf_trainer::config::{DeviceSpec, ModelKind, OptimizerKind, ScheduleKind, TrainConfig};
use alcf_trainer::{data, download, train, xpu};
use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// Native libtorch CIFAR-100 trainer for alcf-host studies.
#[derive(Parser)]
#[command(name = "alcf-trainer", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Train one model; writes metrics.jsonl (one line per epoch), result.json and a checkpoint
    /// into --out.
    Train(Box<TrainArgs>),
    /// Write a synthetic dataset in the CIFAR-100 binary format (learnable in a few epochs).
    GenData(GenArgs),
    /// Download and extract cifar-100-binary.tar.gz (checksum-verified, resumable).
    Download(DownloadArgs),
    /// Print libtorch build facts and the devices it sees.
    Info,
}

fn parse_choice<T: std::str::FromStr<Err = String>>(s: &str) -> Result<T, String> {
    s.parse()
}

/// Every flag is optional: an explicit flag beats the same key in --params, which beats the
/// built-in default.
#[derive(Args, Default)]
#[command(allow_negative_numbers = true)]
struct TrainArgs {
    /// params.json (JSON object name -> value, keys as the flags with '_'); default: $ALCF_PARAMS
    /// when set. Unknown keys are an error.
    #[arg(long, value_name = "FILE")]
    params: Option<PathBuf>,
    /// Output directory; default: $ALCF_TRIAL_DIR when set, else "."
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Continue from the checkpoint in --out if there is one (else start fresh).
    #[arg(long)]
    resume: bool,
    /// No progress lines on stderr.
    #[arg(long, short)]
    quiet: bool,
    /// Stop after N epochs in this invocation, as if preempted (exit status 75); --resume continues.
    #[arg(long, value_name = "N", hide = true)]
    stop_after: Option<i64>,
    /// Keep the final model weights and optimizer state in DIR/checkpoint/ (default: a finished run
    /// keeps only checkpoint/state.json)
    #[arg(long)]
    keep_checkpoint: bool,
    /// Start from the model weights of the run in DIR (kept with --keep-checkpoint), with this
    /// run's hyperparameters and a fresh optimizer
    #[arg(long, value_name = "DIR")]
    init_from: Option<PathBuf>,
    /// Start from the trial in $ALCF_PARENT_DIR when the host sets it (an agent such as the pbt
    /// plugin started this trial from another one's checkpoint); like --init-from "$ALCF_PARENT_DIR"
    #[arg(long, conflicts_with = "init_from")]
    init_from_parent: bool,

    /// resnet18 | resnet34 | resnet50 | vgg16 | densenet121 | cnn   [default: resnet18]
    #[arg(long, value_parser = parse_choice::<ModelKind>)]
    model: Option<ModelKind>,
    /// Plain CNN: channels of the first stage, 1..=1024   [default: 32]
    #[arg(long)]
    width: Option<i64>,
    /// Plain CNN: number of conv layers, 1..=16   [default: 4]
    #[arg(long)]
    depth: Option<i64>,
    /// Dropout before the classifier, [0, 1)   [default: 0]
    #[arg(long)]
    dropout: Option<f64>,
    /// sgd | adamw   [default: sgd]
    #[arg(long, value_parser = parse_choice::<OptimizerKind>)]
    optimizer: Option<OptimizerKind>,
    /// Peak learning rate, (0, 10]   [default: 0.1]
    #[arg(long)]
    lr: Option<f64>,
    /// SGD momentum, [0, 1)   [default: 0.9]
    #[arg(long)]
    momentum: Option<f64>,
    /// SGD Nesterov momentum (true/false)   [default: false]
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    nesterov: Option<bool>,
    /// Weight decay (SGD: L2 in the gradient; AdamW: decoupled), [0, 1]   [default: 5e-4]
    #[arg(long)]
    weight_decay: Option<f64>,
    /// AdamW beta1, [0, 1)   [default: 0.9]
    #[arg(long)]
    beta1: Option<f64>,
    /// AdamW beta2, [0, 1)   [default: 0.999]
    #[arg(long)]
    beta2: Option<f64>,
    /// AdamW epsilon, (0, 1]   [default: 1e-8]
    #[arg(long)]
    eps: Option<f64>,
    /// cosine | step | constant   [default: cosine]
    #[arg(long, value_parser = parse_choice::<ScheduleKind>)]
    schedule: Option<ScheduleKind>,
    /// Linear warmup, in epochs (fractions allowed), [0, epochs]   [default: 0]
    #[arg(long)]
    warmup_epochs: Option<f64>,
    /// Step schedule: epochs between decays; 0 = epochs/3   [default: 0]
    #[arg(long)]
    lr_step_size: Option<i64>,
    /// Step schedule: decay factor, (0, 1]   [default: 0.1]
    #[arg(long)]
    lr_gamma: Option<f64>,
    /// Label smoothing, [0, 1)   [default: 0]
    #[arg(long)]
    label_smoothing: Option<f64>,
    /// Batch size, 1..=65536   [default: 128]
    #[arg(long)]
    batch_size: Option<i64>,
    /// Epochs, 1..=100000   [default: 30]
    #[arg(long)]
    epochs: Option<i64>,
    /// Seed for initialization, shuffling, augmentation and dropout   [default: 0]
    #[arg(long)]
    seed: Option<u64>,
    /// Fraction of train.bin held out for validation (stratified, fixed), (0, 0.9]   [default: 0.1]
    #[arg(long)]
    val_split: Option<f64>,
    /// Train on the first N images of the training split only (0 = all)
    #[arg(long)]
    limit_train: Option<i64>,
    /// Validate on the first N images of the validation split only (0 = all)
    #[arg(long)]
    limit_val: Option<i64>,
    /// Random crop + horizontal flip (true/false)   [default: true]
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    augment: Option<bool>,
    /// Dataset directory: holds cifar-100-binary/{train,test}.bin   [default: data/cifar-100]
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// auto | cpu | cuda | cuda:N | xpu | xpu:N (xpu: a build with --features xpu)   [default: auto]
    #[arg(long, value_parser = parse_choice::<DeviceSpec>)]
    device: Option<DeviceSpec>,
    /// CPU threads; 0 = one per available core   [default: 0]
    #[arg(long)]
    threads: Option<i64>,
    /// Also evaluate test.bin after the last epoch (test_* keys in result.json)
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    eval_test: Option<bool>,
}

impl TrainArgs {
    fn to_config(&self) -> Result<TrainConfig> {
        let mut c = TrainConfig::default();
        let params = self.params.clone().or_else(|| std::env::var_os("ALCF_PARAMS").map(PathBuf::from));
        if let Some(p) = &params {
            c.apply_params_file(p)?;
        }
        macro_rules! over {
            ($($f:ident),*) => { $( if let Some(v) = self.$f.clone() { c.$f = v; } )* };
        }
        over!(
            model,
            width,
            depth,
            dropout,
            optimizer,
            lr,
            momentum,
            nesterov,
            weight_decay,
            beta1,
            beta2,
            eps,
            schedule,
            warmup_epochs,
            lr_step_size,
            lr_gamma,
            label_smoothing,
            batch_size,
            epochs,
            seed,
            val_split,
            limit_train,
            limit_val,
            augment,
            data,
            device,
            threads,
            eval_test
        );
        c.validate()?;
        Ok(c)
    }

    fn out_dir(&self) -> PathBuf {
        self.out
            .clone()
            .or_else(|| std::env::var_os("ALCF_TRIAL_DIR").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("."))
    }
}

#[derive(Args)]
struct GenArgs {
    /// Output directory (the data lands in DIR/cifar-100-binary/)
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Training images per class (100 classes)
    #[arg(long, default_value_t = 50)]
    train_per_class: usize,
    /// Test images per class
    #[arg(long, default_value_t = 10)]
    test_per_class: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Args)]
struct DownloadArgs {
    /// Output directory (the data lands in DIR/cifar-100-binary/)
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    #[arg(long, default_value = download::DEFAULT_URL)]
    url: String,
    /// Expected SHA-256 of the archive (hex). Without --sha256/--md5 the archive's published MD5
    /// is checked.
    #[arg(long, value_name = "HEX", conflicts_with = "md5")]
    sha256: Option<String>,
    /// Expected MD5 of the archive (hex)
    #[arg(long, value_name = "HEX")]
    md5: Option<String>,
    /// Skip checksum verification (for a mirror of a different file)
    #[arg(long, conflicts_with_all = ["sha256", "md5"])]
    no_verify: bool,
    /// Connect and per-read timeout, seconds
    #[arg(long, default_value_t = 30)]
    timeout_s: u64,
    #[arg(long, short)]
    quiet: bool,
}

/// libtorch's CPU allocator takes every tensor from malloc. glibc serves blocks above its mmap
/// threshold (at most 32 MiB) with fresh mmaps and returns them on free, so each training step
/// page-faults its activations in again: on ResNet-18 at batch 128 that was 2.2 M minor faults and
/// ~40 % of the CPU time in the kernel. Keeping freed memory in the heap removes most of it.
/// `ALCF_TRAINER_MALLOC=default` leaves glibc's defaults.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var("ALCF_TRAINER_MALLOC").as_deref() != Ok("default") {
        // SAFETY: mallopt only changes allocator parameters; called before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0);
            libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        }
    }
}

fn main() {
    tune_malloc();
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("alcf-trainer: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Train(a) => {
            let cfg = a.to_config()?;
            let opts = train::RunOptions {
                out: a.out_dir(),
                resume: a.resume,
                verbose: !a.quiet,
                stop_after: a.stop_after,
                keep_checkpoint: a.keep_checkpoint,
                init_from: a.init_from.clone().or_else(|| {
                    a.init_from_parent.then(|| std::env::var_os("ALCF_PARENT_DIR").map(PathBuf::from)).flatten()
                }),
            };
            if let Err(e) = train::run(&cfg, &opts) {
                if let Some(s) = e.downcast_ref::<train::Stopped>() {
                    eprintln!("alcf-trainer: {s}");
                    std::process::exit(75);
                }
                return Err(e);
            }
        }
        Cmd::GenData(a) => {
            let dir = data::write_synthetic(
                &a.out,
                &data::SynthSpec { train_per_class: a.train_per_class, test_per_class: a.test_per_class, seed: a.seed },
            )?;
            eprintln!(
                "gen-data: wrote {} training and {} test images to {}",
                a.train_per_class * 100,
                a.test_per_class * 100,
                dir.display()
            );
        }
        Cmd::Download(a) => {
            let checksum = if a.no_verify {
                download::Checksum::None
            } else if let Some(h) = &a.sha256 {
                download::Checksum::sha256(h)?
            } else if let Some(h) = &a.md5 {
                download::Checksum::md5(h)?
            } else {
                download::Checksum::Md5(download::DEFAULT_MD5.into())
            };
            download::download(&download::DownloadOptions {
                url: a.url,
                out: a.out,
                checksum,
                verbose: !a.quiet,
                timeout: Duration::from_secs(a.timeout_s.max(1)),
            })
            .context("download failed")?;
        }
        Cmd::Info => {
            let place = train::resolve_device(DeviceSpec::Auto)?;
            println!("alcf-trainer {}", env!("CARGO_PKG_VERSION"));
            println!("libtorch dir: {}", env!("ALCF_LIBTORCH_LIB"));
            println!("cuda available: {}", tch::Cuda::is_available());
            println!("cuda devices: {}", tch::Cuda::device_count());
            if xpu::built_in() {
                match xpu::check(0) {
                    Ok(()) => println!("xpu devices: {}", xpu::device_count()?),
                    Err(e) => println!("xpu: unavailable: {e:#}"),
                }
            } else {
                println!("xpu: not in this build (cargo feature `xpu`)");
            }
            println!("default device: {place}");
            println!("threads: {}", train::setup_threads(0));
            println!("mkldnn: {}  openmp: {}", tch::utils::has_mkldnn(), tch::utils::has_openmp());
        }
    }
    Ok(())
}
