//! Plugins built against ABI 0.1 (`alcf:hpo@0.1.x`), adapted to the current one.
//!
//! A 0.1 plugin is linked against its own WIT (`wit/legacy/0.1`): its imports are served by the
//! same capability code as a current plugin's (each call is converted and passed on), and its
//! exports are called through [`super::abi::Exports`], which converts the current records to
//! 0.1's. What 0.1 cannot say is left out: it sees no curves, declares no pruning and is never
//! asked to `judge`.

use super::bindings::alcf::hpo as current;
use super::sandbox::PluginState;

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/legacy/0.1",
        world: "strategy-plugin",
        imports: { "alcf:hpo/llm.chat": async, "alcf:hpo/llm.chat-structured": async, default: tracing },
        exports: { default: async },
    });
}

use bindings::alcf::hpo as old;

pub(crate) const VERSION: &str = "0.1";

impl old::types::Host for PluginState {}

impl old::log::Host for PluginState {
    fn log(&mut self, level: old::types::Level, message: String) {
        let level = match level {
            old::types::Level::Trace => current::types::Level::Trace,
            old::types::Level::Debug => current::types::Level::Debug,
            old::types::Level::Info => current::types::Level::Info,
            old::types::Level::Warn => current::types::Level::Warn,
            old::types::Level::Error => current::types::Level::Error,
        };
        current::log::Host::log(self, level, message)
    }
}

impl old::storage::Host for PluginState {
    fn get(&mut self, key: String) -> Option<Vec<u8>> {
        current::storage::Host::get(self, key)
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        current::storage::Host::set(self, key, value)
    }

    fn delete(&mut self, key: String) -> Result<(), String> {
        current::storage::Host::delete(self, key)
    }
}

impl old::llm::Host for PluginState {
    async fn chat(&mut self, request: old::llm::ChatRequest) -> Result<old::llm::ChatResponse, old::llm::LlmError> {
        current::llm::Host::chat(self, chat_request(request)).await.map(chat_response).map_err(llm_error)
    }

    async fn chat_structured(
        &mut self,
        request: old::llm::ChatRequest,
        name: String,
        schema: String,
    ) -> Result<old::llm::ChatResponse, old::llm::LlmError> {
        current::llm::Host::chat_structured(self, chat_request(request), name, schema)
            .await
            .map(chat_response)
            .map_err(llm_error)
    }
}

fn chat_request(r: old::llm::ChatRequest) -> current::llm::ChatRequest {
    current::llm::ChatRequest {
        model: r.model,
        messages: r.messages.into_iter().map(|m| current::llm::Message { role: m.role, content: m.content }).collect(),
        temperature: r.temperature,
        max_tokens: r.max_tokens,
        json: r.json,
    }
}

fn chat_response(r: current::llm::ChatResponse) -> old::llm::ChatResponse {
    old::llm::ChatResponse {
        content: r.content,
        model: r.model,
        prompt_tokens: r.prompt_tokens,
        completion_tokens: r.completion_tokens,
    }
}

fn llm_error(e: current::llm::LlmError) -> old::llm::LlmError {
    use current::llm::LlmError as C;
    use old::llm::LlmError as O;
    match e {
        C::NotGranted(m) => O::NotGranted(m),
        C::NotConfigured(m) => O::NotConfigured(m),
        C::Auth(m) => O::Auth(m),
        C::Unavailable(m) => O::Unavailable(m),
        C::InvalidRequest(m) => O::InvalidRequest(m),
    }
}

// ---- the strategy's records, current -> 0.1 and back ------------------------------------------

use current::types as cur;
use old::types as was;

pub(crate) fn study(s: &cur::Study) -> was::Study {
    was::Study {
        name: s.name.clone(),
        space: s
            .space
            .iter()
            .map(|p| was::Param {
                name: p.name.clone(),
                domain: match &p.domain {
                    cur::Domain::Float(r) => {
                        was::Domain::Float(was::FloatRange { low: r.low, high: r.high, log: r.log })
                    }
                    cur::Domain::Int(r) => was::Domain::Int(was::IntRange { low: r.low, high: r.high, log: r.log }),
                    cur::Domain::Choice(c) => was::Domain::Choice(c.clone()),
                },
            })
            .collect(),
        direction: match s.direction {
            cur::Direction::Minimize => was::Direction::Minimize,
            cur::Direction::Maximize => was::Direction::Maximize,
        },
        objective: s.objective.clone(),
        seed: s.seed,
        budget: s.budget,
        parallelism: s.parallelism,
        options: s.options.clone(),
    }
}

fn value(v: &cur::Value) -> was::Value {
    match v {
        cur::Value::Float(x) => was::Value::Float(*x),
        cur::Value::Int(x) => was::Value::Int(*x),
        cur::Value::Choice(x) => was::Value::Choice(x.clone()),
    }
}

fn assignments(a: &[cur::Assignment]) -> Vec<was::Assignment> {
    a.iter().map(|a| was::Assignment { name: a.name.clone(), value: value(&a.value) }).collect()
}

pub(crate) fn trials(t: &[cur::Trial]) -> Vec<was::Trial> {
    t.iter().map(|t| was::Trial { id: t.id, params: assignments(&t.params) }).collect()
}

pub(crate) fn outcomes(o: &[cur::Outcome]) -> Vec<was::Outcome> {
    o.iter()
        .map(|o| was::Outcome {
            trial: was::Trial { id: o.trial.id, params: assignments(&o.trial.params) },
            status: match o.status {
                cur::Status::Completed => was::Status::Completed,
                cur::Status::Failed => was::Status::Failed,
                cur::Status::Pruned => was::Status::Pruned,
            },
            value: o.value,
            metrics: o.metrics.clone(),
        })
        .collect()
}

pub(crate) fn suggestions(s: Vec<Vec<was::Assignment>>) -> Vec<Vec<cur::Assignment>> {
    s.into_iter()
        .map(|a| {
            a.into_iter()
                .map(|a| cur::Assignment {
                    name: a.name,
                    value: match a.value {
                        was::Value::Float(x) => cur::Value::Float(x),
                        was::Value::Int(x) => cur::Value::Int(x),
                        was::Value::Choice(x) => cur::Value::Choice(x),
                    },
                })
                .collect()
        })
        .collect()
}

pub(crate) fn info(i: was::Info) -> cur::Info {
    cur::Info {
        name: i.name,
        version: i.version,
        description: i.description,
        capabilities: i.capabilities,
        prunes: false,
        multi_objective: false,
    }
}
