//! A tiny JSON reader for plugin options (`study.options`), with typed getters.

use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Json>),
    Object(BTreeMap<String, Json>),
}

impl Json {
    /// Parses a complete JSON text.
    pub fn parse(text: &str) -> Result<Json, String> {
        let mut p = Parser { s: text.as_bytes(), i: 0 };
        let v = p.value(0)?;
        p.ws();
        if p.i != p.s.len() {
            return Err(p.err("trailing characters"));
        }
        Ok(v)
    }

    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(m) => m.get(key),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Number(v) => Some(*v),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn err(&self, what: &str) -> String {
        format!("invalid JSON at byte {}: {what}", self.i)
    }
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }
    fn lit(&mut self, word: &str, v: Json) -> Result<Json, String> {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(self.err("unexpected word"))
        }
    }
    fn value(&mut self, depth: usize) -> Result<Json, String> {
        if depth > 64 {
            return Err(self.err("nested too deeply"));
        }
        self.ws();
        match self.s.get(self.i) {
            None => Err(self.err("unexpected end")),
            Some(b'n') => self.lit("null", Json::Null),
            Some(b't') => self.lit("true", Json::Bool(true)),
            Some(b'f') => self.lit("false", Json::Bool(false)),
            Some(b'"') => Ok(Json::String(self.string()?)),
            Some(b'[') => {
                self.i += 1;
                let mut v = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Array(v));
                }
                loop {
                    v.push(self.value(depth + 1)?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Array(v));
                        }
                        _ => return Err(self.err("expected , or ]")),
                    }
                }
            }
            Some(b'{') => {
                self.i += 1;
                let mut m = BTreeMap::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Object(m));
                }
                loop {
                    self.ws();
                    if self.s.get(self.i) != Some(&b'"') {
                        return Err(self.err("expected a key"));
                    }
                    let k = self.string()?;
                    self.ws();
                    if self.s.get(self.i) != Some(&b':') {
                        return Err(self.err("expected :"));
                    }
                    self.i += 1;
                    let v = self.value(depth + 1)?;
                    m.insert(k, v);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Object(m));
                        }
                        _ => return Err(self.err("expected , or }")),
                    }
                }
            }
            Some(_) => self.number(),
        }
    }
    fn number(&mut self) -> Result<Json, String> {
        let start = self.i;
        while self.i < self.s.len() && matches!(self.s[self.i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
            self.i += 1;
        }
        let t = std::str::from_utf8(&self.s[start..self.i]).map_err(|_| self.err("bad number"))?;
        t.parse::<f64>().map(Json::Number).map_err(|_| self.err("bad number"))
    }
    fn string(&mut self) -> Result<String, String> {
        self.i += 1; // opening quote
        let mut out = Vec::new();
        loop {
            let c = *self.s.get(self.i).ok_or_else(|| self.err("unterminated string"))?;
            self.i += 1;
            match c {
                b'"' => return String::from_utf8(out).map_err(|_| self.err("bad UTF-8")),
                b'\\' => {
                    let e = *self.s.get(self.i).ok_or_else(|| self.err("bad escape"))?;
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let h = self.s.get(self.i..self.i + 4).ok_or_else(|| self.err("bad \\u"))?;
                            let h = std::str::from_utf8(h).map_err(|_| self.err("bad \\u"))?;
                            self.i += 4;
                            let code = u32::from_str_radix(h, 16).map_err(|_| self.err("bad \\u"))?;
                            char::from_u32(code).unwrap_or('\u{fffd}')
                        }
                        _ => return Err(self.err("bad escape")),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                c => out.push(c),
            }
        }
    }
}

/// What starts an `init` error caused by the plugin options (the user's configuration) rather than
/// by the plugin: the host then reports a configuration error and does not restart the plugin
/// (the convention is documented on `init` in wit/hpo.wit). Every [`Options`] error starts with it.
pub const OPTIONS_ERROR_PREFIX: &str = "options:";

/// Plugin options: a JSON object with typed, checked getters that fall back to defaults.
///
/// Every error is an options error (it starts with [`OPTIONS_ERROR_PREFIX`] and names the option),
/// so `?` in [`crate::Strategy::new`] reports it to the user as a configuration mistake.
#[derive(Clone, Debug, Default)]
pub struct Options {
    map: BTreeMap<String, Json>,
}

impl Options {
    /// An options error about `key`, for checks of a value's meaning the getters cannot do
    /// (`Options::invalid("gamma", "must be in (0, 1]")` -> "options: `gamma` must be in (0, 1]").
    pub fn invalid(key: &str, message: &str) -> String {
        format!("{OPTIONS_ERROR_PREFIX} `{key}` {message}")
    }

    /// Parses `study.options`; an empty string means no options. Not an object: error.
    pub fn parse(text: &str) -> Result<Options, String> {
        if text.trim().is_empty() {
            return Ok(Options::default());
        }
        match Json::parse(text).map_err(|e| format!("{OPTIONS_ERROR_PREFIX} {e}"))? {
            Json::Object(map) => Ok(Options { map }),
            Json::Null => Ok(Options::default()),
            _ => Err(format!("{OPTIONS_ERROR_PREFIX} the plugin options must be a JSON object")),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Json> {
        self.map.get(key)
    }

    /// Fails on an option name not in `known` (catches typos in configurations), naming it and
    /// listing the known ones.
    pub fn check_known(&self, known: &[&str]) -> Result<(), String> {
        for k in self.map.keys() {
            if !known.contains(&k.as_str()) {
                let known = if known.is_empty() {
                    "this plugin takes no options".to_string()
                } else {
                    format!("known: {}", known.join(", "))
                };
                return Err(format!("{OPTIONS_ERROR_PREFIX} unknown option `{k}` ({known})"));
            }
        }
        Ok(())
    }

    fn mistyped(key: &str, expected: &str, got: &Json) -> String {
        Options::invalid(key, &format!("must be {expected}, got {}", got.describe()))
    }

    pub fn f64(&self, key: &str, default: f64) -> Result<f64, String> {
        match self.map.get(key) {
            None | Some(Json::Null) => Ok(default),
            Some(Json::Number(v)) if v.is_finite() => Ok(*v),
            Some(v) => Err(Options::mistyped(key, "a number", v)),
        }
    }

    pub fn usize(&self, key: &str, default: usize) -> Result<usize, String> {
        match self.map.get(key) {
            None | Some(Json::Null) => Ok(default),
            Some(Json::Number(v)) if *v >= 0.0 && v.fract() == 0.0 && *v < 1e15 => Ok(*v as usize),
            Some(v) => Err(Options::mistyped(key, "a non-negative integer", v)),
        }
    }

    pub fn bool(&self, key: &str, default: bool) -> Result<bool, String> {
        match self.map.get(key) {
            None | Some(Json::Null) => Ok(default),
            Some(Json::Bool(b)) => Ok(*b),
            Some(v) => Err(Options::mistyped(key, "true or false", v)),
        }
    }

    pub fn string(&self, key: &str, default: &str) -> Result<String, String> {
        match self.map.get(key) {
            None | Some(Json::Null) => Ok(default.to_string()),
            Some(Json::String(s)) => Ok(s.clone()),
            Some(v) => Err(Options::mistyped(key, "a string", v)),
        }
    }
}

impl Json {
    /// A short description of a value for error messages (`the string "ucb"`, `the number 2.5`).
    fn describe(&self) -> String {
        match self {
            Json::Null => "null".into(),
            Json::Bool(b) => format!("{b}"),
            Json::Number(v) => format!("the number {v}"),
            Json::String(s) if s.len() <= 40 => format!("the string {s:?}"),
            Json::String(s) => format!("a string of {} bytes", s.len()),
            Json::Array(a) => format!("an array of {} items", a.len()),
            Json::Object(m) => format!("an object with {} keys", m.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_reads_options() {
        let o = Options::parse(r#" {"acquisition": "logei", "n_init": 12, "beta": 2.5e0, "x": [1, {"y": null}], "q": "a\"\u00e9", "b": true} "#).unwrap();
        assert_eq!(o.string("acquisition", "ucb").unwrap(), "logei");
        assert_eq!(o.usize("n_init", 3).unwrap(), 12);
        assert_eq!(o.f64("beta", 1.0).unwrap(), 2.5);
        assert_eq!(o.f64("missing", 1.0).unwrap(), 1.0);
        assert_eq!(o.string("q", "").unwrap(), "a\"é");
        assert!(o.bool("b", false).unwrap());
        assert!(o.usize("beta", 0).is_err());
        assert!(o.usize("acquisition", 0).is_err());
        assert!(o.check_known(&["acquisition"]).is_err());
        assert!(Options::parse("[1]").is_err());
        assert!(Options::parse("{\"a\": }").is_err());
        assert!(Options::parse("").is_ok());
        assert!(Options::parse("{} x").is_err());
    }

    #[test]
    fn every_error_is_an_options_error_naming_the_option() {
        let o = Options::parse(r#"{"n_init": "twelve", "beta": true, "nope": 1}"#).unwrap();
        let e = o.usize("n_init", 3).unwrap_err();
        assert_eq!(e, "options: `n_init` must be a non-negative integer, got the string \"twelve\"");
        assert_eq!(o.f64("beta", 1.0).unwrap_err(), "options: `beta` must be a number, got true");
        assert_eq!(
            o.check_known(&["n_init", "beta"]).unwrap_err(),
            "options: unknown option `nope` (known: n_init, beta)"
        );
        assert_eq!(
            Options::parse(r#"{"x": 1}"#).unwrap().check_known(&[]).unwrap_err(),
            "options: unknown option `x` (this plugin takes no options)"
        );
        for e in [Options::parse("[1]").unwrap_err(), Options::parse("{").unwrap_err()] {
            assert!(e.starts_with(OPTIONS_ERROR_PREFIX), "{e}");
        }
        assert_eq!(Options::invalid("gamma", "must be in (0, 1]"), "options: `gamma` must be in (0, 1]");
    }
}
