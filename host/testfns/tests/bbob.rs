//! BBOB functions against COCO's reference implementation.
//!
//! `tests/data/bbob-coco.json` (and `bbob-coco-suite.json`: the quality suite's instances 4, 5 and
//! 101-110, optimum and two points each) is produced by `scripts/bbob-fixture.py` with cocoex 2.8.2:
//! COCO's values at 7 points per problem for f1..f24, d in {2, 5, 10, 20}, instances
//! {1, 2, 3, 15}, plus COCO's `best_value` and `best_parameter` of each problem.
//! `BBOB_COCO_FIXTURE=/path.json` runs the fixture tests on another file made by the script
//! (e.g. held-out instances and dimensions).

use alcf_testfns::bbob::{LOWER, NAMES, Problem, UPPER};

// ---------------------------------------------------------------------------------------------
// A minimal JSON reader (the crate has no dependencies).

#[derive(Debug)]
enum Json {
    Null,
    Bool,
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn get(&self, key: &str) -> &Json {
        match self {
            Json::Obj(kv) => &kv.iter().find(|(k, _)| k == key).unwrap_or_else(|| panic!("no key {key}")).1,
            _ => panic!("not an object"),
        }
    }
    fn num(&self) -> f64 {
        match self {
            Json::Num(v) => *v,
            other => panic!("not a number: {other:?}"),
        }
    }
    fn arr(&self) -> &[Json] {
        match self {
            Json::Arr(v) => v,
            _ => panic!("not an array"),
        }
    }
    fn str(&self) -> &str {
        match self {
            Json::Str(s) => s,
            _ => panic!("not a string"),
        }
    }
    fn nums(&self) -> Vec<f64> {
        self.arr().iter().map(Json::num).collect()
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) {
        self.ws();
        assert_eq!(self.s[self.i], c, "expected {:?} at {}", c as char, self.i);
        self.i += 1;
    }
    fn value(&mut self) -> Json {
        self.ws();
        match self.s[self.i] {
            b'{' => {
                self.i += 1;
                let mut kv = Vec::new();
                self.ws();
                if self.s[self.i] == b'}' {
                    self.i += 1;
                    return Json::Obj(kv);
                }
                loop {
                    self.ws();
                    let k = match self.value() {
                        Json::Str(s) => s,
                        other => panic!("object key {other:?}"),
                    };
                    self.eat(b':');
                    kv.push((k, self.value()));
                    self.ws();
                    let c = self.s[self.i];
                    self.i += 1;
                    if c == b'}' {
                        return Json::Obj(kv);
                    }
                    assert_eq!(c, b',');
                }
            }
            b'[' => {
                self.i += 1;
                let mut v = Vec::new();
                self.ws();
                if self.s[self.i] == b']' {
                    self.i += 1;
                    return Json::Arr(v);
                }
                loop {
                    v.push(self.value());
                    self.ws();
                    let c = self.s[self.i];
                    self.i += 1;
                    if c == b']' {
                        return Json::Arr(v);
                    }
                    assert_eq!(c, b',');
                }
            }
            b'"' => {
                self.i += 1;
                let start = self.i;
                while self.s[self.i] != b'"' {
                    assert_ne!(self.s[self.i], b'\\', "escapes are not used in the fixture");
                    self.i += 1;
                }
                let s = std::str::from_utf8(&self.s[start..self.i]).unwrap().to_string();
                self.i += 1;
                Json::Str(s)
            }
            b't' => {
                self.i += 4;
                Json::Bool
            }
            b'f' => {
                self.i += 5;
                Json::Bool
            }
            b'n' => {
                self.i += 4;
                Json::Null
            }
            _ => {
                let start = self.i;
                while self.i < self.s.len() && matches!(self.s[self.i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                {
                    self.i += 1;
                }
                let t = std::str::from_utf8(&self.s[start..self.i]).unwrap();
                Json::Num(t.parse().unwrap_or_else(|_| panic!("bad number {t:?}")))
            }
        }
    }
}

const DEFAULT_FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/bbob-coco.json");
/// The quality suite's tuning (4, 5) and held-out (101-110) instances: optimum and two points.
const SUITE_FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/bbob-coco-suite.json");

/// The fixtures, each with the number of problems a committed one holds (`None`: another file).
fn fixtures() -> Vec<(Json, Option<usize>)> {
    let read = |path: &str| {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        let mut p = Parser { s: text.as_bytes(), i: 0 };
        p.value()
    };
    match std::env::var("BBOB_COCO_FIXTURE") {
        Ok(path) => vec![(read(&path), None)],
        Err(_) => vec![(read(DEFAULT_FIXTURE), Some(24 * 4 * 4)), (read(SUITE_FIXTURE), Some(24 * 4 * 12))],
    }
}

fn rel_err(got: f64, want: f64) -> f64 {
    if got == want {
        return 0.0;
    }
    (got - want).abs() / want.abs().max(1e-300)
}

// ---------------------------------------------------------------------------------------------

#[test]
fn matches_coco_values() {
    let mut max_err = [0.0f64; 24];
    let mut exact = [0usize; 24];
    let mut total = [0usize; 24];
    for (doc, count) in fixtures() {
        assert_eq!(doc.get("cocoex_version").str(), "2.8.2");
        let problems = doc.get("problems").arr();
        if let Some(count) = count {
            assert_eq!(problems.len(), count);
        }
        for entry in problems {
            let f = entry.get("function").num() as u8;
            let d = entry.get("dimension").num() as usize;
            let i = entry.get("instance").num() as u32;
            let p = Problem::new(f, d, i).unwrap();
            assert_eq!(p.name(), entry.get("id").str());
            let points = entry.get("points").arr();
            let values = entry.get("values").nums();
            assert_eq!(points.len(), values.len());
            for (x, &want) in points.iter().zip(&values) {
                let x = x.nums();
                let got = p.eval(&x);
                let e = rel_err(got, want);
                assert!(e <= 1e-9, "{}: f({x:?}) = {got:?}, COCO {want:?} (rel err {e:e})", p.name());
                let k = f as usize - 1;
                max_err[k] = max_err[k].max(e);
                total[k] += 1;
                if got.to_bits() == want.to_bits() {
                    exact[k] += 1;
                }
            }
        }
    }
    for k in 0..24 {
        eprintln!("f{:<2} {:<30} max rel err {:.3e}, bit-exact {}/{}", k + 1, NAMES[k], max_err[k], exact[k], total[k]);
    }
}

/// x_opt and f_opt against COCO's best_parameter and best_value. They are bit-identical on
/// the machine that made the fixture; the assertion allows 1e-12 (relative, absolute below 1)
/// so that another libm's last-ulp differences in pow/exp/sin do not fail it.
#[test]
fn matches_coco_optimum() {
    let (mut exact, mut total) = (0usize, 0usize);
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs().max(1.0);
    let docs = fixtures();
    for entry in docs.iter().flat_map(|(doc, _)| doc.get("problems").arr()) {
        let f = entry.get("function").num() as u8;
        let d = entry.get("dimension").num() as usize;
        let i = entry.get("instance").num() as u32;
        let p = Problem::new(f, d, i).unwrap();
        let best_value = entry.get("best_value").num();
        let best = entry.get("best_parameter").nums();
        assert_eq!(best.len(), d);
        assert!(close(p.f_opt, best_value), "{}: f_opt {:?} vs COCO {best_value:?}", p.name(), p.f_opt);
        total += 1;
        let mut all_exact = p.f_opt.to_bits() == best_value.to_bits();
        for (k, (&a, &b)) in p.x_opt.iter().zip(&best).enumerate() {
            assert!(close(a, b), "{}: x_opt[{k}] {a:?} vs COCO {b:?}", p.name());
            all_exact &= a.to_bits() == b.to_bits();
        }
        exact += all_exact as usize;
    }
    eprintln!("x_opt and f_opt bit-identical to COCO for {exact}/{total} problems");
}

#[test]
fn optimum_value_and_location() {
    for f in 1..=24u8 {
        for d in [2usize, 3, 5, 10, 20, 40] {
            for i in [1u32, 2, 3, 7, 15, 42, 101, 1234] {
                let p = Problem::new(f, d, i).unwrap();
                let y = p.eval(&p.x_opt);
                // Exact, except f20 where COCO's own round trip x_opt -> f_opt is off by ulps.
                assert!(
                    y == p.f_opt || (f == 20 && (y - p.f_opt).abs() <= 1e-13 * p.f_opt.abs().max(1.0)),
                    "{}: f(x_opt) = {y:?} != f_opt = {:?}",
                    p.name(),
                    p.f_opt
                );
                let bound = if matches!(f, 5) { 5.0 } else { 4.0 };
                for &v in &p.x_opt {
                    assert!((LOWER..=UPPER).contains(&v), "{}: x_opt {:?} outside [-5, 5]", p.name(), p.x_opt);
                    assert!(v.abs() <= bound + 1e-12, "{}: x_opt {:?} outside [-{bound}, {bound}]", p.name(), p.x_opt);
                }
                assert!(p.f_opt.abs() <= 1000.0 + 1e-9);
            }
        }
    }
}

/// A small xorshift generator for the tests (no dependencies).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn point(&mut self, d: usize, lo: f64, hi: f64) -> Vec<f64> {
        (0..d).map(|_| lo + (hi - lo) * self.next()).collect()
    }
}

#[test]
fn optimum_is_global() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for f in 1..=24u8 {
        for d in [2usize, 3, 5, 10, 20] {
            for i in [1u32, 2, 3, 15, 77] {
                let p = Problem::new(f, d, i).unwrap();
                let mut points: Vec<Vec<f64>> = (0..200).map(|_| rng.point(d, -5.0, 5.0)).collect();
                // Points close to the optimum, and outside the box (penalties).
                for scale in [1e-1, 1e-3, 1e-6] {
                    for _ in 0..20 {
                        points.push(p.x_opt.iter().map(|&v| v + scale * (2.0 * rng.next() - 1.0)).collect());
                    }
                }
                points.extend((0..20).map(|_| rng.point(d, -8.0, 8.0)));
                for x in &points {
                    let y = p.eval(x);
                    // f20: f_opt is computed at the raw level, f(x) near x_opt may round
                    // a few ulps lower (as in COCO).
                    let slack = if f == 20 { 1e-13 * p.f_opt.abs().max(1.0) } else { 0.0 };
                    assert!(y >= p.f_opt - slack, "{}: f({x:?}) = {y:?} < f_opt = {:?}", p.name(), p.f_opt);
                }
            }
        }
    }
}

#[test]
fn deterministic_and_distinct_instances() {
    for f in 1..=24u8 {
        let a = Problem::new(f, 5, 3).unwrap();
        let b = Problem::new(f, 5, 3).unwrap();
        let c = Problem::new(f, 5, 4).unwrap();
        let x = [0.5, -1.25, 3.0, -4.5, 2.0];
        assert_eq!(a.eval(&x).to_bits(), b.eval(&x).to_bits());
        assert_eq!(a.eval(&x).to_bits(), a.eval(&x).to_bits());
        assert_eq!(a.x_opt, b.x_opt);
        assert_eq!(a.f_opt, b.f_opt);
        assert!(a.x_opt != c.x_opt || a.f_opt != c.f_opt || a.eval(&x) != c.eval(&x), "f{f}: instances 3 and 4 agree");
        assert_eq!(a.function_name(), NAMES[f as usize - 1]);
    }
}

#[test]
fn large_instance_numbers_work() {
    for f in 1..=24u8 {
        for i in [0u32, 1_000_000, u32::MAX] {
            let p = Problem::new(f, 4, i).unwrap();
            assert!(p.eval(&p.x_opt).is_finite(), "{}", p.name());
            assert!(p.x_opt.iter().all(|v| v.abs() <= 5.0));
        }
    }
}

#[test]
fn rejects_bad_arguments() {
    assert!(Problem::new(0, 2, 1).is_err());
    assert!(Problem::new(25, 2, 1).is_err());
    assert!(Problem::new(1, 0, 1).is_err());
    assert!(Problem::new(1, 1, 1).is_err());
    assert!(Problem::new(24, 2, 1).is_ok());
}

#[test]
fn names_and_special_inputs() {
    let p = Problem::new(7, 10, 12).unwrap();
    assert_eq!(p.name(), "bbob_f007_i12_d10");
    assert_eq!(Problem::new(24, 40, 101).unwrap().name(), "bbob_f024_i101_d40");
    let mut x = vec![0.0; 10];
    x[3] = f64::NAN;
    assert!(p.eval(&x).is_nan());
    x[3] = f64::NEG_INFINITY;
    assert_eq!(p.eval(&x), f64::INFINITY);
}
