//! Globus Compute's wire format, as `globus-compute-sdk` 4.19 writes it (tests/globus/README.md has
//! the sources): buffers framed as `"{len}\n{buf}"` concatenated, where `len` counts Unicode code
//! points (Python's `len` of a `str`), not bytes; each serialized buffer starts with a 3-character
//! header, `"st\n"` for a function as pure source (`name + ":" + source`) and `"11\n"` for JSON
//! data. The host registers its trial function as source and sends arguments as JSON, so nothing
//! ties the laptop's Python (it needs none) to the endpoint's, unlike a pickled closure.

use serde_json::Value;

/// A malformed buffer from the service (or a test).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("packed buffers: {0}")]
    Framing(String),
    #[error("serialized data has header {found:?}, expected {expected:?}")]
    Header { found: String, expected: &'static str },
    #[error("JSON data does not parse: {0}")]
    Json(String),
}

const SOURCE: &str = "st\n";
const JSON: &str = "11\n";

/// `pack_buffers`: each buffer as its length in code points, a newline, and the buffer.
pub fn pack(buffers: &[String]) -> String {
    let mut out = String::new();
    for b in buffers {
        out.push_str(&b.chars().count().to_string());
        out.push('\n');
        out.push_str(b);
    }
    out
}

/// `unpack_buffers`, strictly: a missing newline, a bad length or a short buffer is an error.
pub fn unpack(mut packed: &str) -> Result<Vec<String>, WireError> {
    let mut out = Vec::new();
    while !packed.is_empty() {
        let (head, rest) =
            packed.split_once('\n').ok_or_else(|| WireError::Framing("a length without its newline".into()))?;
        let n: usize = head.parse().map_err(|_| WireError::Framing(format!("length {head:?} is not a number")))?;
        // The n-th code point boundary, or the end when exactly n remain.
        let end = match rest.char_indices().nth(n) {
            Some((i, _)) => i,
            None if rest.chars().count() == n => rest.len(),
            None => {
                return Err(WireError::Framing(format!(
                    "expected {n} characters, only {} remain",
                    rest.chars().count()
                )));
            }
        };
        out.push(rest[..end].to_string());
        packed = &rest[end..];
    }
    Ok(out)
}

/// A function registered as pure source: `pack(["st\n" + name + ":" + source])`, what
/// `Client.register_function` sends as `function_code` for `PureSourceTextInspect`.
pub fn function_code(name: &str, source: &str) -> String {
    pack(&[format!("{SOURCE}{name}:{source}")])
}

/// One task's payload: `pack([json(args), json(kwargs)])`, as `Batch.add` makes it with `JSONData`.
pub fn payload(args: &Value, kwargs: &Value) -> String {
    pack(&[format!("{JSON}{args}"), format!("{JSON}{kwargs}")])
}

/// A result serialized with `JSONData` (`"11\n" + json.dumps(value)`). Python's `json` writes
/// NaN and infinities bare; they come back as JSON `null`, so a metric that was not finite is
/// absent rather than a parse failure of the whole trial.
pub fn json_result(serialized: &str) -> Result<Value, WireError> {
    let body = serialized
        .strip_prefix(JSON)
        .ok_or_else(|| WireError::Header { found: serialized.chars().take(3).collect(), expected: "11\\n" })?;
    match serde_json::from_str(body) {
        Ok(v) => Ok(v),
        Err(_) => {
            let cleaned = bare_non_finite_to_null(body);
            serde_json::from_str(&cleaned).map_err(|e| WireError::Json(e.to_string()))
        }
    }
}

/// `NaN`, `Infinity` and `-Infinity` outside strings become `null`.
fn bare_non_finite_to_null(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            rest = &rest[c.len_utf8()..];
            continue;
        }
        if c == '"' {
            in_string = true;
        }
        let word = ["-Infinity", "Infinity", "NaN"].into_iter().find(|w| rest.starts_with(w));
        if let Some(w) = word {
            out.push_str("null");
            rest = &rest[w.len()..];
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_count_code_points() {
        let packed = pack(&["aé".to_string(), "日本".to_string(), String::new()]);
        assert_eq!(packed, "2\naé2\n日本0\n");
        assert_eq!(unpack(&packed).unwrap(), ["aé", "日本", ""]);
    }

    #[test]
    fn malformed_framing_is_an_error_not_a_panic() {
        assert!(matches!(unpack("3\nab"), Err(WireError::Framing(_))));
        assert!(matches!(unpack("x\nab"), Err(WireError::Framing(_))));
        assert!(matches!(unpack("12"), Err(WireError::Framing(_))));
        assert_eq!(unpack("").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn function_and_payload_shapes() {
        let code = function_code("run_trial", "def run_trial(x):\n    return x\n");
        assert_eq!(unpack(&code).unwrap(), ["st\nrun_trial:def run_trial(x):\n    return x\n"]);
        let p = payload(&serde_json::json!(["echo", "/t"]), &serde_json::json!({"walltime": 60}));
        assert_eq!(unpack(&p).unwrap(), ["11\n[\"echo\",\"/t\"]", "11\n{\"walltime\":60}"]);
    }

    #[test]
    fn json_results_with_bare_non_finite_numbers() {
        let v = json_result("11\n{\"a\": NaN, \"b\": [Infinity, -Infinity], \"s\": \"NaN \\\" Infinity\"}").unwrap();
        assert_eq!(v, serde_json::json!({"a": null, "b": [null, null], "s": "NaN \" Infinity"}));
        assert!(matches!(json_result("00\nabc"), Err(WireError::Header { .. })));
        assert!(matches!(json_result("11\n{"), Err(WireError::Json(_))));
    }
}
