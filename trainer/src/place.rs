//! Where a run's tensors live: a device tch can name (CPU, CUDA), or an Intel XPU tile, which tch
//! cannot name and which the XPU shim ([`crate::xpu`]) serves. For an XPU run tensors are created
//! on the CPU with tch's constructors and moved with [`Place::put`]; the model's variables are
//! moved in place ([`Place::move_vars`]) before the optimizer creates its state next to them, and
//! every op after that runs where its inputs are.

use crate::xpu;
use anyhow::{Context, Result};
use std::fmt;
use tch::{Device, Kind, Tensor, nn};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Tch(Device),
    Xpu(usize),
}

impl Place {
    /// The device that tch's constructors create this run's tensors on (for an XPU run, the CPU;
    /// [`Place::put`] then moves them).
    pub fn create_on(self) -> Device {
        match self {
            Place::Tch(d) => d,
            Place::Xpu(_) => Device::Cpu,
        }
    }

    /// `t` on this place (`t` itself when it is there already).
    pub fn put(self, t: Tensor) -> Result<Tensor> {
        match self {
            Place::Tch(d) if t.device() == d => Ok(t),
            Place::Tch(d) => Ok(t.to_device(d)),
            Place::Xpu(i) => xpu::to_xpu(&t, i),
        }
    }

    /// A 0-dim zero of `kind` here.
    pub fn zero(self, kind: Kind) -> Result<Tensor> {
        self.put(Tensor::zeros([], (kind, self.create_on())))
    }

    /// Move every variable of `vs` here in place: the trainable parameters and the batch-norm
    /// running statistics alike (tch keeps both in the var store). Each variable keeps its
    /// identity (`set_data`), so the model's layers, which hold shallow clones of the same tensors,
    /// see the moved data. A no-op for tch devices (the var store created them in place).
    pub fn move_vars(self, vs: &nn::VarStore) -> Result<()> {
        if let Place::Xpu(_) = self {
            tch::no_grad(|| -> Result<()> {
                let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
                vars.sort_by(|a, b| a.0.cmp(&b.0));
                for (name, mut v) in vars {
                    let moved = self.put(v.detach()).with_context(|| format!("model variable '{name}'"))?;
                    v.f_set_data(&moved).with_context(|| format!("cannot move model variable '{name}' to {self}"))?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Wait for the work queued here (GPU timings); a no-op on the CPU.
    pub fn synchronize(self) -> Result<()> {
        match self {
            Place::Tch(Device::Cuda(i)) => {
                tch::Cuda::synchronize(i as i64);
                Ok(())
            }
            Place::Tch(_) => Ok(()),
            Place::Xpu(i) => xpu::synchronize(i),
        }
    }

    /// A copy of `t` on the CPU (for checkpoints: an XPU run writes device-neutral files).
    pub fn to_host(self, t: &Tensor) -> Result<Tensor> {
        match self {
            Place::Tch(_) => Ok(t.shallow_clone()),
            Place::Xpu(_) => xpu::to_cpu(t),
        }
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Tch(Device::Cpu) => f.write_str("cpu"),
            Place::Tch(Device::Cuda(i)) => write!(f, "cuda:{i}"),
            Place::Tch(d) => write!(f, "{d:?}"),
            Place::Xpu(i) => write!(f, "xpu:{i}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_place_is_a_no_op() {
        let p = Place::Tch(Device::Cpu);
        assert_eq!(p.create_on(), Device::Cpu);
        assert_eq!(p.to_string(), "cpu");
        assert_eq!(Place::Xpu(3).to_string(), "xpu:3");
        let t = Tensor::from_slice(&[1i64, 2]);
        assert_eq!(Vec::<i64>::try_from(&p.put(t).unwrap()).unwrap(), vec![1, 2]);
        assert_eq!(p.zero(Kind::Float).unwrap().size(), Vec::<i64>::new());
        let vs = nn::VarStore::new(Device::Cpu);
        let _w = vs.root().var("w", &[2], nn::Init::Const(1.0));
        p.move_vars(&vs).unwrap();
        p.synchronize().unwrap();
    }
}
