//! Quasi-random search: the points of a scrambled Halton sequence (seeded by the study seed), in
//! order. Low-discrepancy points cover the space more evenly than uniform random ones.
//! Options: `{"skip": N}` starts N points into the sequence.
//!
//! The sequence position is the number of trials suggested or finished so far, so after a
//! resume (history replayed through `observe`) the sequence continues where it stopped.
use alcf_plugin_sdk::*;

pub struct Qmc {
    space: Space,
    halton: Halton,
    rng: Rng,
    issued: u64,
    finished: u64,
}

impl Strategy for Qmc {
    fn info() -> PluginInfo {
        PluginInfo::new("qmc", env!("CARGO_PKG_VERSION"), "Quasi-random search (scrambled Halton sequence)")
    }

    fn new(study: &Study) -> Result<Self, String> {
        let o = Options::parse(&study.options)?;
        o.check_known(&["skip"])?;
        let space = Space::new(&study.space)?;
        let mut halton = Halton::new(space.dim(), study.seed);
        halton.skip(o.usize("skip", 0)? as u64);
        Ok(Qmc { space, halton, rng: Rng::derive(study.seed, 0x9c), issued: 0, finished: 0 })
    }

    fn suggest(&mut self, count: usize, pending: &[Trial]) -> Result<Vec<Params>, String> {
        // After a resume nothing was issued by this instance: skip what the history consumed.
        let consumed = self.finished + pending.len() as u64;
        if self.issued < consumed {
            self.halton.skip(consumed - self.issued);
            self.issued = consumed;
        }
        let mut taken = encode_trials(&self.space, pending);
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let mut x = self.space.snap(&self.halton.next_point());
            self.issued += 1;
            // Discrete spaces: skip points that repeat a pending trial (a few tries, then random).
            let mut tries = 0;
            while taken.iter().any(|t| self.space.same_point(t, &x, 0.0)) && tries < 200 {
                x = if tries < 100 {
                    self.space.snap(&self.halton.next_point())
                } else {
                    self.space.sample(&mut self.rng)
                };
                tries += 1;
            }
            out.push(self.space.decode(&x));
            taken.push(x);
        }
        Ok(out)
    }

    fn observe(&mut self, outcomes: &[Outcome]) -> Result<(), String> {
        self.finished += outcomes.len() as u64;
        Ok(())
    }
}

export_strategy!(Qmc);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_evenly_and_is_deterministic() {
        let study = Study::new(vec![Param::float("x", 0.0, 1.0), Param::choice("c", &["a", "b"])]).with_seed(3);
        let run = || native::run(&mut Qmc::new(&study).unwrap(), &study, 64, 4, |_| Some(0.0)).unwrap();
        let a = run();
        assert_eq!(
            a.iter().map(|r| &r.params).collect::<Vec<_>>(),
            run().iter().map(|r| &r.params).collect::<Vec<_>>()
        );
        let mut bins = [0; 8];
        for r in &a {
            if let Value::Float(x) = r.params[0].value {
                bins[(x * 8.0) as usize] += 1;
            }
        }
        assert!(bins.iter().all(|&b| (6..=10).contains(&b)), "{bins:?}");
        // Tiny discrete space with pending trials: no duplicates of pending.
        let tiny = Study::new(vec![Param::int("a", 0, 3)]);
        native::run(&mut Qmc::new(&tiny).unwrap(), &tiny, 20, 3, |_| Some(0.0)).unwrap();
    }
}
