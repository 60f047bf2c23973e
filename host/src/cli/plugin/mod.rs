//! `alcf-host plugin inspect`, `plugin new` (scaffold) and `plugin build` (build_project).

pub mod build_project;
pub mod scaffold;

use std::path::Path;
use std::sync::Arc;

use alcf_host::config::Direction;
use alcf_host::plugin::agent::SandboxedAgent;
use alcf_host::plugin::capability::Capabilities;
use alcf_host::plugin::sandbox::{Grants, Storage};
use alcf_host::plugin::strategy::{PluginLimits, SandboxedStrategy, StudyInfo};
use alcf_host::plugin::{Loaded, PluginRuntime, default_cache_dir};
use alcf_host::space::SearchSpace;

use crate::out;

/// `alcf-host plugin inspect`: what a component is, what it asks for, and whether this host can run it.
pub async fn inspect(path: &Path, json: bool) -> anyhow::Result<()> {
    let runtime = PluginRuntime::shared(default_cache_dir())?;
    let (_, summary) = runtime.compile(path)?;
    let loaded = runtime.load_any(path);
    let verdict = loaded.as_ref().map(|_| ()).map_err(|e| e.to_string());
    let kind = match &loaded {
        Ok(Loaded::Agent(_)) => "agent",
        _ => "strategy",
    };
    let info = match loaded {
        Ok(loaded) => {
            let space = SearchSpace::new(vec![alcf_host::space::Param {
                name: "x".into(),
                domain: alcf_host::space::Domain::Float { low: 0.0, high: 1.0, log: false },
            }])?;
            let study = StudyInfo {
                name: "inspect".into(),
                space,
                direction: Direction::Minimize,
                objective: "value".into(),
                objectives: Vec::new(),
                seed: 0,
                budget: None,
                parallelism: 1,
                options: serde_json::json!({}),
            };
            let limits = PluginLimits {
                memory_bytes: 512 << 20,
                call_timeout: std::time::Duration::from_secs(10),
                max_restarts: 0,
            };
            let described = match loaded {
                Loaded::Strategy(p) => {
                    let mut s =
                        SandboxedStrategy::new(Arc::new(p), &study, limits, Grants::default(), Storage::memory());
                    s.describe().await
                }
                Loaded::Agent(a) => {
                    let caps = Capabilities::new(Grants::default(), Storage::memory());
                    SandboxedAgent::new(Arc::new(a), &study, limits, &caps).describe().await
                }
            };
            Some(described.map_err(|e| e.to_string()))
        }
        Err(_) => None,
    };
    if json {
        let mut v = serde_json::json!({
            "path": summary.path,
            "sha256": summary.sha256,
            "size": summary.size,
            "abi_version": summary.abi_version,
            "host_abi_version": alcf_host::plugin::ABI_VERSION,
            "imports": summary.imports,
            "exports": summary.exports,
            "loadable": verdict.is_ok(),
            "kind": kind,
        });
        if let Err(e) = &verdict {
            v["error"] = e.clone().into();
        }
        if let Some(Ok(i)) = &info {
            v["name"] = i.name.clone().into();
            v["version"] = i.version.clone().into();
            v["description"] = i.description.clone().into();
            v["capabilities"] = i.capabilities.clone().into();
            v["prunes"] = i.prunes.into();
            v["multi_objective"] = i.multi_objective.into();
        }
        out!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        out!("file:          {} ({} bytes, sha256 {})", summary.path.display(), summary.size, &summary.sha256[..16]);
        if let Some(Ok(i)) = &info {
            out!("name:          {} {}", i.name, i.version);
            out!("description:   {}", i.description);
            out!(
                "capabilities:  {}",
                if i.capabilities.is_empty() { "(none)".into() } else { i.capabilities.join(", ") }
            );
            out!("prunes:        {}", if i.prunes { "yes (judges running trials' reports)" } else { "no" });
            out!("objectives:    {}", if i.multi_objective { "several (multi-objective studies)" } else { "one" });
        }
        if let Some(Err(e)) = &info {
            out!("describe:      failed: {e}");
        }
        let adapted = if summary.abi_version.starts_with("0.1.") { ", adapted: no pruning" } else { "" };
        out!("ABI:           {} (host speaks {}{adapted})", summary.abi_version, alcf_host::plugin::ABI_VERSION);
        out!("exports:       {}", summary.exports.join(", "));
        out!("imports:");
        for i in &summary.imports {
            out!("  {i}");
        }
        match &verdict {
            Ok(()) => out!("status:        loadable {kind} plugin"),
            Err(e) => out!("status:        NOT loadable: {e}"),
        }
    }
    verdict.map_err(|e| anyhow::anyhow!(e))
}
