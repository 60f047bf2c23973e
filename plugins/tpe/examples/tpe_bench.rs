//! TPE-only quality harness (fast iteration): median final simple regret per benchmark function.
//!
//!   cargo run --release -p tpe --example tpe_bench -- [--trials 100] [--seeds 10] [--first 0] \
//!       [--functions branin,...] [--options '{"multivariate": true}']
//!
//! Also prints the quartiles, to judge whether a difference is larger than the seed noise.
use alcf_plugin_sdk::testfns::{eval, study_for};
use alcf_plugin_sdk::*;

fn quantile(v: &[f64], q: f64) -> f64 {
    let pos = q * (v.len() - 1) as f64;
    let (i, t) = (pos.floor() as usize, pos.fract());
    if i + 1 < v.len() { v[i] * (1.0 - t) + v[i + 1] * t } else { v[i] }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |k: &str| args.iter().position(|a| a == k).and_then(|i| args.get(i + 1)).cloned();
    let trials: usize = get("--trials").and_then(|v| v.parse().ok()).unwrap_or(100);
    let seeds: u64 = get("--seeds").and_then(|v| v.parse().ok()).unwrap_or(10);
    let first: u64 = get("--first").and_then(|v| v.parse().ok()).unwrap_or(0);
    let options = get("--options").unwrap_or_else(|| "{}".into());
    let functions: Vec<String> = get("--functions")
        .map(|s| s.split(',').map(str::to_string).collect())
        .unwrap_or_else(|| alcf_testfns::BENCHMARK.iter().map(|s| s.to_string()).collect());
    println!("tpe {options}: {trials} trials, seeds {first}..{}; median [q25, q75] final simple regret", first + seeds);
    for fname in &functions {
        let f = alcf_testfns::by_name(fname, None).unwrap();
        let mut regrets: Vec<f64> = (first..first + seeds)
            .map(|seed| {
                let study = study_for(&f, seed, &options);
                let mut s = tpe::Tpe::new(&study).unwrap();
                let recs = native::run(&mut s, &study, trials, 1, |p| Some(eval(&f, p))).unwrap();
                f.regret(native::best(&recs, Direction::Minimize).unwrap())
            })
            .collect();
        regrets.sort_by(f64::total_cmp);
        println!(
            "{fname:>18}: {:.3e} [{:.3e}, {:.3e}]",
            quantile(&regrets, 0.5),
            quantile(&regrets, 0.25),
            quantile(&regrets, 0.75)
        );
    }
}
