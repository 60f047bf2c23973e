//! Time the phases of a training step (data, forward, backward, optimizer) for one model:
//!   cargo run -p alcf-trainer --release --example step_bench -- cnn 128 20 1
use alcf_trainer::config::{ModelKind, TrainConfig};
use alcf_trainer::data::{self, Normalizer};
use alcf_trainer::{models, optim::Optimizer};
use std::time::Instant;
use tch::nn::ModuleT;
use tch::{Device, Kind, Reduction, Tensor, nn};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let model: ModelKind = a.get(1).map_or("cnn", String::as_str).parse().unwrap();
    let bs: i64 = a.get(2).map_or(128, |s| s.parse().unwrap());
    let steps: usize = a.get(3).map_or(20, |s| s.parse().unwrap());
    let threads: i32 = a.get(4).map_or(1, |s| s.parse().unwrap());
    tch::set_num_threads(threads);
    tch::manual_seed(0);
    let x = Tensor::randint(256, [bs * 4, 3, 32, 32], (Kind::Int64, Device::Cpu)).to_kind(Kind::Uint8);
    let y = Tensor::randint(100, [bs * 4], (Kind::Int64, Device::Cpu));
    let vs = nn::VarStore::new(Device::Cpu);
    let m = models::build(&vs.root(), model, 32, 4, 0.0, 100);
    let cfg = TrainConfig { lr: 0.05, ..Default::default() };
    let mut opt = Optimizer::new(&vs, &cfg);
    let norm = Normalizer::new(Device::Cpu);
    let mut t = [0f64; 4];
    for s in 0..steps + 2 {
        let t0 = Instant::now();
        let idx = Tensor::randperm(bs * 4, (Kind::Int64, Device::Cpu)).narrow(0, 0, bs);
        let xb = norm.apply(&data::augment(&x.index_select(0, &idx)));
        let yb = y.index_select(0, &idx);
        let t1 = Instant::now();
        let logits = m.forward_t(&xb, true);
        let loss = logits.cross_entropy_loss(&yb, None::<Tensor>, Reduction::Mean, -100, 0.0);
        let t2 = Instant::now();
        opt.zero_grad();
        loss.backward();
        let t3 = Instant::now();
        opt.step(0.05);
        let t4 = Instant::now();
        if s >= 2 {
            for (i, d) in [t1 - t0, t2 - t1, t3 - t2, t4 - t3].iter().enumerate() {
                t[i] += d.as_secs_f64() * 1000.0 / steps as f64;
            }
        }
    }
    println!(
        "rust   {model} bs={bs} threads={threads}: data {:.2} ms, forward {:.2} ms, backward {:.2} ms, optim {:.2} ms, total {:.1} img/s",
        t[0],
        t[1],
        t[2],
        t[3],
        bs as f64 * 1000.0 / t.iter().sum::<f64>()
    );
}
