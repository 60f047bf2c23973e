//! The training loop: per-epoch metrics lines, checkpoints, `--resume`, and `result.json`.

use crate::config::{DeviceSpec, TrainConfig};
use crate::data::{self, Normalizer, Split};
use crate::metrics;
use crate::models::{self, Model};
use crate::optim::{self, Optimizer};
use crate::place::Place;
use crate::xpu;
use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Reduction, Tensor};

pub const METRICS_FILE: &str = "metrics.jsonl";
pub const RESULT_FILE: &str = "result.json";
pub const CHECKPOINT_DIR: &str = "checkpoint";
const STATE_FILE: &str = "state.json";
const EVAL_BATCH: i64 = 500;

/// How to run (not part of the result).
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub out: PathBuf,
    pub resume: bool,
    /// Progress lines on stderr.
    pub verbose: bool,
    /// Stop (as if preempted) once this many epochs are done in this invocation; the run then
    /// returns [`Stopped`] and a later `--resume` continues it. For tests and walltime budgets.
    pub stop_after: Option<i64>,
    /// Keep the final model and optimizer tensors in `checkpoint/` (by default a finished run keeps
    /// only `checkpoint/state.json`, enough for `--resume` to answer with the same result).
    pub keep_checkpoint: bool,
    /// A run directory whose kept checkpoint (`--keep-checkpoint`) this run starts from: its model
    /// weights, with this run's own hyperparameters and a fresh optimizer (population-based
    /// training's exploit step). Ignored when `--resume` finds this run's own checkpoint.
    pub init_from: Option<PathBuf>,
}

/// The settings a checkpoint's tensors depend on: a run can start from another's weights only
/// when these agree.
const ARCHITECTURE: [&str; 3] = ["model", "width", "depth"];

/// Loads the model weights of the run in `dir` (its final kept checkpoint) into `vs`.
fn inherit(dir: &Path, cfg: &TrainConfig, vs: &mut nn::VarStore) -> Result<i64> {
    let state_p = dir.join(CHECKPOINT_DIR).join(STATE_FILE);
    let text = fs::read_to_string(&state_p).with_context(|| {
        format!("--init-from: cannot read {} (is {} a finished trial's directory?)", state_p.display(), dir.display())
    })?;
    let st: Value = serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", state_p.display()))?;
    let now = cfg.fingerprint();
    for k in ARCHITECTURE {
        if st["config"].get(k) != now.get(k) {
            bail!(
                "--init-from {}: its checkpoint has {k} = {}, this run {k} = {}; a run can only start from the weights of the same architecture (hold {k} fixed)",
                dir.display(),
                st["config"].get(k).unwrap_or(&Value::Null),
                now.get(k).unwrap_or(&Value::Null)
            );
        }
    }
    let epoch = st["epoch"].as_i64().context("checkpoint state lacks 'epoch'")?;
    let (model_p, _) = checkpoint_paths(dir, epoch);
    if !model_p.is_file() {
        bail!(
            "--init-from {}: {} holds no model weights; run the parent with --keep-checkpoint",
            dir.display(),
            dir.join(CHECKPOINT_DIR).display()
        );
    }
    vs.load(&model_p).with_context(|| format!("cannot load {}", model_p.display()))?;
    Ok(epoch)
}

/// Returned (as the error) by [`run`] when `RunOptions::stop_after` ended the run early.
#[derive(Debug)]
pub struct Stopped {
    pub epoch: i64,
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stopped after epoch {} as asked (--stop-after); continue with --resume", self.epoch)
    }
}

impl std::error::Error for Stopped {}

/// Try to load libtorch_cuda.so so that CUDA is usable without the `cuda` link feature (rustc's
/// `--as-needed` drops it from the binary's dependencies). Harmless when it is missing.
fn preload_cuda() -> Option<String> {
    let dir = env!("ALCF_LIBTORCH_LIB");
    let mut cands = Vec::new();
    if !dir.is_empty() {
        cands.push(format!("{dir}/libtorch_cuda.so"));
    }
    cands.push("libtorch_cuda.so".to_string());
    let mut last_err = None;
    for c in cands {
        let cs = std::ffi::CString::new(c).ok()?;
        // SAFETY: dlopen with a valid NUL-terminated path; the handle is intentionally leaked so
        // the library stays loaded for the life of the process.
        let h = unsafe { libc::dlopen(cs.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        if !h.is_null() {
            return None;
        }
        // SAFETY: dlerror returns a thread-local C string or NULL.
        let e = unsafe { libc::dlerror() };
        if !e.is_null() {
            last_err = Some(unsafe { std::ffi::CStr::from_ptr(e) }.to_string_lossy().into_owned());
        }
    }
    last_err
}

/// Pick the device; `cuda`/`cuda:N` and `xpu`/`xpu:N` fail with a clear message when that device
/// is not usable. `auto` is cuda:0 when CUDA works, else xpu:0 when this binary has the XPU shim
/// and libtorch an XPU device, else the CPU.
pub fn resolve_device(spec: DeviceSpec) -> Result<Place> {
    let cuda_err = if matches!(spec, DeviceSpec::Auto | DeviceSpec::Cuda(_)) { preload_cuda() } else { None };
    match spec {
        DeviceSpec::Cpu => Ok(Place::Tch(Device::Cpu)),
        DeviceSpec::Auto => Ok(if tch::Cuda::is_available() {
            Place::Tch(Device::Cuda(0))
        } else if xpu::built_in() && xpu::check(0).is_ok() {
            Place::Xpu(0)
        } else {
            Place::Tch(Device::Cpu)
        }),
        DeviceSpec::Xpu(n) => {
            xpu::check(n).map_err(|e| anyhow::anyhow!("--device {spec}: {e:#}"))?;
            Ok(Place::Xpu(n))
        }
        DeviceSpec::Cuda(n) => {
            if !tch::Cuda::is_available() {
                bail!(
                    "--device {spec}: CUDA is not available ({}). Run scripts/setup-torch.sh --full on a GPU machine, \
                     or use --device cpu",
                    cuda_err.unwrap_or_else(|| "libtorch reports no CUDA device".into())
                );
            }
            let count = tch::Cuda::device_count() as usize;
            if n >= count {
                bail!("--device {spec}: only {count} CUDA device(s) (cuda:0..cuda:{})", count - 1);
            }
            Ok(Place::Tch(Device::Cuda(n)))
        }
    }
}

/// Intra-op threads: the flag, else one per core available to this process.
pub fn setup_threads(threads: i64) -> i64 {
    let n =
        if threads > 0 { threads } else { std::thread::available_parallelism().map(|n| n.get() as i64).unwrap_or(1) };
    tch::set_num_threads(n as i32);
    n
}

/// CPU time of this process so far, in seconds (0 where unsupported).
fn process_cpu_s() -> f64 {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes into the timespec we own.
        if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) } == 0 {
            return ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9;
        }
    }
    0.0
}

fn epoch_seed(seed: u64, epoch: i64) -> i64 {
    let mut r = data::SplitMix::new(seed ^ (epoch as u64).wrapping_mul(0xA24B_AED4_963E_E407));
    (r.next_u64() >> 1) as i64
}

/// Insert `v` under `k` when it is finite (JSON has no NaN/inf).
fn put(m: &mut Map<String, Value>, k: &str, v: f64) {
    if v.is_finite() {
        m.insert(k.to_string(), json!(v));
    }
}

/// Validation results.
#[derive(Clone, Debug)]
pub struct Eval {
    pub loss: f64,
    pub acc: f64,
    pub top5: f64,
    pub auc: Option<f64>,
}

/// Evaluate `model` on a split (eval mode, no gradients).
pub fn evaluate(model: &Model, split: &Split, norm: &Normalizer) -> Eval {
    tch::no_grad(|| {
        let n = split.len();
        let mut loss_sum = 0.0;
        let mut correct = 0i64;
        let mut correct5 = 0i64;
        let mut probs: Vec<f32> = Vec::with_capacity((n * data::NUM_CLASSES) as usize);
        let mut start = 0;
        while start < n {
            let len = EVAL_BATCH.min(n - start);
            let x = norm.apply(&split.x.narrow(0, start, len));
            let y = split.y.narrow(0, start, len);
            let logits = model.forward_t(&x, false);
            loss_sum += logits.cross_entropy_loss(&y, None::<Tensor>, Reduction::Sum, -100, 0.0).double_value(&[]);
            correct += logits.argmax(1, false).eq_tensor(&y).sum(Kind::Int64).int64_value(&[]);
            let k = 5.min(data::NUM_CLASSES);
            let (_, top) = logits.topk(k, 1, true, true);
            correct5 += top.eq_tensor(&y.unsqueeze(1)).any_dim(1, false).sum(Kind::Int64).int64_value(&[]);
            let p = logits.softmax(1, Kind::Float).to_device(Device::Cpu).flatten(0, -1);
            probs.extend(Vec::<f32>::try_from(&p).expect("float probabilities"));
            start += len;
        }
        let labels = Vec::<i64>::try_from(&split.y.to_device(Device::Cpu)).expect("int64 labels");
        Eval {
            loss: loss_sum / n as f64,
            acc: correct as f64 / n as f64,
            top5: correct5 as f64 / n as f64,
            auc: metrics::macro_ovr_auc(&probs, data::NUM_CLASSES as usize, &labels),
        }
    })
}

/// What the run produced (also written to result.json).
#[derive(Clone, Debug)]
pub struct Summary {
    pub result: Map<String, Value>,
    pub history: Vec<Map<String, Value>>,
}

fn checkpoint_paths(out: &Path, epoch: i64) -> (PathBuf, PathBuf) {
    let dir = out.join(CHECKPOINT_DIR);
    (dir.join(format!("model-epoch{epoch}.ot")), dir.join(format!("optim-epoch{epoch}.ot")))
}

struct Checkpoint {
    epoch: i64,
    step: i64,
    history: Vec<Map<String, Value>>,
    elapsed_s: f64,
}

fn save_checkpoint(
    out: &Path,
    cfg: &TrainConfig,
    place: Place,
    vs: &nn::VarStore,
    opt: &Optimizer,
    ck: &Checkpoint,
) -> Result<()> {
    let dir = out.join(CHECKPOINT_DIR);
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let (model_p, optim_p) = checkpoint_paths(out, ck.epoch);
    if let Place::Xpu(_) = place {
        // CPU copies, under the names VarStore::save uses: the files do not depend on the device.
        let mut named = Vec::new();
        for (name, t) in vs.variables() {
            named.push((name, place.to_host(&t)?));
        }
        Tensor::save_multi(&named, &model_p).with_context(|| format!("cannot write {}", model_p.display()))?;
    } else {
        vs.save(&model_p).with_context(|| format!("cannot write {}", model_p.display()))?;
    }
    let mut state = opt.state();
    for (_, t) in state.iter_mut() {
        *t = place.to_host(t)?;
    }
    if !state.is_empty() {
        Tensor::save_multi(&state, &optim_p).with_context(|| format!("cannot write {}", optim_p.display()))?;
    }
    let st = json!({
        "format": 1,
        "epoch": ck.epoch,
        "step": ck.step,
        "elapsed_s": ck.elapsed_s,
        "config": cfg.fingerprint(),
        "history": ck.history,
    });
    data::write_atomic(&dir.join(STATE_FILE), serde_json::to_string_pretty(&st)?.as_bytes())?;
    // Drop older epochs' files only after the new state points at the new ones.
    if let Ok(rd) = fs::read_dir(&dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let keep = name == STATE_FILE
                || name == format!("model-epoch{}.ot", ck.epoch)
                || name == format!("optim-epoch{}.ot", ck.epoch);
            if !keep {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    Ok(())
}

/// Read `OUT/checkpoint/state.json` and check that it was made with the same settings.
fn read_state(out: &Path, cfg: &TrainConfig) -> Result<Option<Value>> {
    let state_p = out.join(CHECKPOINT_DIR).join(STATE_FILE);
    if !state_p.is_file() {
        return Ok(None);
    }
    let text = fs::read_to_string(&state_p).with_context(|| format!("cannot read {}", state_p.display()))?;
    let st: Value = serde_json::from_str(&text).with_context(|| {
        format!("{} is not valid JSON; delete the checkpoint directory to start over", state_p.display())
    })?;
    let saved_cfg = st.get("config").cloned().unwrap_or(Value::Null);
    let now = cfg.fingerprint();
    if saved_cfg != now {
        let mut diffs = Vec::new();
        if let (Value::Object(a), Value::Object(b)) = (&saved_cfg, &now) {
            for (k, v) in b {
                if a.get(k) != Some(v) {
                    diffs.push(format!("{k}: checkpoint {} vs now {v}", a.get(k).unwrap_or(&Value::Null)));
                }
            }
        }
        bail!(
            "--resume: the checkpoint in {} was made with different settings ({}); \
             use the same settings or a fresh --out directory",
            state_p.parent().unwrap().display(),
            if diffs.is_empty() { "unreadable config".to_string() } else { diffs.join("; ") }
        );
    }
    Ok(Some(st))
}

fn load_checkpoint(out: &Path, st: &Value, vs: &mut nn::VarStore, opt: &mut Optimizer) -> Result<Checkpoint> {
    let epoch = st["epoch"].as_i64().context("checkpoint state lacks 'epoch'")?;
    let step = st["step"].as_i64().context("checkpoint state lacks 'step'")?;
    let elapsed_s = st["elapsed_s"].as_f64().unwrap_or(0.0);
    let history: Vec<Map<String, Value>> =
        serde_json::from_value(st["history"].clone()).context("checkpoint state has a bad 'history'")?;
    let (model_p, optim_p) = checkpoint_paths(out, epoch);
    vs.load(&model_p).with_context(|| format!("cannot load {}", model_p.display()))?;
    if !opt.state().is_empty() {
        let named = Tensor::load_multi_with_device(&optim_p, vs.device())
            .with_context(|| format!("cannot load {}", optim_p.display()))?;
        // save_multi writes '.' as '|'.
        let named: Vec<(String, Tensor)> = named.into_iter().map(|(n, t)| (n.replace('|', "."), t)).collect();
        opt.load_state(&named, step)?;
    } else {
        opt.step_count = step;
    }
    Ok(Checkpoint { epoch, step, history, elapsed_s })
}

fn write_history(path: &Path, history: &[Map<String, Value>]) -> Result<()> {
    let mut text = String::new();
    for h in history {
        text.push_str(&serde_json::to_string(h)?);
        text.push('\n');
    }
    data::write_atomic(path, text.as_bytes())
}

fn append_line(path: &Path, m: &Map<String, Value>) -> Result<()> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    writeln!(f, "{}", serde_json::to_string(m)?).with_context(|| format!("cannot write {}", path.display()))
}

/// Train according to `cfg`, writing metrics.jsonl, checkpoints and result.json into `opts.out`.
pub fn run(cfg: &TrainConfig, opts: &RunOptions) -> Result<Summary> {
    cfg.validate()?;
    let t_start = Instant::now();
    let place = resolve_device(cfg.device)?;
    // Where tch creates tensors; for an XPU run the CPU, and `place.put` moves them.
    let device = place.create_on();
    let threads = setup_threads(cfg.threads);
    fs::create_dir_all(&opts.out).with_context(|| format!("cannot create output directory {}", opts.out.display()))?;
    let log = |s: String| {
        if opts.verbose {
            eprintln!("{s}");
        }
    };
    let metrics_p = opts.out.join(METRICS_FILE);
    let result_p = opts.out.join(RESULT_FILE);
    let state = if opts.resume { read_state(&opts.out, cfg)? } else { None };

    // A finished run: answer from the state file, without data or model.
    if let Some(st) = &state
        && let Some(Value::Object(result)) = st.get("result")
    {
        let history: Vec<Map<String, Value>> =
            serde_json::from_value(st["history"].clone()).context("checkpoint state has a bad 'history'")?;
        write_history(&metrics_p, &history)?;
        data::write_atomic(&result_p, serde_json::to_string_pretty(result)?.as_bytes())?;
        log(format!("alcf-trainer: --resume: the run in {} had finished; result.json rewritten", opts.out.display()));
        return Ok(Summary { result: result.clone(), history });
    }

    let to_place = |t: Tensor| place.put(t);
    let (train, val) = data::load_train_val(&cfg.data, cfg.val_split, cfg.limit_train, cfg.limit_val, device)?;
    let (train, val) = (train.moved(to_place)?, val.moved(to_place)?);
    let test = if cfg.eval_test { Some(data::load_test(&cfg.data, device)?.moved(to_place)?) } else { None };
    let n_train = train.len();
    let norm = Normalizer::new(device).moved(to_place)?;

    tch::manual_seed(cfg.seed as i64);
    let mut vs = nn::VarStore::new(device);
    let model = models::build(&vs.root(), cfg.model, cfg.width, cfg.depth, cfg.dropout, data::NUM_CLASSES);
    // Parameters and batch-norm buffers to the device first, so that the optimizer's state is
    // created next to them (and a checkpoint is loaded into them there).
    place.move_vars(&vs)?;
    let n_params = models::count_params(&vs);
    let mut opt = Optimizer::new(&vs, cfg);

    let _ = fs::remove_file(&result_p);
    let resumed = match &state {
        Some(st) => Some(load_checkpoint(&opts.out, st, &mut vs, &mut opt)?),
        None => None,
    };
    let (start_epoch, mut step, mut history, prior_elapsed) = match resumed {
        Some(ck) => {
            log(format!(
                "alcf-trainer: resuming after epoch {} of {} from {}",
                ck.epoch,
                cfg.epochs,
                opts.out.join(CHECKPOINT_DIR).display()
            ));
            (ck.epoch, ck.step, ck.history, ck.elapsed_s)
        }
        None => {
            if opts.resume {
                log("alcf-trainer: --resume: no checkpoint yet, starting from epoch 1".into());
            }
            let _ = fs::remove_dir_all(opts.out.join(CHECKPOINT_DIR));
            if let Some(dir) = &opts.init_from {
                let epochs = inherit(dir, cfg, &mut vs)?;
                log(format!("alcf-trainer: starting from the weights of {} ({epochs} epochs)", dir.display()));
            }
            (0, 0, Vec::new(), 0.0)
        }
    };
    // metrics.jsonl holds exactly the epochs the checkpoint covers (a kill between writing a line
    // and the checkpoint would otherwise duplicate it).
    write_history(&metrics_p, &history)?;

    log(format!(
        "alcf-trainer: {} ({} parameters) on {}, {} threads; {} train / {} val images; {} epochs, batch {}",
        cfg.model,
        n_params,
        place,
        threads,
        n_train,
        val.len(),
        cfg.epochs,
        cfg.batch_size
    ));

    let bs = cfg.batch_size.min(n_train);
    // A last batch of a single image breaks batch norm in training mode: drop it.
    let steps_per_epoch = n_train / bs + i64::from(n_train % bs > 1);
    let mut diverged = false;
    let mut train_time_total: f64 = history.iter().filter_map(|h| h.get("train_time_s").and_then(Value::as_f64)).sum();

    for (done_this_run, epoch) in (start_epoch..cfg.epochs).enumerate() {
        if opts.stop_after.is_some_and(|k| done_this_run as i64 >= k) {
            return Err(Stopped { epoch }.into());
        }
        let t_epoch = Instant::now();
        let cpu_epoch = process_cpu_s();
        tch::manual_seed(epoch_seed(cfg.seed, epoch));
        let perm = place.put(Tensor::randperm(n_train, (Kind::Int64, device)))?;
        let mut loss_sum = place.zero(Kind::Float)?;
        let mut correct = place.zero(Kind::Int64)?;
        let mut seen = 0i64;
        let mut lr = cfg.lr;
        let mut last_report = Instant::now();
        for b in 0..steps_per_epoch {
            let start = b * bs;
            let len = bs.min(n_train - start);
            let idx = perm.narrow(0, start, len);
            let mut xb = train.x.index_select(0, &idx);
            if cfg.augment {
                xb = data::augment(&xb);
            }
            let xb = norm.apply(&xb);
            let yb = train.y.index_select(0, &idx);
            let logits = model.forward_t(&xb, true);
            let loss = logits.cross_entropy_loss(&yb, None::<Tensor>, Reduction::Mean, -100, cfg.label_smoothing);
            opt.zero_grad();
            loss.backward();
            lr = optim::lr_at(cfg, step, steps_per_epoch);
            opt.step(lr);
            step += 1;
            seen += len;
            tch::no_grad(|| {
                loss_sum += loss.detach() * len as f64;
                correct += logits.argmax(1, false).eq_tensor(&yb).sum(Kind::Int64);
            });
            if opts.verbose && last_report.elapsed().as_secs_f64() > 30.0 {
                last_report = Instant::now();
                eprintln!(
                    "  epoch {}: {}/{} batches, {:.0} images/s",
                    epoch + 1,
                    b + 1,
                    steps_per_epoch,
                    seen as f64 / t_epoch.elapsed().as_secs_f64()
                );
            }
        }
        place.synchronize()?;
        let train_time = t_epoch.elapsed().as_secs_f64();
        let train_cpu = process_cpu_s() - cpu_epoch;
        train_time_total += train_time;
        let train_loss = loss_sum.double_value(&[]) / seen as f64;
        let train_acc = correct.int64_value(&[]) as f64 / seen as f64;
        let ev = evaluate(&model, &val, &norm);
        let epoch_time = t_epoch.elapsed().as_secs_f64();

        let mut m = Map::new();
        m.insert("epoch".into(), json!(epoch + 1));
        put(&mut m, "train_loss", train_loss);
        put(&mut m, "train_acc", train_acc);
        put(&mut m, "val_loss", ev.loss);
        put(&mut m, "val_acc", ev.acc);
        put(&mut m, "val_top5", ev.top5);
        if let Some(a) = ev.auc {
            put(&mut m, "val_auc", a);
        }
        put(&mut m, "lr", lr);
        put(&mut m, "epoch_time_s", epoch_time);
        put(&mut m, "train_time_s", train_time);
        put(&mut m, "images_per_s", seen as f64 / train_time);
        // CPU seconds of the whole process (all threads) in the training phase: with --threads 1 a
        // measure of work per image that other load on the machine hardly changes.
        put(&mut m, "train_cpu_s", train_cpu);
        append_line(&metrics_p, &m)?;
        log(format!(
            "epoch {:>3}/{}  train_loss {:.4}  val_loss {:.4}  val_acc {:.4}  val_top5 {:.4}  val_auc {:.4}  {:.1}s  {:.0} img/s",
            epoch + 1,
            cfg.epochs,
            train_loss,
            ev.loss,
            ev.acc,
            ev.top5,
            ev.auc.unwrap_or(f64::NAN),
            epoch_time,
            seen as f64 / train_time
        ));
        history.push(m);
        let elapsed = prior_elapsed + t_start.elapsed().as_secs_f64();
        save_checkpoint(
            &opts.out,
            cfg,
            place,
            &vs,
            &opt,
            &Checkpoint { epoch: epoch + 1, step, history: history.clone(), elapsed_s: elapsed },
        )?;
        if !train_loss.is_finite() {
            eprintln!(
                "alcf-trainer: training diverged in epoch {} (loss is not finite; lower --lr?); stopping",
                epoch + 1
            );
            diverged = true;
            break;
        }
    }

    let get = |h: &Map<String, Value>, k: &str| h.get(k).and_then(Value::as_f64);
    let accs: Vec<f64> = history.iter().map(|h| get(h, "val_acc").unwrap_or(0.0)).collect();
    let last = history.last().cloned().unwrap_or_default();
    let mut r = Map::new();
    for k in ["val_acc", "val_top5", "val_auc", "val_loss", "train_loss", "train_acc"] {
        if let Some(v) = get(&last, k) {
            put(&mut r, k, v);
        }
    }
    let (best_epoch, best_acc) = history
        .iter()
        .enumerate()
        .map(|(i, h)| (i + 1, get(h, "val_acc").unwrap_or(0.0)))
        .fold((0, f64::NEG_INFINITY), |a, b| if b.1 > a.1 { b } else { a });
    put(&mut r, "best_val_acc", best_acc);
    r.insert("best_epoch".into(), json!(best_epoch));
    let best_auc = history.iter().filter_map(|h| get(h, "val_auc")).fold(f64::NEG_INFINITY, f64::max);
    put(&mut r, "best_val_auc", best_auc);
    if let Some(c) = metrics::curve_auc(&accs) {
        put(&mut r, "curve_auc", c);
    }
    if let Some(t) = &test {
        let ev = evaluate(&model, t, &norm);
        put(&mut r, "test_acc", ev.acc);
        put(&mut r, "test_top5", ev.top5);
        put(&mut r, "test_loss", ev.loss);
        if let Some(a) = ev.auc {
            put(&mut r, "test_auc", a);
        }
    }
    r.insert("epochs".into(), json!(history.len()));
    r.insert("diverged".into(), json!(i64::from(diverged)));
    r.insert("n_train".into(), json!(n_train));
    r.insert("n_val".into(), json!(val.len()));
    r.insert("n_params".into(), json!(n_params));
    put(&mut r, "train_time_s", train_time_total);
    put(&mut r, "images_per_s", (n_train * history.len() as i64) as f64 / train_time_total);
    put(&mut r, "total_time_s", prior_elapsed + t_start.elapsed().as_secs_f64());
    data::write_atomic(&result_p, serde_json::to_string_pretty(&r)?.as_bytes())?;
    // The state file now carries the result, so that `--resume` of a finished run needs no tensors.
    let dir = opts.out.join(CHECKPOINT_DIR);
    let st = json!({
        "format": 1,
        "epoch": history.len(),
        "step": step,
        "elapsed_s": prior_elapsed + t_start.elapsed().as_secs_f64(),
        "config": cfg.fingerprint(),
        "history": history,
        "result": r,
    });
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    data::write_atomic(&dir.join(STATE_FILE), serde_json::to_string_pretty(&st)?.as_bytes())?;
    if !opts.keep_checkpoint {
        let (model_p, optim_p) = checkpoint_paths(&opts.out, history.len() as i64);
        let _ = fs::remove_file(model_p);
        let _ = fs::remove_file(optim_p);
    }
    log(format!(
        "alcf-trainer: done: val_acc {:.4} (best {:.4}), curve_auc {:.4}; wrote {}",
        get(&r, "val_acc").unwrap_or(f64::NAN),
        best_acc,
        get(&r, "curve_auc").unwrap_or(f64::NAN),
        result_p.display()
    ));
    Ok(Summary { result: r, history })
}
