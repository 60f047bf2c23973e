//! The study's LLM audit log (table `llm_call`): every call a plugin made through the `llm`
//! capability, as sent and as answered, without credentials. The LLM service appends to it and
//! replays from it; `alcf-host study llm-log` and `compare` read it.

use rusqlite::types::Value;
use rusqlite::{OptionalExtension, params, params_from_iter};

use super::{StudyDb, StudyError, now};

/// What became of one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LlmOutcome {
    /// Answered by the service.
    Ok,
    /// Answered from an earlier `Ok` row (`replay_of`); nothing was sent.
    Replayed,
    /// Refused by the host before sending: a cap reached or a model not allowed.
    Refused,
    /// Sent, and failed (credentials, retries exhausted, rejected, or an unusable answer).
    Failed,
    /// Sent, with no answer recorded: written before the request goes out and updated with its
    /// result, so a row stays `sent` only when the host stopped while the call was in flight.
    /// The request may or may not have reached the service (the kill may fall between the row
    /// and the send); any answer, and what it cost, died with that host. It counts against the caps.
    Sent,
}

impl LlmOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            LlmOutcome::Ok => "ok",
            LlmOutcome::Replayed => "replayed",
            LlmOutcome::Refused => "refused",
            LlmOutcome::Failed => "failed",
            LlmOutcome::Sent => "sent",
        }
    }

    fn parse(s: &str) -> LlmOutcome {
        match s {
            "ok" => LlmOutcome::Ok,
            "replayed" => LlmOutcome::Replayed,
            "refused" => LlmOutcome::Refused,
            "sent" => LlmOutcome::Sent,
            _ => LlmOutcome::Failed,
        }
    }

    /// Whether the call reached the service (and counts against the caps).
    pub fn was_sent(self) -> bool {
        matches!(self, LlmOutcome::Ok | LlmOutcome::Failed | LlmOutcome::Sent)
    }
}

/// One row of the log.
#[derive(Clone, Debug, PartialEq)]
pub struct LlmCallRow {
    pub id: u64,
    pub at: f64,
    pub plugin: String,
    /// SHA-256 of `request`, for replay lookups.
    pub request_hash: String,
    /// The JSON body as sent (no headers, so no token).
    pub request: String,
    pub model: String,
    pub outcome: LlmOutcome,
    /// The last HTTP status seen, if any.
    pub http_status: Option<u16>,
    /// The service's response body (JSON text) when it answered.
    pub response: Option<String>,
    /// The answer's text, as the plugin got it.
    pub content: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// From the first send to the final answer, waits included.
    pub latency_s: f64,
    pub retries: u32,
    /// Every HTTP attempt (JSON list of {status, error, seconds, waited_s}).
    pub attempts: Option<String>,
    /// What the plugin was told when the call failed or was refused.
    pub error: Option<String>,
    pub replay_of: Option<u64>,
}

/// Sent calls and billed tokens of one plugin, for the caps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LlmUsage {
    pub calls: u64,
    pub tokens: u64,
}

/// Totals over a whole study, for `compare` and `study show`.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct LlmTotals {
    pub calls: u64,
    pub replayed: u64,
    pub failed: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub seconds: f64,
}

const COLUMNS: &str = "id, at, plugin, request_hash, request, model, outcome, http_status, response, content, \
     prompt_tokens, completion_tokens, latency_s, retries, attempts, error, replay_of";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LlmCallRow> {
    Ok(LlmCallRow {
        id: r.get::<_, i64>(0)? as u64,
        at: r.get(1)?,
        plugin: r.get(2)?,
        request_hash: r.get(3)?,
        request: r.get(4)?,
        model: r.get(5)?,
        outcome: LlmOutcome::parse(&r.get::<_, String>(6)?),
        http_status: r.get::<_, Option<i64>>(7)?.map(|s| s as u16),
        response: r.get(8)?,
        content: r.get(9)?,
        prompt_tokens: r.get::<_, i64>(10)? as u64,
        completion_tokens: r.get::<_, i64>(11)? as u64,
        latency_s: r.get(12)?,
        retries: r.get::<_, i64>(13)? as u32,
        attempts: r.get(14)?,
        error: r.get(15)?,
        replay_of: r.get::<_, Option<i64>>(16)?.map(|i| i as u64),
    })
}

/// What became of a call, in the column order `model` … `replay_of`: the one list the INSERT of a
/// new row and the UPDATE of a `sent` row both bind.
const RESULT_COLUMNS: [&str; 12] = [
    "model",
    "outcome",
    "http_status",
    "response",
    "content",
    "prompt_tokens",
    "completion_tokens",
    "latency_s",
    "retries",
    "attempts",
    "error",
    "replay_of",
];

fn result_values(c: &LlmCallRow) -> [Value; 12] {
    [
        c.model.clone().into(),
        c.outcome.as_str().to_string().into(),
        c.http_status.map(i64::from).into(),
        c.response.clone().into(),
        c.content.clone().into(),
        (c.prompt_tokens as i64).into(),
        (c.completion_tokens as i64).into(),
        c.latency_s.into(),
        i64::from(c.retries).into(),
        c.attempts.clone().into(),
        c.error.clone().into(),
        c.replay_of.map(|i| i as i64).into(),
    ]
}

impl StudyDb {
    /// Appends a call (its `id` and `at` are assigned here); returns the new row's id.
    pub fn record_llm_call(&self, c: &LlmCallRow) -> Result<u64, StudyError> {
        let sql = format!(
            "INSERT INTO llm_call(at, plugin, request_hash, request, {}) VALUES ({})",
            RESULT_COLUMNS.join(", "),
            (1..=4 + RESULT_COLUMNS.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ")
        );
        let identity: [Value; 4] =
            [now().into(), c.plugin.clone().into(), c.request_hash.clone().into(), c.request.clone().into()];
        self.with(|conn| {
            conn.prepare_cached(&sql)?.execute(params_from_iter(identity.into_iter().chain(result_values(c))))?;
            Ok(conn.last_insert_rowid() as u64)
        })
    }

    /// Rewrites call `id` (a `sent` row) with what became of it; `at` and the request stay.
    pub fn update_llm_call(&self, id: u64, c: &LlmCallRow) -> Result<(), StudyError> {
        let set: Vec<String> =
            RESULT_COLUMNS.iter().enumerate().map(|(k, col)| format!("{col} = ?{}", k + 2)).collect();
        let sql = format!("UPDATE llm_call SET {} WHERE id = ?1", set.join(", "));
        self.with(|conn| {
            conn.prepare_cached(&sql)?
                .execute(params_from_iter(std::iter::once(Value::from(id as i64)).chain(result_values(c))))?;
            Ok(())
        })
    }

    /// The `occurrence`-th (from 0) answered call of `plugin` with this request hash, oldest first.
    pub fn llm_answer(
        &self,
        plugin: &str,
        request_hash: &str,
        occurrence: u64,
    ) -> Result<Option<LlmCallRow>, StudyError> {
        self.with(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM llm_call WHERE plugin = ?1 AND request_hash = ?2 AND outcome = 'ok' \
                 ORDER BY id LIMIT 1 OFFSET ?3"
            ))?
            .query_row(params![plugin, request_hash, occurrence as i64], row)
            .optional()
        })
    }

    /// What `plugin` has spent in this study: calls sent and tokens billed.
    pub fn llm_usage(&self, plugin: &str) -> Result<LlmUsage, StudyError> {
        self.with(|conn| {
            conn.prepare_cached(
                "SELECT COUNT(*), COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM llm_call \
                 WHERE plugin = ?1 AND outcome IN ('ok', 'failed', 'sent')",
            )?
            .query_row([plugin], |r| {
                Ok(LlmUsage { calls: r.get::<_, i64>(0)? as u64, tokens: r.get::<_, i64>(1)? as u64 })
            })
        })
    }

    /// Every call, oldest first.
    pub fn llm_calls(&self) -> Result<Vec<LlmCallRow>, StudyError> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM llm_call ORDER BY id"))?;
            let rows = stmt.query_map([], row)?;
            rows.collect()
        })
    }

    pub fn llm_totals(&self) -> Result<LlmTotals, StudyError> {
        self.with(|conn| {
            conn.prepare_cached(
                "SELECT COALESCE(SUM(outcome IN ('ok', 'failed', 'sent')), 0), COALESCE(SUM(outcome = 'replayed'), 0), \
                 COALESCE(SUM(outcome = 'failed'), 0), COALESCE(SUM(prompt_tokens), 0), \
                 COALESCE(SUM(completion_tokens), 0), COALESCE(SUM(latency_s), 0) \
                 FROM llm_call",
            )?
            .query_row([], |r| {
                Ok(LlmTotals {
                    calls: r.get::<_, i64>(0)? as u64,
                    replayed: r.get::<_, i64>(1)? as u64,
                    failed: r.get::<_, i64>(2)? as u64,
                    prompt_tokens: r.get::<_, i64>(3)? as u64,
                    completion_tokens: r.get::<_, i64>(4)? as u64,
                    seconds: r.get(5)?,
                })
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::study::StudyMeta;

    fn call(plugin: &str, hash: &str, outcome: LlmOutcome, tokens: u64) -> LlmCallRow {
        LlmCallRow {
            id: 0,
            at: 0.0,
            plugin: plugin.into(),
            request_hash: hash.into(),
            request: "{}".into(),
            model: "m".into(),
            outcome,
            http_status: Some(200),
            response: None,
            content: Some(format!("answer {hash}")),
            prompt_tokens: tokens,
            completion_tokens: 1,
            latency_s: 0.5,
            retries: 0,
            attempts: None,
            error: None,
            replay_of: None,
        }
    }

    #[test]
    fn answers_are_found_in_order_and_usage_counts_only_sent_calls() {
        let db = StudyDb::in_memory(&StudyMeta::example()).unwrap();
        db.record_llm_call(&call("p", "h1", LlmOutcome::Ok, 10)).unwrap();
        db.record_llm_call(&call("p", "h1", LlmOutcome::Failed, 0)).unwrap();
        let second = db.record_llm_call(&call("p", "h1", LlmOutcome::Ok, 20)).unwrap();
        db.record_llm_call(&call("p", "h1", LlmOutcome::Replayed, 0)).unwrap();
        db.record_llm_call(&call("p", "h1", LlmOutcome::Refused, 0)).unwrap();
        db.record_llm_call(&call("q", "h1", LlmOutcome::Ok, 5)).unwrap();
        assert_eq!(db.llm_answer("p", "h1", 0).unwrap().unwrap().prompt_tokens, 10);
        assert_eq!(db.llm_answer("p", "h1", 1).unwrap().unwrap().id, second);
        assert!(db.llm_answer("p", "h1", 2).unwrap().is_none());
        assert!(db.llm_answer("p", "h2", 0).unwrap().is_none());
        assert_eq!(db.llm_usage("p").unwrap(), LlmUsage { calls: 3, tokens: 10 + 1 + 1 + 20 + 1 });
        let t = db.llm_totals().unwrap();
        assert_eq!((t.calls, t.replayed, t.failed), (4, 1, 1));
    }

    #[test]
    fn a_sent_row_counts_is_never_replayed_and_is_completed_in_place() {
        let db = StudyDb::in_memory(&StudyMeta::example()).unwrap();
        let mut row = call("p", "h1", LlmOutcome::Sent, 0);
        row.content = None;
        row.completion_tokens = 0;
        let id = db.record_llm_call(&row).unwrap();
        // In flight (or its host died): it counts against the caps, and there is nothing to replay.
        assert_eq!(db.llm_usage("p").unwrap(), LlmUsage { calls: 1, tokens: 0 });
        assert!(db.llm_answer("p", "h1", 0).unwrap().is_none());
        assert_eq!(db.llm_calls().unwrap()[0].outcome, LlmOutcome::Sent);
        // Answered: the same row, now `ok`, replayable and billed.
        db.update_llm_call(id, &call("p", "h1", LlmOutcome::Ok, 7)).unwrap();
        let rows = db.llm_calls().unwrap();
        assert_eq!((rows.len(), rows[0].id, rows[0].outcome), (1, id, LlmOutcome::Ok));
        assert_eq!(db.llm_answer("p", "h1", 0).unwrap().unwrap().id, id);
        assert_eq!(db.llm_usage("p").unwrap(), LlmUsage { calls: 1, tokens: 8 });
    }
}
