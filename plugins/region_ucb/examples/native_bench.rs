//! Native quality harness: every strategy, sequentially, on the benchmark test functions; prints
//! the median (and mean) final simple regret per function and strategy as a Markdown table.
//!
//!   cargo run --release -p region_ucb --example native_bench -- \
//!       [--trials 100] [--seeds 10] [--threads 2] [--strategies gp_ucb,tpe,...] [--functions branin,...]
//!
//! `BENCH_OPTIONS='{...}'` passes plugin options to every strategy run (use with one strategy).
use alcf_plugin_sdk::testfns::{TestFunction, eval};
use alcf_plugin_sdk::*;
use std::time::Instant;

fn study_for(f: &TestFunction, seed: u64) -> Study {
    let options = std::env::var("BENCH_OPTIONS").unwrap_or_else(|_| "{}".into());
    alcf_plugin_sdk::testfns::study_for(f, seed, &options)
}

fn run_one<S: Strategy>(f: &TestFunction, seed: u64, trials: usize) -> (f64, f64) {
    let study = study_for(f, seed);
    let mut s = S::new(&study).unwrap();
    let t0 = Instant::now();
    let recs = native::run(&mut s, &study, trials, 1, |p| Some(eval(f, p))).unwrap();
    let secs = t0.elapsed().as_secs_f64() / trials as f64;
    (f.regret(native::best(&recs, Direction::Minimize).unwrap()), secs)
}

fn run_named(name: &str, f: &TestFunction, seed: u64, trials: usize) -> (f64, f64) {
    match name {
        "random" => run_one::<random::RandomSearch>(f, seed, trials),
        "qmc" => run_one::<::qmc::Qmc>(f, seed, trials),
        "tpe" => run_one::<tpe::Tpe>(f, seed, trials),
        "genetic" => run_one::<genetic::Genetic>(f, seed, trials),
        "gp_ucb" => run_one::<gp_ucb::GpUcb>(f, seed, trials),
        "region_ucb" => run_one::<region_ucb::RegionUcb>(f, seed, trials),
        other => panic!("unknown strategy {other}"),
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { 0.5 * (v[n / 2 - 1] + v[n / 2]) }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |k: &str| args.iter().position(|a| a == k).and_then(|i| args.get(i + 1)).cloned();
    let trials: usize = get("--trials").and_then(|v| v.parse().ok()).unwrap_or(100);
    let seeds: u64 = get("--seeds").and_then(|v| v.parse().ok()).unwrap_or(10);
    let threads: usize = get("--threads").and_then(|v| v.parse().ok()).unwrap_or(2).max(1);
    let strategies: Vec<String> = get("--strategies")
        .unwrap_or_else(|| "random,qmc,genetic,tpe,gp_ucb,region_ucb".into())
        .split(',')
        .map(str::to_string)
        .collect();
    let functions: Vec<String> = get("--functions")
        .map(|s| s.split(',').map(str::to_string).collect())
        .unwrap_or_else(|| alcf_testfns::BENCHMARK.iter().map(|s| s.to_string()).collect());
    println!("{trials} trials, {seeds} seeds (0..{seeds}), sequential; median final simple regret (mean s/trial)\n");
    print!("| strategy |");
    for f in &functions {
        print!(" {f} |");
    }
    println!("\n|---|{}", "---|".repeat(functions.len()));
    for s in &strategies {
        print!("| {s} |");
        for fname in &functions {
            let f = alcf_testfns::by_name(fname, None).unwrap();
            let jobs: Vec<u64> = (0..seeds).collect();
            let results = std::sync::Mutex::new(Vec::new());
            std::thread::scope(|sc| {
                for t in 0..threads {
                    let (jobs, results, f, s) = (&jobs, &results, &f, s.as_str());
                    sc.spawn(move || {
                        for &seed in jobs.iter().skip(t).step_by(threads) {
                            let r = run_named(s, f, seed, trials);
                            results.lock().unwrap().push(r);
                        }
                    });
                }
            });
            let results = results.into_inner().unwrap();
            let mut regrets: Vec<f64> = results.iter().map(|r| r.0).collect();
            let secs = results.iter().map(|r| r.1).sum::<f64>() / results.len() as f64;
            print!(" {:.3e} ({:.1} ms) |", median(&mut regrets), secs * 1e3);
            use std::io::Write;
            std::io::stdout().flush().ok();
        }
        println!();
    }
}
