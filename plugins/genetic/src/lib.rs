//! # genetic — a steady-state evolutionary algorithm for asynchronous evaluation
//!
//! There are no generations: every suggestion breeds one child from the current population, so
//! workers never wait for a generation to finish. The population is the `population` (default
//! 20) best completed trials (elitism: a good trial stays until better ones push it out; failed
//! trials never enter). Until it is full, suggestions come from a scrambled Halton sequence.
//!
//! Breeding, in the unit cube (so log scales are handled by the encoding): two parents by
//! tournament (size `tournament`, default 3); SBX crossover (η = 15, probability 0.9, per numeric
//! coordinate with probability 0.5) and uniform crossover for categorical coordinates; polynomial
//! mutation (η = 20) of each numeric coordinate with probability 1/d, and categorical resampling
//! with probability 1/d. Children are clipped to [0, 1] and snapped, so ints are rounded into
//! their range and categories stay valid. A child that repeats a pending or finished trial is
//! bred again (then mutated harder, then drawn at random).

use alcf_plugin_sdk::*;

/// Simulated binary crossover of one coordinate pair in [0, 1] (Deb & Agrawal), bounded variant.
pub fn sbx(a: f64, b: f64, eta: f64, rng: &mut Rng) -> (f64, f64) {
    if (a - b).abs() < 1e-14 {
        return (a, b);
    }
    let (y1, y2) = if a < b { (a, b) } else { (b, a) };
    let u = rng.f64();
    let child = |beta_l: f64| {
        let alpha = 2.0 - beta_l.powf(-(eta + 1.0));
        if u <= 1.0 / alpha {
            (u * alpha).powf(1.0 / (eta + 1.0))
        } else {
            (1.0 / (2.0 - u * alpha)).powf(1.0 / (eta + 1.0))
        }
    };
    let beta1 = 1.0 + 2.0 * y1 / (y2 - y1);
    let bq1 = child(beta1);
    let c1 = 0.5 * ((y1 + y2) - bq1 * (y2 - y1));
    let beta2 = 1.0 + 2.0 * (1.0 - y2) / (y2 - y1);
    let bq2 = child(beta2);
    let c2 = 0.5 * ((y1 + y2) + bq2 * (y2 - y1));
    (c1.clamp(0.0, 1.0), c2.clamp(0.0, 1.0))
}

/// Polynomial mutation of a coordinate in [0, 1] (Deb), bounded variant.
pub fn poly_mutate(x: f64, eta: f64, rng: &mut Rng) -> f64 {
    let u = rng.f64();
    let p = 1.0 / (eta + 1.0);
    let dq = if u < 0.5 {
        let xy = 1.0 - x;
        (2.0 * u + (1.0 - 2.0 * u) * xy.powf(eta + 1.0)).powf(p) - 1.0
    } else {
        let xy = x;
        1.0 - (2.0 * (1.0 - u) + 2.0 * (u - 0.5) * xy.powf(eta + 1.0)).powf(p)
    };
    (x + dq).clamp(0.0, 1.0)
}

/// Breeds one child from two parents (unit-cube points), snapped into the space.
pub fn breed(space: &Space, p1: &[f64], p2: &[f64], mutation_scale: f64, rng: &mut Rng) -> Vec<f64> {
    let d = space.dim();
    let pm = (mutation_scale / d as f64).min(1.0);
    let cross = rng.bool(0.9);
    let mut c: Vec<f64> = (0..d)
        .map(|j| {
            if space.is_choice(j) {
                if rng.bool(0.5) { p1[j] } else { p2[j] }
            } else if cross && rng.bool(0.5) {
                let (a, b) = sbx(p1[j], p2[j], 15.0, rng);
                if rng.bool(0.5) { a } else { b }
            } else {
                p1[j]
            }
        })
        .collect();
    for (j, cj) in c.iter_mut().enumerate() {
        if rng.bool(pm) {
            *cj = if space.is_choice(j) { rng.f64() } else { poly_mutate(*cj, 20.0, rng) };
        }
    }
    space.snap(&c)
}

pub struct Genetic {
    space: Space,
    history: History,
    rng: Rng,
    halton: Halton,
    population: usize,
    tournament: usize,
}

impl Genetic {
    /// Indices (into history) of the current population: the best `population` completed trials.
    pub fn population(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.history.len()).collect();
        order.sort_by(|&a, &b| self.history.y[a].total_cmp(&self.history.y[b]));
        order.truncate(self.population);
        order
    }

    fn select(&mut self, pop: &[usize]) -> usize {
        let mut best = pop[self.rng.below(pop.len())];
        for _ in 1..self.tournament {
            let c = pop[self.rng.below(pop.len())];
            if self.history.y[c] < self.history.y[best] {
                best = c;
            }
        }
        best
    }
}

impl Strategy for Genetic {
    fn info() -> PluginInfo {
        PluginInfo::new(
            "genetic",
            env!("CARGO_PKG_VERSION"),
            "Steady-state evolutionary algorithm (SBX, polynomial mutation)",
        )
    }

    fn new(study: &Study) -> Result<Self, String> {
        let o = Options::parse(&study.options)?;
        o.check_known(&["population", "tournament"])?;
        let space = Space::new(&study.space)?;
        Ok(Genetic {
            halton: Halton::new(space.dim(), study.seed),
            space,
            history: History::new(study.direction),
            rng: Rng::derive(study.seed, 0x6e),
            population: o.usize("population", 20)?.max(2),
            tournament: o.usize("tournament", 3)?.max(1),
        })
    }

    fn suggest(&mut self, count: usize, pending: &[Trial]) -> Result<Vec<Params>, String> {
        let mut taken = encode_trials(&self.space, pending);
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let pop = self.population();
            let seeding = self.history.n_finished() + taken.len() < self.population || pop.len() < 2;
            let mut x = Vec::new();
            for attempt in 0..30 {
                x = if seeding {
                    self.space.snap(&self.halton.next_point())
                } else if attempt < 25 {
                    let a = self.select(&pop);
                    let b = self.select(&pop);
                    let scale = 1.0 + attempt as f64 / 5.0;
                    breed(&self.space, &self.history.x[a], &self.history.x[b], scale, &mut self.rng)
                } else {
                    self.space.sample(&mut self.rng)
                };
                let dup = taken.iter().chain(self.history.all_points()).any(|t| self.space.same_point(t, &x, 1e-12));
                if !dup {
                    break;
                }
            }
            // Last resort in tiny spaces: anything not pending.
            for _ in 0..200 {
                if !taken.iter().any(|t| self.space.same_point(t, &x, 1e-12)) {
                    break;
                }
                x = self.space.sample(&mut self.rng);
            }
            out.push(self.space.decode(&x));
            taken.push(x);
        }
        Ok(out)
    }

    fn observe(&mut self, outcomes: &[Outcome]) -> Result<(), String> {
        self.history.observe(&self.space, outcomes)
    }
}

export_strategy!(Genetic);

#[cfg(test)]
mod tests {
    use super::*;

    fn space() -> Space {
        Space::new(&[
            Param::float("x", -5.0, 5.0),
            Param::log_float("lr", 1e-5, 1e-1),
            Param::int("n", -3, 3),
            Param::log_int("bs", 16, 256),
            Param::choice("c", &["a", "b", "c"]),
        ])
        .unwrap()
    }

    #[test]
    fn operators_keep_types_and_bounds() {
        let s = space();
        let mut rng = Rng::new(9);
        for _ in 0..3000 {
            let (a, b) = (rng.f64(), rng.f64());
            let (c1, c2) = sbx(a, b, 15.0, &mut rng);
            assert!((0.0..=1.0).contains(&c1) && (0.0..=1.0).contains(&c2));
            let m = poly_mutate(a, 20.0, &mut rng);
            assert!((0.0..=1.0).contains(&m));
            let p1 = s.sample(&mut rng);
            let p2 = s.sample(&mut rng);
            let child = breed(&s, &p1, &p2, 5.0, &mut rng);
            assert_eq!(child, s.snap(&child));
            let params = s.decode(&child);
            assert!(matches!(params[0].value, Value::Float(v) if (-5.0..=5.0).contains(&v)));
            assert!(matches!(params[1].value, Value::Float(v) if (1e-5..=1e-1).contains(&v)));
            assert!(matches!(params[2].value, Value::Int(v) if (-3..=3).contains(&v)));
            assert!(matches!(params[3].value, Value::Int(v) if (16..=256).contains(&v)));
            assert!(matches!(&params[4].value, Value::Choice(c) if ["a", "b", "c"].contains(&c.as_str())));
            // Categorical children inherit a parent's category unless mutated.
        }
        // SBX is symmetric around the parents' mean on average.
        let mut m = 0.0;
        for _ in 0..20000 {
            let (c1, c2) = sbx(0.4, 0.6, 15.0, &mut rng);
            m += c1 + c2;
        }
        assert!((m / 40000.0 - 0.5).abs() < 0.01);
    }

    #[test]
    fn runs_deterministically_and_improves() {
        let f = alcf_testfns::hartmann3();
        let study = Study::new((0..3).map(|i| Param::float(&format!("x{i}"), 0.0, 1.0)).collect()).with_seed(2);
        let run = || {
            native::run(&mut Genetic::new(&study).unwrap(), &study, 150, 4, |p| {
                Some(f.eval_f64(&p.iter().map(|a| a.value.as_f64().unwrap()).collect::<Vec<_>>()))
            })
            .unwrap()
        };
        let a = run();
        assert_eq!(
            a.iter().map(|r| &r.params).collect::<Vec<_>>(),
            run().iter().map(|r| &r.params).collect::<Vec<_>>()
        );
        assert!(f.regret(native::best(&a, Direction::Minimize).unwrap()) < 0.3);
        // Degenerate: all failed, constant, tiny discrete space with 8 pending.
        native::run(&mut Genetic::new(&study).unwrap(), &study, 40, 2, |_| None).unwrap();
        native::run(&mut Genetic::new(&study).unwrap(), &study, 40, 2, |_| Some(1.0)).unwrap();
        let tiny = Study::new(vec![Param::int("a", 0, 4), Param::choice("c", &["x", "y"])]);
        native::run(&mut Genetic::new(&tiny).unwrap(), &tiny, 40, 8, |_| Some(0.0)).unwrap();
    }
}
