//! Uniform random search over the unit cube (log scales, ints and choices handled by `Space`).
use alcf_plugin_sdk::*;

pub struct RandomSearch {
    space: Space,
    rng: Rng,
}

impl Strategy for RandomSearch {
    fn info() -> PluginInfo {
        PluginInfo::new("random", env!("CARGO_PKG_VERSION"), "Uniform random search")
    }

    fn new(study: &Study) -> Result<Self, String> {
        Options::parse(&study.options)?.check_known(&[])?;
        Ok(RandomSearch { space: Space::new(&study.space)?, rng: Rng::new(study.seed) })
    }

    fn suggest(&mut self, count: usize, pending: &[Trial]) -> Result<Vec<Params>, String> {
        let mut taken = encode_trials(&self.space, pending);
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            // Redraw (a few times) a point that repeats a pending one: only small discrete spaces hit this.
            let mut x = self.space.sample(&mut self.rng);
            for _ in 0..100 {
                if !taken.iter().any(|t| self.space.same_point(t, &x, 0.0)) {
                    break;
                }
                x = self.space.sample(&mut self.rng);
            }
            out.push(self.space.decode(&x));
            taken.push(x);
        }
        Ok(out)
    }
}

export_strategy!(RandomSearch);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_in_bounds_no_pending_duplicates() {
        let study = Study::new(vec![Param::int("a", 0, 3), Param::choice("c", &["x", "y"])]).with_seed(5);
        let run = |s: &Study| native::run(&mut RandomSearch::new(s).unwrap(), s, 40, 4, |_| Some(1.0)).unwrap();
        let (a, b) = (run(&study), run(&study));
        assert_eq!(a.iter().map(|r| &r.params).collect::<Vec<_>>(), b.iter().map(|r| &r.params).collect::<Vec<_>>());
    }
}
