//! Early stopping as a plugin: ASHA (default), Hyperband or the median stopping rule
//! (`alcf_plugin_sdk::pruning`), chosen by the `rule` option. Use it as the study's `[pruner]`
//! next to any sampler (gp_ucb proposes, ASHA decides), or alone as `[strategy]`: it then
//! samples uniformly at random, which with ASHA is the algorithm of the ASHA paper.
use alcf_plugin_sdk::pruning::{self, Pruner};
use alcf_plugin_sdk::*;

pub struct PruningSearch {
    space: Space,
    seed: u64,
    seen: u64,
    rule: Box<dyn Pruner>,
}

impl Strategy for PruningSearch {
    fn info() -> PluginInfo {
        PluginInfo::new(
            env!("CARGO_PKG_NAME"),
            env!("CARGO_PKG_VERSION"),
            "Stops hopeless trials early (rule = asha | hyperband | median); random search when used alone",
        )
        .pruning()
    }

    fn new(study: &Study) -> Result<Self, String> {
        let o = Options::parse(&study.options)?;
        o.check_known(pruning::OPTIONS)?;
        let rule = pruning::from_options(study, &o, "asha")?;
        Ok(PruningSearch { space: Space::new(&study.space)?, seed: study.seed, seen: 0, rule })
    }

    fn suggest(&mut self, count: usize, pending: &[Trial]) -> Result<Vec<Params>, String> {
        let mut rng = Rng::derive(self.seed, pending.iter().map(|t| t.id).fold(self.seen, u64::max) + 1);
        let taken = encode_trials(&self.space, pending);
        Ok(self.space.sample_distinct(&mut rng, &taken, count).iter().map(|x| self.space.decode(x)).collect())
    }

    fn observe(&mut self, outcomes: &[Outcome]) -> Result<(), String> {
        for o in outcomes {
            self.seen = self.seen.max(o.trial.id);
            self.rule.observe(o);
        }
        Ok(())
    }

    fn judge(&mut self, reports: &[Report]) -> Result<Vec<Verdict>, String> {
        Ok(reports.iter().map(|r| self.rule.judge(r)).collect())
    }
}

export_strategy!(PruningSearch);

#[cfg(test)]
mod tests {
    use super::*;

    fn study(options: &str) -> Study {
        let mut s = Study::new(vec![Param::float("x", 0.0, 1.0)]).with_seed(3);
        s.objective = "loss".into();
        s.options = options.into();
        s
    }

    #[test]
    fn judges_with_the_configured_rule_and_refuses_unknown_options() {
        let mut p = PruningSearch::new(&study(r#"{"rule": "asha", "reduction_factor": 2}"#)).unwrap();
        let r =
            |id, loss| Report { trial: Trial { id, params: vec![] }, step: 0, metrics: vec![("loss".into(), loss)] };
        assert_eq!(
            p.judge(&[r(1, 1.0), r(2, 2.0), r(3, 0.5)]).unwrap(),
            [Verdict::Continue, Verdict::Prune, Verdict::Continue]
        );
        assert!(PruningSearch::info().prunes);
        let e = PruningSearch::new(&study(r#"{"eta": 3}"#)).err().unwrap();
        assert!(e.contains("unknown option `eta`") && e.contains("reduction_factor"), "{e}");
        assert_eq!(PruningSearch::new(&study("{}")).unwrap().suggest(3, &[]).unwrap().len(), 3);
    }
}
