//! The argv and environment templates of the `local` executor (`executor.command`, `executor.env`).
//!
//! Each element of `command` becomes exactly one argument, and each value of `env` one variable:
//! values are substituted as text and never pass through a shell, so a choice label such as
//! `a; rm -rf ~` arrives as that one argument. Placeholders:
//!
//! - every search-space parameter, `{lr}`: its value as text (floats in their shortest round-trip form);
//! - `{trial_dir}`: the trial directory (absolute); `{trial_id}`; `{attempt}` (1, 2, … per re-run);
//! - `{slot}`: 0..parallel-1, stable while the trial runs (`CUDA_VISIBLE_DEVICES = "{slot}"`);
//! - `{params}`: the absolute path of params.json; `{config_dir}`: the study config's directory;
//! - `{{` and `}}` are literal braces.
//!
//! Templates are checked when the executor is built, so an unknown placeholder is a configuration
//! error that names its field (`executor.command[2]`, `executor.env.CUDA_VISIBLE_DEVICES`), never a
//! literal `{slot}` handed to a program.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::Path;

use crate::space::{Assignment, SearchSpace};

/// Where in the `[executor]` section a template is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field {
    /// `executor.command[i]`
    Command(usize),
    /// `executor.env.KEY`
    Env(String),
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Command(i) => write!(f, "executor.command[{i}]"),
            Field::Env(key) => write!(f, "executor.env.{key}"),
        }
    }
}

/// A `command` or `env` template that cannot work; each names the field and what to write instead.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LocalConfigError {
    #[error(
        "`executor.command` is empty: give the program and its arguments, \
         e.g. command = [\"python3\", \"train.py\", \"--lr\", \"{{lr}}\"]"
    )]
    EmptyCommand,
    #[error(
        "`{at}` (\"{arg}\") uses the unknown placeholder `{{{name}}}`; \
         valid placeholders are {valid} (write `{{{{` and `}}}}` for literal braces)"
    )]
    UnknownPlaceholder { at: Field, arg: String, name: String, valid: String },
    #[error("`{at}` (\"{arg}\") has a `{{` that is never closed; write `{{{{` for a literal brace")]
    UnclosedBrace { at: Field, arg: String },
    #[error("`{at}` (\"{arg}\") has a `}}` without a matching `{{`; write `}}}}` for a literal brace")]
    UnmatchedBrace { at: Field, arg: String },
    #[error(
        "`{at}` (\"{arg}\"): `{{{name}}}` is ambiguous, because `{name}` is both a search-space \
         parameter and a built-in placeholder; rename the parameter"
    )]
    Ambiguous { at: Field, arg: String, name: String },
    #[error(
        "`{at}` (\"{arg}\") uses `{{{name}}}`, a conditional parameter (set only when {when}), which a trial may lack; \
         let the program read it from params.json (`{{params}}`) instead"
    )]
    Conditional { at: Field, arg: String, name: String, when: String },
    #[error("`{at}` contains a NUL character, which no program argument or environment value can hold")]
    NulByte { at: Field },
    #[error(
        "`executor.env` has the variable name {key:?}, which cannot be an environment variable \
         (it must be non-empty and hold no `=` or NUL); rename it"
    )]
    BadEnvKey { key: String },
}

/// A trial's value is missing for a placeholder the template was checked to have.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("the trial has no value for parameter `{name}`")]
pub struct RenderError {
    pub name: String,
}

/// The built-in placeholders, in the order error messages list them.
const BUILTINS: [&str; 6] = ["trial_dir", "trial_id", "params", "attempt", "slot", "config_dir"];

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Piece {
    Lit(String),
    Param(String),
    TrialDir,
    TrialId,
    Attempt,
    Slot,
    ParamsPath,
    ConfigDir,
}

impl Piece {
    /// Known before any trial exists (literal text and `{config_dir}`).
    fn is_static(&self) -> bool {
        matches!(self, Piece::Lit(_) | Piece::ConfigDir)
    }
}

/// What the placeholders of one trial stand for.
#[derive(Clone, Copy, Debug)]
pub struct Vars<'a> {
    pub params: &'a Assignment,
    pub trial_dir: &'a Path,
    pub trial_id: u64,
    pub attempt: u32,
    pub slot: u32,
    pub params_path: &'a Path,
    pub config_dir: &'a Path,
    /// The parent trial's directory, for a trial started from another's checkpoint.
    pub parent_dir: Option<&'a Path>,
}

/// A parsed `command`: one list of pieces per argument.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    pub(crate) args: Vec<Vec<Piece>>,
}

impl Template {
    pub fn parse(command: &[String], space: &SearchSpace) -> Result<Template, LocalConfigError> {
        if command.is_empty() || command[0].is_empty() {
            return Err(LocalConfigError::EmptyCommand);
        }
        let args = command
            .iter()
            .enumerate()
            .map(|(i, arg)| parse(Field::Command(i), arg, space))
            .collect::<Result<_, _>>()?;
        Ok(Template { args })
    }

    /// The argv for one trial: exactly one argument per template element.
    pub fn render(&self, vars: &Vars) -> Result<Vec<OsString>, RenderError> {
        self.args.iter().map(|pieces| render(pieces, vars)).collect()
    }

    /// Argument `i` as far as it is known before any trial exists (`{config_dir}` substituted);
    /// `None` when it uses a per-trial placeholder or does not exist.
    pub fn render_static(&self, i: usize, config_dir: &Path) -> Option<OsString> {
        let pieces = self.args.get(i)?;
        if !pieces.iter().all(Piece::is_static) {
            return None;
        }
        let mut out = OsString::new();
        for piece in pieces {
            match piece {
                Piece::Lit(s) => out.push(s),
                _ => out.push(config_dir),
            }
        }
        Some(out)
    }

    /// Argument `i` when it is literal text only (no placeholder at all).
    pub fn literal(&self, i: usize) -> Option<&str> {
        match self.args.get(i)?.as_slice() {
            [Piece::Lit(s)] => Some(s),
            _ => None,
        }
    }

    /// Argument `i` in template syntax with `{config_dir}` substituted: what `describe` shows.
    pub fn describe_arg(&self, i: usize, config_dir: &Path) -> String {
        let Some(pieces) = self.args.get(i) else { return String::new() };
        let mut out = String::new();
        for piece in pieces {
            match piece {
                Piece::Lit(s) => out.push_str(&s.replace('{', "{{").replace('}', "}}")),
                Piece::ConfigDir => out.push_str(&config_dir.to_string_lossy()),
                Piece::Param(name) => out.push_str(&format!("{{{name}}}")),
                Piece::TrialDir => out.push_str("{trial_dir}"),
                Piece::TrialId => out.push_str("{trial_id}"),
                Piece::Attempt => out.push_str("{attempt}"),
                Piece::Slot => out.push_str("{slot}"),
                Piece::ParamsPath => out.push_str("{params}"),
            }
        }
        out
    }

    pub fn len(&self) -> usize {
        self.args.len()
    }

    pub fn is_empty(&self) -> bool {
        self.args.is_empty()
    }
}

/// A parsed `env`: one list of pieces per variable, in key order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EnvTemplate {
    vars: Vec<(String, Vec<Piece>)>,
}

impl EnvTemplate {
    pub fn parse(env: &BTreeMap<String, String>, space: &SearchSpace) -> Result<EnvTemplate, LocalConfigError> {
        let vars = env
            .iter()
            .map(|(key, value)| {
                if key.is_empty() || key.contains(['=', '\0']) {
                    return Err(LocalConfigError::BadEnvKey { key: key.clone() });
                }
                Ok((key.clone(), parse(Field::Env(key.clone()), value, space)?))
            })
            .collect::<Result<_, _>>()?;
        Ok(EnvTemplate { vars })
    }

    /// The variables for one trial.
    pub fn render(&self, vars: &Vars) -> Result<Vec<(String, OsString)>, RenderError> {
        self.vars.iter().map(|(key, pieces)| Ok((key.clone(), render(pieces, vars)?))).collect()
    }

    /// Variable `key` when it is known before any trial exists.
    pub fn render_static(&self, key: &str, config_dir: &Path) -> Option<OsString> {
        let (_, pieces) = self.vars.iter().find(|(k, _)| k == key)?;
        let template = Template { args: vec![pieces.clone()] };
        template.render_static(0, config_dir)
    }
}

fn render(pieces: &[Piece], vars: &Vars) -> Result<OsString, RenderError> {
    let mut out = OsString::new();
    for piece in pieces {
        match piece {
            Piece::Lit(s) => out.push(s),
            Piece::Param(name) => match vars.params.get(name) {
                Some(v) => out.push(v.to_string()),
                None => return Err(RenderError { name: name.clone() }),
            },
            Piece::TrialDir => out.push(vars.trial_dir),
            Piece::TrialId => out.push(vars.trial_id.to_string()),
            Piece::Attempt => out.push(vars.attempt.to_string()),
            Piece::Slot => out.push(vars.slot.to_string()),
            Piece::ParamsPath => out.push(vars.params_path),
            Piece::ConfigDir => out.push(vars.config_dir),
        }
    }
    Ok(out)
}

fn parse(at: Field, arg: &str, space: &SearchSpace) -> Result<Vec<Piece>, LocalConfigError> {
    if arg.contains('\0') {
        return Err(LocalConfigError::NulByte { at });
    }
    let mut pieces = Vec::new();
    let mut lit = String::new();
    let mut chars = arg.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                lit.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                lit.push('}');
            }
            '}' => return Err(LocalConfigError::UnmatchedBrace { at, arg: arg.into() }),
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some('{') | None => return Err(LocalConfigError::UnclosedBrace { at, arg: arg.into() }),
                        Some(c) => name.push(c),
                    }
                }
                let is_param = space.param(&name).is_some();
                let builtin = match name.as_str() {
                    "trial_dir" => Some(Piece::TrialDir),
                    "trial_id" => Some(Piece::TrialId),
                    "attempt" => Some(Piece::Attempt),
                    "slot" => Some(Piece::Slot),
                    "params" => Some(Piece::ParamsPath),
                    "config_dir" => Some(Piece::ConfigDir),
                    _ => None,
                };
                let piece = match (is_param, builtin) {
                    (true, Some(_)) => return Err(LocalConfigError::Ambiguous { at, arg: arg.into(), name }),
                    (true, None) => {
                        if let Some(c) = space.condition(&name) {
                            let when = format!("{} is {}", c.parent, c.values.join(" or "));
                            return Err(LocalConfigError::Conditional { at, arg: arg.into(), name, when });
                        }
                        Piece::Param(name)
                    }
                    (false, Some(b)) => b,
                    (false, None) => {
                        let valid =
                            space.names().chain(BUILTINS).map(|n| format!("{{{n}}}")).collect::<Vec<_>>().join(", ");
                        return Err(LocalConfigError::UnknownPlaceholder { at, arg: arg.into(), name, valid });
                    }
                };
                if !lit.is_empty() {
                    pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                }
                pieces.push(piece);
            }
            c => lit.push(c),
        }
    }
    if !lit.is_empty() || pieces.is_empty() {
        pieces.push(Piece::Lit(lit));
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::local::tests::{space, trial};

    fn vars<'a>(params: &'a Assignment, dir: &'a Path, params_path: &'a Path) -> Vars<'a> {
        Vars {
            params,
            trial_dir: dir,
            trial_id: 42,
            attempt: 3,
            slot: 1,
            params_path,
            config_dir: Path::new("/cfg"),
            parent_dir: None,
        }
    }

    fn cmd(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn template_parsing_and_rendering() {
        let s = space();
        let t = Template::parse(&cmd(&["prog", "--lr={lr}", "{{lit}}", "x}}{{", "{trial_id}-{label}"]), &s).unwrap();
        let tmp = Path::new("/tmp/t");
        let spec = trial(tmp, 42, "two words");
        let (dir, params_path) = (tmp.join("trial-42"), tmp.join("trial-42/params.json"));
        let argv = t.render(&vars(&spec.params, &dir, &params_path)).unwrap();
        assert_eq!(argv, ["prog", "--lr=0.001", "{lit}", "x}{", "42-two words"].map(OsString::from));

        assert_eq!(Template::parse(&[], &s), Err(LocalConfigError::EmptyCommand));
        let err = Template::parse(&cmd(&["prog", "--x={momentum}"]), &s).unwrap_err();
        assert!(
            matches!(&err, LocalConfigError::UnknownPlaceholder { at: Field::Command(1), name, .. } if name == "momentum")
        );
        let msg = err.to_string();
        assert!(msg.contains("`{momentum}`") && msg.contains("executor.command[1]"), "{msg}");
        assert!(msg.contains("{lr}, {epochs}, {label}, {trial_dir}, {trial_id}, {params}"), "{msg}");
        assert!(msg.contains("{attempt}, {slot}, {config_dir}"), "{msg}");
        assert!(matches!(Template::parse(&cmd(&["p", "{lr"]), &s), Err(LocalConfigError::UnclosedBrace { .. })));
        assert!(matches!(Template::parse(&cmd(&["p", "a}b"]), &s), Err(LocalConfigError::UnmatchedBrace { .. })));
        assert!(matches!(Template::parse(&cmd(&["p", "{}"]), &s), Err(LocalConfigError::UnknownPlaceholder { .. })));
        assert_eq!(Template::parse(&cmd(&["p", "a\0b"]), &s), Err(LocalConfigError::NulByte { at: Field::Command(1) }));

        let clash = SearchSpace::new(vec![crate::space::Param {
            name: "params".into(),
            domain: crate::space::Domain::Int { low: 0, high: 1, log: false },
        }])
        .unwrap();
        assert!(matches!(Template::parse(&cmd(&["p", "{params}"]), &clash), Err(LocalConfigError::Ambiguous { .. })));
    }

    #[test]
    fn attempt_slot_and_static_parts() {
        let s = space();
        let t = Template::parse(&cmd(&["{config_dir}/train", "--gpu={slot}", "a{attempt}", "{{x}}", "{params}"]), &s)
            .unwrap();
        let spec = trial(Path::new("/t"), 1, "plain");
        let (dir, params_path) = (Path::new("/t/trial-1"), Path::new("/t/trial-1/params.json"));
        let argv = t.render(&vars(&spec.params, dir, params_path)).unwrap();
        assert_eq!(argv, ["/cfg/train", "--gpu=1", "a3", "{x}", "/t/trial-1/params.json"].map(OsString::from));

        let cfg = Path::new("/abs/cfg");
        assert_eq!(t.render_static(0, cfg), Some(OsString::from("/abs/cfg/train")));
        assert_eq!(t.render_static(1, cfg), None);
        assert_eq!(t.render_static(3, cfg), Some(OsString::from("{x}")));
        assert_eq!(t.render_static(9, cfg), None);
        assert_eq!(t.literal(3), Some("{x}"));
        assert_eq!(t.literal(0), None);
        let shown: Vec<String> = (0..t.len()).map(|i| t.describe_arg(i, cfg)).collect();
        assert_eq!(shown, ["/abs/cfg/train", "--gpu={slot}", "a{attempt}", "{{x}}", "{params}"]);
    }

    #[test]
    fn env_values_are_templates() {
        let s = space();
        let env: BTreeMap<String, String> = [
            ("CUDA_VISIBLE_DEVICES", "{slot}"),
            ("ZE_AFFINITY_MASK", "{slot}"),
            ("RUN", "t{trial_id}.a{attempt}-{lr}"),
            ("LITERAL", "{{not a placeholder}}"),
            ("EMPTY", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let e = EnvTemplate::parse(&env, &s).unwrap();
        let spec = trial(Path::new("/t"), 42, "plain");
        let (dir, params_path) = (Path::new("/t/trial-42"), Path::new("/t/trial-42/params.json"));
        let rendered: BTreeMap<String, OsString> =
            e.render(&vars(&spec.params, dir, params_path)).unwrap().into_iter().collect();
        let expected: BTreeMap<String, OsString> = [
            ("CUDA_VISIBLE_DEVICES", "1"),
            ("EMPTY", ""),
            ("LITERAL", "{not a placeholder}"),
            ("RUN", "t42.a3-0.001"),
            ("ZE_AFFINITY_MASK", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), OsString::from(v)))
        .collect();
        assert_eq!(rendered, expected);
        assert_eq!(e.render_static("LITERAL", Path::new("/c")), Some(OsString::from("{not a placeholder}")));
        assert_eq!(e.render_static("RUN", Path::new("/c")), None);

        let bad = |k: &str, v: &str| EnvTemplate::parse(&[(k.to_string(), v.to_string())].into(), &s).unwrap_err();
        let err = bad("CUDA_VISIBLE_DEVICES", "{gpu}");
        assert!(matches!(&err, LocalConfigError::UnknownPlaceholder { at: Field::Env(k), name, .. }
                if k == "CUDA_VISIBLE_DEVICES" && name == "gpu"));
        let msg = err.to_string();
        assert!(msg.contains("executor.env.CUDA_VISIBLE_DEVICES") && msg.contains("`{gpu}`"), "{msg}");
        assert!(msg.contains("{slot}"), "{msg}");
        assert!(bad("X", "{slot").to_string().contains("executor.env.X"));
        assert!(bad("X", "}").to_string().contains("executor.env.X"));
        assert_eq!(bad("A=B", "1"), LocalConfigError::BadEnvKey { key: "A=B".into() });
        assert_eq!(bad("", "1"), LocalConfigError::BadEnvKey { key: "".into() });
        assert_eq!(bad("X", "a\0"), LocalConfigError::NulByte { at: Field::Env("X".into()) });
    }
}
