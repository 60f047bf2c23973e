//! POSIX shell quoting for the job script, and the character sets of values that need none.
//!
//! A job script is shell code, and every value that reaches it from a trial (a parameter label such
//! as `$(rm -rf ~)`) or from a configuration (a remote path) must arrive as data. Single quotes are
//! the one quoting form in which the shell interprets nothing at all — no `$`, backtick, `\` or
//! newline — so a value is wrapped in `'…'`, and each `'` inside it becomes `'\''` (close the
//! quote, an escaped quote, reopen). That is exact for every byte except NUL, which no shell
//! word and no program argument can hold, so NUL is refused instead of silently cut.

/// A value that cannot be written into a shell script.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what} contains a NUL character, which no shell word or program argument can hold")]
pub struct QuoteError {
    /// What the value was, for the message (`"argument 2 of the command"`, `"trial_dir"`).
    pub what: String,
}

/// `value` as one shell word that the shell turns back into exactly `value`.
///
/// Values made only of [`is_shell_safe`] characters are left bare (`--lr=0.001` reads better in a
/// script a person inspects than `'--lr=0.001'`); everything else is single-quoted.
pub fn quote(value: &str, what: &str) -> Result<String, QuoteError> {
    if value.contains('\0') {
        return Err(QuoteError { what: what.into() });
    }
    if !value.is_empty() && value.chars().all(is_shell_safe) {
        return Ok(value.to_string());
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    Ok(out)
}

/// Characters the shell never interprets in an unquoted word anywhere in it: ASCII letters and
/// digits and `_ - . / : + , @ %`. Deliberately narrow: no `~` (expands at a word's start), no
/// `#` (starts a comment at a word's start), no glob or brace characters (`* ? [ {`), and no `=`
/// (a first word `A=b` would be a variable assignment, not the program's name).
pub fn is_shell_safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ':' | '+' | ',' | '@' | '%')
}

/// Whether `name` can be a shell variable (`export NAME=…`): a letter or `_`, then letters,
/// digits and `_`.
pub fn is_shell_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// What `/bin/sh` makes of `printf '%s\0' <word>`: the bytes of each argument it received. It
    /// runs in `cwd`, so a quoting bug that executes a value touches nothing outside it.
    fn sh_words(script_words: &str, cwd: &std::path::Path) -> Vec<Vec<u8>> {
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("printf '%s\\0' {script_words}"))
            .current_dir(cwd)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let mut words: Vec<Vec<u8>> = out.stdout.split(|b| *b == 0).map(<[u8]>::to_vec).collect();
        assert_eq!(words.pop(), Some(Vec::new()), "output ends in NUL");
        words
    }

    #[test]
    fn quoted_words_reach_the_shell_intact() {
        let hostile = [
            "plain",
            "",
            "two words",
            "it's",
            "'",
            "''''",
            "\"double\"",
            "$(touch pwned)",
            "`id`",
            "${HOME}",
            "$HOME",
            "a; rm -rf ~",
            "~",
            "#comment",
            "line1\nline2\n",
            "tab\there",
            "back\\slash\\",
            "*",
            "[a-z]?",
            "{a,b}",
            "ünïcødé ✓ 日本",
            "\r\u{7f}\u{1b}[31m",
            "--lr=0.001",
            "-n",
        ];
        let words: Vec<String> = hostile.iter().map(|v| quote(v, "test").unwrap()).collect();
        let tmp = tempfile::tempdir().unwrap();
        let got = sh_words(&words.join(" "), tmp.path());
        let want: Vec<Vec<u8>> = hostile.iter().map(|v| v.as_bytes().to_vec()).collect();
        assert_eq!(got, want);
        assert!(!tmp.path().join("pwned").exists(), "a value was executed");
    }

    #[test]
    fn safe_words_stay_bare_and_the_rest_is_quoted() {
        assert_eq!(quote("--lr", "x").unwrap(), "--lr");
        assert_eq!(quote("0.001", "x").unwrap(), "0.001");
        assert_eq!(quote("A=b", "x").unwrap(), "'A=b'");
        assert_eq!(quote("/lus/flare/projects/p/t-1", "x").unwrap(), "/lus/flare/projects/p/t-1");
        assert_eq!(quote("", "x").unwrap(), "''");
        assert_eq!(quote("it's", "x").unwrap(), "'it'\\''s'");
        assert_eq!(quote("~", "x").unwrap(), "'~'");
        assert_eq!(
            quote("a\0b", "argument 1").unwrap_err().to_string(),
            "argument 1 contains a NUL character, which no shell word or program argument can hold"
        );
    }

    #[test]
    fn shell_identifiers() {
        for ok in ["A", "_", "ZE_AFFINITY_MASK", "x1"] {
            assert!(is_shell_identifier(ok), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "A=B", "Ä"] {
            assert!(!is_shell_identifier(bad), "{bad}");
        }
    }
}
