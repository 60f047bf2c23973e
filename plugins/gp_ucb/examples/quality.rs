//! Median simple regret of gp_ucb on the benchmark functions (sequential, N trials, R seeds).
//!
//!   cargo run --release -p gp_ucb --example quality [-- TRIALS SEEDS OPTIONS_JSON [FUNCTIONS..]]
use alcf_plugin_sdk::testfns::{eval, study_for};
use alcf_plugin_sdk::*;
use gp_ucb::GpUcb;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let trials: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(100);
    let seeds: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let options = args.get(2).cloned().unwrap_or_else(|| "{}".into());
    let names: Vec<String> = if args.len() > 3 {
        args[3..].to_vec()
    } else {
        alcf_testfns::BENCHMARK.iter().map(|s| s.to_string()).collect()
    };
    for name in names {
        let f = alcf_testfns::by_name(&name, None).unwrap();
        let t0 = std::time::Instant::now();
        let mut regrets: Vec<f64> = (0..seeds)
            .map(|seed| {
                let study = study_for(&f, seed, &options);
                let mut s = GpUcb::new(&study).unwrap();
                let recs = native::run(&mut s, &study, trials, 1, |p| Some(eval(&f, p))).unwrap();
                f.regret(native::best(&recs, Direction::Minimize).unwrap())
            })
            .collect();
        regrets.sort_by(|a, b| a.total_cmp(b));
        let med = if regrets.len() % 2 == 1 {
            regrets[regrets.len() / 2]
        } else {
            0.5 * (regrets[regrets.len() / 2 - 1] + regrets[regrets.len() / 2])
        };
        println!(
            "{name:18} median {med:.3e}   all {:?}  ({:.1} s)",
            regrets.iter().map(|r| format!("{r:.2e}")).collect::<Vec<_>>(),
            t0.elapsed().as_secs_f64()
        );
    }
}
