//! The `globus` executor's wire format against the real `globus-compute-sdk` (4.19.0, installed by
//! scripts/setup-globus-sdk.sh into its own venv, which this test runs when it is missing): what
//! the Rust side packs (the registered function, a task's arguments) must decode with the SDK's own
//! serializer and run, the SDK's own `Batch.add` payload must unpack on the Rust side to the same
//! values, and the SDK's serialized results (bare NaN included) must parse.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Once;

use alcf_host::executor::globus::wire;
use alcf_tests::repo;

static SETUP: Once = Once::new();

/// The SDK venv's python, set up on first use.
fn sdk_python() -> PathBuf {
    SETUP.call_once(|| {
        let status = Command::new("bash").arg("scripts/setup-globus-sdk.sh").current_dir(repo()).status().unwrap();
        assert!(status.success(), "scripts/setup-globus-sdk.sh failed");
    });
    let venv = std::env::var_os("ALCF_GLOBUS_SDK").map_or_else(|| repo().join("target/globus-sdk"), PathBuf::from);
    venv.join("bin/python")
}

fn python(code: &str, input: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("input.txt");
    std::fs::write(&file, input).unwrap();
    let out = Command::new(sdk_python()).args(["-c", code]).arg(&file).output().unwrap();
    assert!(out.status.success(), "python: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn what_the_host_packs_is_what_the_sdk_makes_and_decodes() {
    let source = "def run_trial(cmd, trial_dir, walltime=None):\n    return {'cmd': cmd, 'dir': trial_dir, 'walltime': walltime, 'note': 'é日本'}\n";
    let args = serde_json::json!(["python3 train.py --lr 0.01 # é", "/flare/p/trials/00042"]);
    let kwargs = serde_json::json!({"walltime": 3600});
    let input = serde_json::json!({
        "code": wire::function_code("run_trial", source),
        "payload": wire::payload(&args, &kwargs),
        "source": source,
        "args": args,
        "kwargs": kwargs,
    });
    let out = python(
        r#"
import json, sys
from globus_compute_sdk.serialize import ComputeSerializer, JSONData, PureSourceTextInspect
from globus_compute_sdk.serialize.facade import ComputeSerializer as Facade
from globus_compute_sdk.sdk.batch import Batch
d = json.load(open(sys.argv[1], encoding="utf-8"))
ser = ComputeSerializer(strategy_code=PureSourceTextInspect(), strategy_data=JSONData())
# The function: the SDK unpacks our function_code and rebuilds a callable from our source.
[fn_buf] = ser.unpack_buffers(d["code"])
fn = ser.deserialize(fn_buf)
# The arguments: our payload equals what Batch.add makes with JSONData, and decodes to our values.
b = Batch(task_group_id=None, serializer=ser)
b.add("00000000-0000-0000-0000-000000000000", args=tuple(d["args"]), kwargs=d["kwargs"])
sdk_payload = b.prepare()["tasks"]["00000000-0000-0000-0000-000000000000"][0]
a_buf, k_buf = ser.unpack_buffers(d["payload"])
args, kwargs = ser.deserialize(a_buf), ser.deserialize(k_buf)
result = fn(*args, **kwargs)
print(json.dumps({"sdk_payload": sdk_payload, "result": result,
                  "serialized_result": ser.serialize({"returncode": 0, "loss": float("nan"), "note": "é"})}))
"#,
        &input.to_string(),
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    // Batch.add's own payload (Python's json.dumps: ", " separators, \u escapes) unpacks on the
    // host's side to the same values; byte equality is not needed, the endpoint only decodes.
    let sdk = wire::unpack(v["sdk_payload"].as_str().unwrap()).unwrap();
    assert_eq!(sdk.len(), 2, "{sdk:?}");
    let decoded: Vec<serde_json::Value> =
        sdk.iter().map(|b| serde_json::from_str(b.strip_prefix("11\n").expect("JSONData header")).unwrap()).collect();
    assert_eq!(decoded, [args.clone(), kwargs.clone()]);
    assert_eq!(
        v["result"],
        serde_json::json!({"cmd": args[0], "dir": args[1], "walltime": 3600, "note": "é日本"}),
        "the SDK ran the host's function with the host's arguments"
    );
    let parsed = wire::json_result(v["serialized_result"].as_str().unwrap()).unwrap();
    assert_eq!(parsed, serde_json::json!({"returncode": 0, "loss": null, "note": "é"}));
}
