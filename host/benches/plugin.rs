//! Plugin runtime benchmarks (docs/benchmarks.md, sections "Plugin load and call overhead" and
//! "gp_ucb speed in the sandbox"):
//!
//! 1. cold load (Cranelift compile, cache disabled) and cached load (from the on-disk cache) of each
//!    plugin, median of several;
//! 2. one suggest(1) + observe round trip through the sandbox: the random plugin on Branin (2-D),
//!    after 100 observations, median over 1000;
//! 3. gp_ucb time per suggestion inside the sandbox with N = 100, 500, 1000 observations in 6-D
//!    (Hartmann6 values at seeded uniform points, fed in one observe call), then the mean of 20
//!    consecutive suggest(1) calls, each followed by observing its result; and the same natively
//!    (gp_ucb linked as an rlib), with the sandbox/native ratio (goal ≤ 1.5×);
//! 4. the same strategy in Python and Rust (random_py.wasm against random.wasm): cold and cached
//!    load, peak memory and the suggest + observe round trip, runs alternating.
//!
//! ```sh
//! cargo bench -p alcf-host --bench plugin                      # plugins/{random,random_py,gp_ucb}.wasm
//! cargo bench -p alcf-host --bench plugin -- my/gp_ucb.wasm    # other files (random found by name)
//! ALCF_BENCH_GP_SIZES=100,500 cargo bench -p alcf-host --bench plugin
//! ALCF_BENCH_SKIP_LOAD=1 cargo bench -p alcf-host --bench plugin -- plugins/gp_ucb.wasm  # GP only
//! ```
//! Plugins are built with `bash scripts/build-plugins.sh`; a missing gp_ucb is skipped with a message.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alcf_host::config::Direction;
use alcf_host::plugin::PluginRuntime;
use alcf_host::plugin::sandbox::{Grants, Storage};
use alcf_host::plugin::strategy::{Observation, ObservedStatus, PluginLimits, SandboxedStrategy, StudyInfo};
use alcf_host::space::{Assignment, Domain, Param, SearchSpace, Value};
use alcf_plugin_sdk as sdk;
use alcf_plugin_sdk::Strategy as _;

const COLD_RUNS: usize = 5;
const CACHED_RUNS: usize = 20;
const ROUND_TRIPS: usize = 1000;
const GP_STEPS: usize = 20;
const GP_SEED: u64 = 1;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn fmt_s(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}

fn machine() -> String {
    // CPU and cores as `compare` records them, plus the load: benchmarks here share the machine.
    let m = alcf_host::machine::machine();
    let load =
        std::fs::read_to_string("/proc/loadavg").ok().and_then(|l| l.split_whitespace().next().map(String::from));
    format!(
        "{}, {} cores, load average {}",
        m["cpu"].as_str().unwrap_or("unknown CPU"),
        m["cores"],
        load.unwrap_or_else(|| "?".into())
    )
}

fn limits() -> PluginLimits {
    PluginLimits { memory_bytes: 1 << 30, call_timeout: Duration::from_secs(600), max_restarts: 0 }
}

fn study(space: &SearchSpace, seed: u64) -> StudyInfo {
    StudyInfo {
        name: "bench".into(),
        space: space.clone(),
        direction: Direction::Minimize,
        objective: "value".into(),
        objectives: Vec::new(),
        seed,
        budget: None,
        parallelism: 1,
        options: serde_json::json!({}),
    }
}

fn sandboxed(runtime: &PluginRuntime, path: &Path, study: &StudyInfo) -> SandboxedStrategy {
    let loaded = Arc::new(runtime.load(path).unwrap_or_else(|e| panic!("{e}")));
    SandboxedStrategy::new(loaded, study, limits(), Grants::from_list(&["log".into()]), Storage::memory())
}

fn to_host(params: &[(String, Value)], space: &SearchSpace) -> Assignment {
    space.validate(params).unwrap_or_else(|e| panic!("invalid suggestion: {e}"))
}

fn floats(a: &Assignment) -> Vec<f64> {
    a.values
        .iter()
        .map(|(_, v)| match v {
            Value::Float(x) => *x,
            Value::Int(x) => *x as f64,
            Value::Choice(_) => f64::NAN,
        })
        .collect()
}

/// 1. Cold and cached load times.
fn load_times(plugins: &[PathBuf]) {
    println!("\n## Plugin load (median; cold = compiled with the cache disabled, cached = from the on-disk cache)\n");
    println!("| plugin | size | cold load | cached load |");
    println!("|---|---:|---:|---:|");
    for path in plugins {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let cold_rt = PluginRuntime::new(None).expect("runtime");
        let mut cold: Vec<f64> = (0..COLD_RUNS)
            .map(|_| {
                let t = Instant::now();
                let p = cold_rt.load(path).unwrap_or_else(|e| panic!("{e}"));
                assert!(!p.summary.cached);
                t.elapsed().as_secs_f64()
            })
            .collect();
        let cache = tempfile::tempdir().expect("temp dir");
        let cached_rt = PluginRuntime::new(Some(cache.path().to_path_buf())).expect("runtime");
        cached_rt.load(path).unwrap_or_else(|e| panic!("{e}"));
        let mut cached: Vec<f64> = (0..CACHED_RUNS)
            .map(|_| {
                let t = Instant::now();
                let p = cached_rt.load(path).unwrap_or_else(|e| panic!("{e}"));
                assert!(p.summary.cached, "second load should come from the cache");
                t.elapsed().as_secs_f64()
            })
            .collect();
        println!(
            "| {} | {} KiB | {} | {} |",
            path.display(),
            size / 1024,
            fmt_s(median(&mut cold)),
            fmt_s(median(&mut cached))
        );
    }
}

/// 2. suggest(1) + observe through the sandbox, random plugin on Branin after 100 observations.
fn round_trip(rt: &tokio::runtime::Runtime, runtime: &PluginRuntime, random: &Path) {
    let (mut times, _) = branin_round_trips(rt, runtime, random, ROUND_TRIPS);
    let m = mean(&times);
    println!("\n## suggest(1) + observe round trip through the sandbox\n");
    println!("random plugin ({}), Branin (2-D), after 100 observations, {ROUND_TRIPS} round trips:", random.display());
    println!("median {}, p90 {}, mean {}", fmt_s(median(&mut times)), fmt_s(quantile(&mut times, 0.9)), fmt_s(m));
}

/// `n` suggest(1) + observe round trips of `plugin` on Branin after 100 observations: the time of
/// each, and the instance's peak linear memory at the end.
fn branin_round_trips(
    rt: &tokio::runtime::Runtime,
    runtime: &PluginRuntime,
    plugin: &Path,
    n: usize,
) -> (Vec<f64>, usize) {
    let f = alcf_testfns::branin();
    let space = SearchSpace::new(
        f.params
            .iter()
            .map(|p| match &p.kind {
                alcf_testfns::ParamKind::Float { low, high, log } => {
                    Param { name: p.name.clone(), domain: Domain::Float { low: *low, high: *high, log: *log } }
                }
                _ => unreachable!("branin is all floats"),
            })
            .collect(),
    )
    .expect("space");
    let mut s = sandboxed(runtime, plugin, &study(&space, 0));
    let mut id = 0u64;
    let mut step = |s: &mut SandboxedStrategy| -> f64 {
        let t = Instant::now();
        let raw = rt.block_on(s.suggest(1, &[])).expect("suggest");
        let a = to_host(&raw[0], &space);
        let value = f.eval_f64(&floats(&a));
        id += 1;
        let obs = Observation {
            trial: id,
            params: a,
            status: ObservedStatus::Completed,
            value: Some(value),
            metrics: vec![],
            curve: Vec::new(),
        };
        rt.block_on(s.observe(&[obs])).expect("observe");
        t.elapsed().as_secs_f64()
    };
    for _ in 0..100 {
        step(&mut s);
    }
    let times: Vec<f64> = (0..n).map(|_| step(&mut s)).collect();
    (times, s.memory_peak())
}

/// 4. The same strategy in Python (componentize-py) and Rust: random_py.wasm next to random.wasm.
///
/// Every measurement alternates between the two, so both see the same machine load.
fn python_vs_rust(rt: &tokio::runtime::Runtime, rust: &Path, python: &Path) {
    const COLD: usize = 3;
    const ROUNDS: usize = 5;
    const TRIPS: usize = 200;
    let pair = [rust, python];
    let mut cold = [Vec::new(), Vec::new()];
    let mut cached = [Vec::new(), Vec::new()];
    let mut trip = [Vec::new(), Vec::new()];
    let mut memory = [0usize; 2];
    let cold_rt = PluginRuntime::new(None).expect("runtime");
    let cache = tempfile::tempdir().expect("temp dir");
    let cached_rt = PluginRuntime::new(Some(cache.path().to_path_buf())).expect("runtime");
    for p in pair {
        cached_rt.load(p).unwrap_or_else(|e| panic!("{e}"));
    }
    for _ in 0..COLD {
        for (i, p) in pair.iter().enumerate() {
            let t = Instant::now();
            cold_rt.load(p).unwrap_or_else(|e| panic!("{e}"));
            cold[i].push(t.elapsed().as_secs_f64());
        }
    }
    for _ in 0..CACHED_RUNS {
        for (i, p) in pair.iter().enumerate() {
            let t = Instant::now();
            let l = cached_rt.load(p).unwrap_or_else(|e| panic!("{e}"));
            assert!(l.summary.cached);
            cached[i].push(t.elapsed().as_secs_f64());
        }
    }
    for _ in 0..ROUNDS {
        for (i, p) in pair.iter().enumerate() {
            let (times, peak) = branin_round_trips(rt, &cached_rt, p, TRIPS);
            trip[i].extend(times);
            memory[i] = memory[i].max(peak);
        }
    }
    println!("\n## The same strategy in Python and in Rust (random_py.wasm, random.wasm)\n");
    println!(
        "Alternating runs; cold load median of {COLD}, cached load median of {CACHED_RUNS}, round trip median of \
         {} (Branin, after 100 observations); memory: peak linear memory of the instance.\n",
        ROUNDS * TRIPS
    );
    println!("| plugin | size | cold load | cached load | memory | suggest(1) + observe |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (i, p) in pair.iter().enumerate() {
        let size = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        println!(
            "| {} | {:.1} MB | {} | {} | {:.1} MiB | {} |",
            p.display(),
            size as f64 / 1e6,
            fmt_s(median(&mut cold[i])),
            fmt_s(median(&mut cached[i])),
            memory[i] as f64 / (1 << 20) as f64,
            fmt_s(median(&mut trip[i]))
        );
    }
}

/// The gp_ucb workload: N seeded observations, then GP_STEPS × (suggest(1), observe).
struct GpTiming {
    suggest: Vec<f64>,
    observe: Vec<f64>,
    first_point: Vec<f64>,
}

fn gp_space() -> (Vec<sdk::Param>, SearchSpace) {
    let sdk_space: Vec<sdk::Param> = (0..6).map(|i| sdk::Param::float(&format!("x{i}"), 0.0, 1.0)).collect();
    let host_space = SearchSpace::new(
        (0..6)
            .map(|i| Param { name: format!("x{i}"), domain: Domain::Float { low: 0.0, high: 1.0, log: false } })
            .collect(),
    )
    .expect("space");
    (sdk_space, host_space)
}

fn gp_points(n: usize) -> Vec<Vec<f64>> {
    // The same points as plugins/gp_ucb/examples/speed.rs.
    let mut rng = sdk::Rng::new(n as u64);
    (0..n).map(|_| rng.unit_point(6)).collect()
}

fn gp_sandbox(rt: &tokio::runtime::Runtime, runtime: &PluginRuntime, path: &Path, n: usize) -> GpTiming {
    let f = alcf_testfns::hartmann6();
    let (_, space) = gp_space();
    let mut s = sandboxed(runtime, path, &study(&space, GP_SEED));
    let obs: Vec<Observation> = gp_points(n)
        .into_iter()
        .enumerate()
        .map(|(i, x)| Observation {
            trial: i as u64,
            params: to_host(
                &x.iter().enumerate().map(|(d, v)| (format!("x{d}"), Value::Float(*v))).collect::<Vec<_>>(),
                &space,
            ),
            status: ObservedStatus::Completed,
            value: Some(f.eval_f64(&x)),
            metrics: vec![],
            curve: Vec::new(),
        })
        .collect();
    // Instantiate and init outside the timings, then feed the history.
    rt.block_on(s.suggest(0, &[])).expect("warm-up");
    rt.block_on(s.observe(&obs)).expect("observe history");
    let mut t = GpTiming { suggest: vec![], observe: vec![], first_point: vec![] };
    for k in 0..GP_STEPS {
        let t0 = Instant::now();
        let raw = rt.block_on(s.suggest(1, &[])).expect("suggest");
        t.suggest.push(t0.elapsed().as_secs_f64());
        let a = to_host(&raw[0], &space);
        let x = floats(&a);
        if k == 0 {
            t.first_point = x.clone();
        }
        let o = Observation {
            trial: (n + k) as u64,
            params: a,
            status: ObservedStatus::Completed,
            value: Some(f.eval_f64(&x)),
            metrics: vec![],
            curve: Vec::new(),
        };
        let t1 = Instant::now();
        rt.block_on(s.observe(&[o])).expect("observe");
        t.observe.push(t1.elapsed().as_secs_f64());
    }
    t
}

fn gp_native(n: usize) -> GpTiming {
    let f = alcf_testfns::hartmann6();
    let (space, _) = gp_space();
    let mut study = sdk::Study::new(space).with_seed(GP_SEED);
    study.name = "bench".into();
    study.objective = "value".into();
    let mut s = gp_ucb::GpUcb::new(&study).expect("gp_ucb");
    let encode = |x: &[f64]| -> sdk::Params {
        x.iter()
            .enumerate()
            .map(|(d, v)| sdk::Assignment { name: format!("x{d}"), value: sdk::Value::Float(*v) })
            .collect()
    };
    let outcomes: Vec<sdk::Outcome> = gp_points(n)
        .into_iter()
        .enumerate()
        .map(|(i, x)| sdk::Outcome {
            trial: sdk::Trial { id: i as u64, params: encode(&x) },
            status: sdk::Status::Completed,
            value: Some(f.eval_f64(&x)),
            metrics: vec![],
            curve: vec![],
        })
        .collect();
    s.observe(&outcomes).expect("observe history");
    let mut t = GpTiming { suggest: vec![], observe: vec![], first_point: vec![] };
    for k in 0..GP_STEPS {
        let t0 = Instant::now();
        let p = s.suggest(1, &[]).expect("suggest").remove(0);
        t.suggest.push(t0.elapsed().as_secs_f64());
        let x: Vec<f64> = p.iter().map(|a| a.value.as_f64().unwrap_or(f64::NAN)).collect();
        if k == 0 {
            t.first_point = x.clone();
        }
        let t1 = Instant::now();
        s.observe(&[sdk::Outcome {
            trial: sdk::Trial { id: (n + k) as u64, params: p },
            status: sdk::Status::Completed,
            value: Some(f.eval_f64(&x)),
            metrics: vec![],
            curve: vec![],
        }])
        .expect("observe");
        t.observe.push(t1.elapsed().as_secs_f64());
    }
    t
}

/// 3. gp_ucb per-suggestion time, sandbox vs native.
fn gp_speed(rt: &tokio::runtime::Runtime, runtime: &PluginRuntime, gp: &Path) {
    let sizes: Vec<usize> = std::env::var("ALCF_BENCH_GP_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100, 500, 1000]);
    println!(
        "\n## gp_ucb time per suggestion, 6-D Hartmann6 (mean of {GP_STEPS} consecutive suggest(1), each followed by observe)\n"
    );
    println!("sandbox: {}; native: gp_ucb linked as an rlib (same seed, same points)\n", gp.display());
    println!(
        "| observations | sandbox suggest (first) | native suggest (first) | sandbox / native | sandbox observe | same suggestions |"
    );
    println!("|---:|---:|---:|---:|---:|---|");
    for n in sizes {
        let sb = gp_sandbox(rt, runtime, gp, n);
        let nt = gp_native(n);
        let (ms, mn) = (mean(&sb.suggest), mean(&nt.suggest));
        let same = sb.first_point.iter().zip(&nt.first_point).all(|(a, b)| a == b);
        println!(
            "| {n} | {} ({}) | {} ({}) | {:.2}× | {} | {} |",
            fmt_s(ms),
            fmt_s(sb.suggest[0]),
            fmt_s(mn),
            fmt_s(nt.suggest[0]),
            ms / mn,
            fmt_s(mean(&sb.observe)),
            if same { "yes" } else { "no" }
        );
    }
}

fn main() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("host/ sits in the repository").to_path_buf();
    // `cargo bench` passes `--bench`; anything else not starting with `-` is a plugin file.
    let mut plugins: Vec<PathBuf> =
        std::env::args().skip(1).filter(|a| !a.starts_with('-')).map(PathBuf::from).collect();
    if plugins.is_empty() {
        plugins =
            ["random", "random_py", "gp_ucb"].iter().map(|n| repo.join("plugins").join(format!("{n}.wasm"))).collect();
    }
    let (present, missing): (Vec<PathBuf>, Vec<PathBuf>) = plugins.into_iter().partition(|p| p.exists());
    for m in &missing {
        println!("skipping {}: not built (run `bash scripts/build-plugins.sh`)", m.display());
    }
    println!("# alcf-host plugin benchmarks\n\nmachine: {}", machine());
    if present.is_empty() {
        println!("no plugin to measure");
        return;
    }
    if std::env::var_os("ALCF_BENCH_SKIP_LOAD").is_none() {
        load_times(&present);
    }

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let cache = tempfile::tempdir().expect("temp dir");
    let runtime = PluginRuntime::new(Some(cache.path().to_path_buf())).expect("runtime");
    let stem = |p: &PathBuf, n: &str| p.file_stem().is_some_and(|s| s == n);
    match present.iter().find(|p| stem(p, "random")) {
        Some(random) => round_trip(&rt, &runtime, random),
        None => println!("\nskipping the round trip: no random.wasm among the plugins"),
    }
    match (present.iter().find(|p| stem(p, "random")), present.iter().find(|p| stem(p, "random_py"))) {
        (Some(rust), Some(python)) => python_vs_rust(&rt, rust, python),
        _ => println!("\nskipping Python against Rust: random.wasm and random_py.wasm are both needed"),
    }
    match present.iter().find(|p| stem(p, "gp_ucb")) {
        Some(gp) => gp_speed(&rt, &runtime, gp),
        None => {
            println!("\nskipping gp_ucb speed: plugins/gp_ucb.wasm is not built (run `bash scripts/build-plugins.sh`)")
        }
    }
}
