//! Uniform random search over the unit cube (log scales, ints and choices handled by `Space`).
use alcf_plugin_sdk::*;

pub struct RandomSearch {
    space: Space,
    seed: u64,
    seen: u64, // the highest trial id seen so far
}

impl Strategy for RandomSearch {
    fn info() -> PluginInfo {
        // It ignores the objectives, so it serves a study with any number of them.
        PluginInfo::new(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"), "Uniform random search").multi_objective()
    }

    fn new(study: &Study) -> Result<Self, String> {
        Options::parse(&study.options)?.check_known(&[])?;
        Ok(RandomSearch { space: Space::new(&study.space)?, seed: study.seed, seen: 0 })
    }

    fn suggest(&mut self, count: usize, pending: &[Trial]) -> Result<Vec<Params>, String> {
        // One stream per next trial id: a resumed study (fresh instance, replayed history)
        // continues the sequence instead of repeating its first points.
        let mut rng = Rng::derive(self.seed, pending.iter().map(|t| t.id).fold(self.seen, u64::max) + 1);
        let taken = encode_trials(&self.space, pending);
        Ok(self.space.sample_distinct(&mut rng, &taken, count).iter().map(|x| self.space.decode(x)).collect())
    }

    fn observe(&mut self, outcomes: &[Outcome]) -> Result<(), String> {
        self.seen = outcomes.iter().map(|o| o.trial.id).fold(self.seen, u64::max);
        Ok(())
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
