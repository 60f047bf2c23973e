//! Time per gp_ucb suggestion with N observations in 6-D (Hartmann6), mean of 20 consecutive
//! suggestions, each followed by observing its result (so the model grows by one row per step
//! and refits follow the refit policy).
//!
//! Also prints a digest of the suggested points (FNV-1a over their f64 bits): code changes that
//! must not change results (speed work) must leave it unchanged.
//!
//!   cargo run --release -p gp_ucb --example speed [-- 100 500 1000]
use alcf_plugin_sdk::*;
use gp_ucb::GpUcb;
use std::time::Instant;

fn main() {
    let sizes: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() { vec![100, 500, 1000] } else { sizes };
    let f = alcf_testfns::hartmann6();
    let space: Vec<Param> = (0..6).map(|i| Param::float(&format!("x{i}"), 0.0, 1.0)).collect();
    for &n in &sizes {
        let study = Study::new(space.clone()).with_seed(1);
        let mut s = GpUcb::new(&study).unwrap();
        let mut rng = Rng::new(n as u64);
        let outcomes: Vec<Outcome> = (0..n)
            .map(|i| {
                let x = rng.unit_point(6);
                Outcome {
                    trial: Trial { id: i as u64, params: s.core.space.decode(&x) },
                    status: Status::Completed,
                    value: Some(f.eval_f64(&x)),
                    metrics: vec![],
                    curve: Vec::new(),
                }
            })
            .collect();
        s.observe(&outcomes).unwrap();
        let mut times = Vec::new();
        let mut digest = 0xcbf2_9ce4_8422_2325u64;
        for k in 0..20 {
            let t0 = Instant::now();
            let p = s.suggest(1, &[]).unwrap().remove(0);
            times.push(t0.elapsed().as_secs_f64());
            let x: Vec<f64> = p.iter().map(|a| a.value.as_f64().unwrap()).collect();
            for v in &x {
                for byte in v.to_bits().to_le_bytes() {
                    digest = (digest ^ byte as u64).wrapping_mul(0x100_0000_01b3);
                }
            }
            s.observe(&[Outcome {
                trial: Trial { id: (n + k) as u64, params: p },
                status: Status::Completed,
                value: Some(f.eval_f64(&x)),
                metrics: vec![],
                curve: Vec::new(),
            }])
            .unwrap();
        }
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        let max = times.iter().copied().fold(0.0, f64::max);
        println!(
            "n={n:5}  mean {mean:.4} s/suggestion  (first {:.4} s, max {max:.4} s)  suggestions {digest:016x}",
            times[0]
        );
    }
}
