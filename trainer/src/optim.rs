//! SGD (momentum, Nesterov) and AdamW with PyTorch's update rules, written on tensor ops so that
//! their state (momentum buffers, moments, step count) can be checkpointed and restored exactly.
//! Learning-rate schedules: cosine, step, constant, each with linear warmup; stepped per batch.

use crate::config::{OptimizerKind, ScheduleKind, TrainConfig};
use anyhow::{Result, bail};
use tch::{Kind, Tensor, nn};

pub struct Optimizer {
    kind: OptimizerKind,
    params: Vec<Tensor>,
    /// A 0-dim float zero where the parameters live, for the per-step factors (made "like" a
    /// parameter: tch's `Device` cannot name every device, e.g. an XPU).
    unit: Option<Tensor>,
    /// SGD: momentum buffers. AdamW: first moments.
    buf1: Vec<Tensor>,
    /// AdamW: second moments.
    buf2: Vec<Tensor>,
    pub step_count: i64,
    momentum: f64,
    nesterov: bool,
    weight_decay: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
}

impl Optimizer {
    pub fn new(vs: &nn::VarStore, cfg: &TrainConfig) -> Self {
        let params = vs.trainable_variables();
        let unit = params.first().map(|p| tch::no_grad(|| p.detach().sum(Kind::Float).zeros_like()));
        let zeros = |ps: &[Tensor]| -> Vec<Tensor> { ps.iter().map(|p| p.zeros_like()).collect() };
        let (buf1, buf2) = match cfg.optimizer {
            OptimizerKind::Sgd if cfg.momentum > 0.0 => (zeros(&params), Vec::new()),
            OptimizerKind::Sgd => (Vec::new(), Vec::new()),
            OptimizerKind::AdamW => (zeros(&params), zeros(&params)),
        };
        Optimizer {
            kind: cfg.optimizer,
            params,
            unit,
            buf1,
            buf2,
            step_count: 0,
            momentum: cfg.momentum,
            nesterov: cfg.nesterov,
            weight_decay: cfg.weight_decay,
            beta1: cfg.beta1,
            beta2: cfg.beta2,
            eps: cfg.eps,
        }
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.zero_grad();
        }
    }

    /// One update with learning rate `lr` (gradients must be populated by `backward`).
    pub fn step(&mut self, lr: f64) {
        self.step_count += 1;
        let t = self.step_count as f64;
        let Some(unit) = &self.unit else { return };
        // 0-dim factors let `addcmul` fuse "x + y * c" into one pass, like PyTorch's `alpha=`.
        let scalar = |v: f64| unit.full_like(f64::from(v as f32));
        let (neg_lr, wd, mom) = (scalar(-lr), scalar(self.weight_decay), scalar(self.momentum));
        tch::no_grad(|| {
            for i in 0..self.params.len() {
                let g = self.params[i].grad();
                if !g.defined() {
                    continue;
                }
                let p = &mut self.params[i];
                match self.kind {
                    OptimizerKind::Sgd => {
                        let mut d = if self.weight_decay != 0.0 { g.addcmul(p, &wd) } else { g };
                        if self.momentum != 0.0 {
                            let b = &mut self.buf1[i];
                            let _ = b.g_mul_scalar_(self.momentum);
                            let _ = b.g_add_(&d);
                            d = if self.nesterov { d.addcmul(b, &mom) } else { b.shallow_clone() };
                        }
                        let _ = p.addcmul_(&d, &neg_lr);
                    }
                    OptimizerKind::AdamW => {
                        if self.weight_decay != 0.0 {
                            let _ = p.g_mul_scalar_(1.0 - lr * self.weight_decay);
                        }
                        let m = &mut self.buf1[i];
                        let _ = m.lerp_(&g, 1.0 - self.beta1);
                        // v = beta2 * v + (1 - beta2) * g^2
                        let v = &mut self.buf2[i];
                        let _ = v.lerp_(&g.square(), 1.0 - self.beta2);
                        let bc1 = 1.0 - self.beta1.powf(t);
                        let bc2 = 1.0 - self.beta2.powf(t);
                        // p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)
                        let mut denom = v.sqrt();
                        let _ = denom.g_div_scalar_(bc2.sqrt());
                        let _ = denom.g_add_scalar_(self.eps);
                        let _ = denom.g_mul_scalar_(-bc1 / lr);
                        let _ = p.addcdiv_(m, &denom);
                    }
                }
            }
        });
    }

    /// Named state tensors for a checkpoint.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (i, t) in self.buf1.iter().enumerate() {
            out.push((format!("buf1.{i}"), t.shallow_clone()));
        }
        for (i, t) in self.buf2.iter().enumerate() {
            out.push((format!("buf2.{i}"), t.shallow_clone()));
        }
        out
    }

    /// Restore the state written by [`Optimizer::state`].
    pub fn load_state(&mut self, named: &[(String, Tensor)], step_count: i64) -> Result<()> {
        let (n1, n2) = (self.buf1.len(), self.buf2.len());
        if named.len() != n1 + n2 {
            bail!("checkpoint optimizer state has {} tensors, expected {}", named.len(), n1 + n2);
        }
        tch::no_grad(|| -> Result<()> {
            for (name, t) in named {
                let (which, idx) = name
                    .split_once('.')
                    .and_then(|(w, i)| i.parse::<usize>().ok().map(|i| (w, i)))
                    .ok_or_else(|| anyhow::anyhow!("bad optimizer state name '{name}'"))?;
                let dst = match which {
                    "buf1" => self.buf1.get_mut(idx),
                    "buf2" => self.buf2.get_mut(idx),
                    _ => None,
                }
                .ok_or_else(|| anyhow::anyhow!("unexpected optimizer state '{name}'"))?;
                if dst.size() != t.size() {
                    bail!("optimizer state '{name}' has shape {:?}, expected {:?}", t.size(), dst.size());
                }
                dst.copy_(t);
            }
            Ok(())
        })?;
        self.step_count = step_count;
        Ok(())
    }
}

/// Learning rate at global step `step` (0-based) of `total` steps, `steps_per_epoch` per epoch.
pub fn lr_at(cfg: &TrainConfig, step: i64, steps_per_epoch: i64) -> f64 {
    let total = (cfg.epochs * steps_per_epoch).max(1) as f64;
    let warm = (cfg.warmup_epochs * steps_per_epoch as f64).round();
    let s = step as f64;
    if warm > 0.0 && s < warm {
        return cfg.lr * (s + 1.0) / warm;
    }
    match cfg.schedule {
        ScheduleKind::Constant => cfg.lr,
        ScheduleKind::Cosine => {
            let span = (total - warm).max(1.0);
            let progress = ((s - warm) / span).clamp(0.0, 1.0);
            cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        }
        ScheduleKind::Step => {
            let epoch = step / steps_per_epoch.max(1);
            let k = epoch / cfg.effective_step_size();
            cfg.lr * cfg.lr_gamma.powi(k as i32)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn schedules() {
        let mut c = TrainConfig { lr: 1.0, epochs: 10, warmup_epochs: 1.0, ..Default::default() };
        assert!((lr_at(&c, 0, 10) - 0.1).abs() < 1e-12);
        assert!((lr_at(&c, 9, 10) - 1.0).abs() < 1e-12);
        assert!((lr_at(&c, 10, 10) - 1.0).abs() < 1e-12);
        assert!(lr_at(&c, 99, 10) < 0.01);
        c.schedule = ScheduleKind::Step;
        c.warmup_epochs = 0.0;
        c.lr_step_size = 4;
        assert_eq!(lr_at(&c, 39, 10), 1.0);
        assert!((lr_at(&c, 40, 10) - 0.1).abs() < 1e-12);
        assert!((lr_at(&c, 85, 10) - 0.01).abs() < 1e-12);
        c.schedule = ScheduleKind::Constant;
        assert_eq!(lr_at(&c, 85, 10), 1.0);
    }

    fn quadratic_descends(kind: OptimizerKind, nesterov: bool) {
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[4], nn::Init::Const(3.0));
        let cfg = TrainConfig { optimizer: kind, nesterov, weight_decay: 0.01, ..Default::default() };
        let mut opt = Optimizer::new(&vs, &cfg);
        let loss0 = (&w * &w).sum(Kind::Float).double_value(&[]);
        for _ in 0..50 {
            opt.zero_grad();
            let loss = (&w * &w).sum(Kind::Float);
            loss.backward();
            opt.step(0.05);
        }
        let loss1 = (&w * &w).sum(Kind::Float).double_value(&[]);
        assert!(loss1 < loss0 * 0.5, "{kind:?}: {loss0} -> {loss1}");
    }

    /// Three steps on loss = sum(p^2) from p = [1, -2], lr 0.1, weight decay 0.1 (SGD: momentum
    /// 0.9): the values torch.optim.SGD / torch.optim.AdamW (torch 2.13.0) give.
    #[test]
    fn matches_torch_optim() {
        let cases = [
            (OptimizerKind::Sgd, false, [0.024319042, -0.048638083]),
            (OptimizerKind::Sgd, true, [-0.140468374, 0.280936748]),
            (OptimizerKind::AdamW, false, [0.675101280, -1.644368649]),
        ];
        for (kind, nesterov, want) in cases {
            let vs = nn::VarStore::new(Device::Cpu);
            let w = vs.root().var_copy("w", &Tensor::from_slice(&[1.0f32, -2.0]));
            let cfg = TrainConfig { optimizer: kind, nesterov, weight_decay: 0.1, momentum: 0.9, ..Default::default() };
            let mut opt = Optimizer::new(&vs, &cfg);
            for _ in 0..3 {
                opt.zero_grad();
                (&w * &w).sum(Kind::Float).backward();
                opt.step(0.1);
            }
            let got = Vec::<f32>::try_from(&w).unwrap();
            for (g, e) in got.iter().zip(want) {
                assert!((*g as f64 - e).abs() < 1e-6, "{kind:?} nesterov={nesterov}: {got:?} vs {want:?}");
            }
        }
    }

    #[test]
    fn optimizers_descend() {
        quadratic_descends(OptimizerKind::Sgd, false);
        quadratic_descends(OptimizerKind::Sgd, true);
        quadratic_descends(OptimizerKind::AdamW, false);
    }
}
