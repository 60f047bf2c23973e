//! The PBS job script of one trial, rendered from a template the user can edit.
//!
//! A template is a shell script with `{{name}}` placeholders (spaces inside the braces allowed).
//! Two kinds:
//!
//! - **Directive values** (`job_name`, `account`, `queue`, `select`, `walltime`, `filesystems`,
//!   `place`): checked values made only of plain characters ([`PbsConfig::validate`], the job-name
//!   check here), so they are safe on a `#PBS` line and in the shell alike.
//! - **Shell values** (`trial_dir`, `command`, `env`, `affinity`, `cpus`, `setup`, `trial_id`,
//!   `attempt`, `slot`): single-quoted by [`quote`](super::quote::quote) — except `setup`, the
//!   user's own shell lines. They may not appear in the directive header (the lines before the
//!   first command, which qsub scans for `#PBS`): a value with a newline there could add a
//!   directive.
//!
//! Rendering is one pass over the parsed template, so a value that contains `{{command}}` stays
//! that text. `{{` not followed by a name and `}}` is literal text; `{{` followed by a name that is
//! never closed, or by an unknown name, is an error, so a typo never reaches qsub.
//!
//! Checked when the template is parsed (before any study exists): no `-V` directive (it would copy
//! the login node's environment into the job, alcf.md "Aurora PBS": "Avoid #PBS -V"), and `-A`,
//! `walltime=` and `filesystems=` present (ALCF's submit hook refuses jobs without them, alcf.md
//! "PBS Pro details": "Account_Name is required", "filesystems is required").

use std::ffi::OsString;
use std::fmt;

use super::quote::{QuoteError, is_shell_identifier, quote};
use super::{PbsConfig, PbsConfigError};
use crate::executor::TrialSpec;

/// The shipped template, for Aurora (also the file the lead will put under `config/aurora/`).
pub const DEFAULT_TEMPLATE: &str = include_str!("../../../../config/aurora/trial-job.sh.tmpl");

/// PBS's limit on `Job_Name` (PBS Pro: up to 236 characters).
pub const MAX_JOB_NAME: usize = 236;

/// The placeholders of a job template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placeholder {
    JobName,
    Account,
    Queue,
    Select,
    Walltime,
    Filesystems,
    Place,
    TrialDir,
    TrialId,
    Attempt,
    Slot,
    Command,
    Env,
    Setup,
    Affinity,
    Cpus,
}

impl Placeholder {
    /// Every placeholder, in the order error messages list them.
    pub const ALL: [Placeholder; 16] = [
        Placeholder::JobName,
        Placeholder::Account,
        Placeholder::Queue,
        Placeholder::Select,
        Placeholder::Walltime,
        Placeholder::Filesystems,
        Placeholder::Place,
        Placeholder::TrialDir,
        Placeholder::TrialId,
        Placeholder::Attempt,
        Placeholder::Slot,
        Placeholder::Command,
        Placeholder::Env,
        Placeholder::Setup,
        Placeholder::Affinity,
        Placeholder::Cpus,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Placeholder::JobName => "job_name",
            Placeholder::Account => "account",
            Placeholder::Queue => "queue",
            Placeholder::Select => "select",
            Placeholder::Walltime => "walltime",
            Placeholder::Filesystems => "filesystems",
            Placeholder::Place => "place",
            Placeholder::TrialDir => "trial_dir",
            Placeholder::TrialId => "trial_id",
            Placeholder::Attempt => "attempt",
            Placeholder::Slot => "slot",
            Placeholder::Command => "command",
            Placeholder::Env => "env",
            Placeholder::Setup => "setup",
            Placeholder::Affinity => "affinity",
            Placeholder::Cpus => "cpus",
        }
    }

    fn from_name(name: &str) -> Option<Placeholder> {
        Placeholder::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Whether its value is checked to plain characters and may go on a `#PBS` line.
    pub fn is_directive_value(self) -> bool {
        matches!(
            self,
            Placeholder::JobName
                | Placeholder::Account
                | Placeholder::Queue
                | Placeholder::Select
                | Placeholder::Walltime
                | Placeholder::Filesystems
                | Placeholder::Place
        )
    }
}

impl fmt::Display for Placeholder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{{{}}}}}", self.name())
    }
}

/// A job template that cannot work. `line` is 1-based.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("job template line {line}: unknown placeholder `{{{{{name}}}}}`; valid placeholders are {valid}")]
    UnknownPlaceholder { line: usize, name: String, valid: String },
    #[error("job template line {line}: `{{{{{name}` is never closed with `}}}}`")]
    Unclosed { line: usize, name: String },
    #[error(
        "job template line {line}: {placeholder} cannot be used before the script's first command \
         (qsub reads `#PBS` lines there, and this value is not checked for them); move it below"
    )]
    InHeader { line: usize, placeholder: Placeholder },
    #[error(
        "job template line {line}: `#PBS -V` would copy the login node's environment into the job; \
         remove it and set what the trial needs in `setup` or `env`"
    )]
    ExportsEnvironment { line: usize },
    #[error("the job template has no `#PBS {directive}` line; ALCF refuses jobs without it (e.g. `#PBS {example}`)")]
    Missing { directive: &'static str, example: &'static str },
    #[error(
        "the job template uses {{{{cpus}}}}, but `executor.cpu_lists` is empty: give one CPU list \
         per slot, or remove the CPU binding from the template"
    )]
    NoCpuLists,
    #[error("the job template contains a NUL character")]
    Nul,
}

/// Why one trial's script could not be rendered; the trial cannot be submitted as it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    #[error(
        "the job name {name:?} is not one PBS accepts: 1 to {MAX_JOB_NAME} letters, digits, `_`, \
         `-`, `.` or `+`, not starting with `.`"
    )]
    BadJobName { name: String },
    #[error(transparent)]
    Quote(#[from] QuoteError),
    #[error("{what} is not valid UTF-8, which a job script cannot carry")]
    NotUtf8 { what: String },
    #[error("the environment variable name {name:?} cannot be exported by a shell; rename it")]
    BadEnvName { name: String },
    #[error("the trial's command is empty")]
    EmptyCommand,
}

#[derive(Clone, Debug, PartialEq)]
enum Piece {
    Lit(String),
    Var(Placeholder),
}

/// A parsed job template.
#[derive(Clone, Debug, PartialEq)]
pub struct JobTemplate {
    pieces: Vec<Piece>,
}

impl JobTemplate {
    /// Parses and checks a template (see the module documentation for what is checked).
    pub fn parse(text: &str) -> Result<JobTemplate, TemplateError> {
        if text.contains('\0') {
            return Err(TemplateError::Nul);
        }
        let mut pieces = Vec::new();
        let mut in_header = true;
        let mut saw = Directives::default();
        for (i, line) in text.split_inclusive('\n').enumerate() {
            let line_no = i + 1;
            let trimmed = line.trim_start();
            // qsub stops reading directives at the first line that is neither blank nor a comment.
            if in_header && !trimmed.trim_end().is_empty() && !trimmed.starts_with('#') {
                in_header = false;
            }
            if in_header && let Some(rest) = line.strip_prefix("#PBS") {
                saw.scan(rest, line_no)?;
            }
            for piece in parse_line(line, line_no)? {
                if let Piece::Var(p) = piece
                    && in_header
                    && !p.is_directive_value()
                {
                    return Err(TemplateError::InHeader { line: line_no, placeholder: p });
                }
                match (&piece, pieces.last_mut()) {
                    (Piece::Lit(s), Some(Piece::Lit(prev))) => prev.push_str(s),
                    _ => pieces.push(piece),
                }
            }
        }
        saw.check()?;
        Ok(JobTemplate { pieces })
    }

    /// Whether the template uses this placeholder.
    pub fn uses(&self, p: Placeholder) -> bool {
        self.pieces.contains(&Piece::Var(p))
    }
}

/// Which mandatory directives the header has.
#[derive(Default)]
struct Directives {
    account: bool,
    walltime: bool,
    filesystems: bool,
}

impl Directives {
    /// One `#PBS` line's options (what follows `#PBS`).
    fn scan(&mut self, options: &str, line: usize) -> Result<(), TemplateError> {
        for word in options.split_whitespace() {
            if word.starts_with("-A") {
                self.account = true;
            }
            self.walltime |= word.contains("walltime=");
            self.filesystems |= word.contains("filesystems=");
            // getopt lets options without an argument run together (`-hV`); the first letter that
            // takes an argument ends the cluster. qsub's options without one: f G h I n V X z.
            if let Some(cluster) = word.strip_prefix('-').filter(|w| !w.starts_with('-')) {
                for c in cluster.chars() {
                    match c {
                        'V' => return Err(TemplateError::ExportsEnvironment { line }),
                        'f' | 'G' | 'h' | 'I' | 'n' | 'X' | 'z' => continue,
                        _ => break,
                    }
                }
            }
        }
        Ok(())
    }

    fn check(&self) -> Result<(), TemplateError> {
        let missing = |directive, example| Err(TemplateError::Missing { directive, example });
        if !self.account {
            return missing("-A", "-A {{account}}");
        }
        if !self.walltime {
            return missing("-l walltime=", "-l walltime={{walltime}}");
        }
        if !self.filesystems {
            return missing("-l filesystems=", "-l filesystems={{filesystems}}");
        }
        Ok(())
    }
}

fn parse_line(line: &str, line_no: usize) -> Result<Vec<Piece>, TemplateError> {
    let mut pieces = Vec::new();
    let mut lit = String::new();
    let mut rest = line;
    while let Some(at) = rest.find("{{") {
        lit.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let inner = after.trim_start_matches(' ');
        let name_len = inner.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(inner.len());
        if name_len == 0 || !inner.starts_with(|c: char| c.is_ascii_alphabetic()) {
            // Not a placeholder (`{{{`, `{{ }}`, `{{$x`): literal text.
            lit.push_str("{{");
            rest = after;
            continue;
        }
        let name = &inner[..name_len];
        let Some(tail) = inner[name_len..].trim_start_matches(' ').strip_prefix("}}") else {
            return Err(TemplateError::Unclosed { line: line_no, name: name.into() });
        };
        let Some(p) = Placeholder::from_name(name) else {
            let valid = Placeholder::ALL.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ");
            return Err(TemplateError::UnknownPlaceholder { line: line_no, name: name.into(), valid });
        };
        if !lit.is_empty() {
            pieces.push(Piece::Lit(std::mem::take(&mut lit)));
        }
        pieces.push(Piece::Var(p));
        rest = tail;
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        pieces.push(Piece::Lit(lit));
    }
    Ok(pieces)
}

/// Why [`JobScript::new`] refused a configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JobScriptError {
    #[error(transparent)]
    Config(#[from] PbsConfigError),
    #[error(transparent)]
    Template(#[from] TemplateError),
}

/// A checked configuration and template: renders one script per trial.
#[derive(Clone, Debug)]
pub struct JobScript {
    config: PbsConfig,
    template: JobTemplate,
}

impl JobScript {
    /// Checks the configuration and the template text (the default one or the user's file, which
    /// the caller reads) together.
    pub fn new(config: PbsConfig, template: &str) -> Result<JobScript, JobScriptError> {
        config.validate()?;
        let template = JobTemplate::parse(template)?;
        if template.uses(Placeholder::Cpus) && config.cpu_lists.is_empty() {
            return Err(TemplateError::NoCpuLists.into());
        }
        Ok(JobScript { config, template })
    }

    pub fn config(&self) -> &PbsConfig {
        &self.config
    }

    /// The script of one trial.
    ///
    /// - `remote_dir`: the trial's directory on the PBS machine (the job `cd`s there);
    /// - `argv`: the trial's command, rendered by [`argv::Template`](crate::executor::argv::Template)
    ///   with remote paths; each argument is quoted separately, so it arrives as one argument;
    /// - `env`: extra variables (the local executor's rendered `env`), exported before the command.
    pub fn render(
        &self,
        trial: &TrialSpec,
        remote_dir: &str,
        argv: &[OsString],
        env: &[(String, OsString)],
    ) -> Result<String, ScriptError> {
        check_job_name(&trial.job_name)?;
        let device = trial.slot % self.config.slots_per_node;
        let mut out = String::new();
        for piece in &self.template.pieces {
            match piece {
                Piece::Lit(s) => out.push_str(s),
                Piece::Var(p) => out.push_str(&self.value(*p, trial, device, remote_dir, argv, env)?),
            }
        }
        Ok(out)
    }

    fn value(
        &self,
        p: Placeholder,
        trial: &TrialSpec,
        device: u32,
        remote_dir: &str,
        argv: &[OsString],
        env: &[(String, OsString)],
    ) -> Result<String, ScriptError> {
        let c = &self.config;
        Ok(match p {
            // Checked values: bare.
            Placeholder::JobName => trial.job_name.clone(),
            Placeholder::Account => c.account.clone(),
            Placeholder::Queue => c.queue.clone(),
            Placeholder::Select => c.select.clone(),
            Placeholder::Walltime => c.walltime.clone(),
            Placeholder::Filesystems => c.filesystems.clone(),
            Placeholder::Place => c.place.clone(),
            Placeholder::TrialId => trial.id.to_string(),
            Placeholder::Attempt => trial.attempt.to_string(),
            Placeholder::Slot => trial.slot.to_string(),
            Placeholder::TrialDir => quote(remote_dir, "the remote trial directory")?,
            Placeholder::Command => {
                if argv.is_empty() {
                    return Err(ScriptError::EmptyCommand);
                }
                let words = argv
                    .iter()
                    .enumerate()
                    .map(|(i, arg)| {
                        let what = format!("argument {i} of the command");
                        quote(utf8(arg, &what)?, &what).map_err(ScriptError::from)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                words.join(" ")
            }
            Placeholder::Env => {
                let mut lines = Vec::with_capacity(env.len());
                for (name, value) in env {
                    if !is_shell_identifier(name) {
                        return Err(ScriptError::BadEnvName { name: name.clone() });
                    }
                    let what = format!("the value of {name}");
                    lines.push(format!("export {name}={}", quote(utf8(value, &what)?, &what)?));
                }
                lines.join("\n")
            }
            Placeholder::Setup => c.setup.join("\n"),
            Placeholder::Affinity if c.affinity_var.is_empty() => String::new(),
            Placeholder::Affinity => format!("export {}={device}", c.affinity_var),
            // `JobScript::new` refused a template with `{{cpus}}` and no lists; `get` keeps a
            // broken invariant from panicking.
            Placeholder::Cpus => c.cpu_lists.get(device as usize).cloned().unwrap_or_default(),
        })
    }
}

fn utf8<'a>(value: &'a OsString, what: &str) -> Result<&'a str, ScriptError> {
    value.to_str().ok_or_else(|| ScriptError::NotUtf8 { what: what.into() })
}

/// What PBS accepts as `-N`: 1..=236 printable characters without whitespace; kept here to the
/// characters [`job_name`](crate::executor::job_name) produces plus `+`, none of which a `#PBS` line
/// or a shell interprets. A leading `.` (what `job_name` makes of an empty study name) is refused.
pub fn check_job_name(name: &str) -> Result<(), ScriptError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_JOB_NAME
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+'));
    if ok { Ok(()) } else { Err(ScriptError::BadJobName { name: name.into() }) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::argv::{EnvTemplate, Template, Vars};
    use crate::executor::job_name;
    use crate::executor::protocol::{STDERR_FILE, STDOUT_FILE};
    use crate::space::{Choice, Domain, Param, SearchSpace, Value};
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::process::Command;

    const HOSTILE: &str =
        "$(touch pwned) `touch pwned2` 'single' \"double\" ; & | > < \\ \n#PBS -V\n{{command}} ünï ✓ * ~ $HOME";

    fn config() -> PbsConfig {
        PbsConfig { account: "MyProject".into(), ..PbsConfig::default() }
    }

    fn space() -> SearchSpace {
        SearchSpace::new(vec![
            Param { name: "lr".into(), domain: Domain::Float { low: 1e-6, high: 1.0, log: true } },
            Param {
                name: "label".into(),
                domain: Domain::Choice(vec![
                    Choice::from_json(HOSTILE.into()).unwrap(),
                    Choice::from_json("plain".into()).unwrap(),
                ]),
            },
        ])
        .unwrap()
    }

    fn trial(label: &str, slot: u32) -> TrialSpec {
        let s = space();
        let params =
            s.validate(&[("lr".into(), Value::Float(0.001)), ("label".into(), Value::Choice(label.into()))]).unwrap();
        TrialSpec {
            id: 7,
            attempt: 2,
            params_json: params.to_json(&s),
            params,
            dir: "/local/trial-7".into(),
            job_name: job_name("my study", 7, 2),
            slot,
            parent: None,
        }
    }

    /// The argv of a trial as the pbs executor will make it: the local executor's template with
    /// the remote trial directory.
    fn argv(spec: &TrialSpec, command: &[&str], remote_dir: &Path) -> Vec<OsString> {
        let t = Template::parse(&command.iter().map(|s| s.to_string()).collect::<Vec<_>>(), &space()).unwrap();
        let params_path = remote_dir.join("params.json");
        t.render(&Vars {
            params: &spec.params,
            trial_dir: remote_dir,
            trial_id: spec.id,
            attempt: spec.attempt,
            slot: spec.slot,
            params_path: &params_path,
            config_dir: Path::new("/cfg"),
            parent_dir: None,
        })
        .unwrap()
    }

    fn write_exe(path: &Path, text: &str) {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn the_default_template_is_checked_and_aurora_shaped() {
        let t = JobTemplate::parse(DEFAULT_TEMPLATE).unwrap();
        for p in
            [Placeholder::JobName, Placeholder::Account, Placeholder::Command, Placeholder::TrialDir, Placeholder::Cpus]
        {
            assert!(t.uses(p), "{p}");
        }
        let script = JobScript::new(config(), DEFAULT_TEMPLATE).unwrap();
        let spec = trial("plain", 3);
        let text = script
            .render(
                &spec,
                "/lus/flare/projects/P/s/trial-7",
                &argv(&spec, &["python3", "train.py"], Path::new("/r")),
                &[],
            )
            .unwrap();
        // alcf.md "Aurora PBS": -A, -q, select, walltime, filesystems=home:flare, place=scatter, -k doe.
        for line in [
            "#PBS -N my_study.t7.a2\n",
            "#PBS -A MyProject\n",
            "#PBS -q debug\n",
            "#PBS -l select=1\n",
            "#PBS -l walltime=01:00:00\n",
            "#PBS -l filesystems=home:flare\n",
            "#PBS -l place=scatter\n",
            "#PBS -k doe\n",
            "\nmodule load frameworks\n",
            "\ncd /lus/flare/projects/P/s/trial-7 || exit 75\n",
            // alcf.md "Running 12 trials": flat index, PCI order, the slot's CPU list.
            "\nexport ZE_ENABLE_PCI_ID_DEVICE_ORDER=1\nexport ZE_AFFINITY_MASK=3\n",
            "\nexec taskset -c 25-32 python3 train.py\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from\n{text}");
        }
        assert!(text.contains(&format!("exec >{STDOUT_FILE} 2>{STDERR_FILE}\n")), "{text}");
        assert!(!text.lines().any(|l| l.starts_with("#PBS") && l.contains("-V")), "{text}");
        assert!(!text.contains("{{"), "{text}");
        // Slot 15 of a 12-slot node is device 3 again.
        let text = script.render(&trial("plain", 15), "/d", &[OsString::from("p")], &[]).unwrap();
        assert!(text.contains("ZE_AFFINITY_MASK=3\n") && text.contains("taskset -c 25-32 p\n"), "{text}");
    }

    /// The test the brief asks for: a script rendered from the default template, run by `/bin/sh`
    /// with stand-ins for `module` and `taskset`, hands the trial program exactly the argv and
    /// environment the host rendered, byte for byte.
    #[test]
    fn hostile_values_arrive_intact_through_sh() {
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        // A trial directory whose name itself needs quoting.
        let dir = tmp.path().join("trial dir $(x) 'q'");
        std::fs::create_dir(&dir).unwrap();
        write_exe(&bin.join("module"), "#!/bin/sh\nprintf '%s\\n' \"$*\" > \"$MODULE_LOG\"\n");
        write_exe(&bin.join("taskset"), "#!/bin/sh\nprintf '%s\\n' \"$2\" > \"$TASKSET_LOG\"\nshift 2\nexec \"$@\"\n");
        // The trial program: its argv, NUL-separated, and two variables, into files in its cwd.
        write_exe(
            &bin.join("record"),
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\0' \"$a\"; done > argv.bin\n\
             printf '%s\\0' \"$LABEL\" \"$ZE_AFFINITY_MASK\" \"$SETUP_RAN\" > env.bin\necho out\necho err >&2\n",
        );

        let spec = trial(HOSTILE, 5);
        let command =
            ["record", "--label={label}", "{label}", "--dir", "{trial_dir}", "{{literal}}", "", "--lr", "{lr}"];
        let args = argv(&spec, &command, &dir);
        let env_t =
            EnvTemplate::parse(&BTreeMap::from([("LABEL".to_string(), "<{label}>".to_string())]), &space()).unwrap();
        let params_path = dir.join("params.json");
        let env = env_t
            .render(&Vars {
                params: &spec.params,
                trial_dir: &dir,
                trial_id: 7,
                attempt: 2,
                slot: 5,
                params_path: &params_path,
                config_dir: Path::new("/cfg"),
                parent_dir: None,
            })
            .unwrap();
        let cfg = PbsConfig { setup: vec!["SETUP_RAN=yes; export SETUP_RAN".into()], ..config() };
        let script = JobScript::new(cfg, DEFAULT_TEMPLATE).unwrap();
        let text = script.render(&spec, dir.to_str().unwrap(), &args, &env).unwrap();
        let script_path = tmp.path().join("job.sh");
        std::fs::write(&script_path, &text).unwrap();

        let out = Command::new("/bin/sh")
            .arg(&script_path)
            .current_dir(tmp.path())
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .env("HOME", tmp.path().join("no-such-home"))
            .env("MODULE_LOG", tmp.path().join("module.log"))
            .env("TASKSET_LOG", tmp.path().join("taskset.log"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}\n{text}");

        let want: Vec<Vec<u8>> = args.iter().skip(1).map(|a| a.as_encoded_bytes().to_vec()).collect();
        assert!(want.iter().any(|a| a == HOSTILE.as_bytes()), "the hostile label is an argument of its own");
        let got = std::fs::read(dir.join("argv.bin")).unwrap();
        let mut got: Vec<Vec<u8>> = got.split(|b| *b == 0).map(<[u8]>::to_vec).collect();
        assert_eq!(got.pop(), Some(vec![]));
        assert_eq!(got, want, "\n{text}");
        let env_got = std::fs::read(dir.join("env.bin")).unwrap();
        assert_eq!(env_got, [format!("<{HOSTILE}>").as_bytes(), b"\0", b"5\0", b"yes\0"].concat());
        assert_eq!(std::fs::read_to_string(tmp.path().join("module.log")).unwrap(), "load frameworks\n");
        // Slot 5: device 5 and the sixth CPU list.
        assert_eq!(std::fs::read_to_string(tmp.path().join("taskset.log")).unwrap(), "41-48\n");
        // The program's output went to the protocol's log files in the trial directory.
        assert_eq!(std::fs::read_to_string(dir.join(STDOUT_FILE)).unwrap(), "out\n");
        assert_eq!(std::fs::read_to_string(dir.join(STDERR_FILE)).unwrap(), "err\n");
        // Nothing the values spelled ran or was read as a directive.
        for pwned in [dir.join("pwned"), dir.join("pwned2"), tmp.path().join("pwned"), tmp.path().join("pwned2")] {
            assert!(!pwned.exists(), "{}", pwned.display());
        }
        let header: Vec<&str> = text.lines().take_while(|l| l.is_empty() || l.starts_with('#')).collect();
        assert!(header.iter().all(|l| !l.starts_with("#PBS") || !l.contains("-V")), "{header:?}");
        assert!(text.contains("\n#PBS -V\n"), "the value's line does reach the script, quoted, after the header");
    }

    #[test]
    fn a_missing_trial_directory_exits_75() {
        let tmp = tempfile::tempdir().unwrap();
        let script = JobScript::new(config(), DEFAULT_TEMPLATE).unwrap();
        let text = script
            .render(&trial("plain", 0), tmp.path().join("gone").to_str().unwrap(), &[OsString::from("true")], &[])
            .unwrap();
        let out = Command::new("/bin/sh").arg("-c").arg(&text).current_dir(tmp.path()).output().unwrap();
        assert_eq!(out.status.code(), Some(75), "{out:?}");
    }

    fn header(extra: &str) -> String {
        format!(
            "#!/bin/sh\n#PBS -A {{{{account}}}}\n#PBS -l walltime={{{{walltime}}}}\n#PBS -l filesystems=home\n{extra}"
        )
    }

    #[test]
    fn templates_pbs_or_the_shell_would_misread_are_refused() {
        let err = |text: &str| JobTemplate::parse(text).unwrap_err();
        assert!(JobTemplate::parse(&header("run {{ command }}\n")).unwrap().uses(Placeholder::Command));
        assert!(
            matches!(err(&header("{{commnd}}\n")), TemplateError::UnknownPlaceholder { line: 5, ref name, .. } if name == "commnd")
        );
        assert!(err(&header("{{commnd}}\n")).to_string().contains("{{command}}, {{env}}"));
        assert_eq!(err(&header("x {{walltime}\n")), TemplateError::Unclosed { line: 5, name: "walltime".into() });
        // A shell value in the header could smuggle a directive in.
        assert_eq!(
            err("#!/bin/sh\n#PBS -A a\n# {{command}}\n"),
            TemplateError::InHeader { line: 3, placeholder: Placeholder::Command }
        );
        assert_eq!(err(&format!("#PBS -V\n{}", header(""))), TemplateError::ExportsEnvironment { line: 1 });
        assert_eq!(err(&header("#PBS -hV\n")), TemplateError::ExportsEnvironment { line: 5 });
        // `-v LIST` passes named variables and is fine; `-N V` is a name; a `-V` after the first
        // command is no directive at all.
        assert!(JobTemplate::parse(&header("#PBS -v A=1\n#PBS -N V\necho\n#PBS -V\n")).is_ok());
        assert_eq!(
            err("#PBS -l walltime=1:00:00\n#PBS -l filesystems=home\n"),
            TemplateError::Missing { directive: "-A", example: "-A {{account}}" }
        );
        assert!(matches!(
            err("#PBS -A a\n#PBS -l filesystems=home\n"),
            TemplateError::Missing { directive: "-l walltime=", .. }
        ));
        assert!(matches!(
            err("#PBS -A a -l walltime=1:00:00\n"),
            TemplateError::Missing { directive: "-l filesystems=", .. }
        ));
        // Directives after the first command are not read by qsub, so they do not count.
        assert!(matches!(err("#PBS -A a\necho\n#PBS -l walltime=1 -l filesystems=h\n"), TemplateError::Missing { .. }));
        assert_eq!(err(&header("a\0")), TemplateError::Nul);
        // Braces that are no placeholder stay literal text.
        let t = JobTemplate::parse(&header("echo {{{ }} {{$x} {{}}\n")).unwrap();
        let out = JobScript { config: config(), template: t }
            .render(&trial("plain", 0), "/d", &[OsString::from("p")], &[])
            .unwrap();
        assert!(out.ends_with("echo {{{ }} {{$x} {{}}\n"), "{out}");

        let no_cpus = PbsConfig { cpu_lists: vec![], ..config() };
        assert_eq!(
            JobScript::new(no_cpus.clone(), DEFAULT_TEMPLATE).unwrap_err(),
            JobScriptError::Template(TemplateError::NoCpuLists)
        );
        assert!(JobScript::new(no_cpus, &header("exec {{command}}\n")).is_ok());
        assert_eq!(
            JobScript::new(PbsConfig::default(), DEFAULT_TEMPLATE).unwrap_err(),
            JobScriptError::Config(PbsConfigError::NoAccount)
        );
    }

    #[test]
    fn what_one_trial_cannot_render() {
        let script = JobScript::new(config(), &header("cd {{trial_dir}}\n{{env}}\nexec {{command}}\n")).unwrap();
        let p = [OsString::from("p")];
        let mut spec = trial("plain", 0);
        assert_eq!(script.render(&spec, "/d", &[], &[]), Err(ScriptError::EmptyCommand));
        assert!(matches!(script.render(&spec, "/d", &[OsString::from("a\0b")], &[]), Err(ScriptError::Quote(_))));
        assert!(matches!(script.render(&spec, "/d\0", &p, &[]), Err(ScriptError::Quote(_))));
        let bad_env = [("A-B".to_string(), OsString::from("1"))];
        assert_eq!(script.render(&spec, "/d", &p, &bad_env), Err(ScriptError::BadEnvName { name: "A-B".into() }));
        {
            use std::os::unix::ffi::OsStringExt;
            let not_utf8 = OsString::from_vec(vec![b'a', 0xff]);
            assert!(matches!(script.render(&spec, "/d", &[not_utf8], &[]), Err(ScriptError::NotUtf8 { .. })));
        }
        // `job_name` of an empty study starts with `.`; a name past PBS's limit; a space.
        for name in [job_name("", 1, 1), "a".repeat(MAX_JOB_NAME + 1), "a b".into(), String::new()] {
            spec.job_name = name.clone();
            assert_eq!(script.render(&spec, "/d", &p, &[]), Err(ScriptError::BadJobName { name }));
        }
        spec.job_name = "a".repeat(MAX_JOB_NAME);
        assert!(script.render(&spec, "/d", &p, &[]).is_ok());
        spec.job_name = job_name(&"ß".repeat(100), u64::MAX, u32::MAX);
        assert!(script.render(&spec, "/d", &p, &[]).is_ok(), "job_name always yields a PBS name for a non-empty study");
    }
}
