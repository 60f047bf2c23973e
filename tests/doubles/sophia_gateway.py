#!/usr/bin/env python3
"""A stand-in for ALCF's Sophia inference gateway (auroraGPT-ANL/inference-gateway), for tests only.

Python 3 standard library only. Listens on 127.0.0.1, prints `LISTENING <port>` on stdout, then serves:

  POST /resource_server/sophia/vllm/v1/chat/completions   OpenAI chat.completion answers
  GET  /resource_server/sophia/jobs                       the gateway's JobsByStatus shape
  GET  /resource_server/health                            {"status": "ok"}, no auth
  POST /_control/faults   JSON list of faults; each is consumed by the next authorized chat request
  GET  /_control/requests every chat request received (body, auth presence, token's first 4 chars, status)

See tests/doubles/README.md for what was checked against the gateway's public source.
"""

import argparse
import json
import math
import random
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHAT_PATH = "/resource_server/sophia/vllm/v1/chat/completions"
JOBS_PATH = "/resource_server/sophia/jobs"
HEALTH_PATH = "/resource_server/health"

DEFAULT_MODELS = [
    "meta-llama/Llama-3.3-70B-Instruct",
    "meta-llama/Meta-Llama-3.1-8B-Instruct",
    "meta-llama/Meta-Llama-3.1-70B-Instruct",
    "openai/gpt-oss-20b",
    "openai/gpt-oss-120b",
]

# Top-level fields of the gateway's OpenAIChatCompletionsPydantic (extra="forbid"): anything else is a 422.
CHAT_FIELDS = {
    "openai_endpoint", "messages", "model", "frequency_penalty", "logit_bias", "logprobs",
    "max_completion_tokens", "max_tokens", "metadata", "modalities", "n", "parallel_tool_calls",
    "prediction", "presence_penalty", "reasoning_effort", "response_format", "seed", "service_tier",
    "stop", "stream", "stream_options", "store", "temperature", "tool_choice", "tools",
    "top_logprobs", "top_p", "user", "web_search_options", "extra_body",
}
MESSAGE_FIELDS = {"role", "content", "name", "audio", "refusal", "tool_calls", "tool_call_id",
                  "reasoning", "reasoning_content"}
MESSAGE_ROLES = {"developer", "system", "user", "assistant", "tool"}
RESPONSE_FORMAT_TYPES = {"text", "json_schema", "json_object"}
JSON_SCHEMA_FIELDS = {"name", "description", "schema", "strict"}


class Invalid(Exception):
    """A request the gateway's pydantic models refuse: django-ninja answers 422 {"detail": [...]}."""

    def __init__(self, loc, msg, kind):
        super().__init__(msg)
        self.detail = {"type": kind, "loc": ["body", "payload"] + list(loc), "msg": msg}


def validate_chat(body):
    if not isinstance(body, dict):
        raise Invalid([], "Input should be a valid dictionary", "dict_type")
    for key in body:
        if key not in CHAT_FIELDS:
            raise Invalid([key], "Extra inputs are not permitted", "extra_forbidden")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise Invalid(["model"], "Field required or empty", "missing")
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise Invalid(["messages"], "Field required", "missing")
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise Invalid(["messages", i], "Input should be a valid dictionary", "dict_type")
        for key in m:
            if key not in MESSAGE_FIELDS:
                raise Invalid(["messages", i, key], "Extra inputs are not permitted", "extra_forbidden")
        if m.get("role") not in MESSAGE_ROLES:
            raise Invalid(["messages", i, "role"], "'role' must be one of %s." % sorted(MESSAGE_ROLES), "value_error")
    for name, low, high in (("temperature", 0, 2), ("top_p", 0, 1), ("frequency_penalty", -2, 2),
                            ("presence_penalty", -2, 2)):
        v = body.get(name)
        if v is not None:
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise Invalid([name], "Input should be a valid number", "float_type")
            if v < low or v > high:
                raise Invalid([name], "Input should be between %s and %s" % (low, high), "range")
    n = body.get("n")
    if n is not None and (not isinstance(n, int) or n < 1 or n > 128):
        raise Invalid(["n"], "Input should be between 1 and 128", "range")
    for name in ("max_tokens", "max_completion_tokens"):
        v = body.get(name)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
            raise Invalid([name], "Input should be greater than or equal to 0", "greater_than_equal")
    rf = body.get("response_format")
    if rf is not None:
        if not isinstance(rf, dict) or "type" not in rf:
            raise Invalid(["response_format"], "Value error, 'type' must be provided.", "value_error")
        if rf["type"] not in RESPONSE_FORMAT_TYPES:
            raise Invalid(["response_format"], "Value error, 'type' must be one of %s." %
                          sorted(RESPONSE_FORMAT_TYPES), "value_error")
        allowed = {"type", "json_schema"} if rf["type"] == "json_schema" else {"type"}
        for key in rf:
            if key not in allowed:
                raise Invalid(["response_format", key], "Extra inputs are not permitted", "extra_forbidden")
        if rf["type"] == "json_schema":
            js = rf.get("json_schema")
            if not isinstance(js, dict):
                raise Invalid(["response_format", "json_schema"], "Field required", "missing")
            for key in js:
                if key not in JSON_SCHEMA_FIELDS:
                    raise Invalid(["response_format", "json_schema", key], "Extra inputs are not permitted",
                                  "extra_forbidden")
            name = js.get("name")
            if not isinstance(name, str) or len(name) > 64:
                raise Invalid(["response_format", "json_schema", "name"],
                              "String should have at most 64 characters", "string_too_long")


def slugify(text):
    """Django's slugify, as the gateway builds endpoint slugs ("sophia vllm <model>")."""
    text = re.sub(r"[^\w\s-]", "", text.lower())
    return re.sub(r"[-\s]+", "-", text).strip("-_")


# ---- answers -------------------------------------------------------------------------------------

def schema_type(schema):
    t = schema.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), "null")
    if t is None:
        if "properties" in schema:
            return "object"
        if "items" in schema:
            return "array"
    return t


def number_range(schema, integer):
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    if low is None and high is None:
        low, high = 0, 100 if integer else 1
    elif low is None:
        low = high - (100 if integer else 1)
    elif high is None:
        high = low + (100 if integer else 1)
    if integer:
        low = math.ceil(low + (1 if "exclusiveMinimum" in schema and "minimum" not in schema else 0))
        high = math.floor(high - (1 if "exclusiveMaximum" in schema and "maximum" not in schema else 0))
    return low, high


def generate(schema, rng):
    """A value that satisfies `schema` (the subset structured outputs use)."""
    if not isinstance(schema, dict):
        return None
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return rng.choice(schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema and schema[key]:
            return generate(rng.choice(schema[key]), rng)
    if "allOf" in schema and schema["allOf"]:
        merged = {}
        for part in schema["allOf"]:
            merged.update(part)
        return generate(merged, rng)
    t = schema_type(schema)
    if t == "object":
        props = schema.get("properties", {})
        return {name: generate(sub, rng) for name, sub in props.items()}
    if t == "array":
        lo = schema.get("minItems", 1)
        hi = schema.get("maxItems", max(lo, 3))
        count = rng.randint(lo, max(lo, hi))
        return [generate(schema.get("items", {}), rng) for _ in range(count)]
    if t == "integer":
        low, high = number_range(schema, True)
        return rng.randint(low, max(low, high))
    if t == "number":
        low, high = number_range(schema, False)
        return rng.uniform(low, high)
    if t == "boolean":
        return rng.random() < 0.5
    if t == "null":
        return None
    if t == "string":
        lo = schema.get("minLength", 0)
        hi = schema.get("maxLength", max(lo, 12))
        n = rng.randint(lo, max(lo, min(hi, lo + 12)))
        return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n))
    return "ok"


FENCE = re.compile(r"```json\s*\n(.*?)```", re.S)


def prompt_state(body):
    """The JSON block of the last user message (the prompt contract of plugins/sdk's proposals)."""
    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
    if not users or not isinstance(users[-1].get("content"), str):
        return None
    blocks = FENCE.findall(users[-1]["content"])
    if len(blocks) != 1:
        return None
    try:
        state = json.loads(blocks[0])
    except ValueError:
        return None
    return state if isinstance(state, dict) else None


def perturb(value, schema, rng):
    if "enum" in schema:
        if value in schema["enum"] and rng.random() >= 0.2:
            return value
        return rng.choice(schema["enum"])
    t = schema_type(schema)
    if t in ("number", "integer") and isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high = number_range(schema, t == "integer")
        v = value + rng.uniform(-0.1, 0.1) * (high - low)
        v = min(max(v, low), high)
        return int(round(v)) if t == "integer" else v
    return generate(schema, rng)


def perturb_best(schema, state, rng):
    """Proposals near the prompt's best trials: a scripted "LLM" for benchmarks."""
    best = [b for b in (state or {}).get("best", []) if isinstance(b, dict) and isinstance(b.get("params"), dict)]
    props = schema.get("properties", {}) if isinstance(schema, dict) else {}
    arr = props.get("proposals")
    if not best or not isinstance(arr, dict):
        return generate(schema, rng)
    items = arr.get("items", {})
    lo = arr.get("minItems", 1)
    hi = arr.get("maxItems", max(lo, state.get("count", lo) if isinstance(state.get("count"), int) else lo))
    proposals = []
    for i in range(max(lo, hi)):
        params = best[i % len(best)]["params"]
        p = {}
        for name, sub in items.get("properties", {}).items():
            p[name] = perturb(params[name], sub, rng) if name in params else generate(sub, rng)
        proposals.append(p)
    return {"proposals": proposals}


def tokens_of(text):
    return int(math.ceil(len(text) / 4.0))


# ---- server ---------------------------------------------------------------------------------------

class Gateway:
    def __init__(self, args):
        self.tokens = set(args.token or [])
        self.auth_state = args.auth_state
        self.answer = args.answer
        self.seed = args.seed
        self.models = args.models.split(",") if args.models else list(DEFAULT_MODELS)
        self.lock = threading.Lock()
        self.faults = []
        self.requests = []
        self.position = 0
        self.model_state = {m: "running" for m in self.models}

    def token_valid(self, token):
        if token in self.tokens:
            return True
        if not self.auth_state:
            return False
        try:
            with open(self.auth_state, encoding="utf-8") as f:
                state = json.load(f)
        except (OSError, ValueError):
            return False
        entry = state.get("access_tokens", {}).get(token)
        return bool(entry) and not entry.get("revoked") and entry.get("exp", 0) > time.time()


def error_body(code, message, info=None):
    return {"error": {"code": code, "message": message, "info": info or {}}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: with Nagle's algorithm the body waits for the
    # client's delayed ACK (~40 ms a request), which no real gateway adds.
    disable_nagle_algorithm = True
    gw = None  # set in main

    def log_message(self, fmt, *args):  # quiet: tests read stdout for LISTENING only
        pass

    def send_json(self, status, obj, headers=None):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        return status

    def send_response(self, code, message=None):
        record = getattr(self, "record", None)
        if record is not None and record["status"] is None:
            with self.gw.lock:
                record["status"] = code
        super().send_response(code, message)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def bearer(self):
        auth = self.headers.get("Authorization")
        if not auth:
            return None
        return auth[7:] if auth.startswith("Bearer ") else ""

    def unauthorized(self, token):
        if token is None:  # the gateway's GlobalAuth raises ninja's HttpError: {"detail": message}
            return self.send_json(401, {"detail": "Error: Missing ('Authorization': 'Bearer <your-access-token>') "
                                                  "in request headers."})
        return self.send_json(401, error_body("unauthorized", "Access token expired."))

    def do_GET(self):
        self.record = None  # a kept-alive connection reuses the handler
        gw = self.gw
        if self.path == HEALTH_PATH:
            self.send_json(200, {"status": "ok"})
        elif self.path == JOBS_PATH:
            token = self.bearer()
            if token is None or not gw.token_valid(token):
                self.unauthorized(token)
                return
            self.send_json(200, self.jobs())
        elif self.path == "/_control/requests":
            with gw.lock:
                self.send_json(200, list(gw.requests))
        else:
            self.send_json(404, {"detail": "Not Found"})

    def jobs(self):
        """JobsByStatus (resource_server_async/schemas/clusters.py), entries as the qstat function builds them."""
        out = {"running": [], "queued": [], "stopped": [], "others": [], "private_batch_running": [],
               "private_batch_queued": [], "cluster_status": {"free_nodes": 2}}
        with self.gw.lock:
            states = dict(self.gw.model_state)
        for i, (model, state) in enumerate(sorted(states.items())):
            entry = {"Models": model, "Framework": "vllm", "Cluster": "sophia"}
            if state == "stopped":
                out["stopped"].append(entry)
                continue
            entry.update({"Job ID": "%d.sophia-pbs-01.lab.alcf.anl.gov" % (100000 + i),
                          "Host Name": "N/A", "Job Comments": "N/A", "Nodes Reserved": "1"})
            if state in ("running", "starting"):
                entry.update({"Model Status": state, "Job State": "R", "Host Name": "sophia-gpu-%02d" % i,
                              "Walltime": "01:02:03"})
                out["running"].append(entry)
            elif state == "queued":
                entry.update({"Model Status": "queued", "Job State": "Q",
                              "Estimated Start Time": "Tue Dec 01 10:30:00 2026 (Chicago time)"})
                out["queued"].append(entry)
            else:
                entry.update({"Model Status": "other", "Job State": "H"})
                out["others"].append(entry)
        return out

    def do_POST(self):
        self.record = None
        gw = self.gw
        raw = self.read_body()
        if self.path == "/_control/faults":
            try:
                faults = json.loads(raw or b"[]")
                assert isinstance(faults, list) and all(isinstance(f, dict) for f in faults)
            except (ValueError, AssertionError):
                self.send_json(400, {"error": "faults: a JSON list of objects"})
                return
            with gw.lock:
                gw.faults.extend(faults)
            self.send_json(200, {"queued": len(gw.faults)})
            return
        if self.path != CHAT_PATH:
            self.send_json(404, {"detail": "Not Found"})
            return
        token = self.bearer()
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        record = {"body": body, "authorization": token is not None,
                  "token_prefix": (token or "")[:4], "status": None}
        with gw.lock:
            gw.requests.append(record)
        # The status goes into the record as the response starts (send_response), before the
        # client can see the answer and read the log.
        self.record = record
        self.chat(token, body)

    def chat(self, token, body):
        gw = self.gw
        # The gateway authenticates before it parses the payload; an unauthorized request consumes no fault.
        if token is None or not gw.token_valid(token):
            return self.unauthorized(token)
        with gw.lock:
            fault = gw.faults.pop(0) if gw.faults else {}
            position = gw.position
            gw.position += 1
        model = body.get("model") if isinstance(body, dict) else None
        if "model_state" in fault and isinstance(model, str):
            with gw.lock:
                gw.model_state[model] = fault["model_state"]
        time.sleep(float(fault.get("delay_s", 0)))
        status = fault.get("status")
        if status == 408:
            return self.send_json(408, error_body(
                "request_timeout", "Request timed out after 300 seconds; the model may still be loading. Retry later."))
        if status == 429:
            return self.send_json(429, error_body("too_many_requests", "Rate limit exceeded: too many requests."),
                                  {"Retry-After": str(fault["retry_after"])} if "retry_after" in fault else None)
        if status == 503:
            return self.send_json(503, error_body("cluster_under_maintenance", "Sophia is under maintenance."))
        if status == 202:
            return self.send_json(202, {"status": "task_accepted_and_pending", "task_id": "task-%d" % position},
                                  {"Retry-After": str(fault.get("retry_after", 2))})
        if status == 401:
            return self.send_json(401, error_body("unauthorized", "Access token expired."))
        if status is not None:
            return self.send_json(int(status), error_body("internal_error", "Internal Server Error"))
        try:
            validate_chat(body)
        except Invalid as e:
            return self.send_json(422, {"detail": [e.detail]})
        if model not in gw.models:
            return self.send_json(404, error_body(
                "endpoint_not_found", "The requested endpoint %r does not exist." %
                slugify("sophia vllm %s" % model.lower())))
        time.sleep(float(fault.get("slow_s", 0)))
        with gw.lock:
            gw.model_state[model] = "running"
        content = self.answer_content(body, position, fault)
        prompt_chars = sum(len(m["content"]) for m in body["messages"] if isinstance(m.get("content"), str))
        response = {
            "id": "chatcmpl-%d" % position, "object": "chat.completion", "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": tokens_of("x" * prompt_chars), "completion_tokens": tokens_of(content),
                      "total_tokens": tokens_of("x" * prompt_chars) + tokens_of(content)},
        }
        if fault.get("truncate"):
            data = json.dumps(response).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data) + 100))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return 200
        if fault.get("garbage"):
            data = b"<html>502 Bad Gateway</html>"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return 200
        return self.send_json(200, response)

    def answer_content(self, body, position, fault):
        gw = self.gw
        rng = random.Random("%d:%d" % (gw.seed, position))
        if fault.get("malformed"):
            return "Sure! Here are some proposals: x1 = 0.5, x2 = 3 (I hope this helps)."
        rf = body.get("response_format") or {}
        if rf.get("type") == "json_schema":
            schema = rf["json_schema"].get("schema", {}) or {}
            if gw.answer == "perturb-best":
                value = perturb_best(schema, prompt_state(body), rng)
            else:
                value = generate(schema, rng)
            return json.dumps(value)
        if rf.get("type") == "json_object":
            return json.dumps({"answer": rng.randint(0, 100)})
        return "This is answer %d of the Sophia gateway double." % position


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--auth-state", help="the Globus Auth double's --state file (read on every request)")
    p.add_argument("--token", action="append", help="an always-valid access token (repeatable)")
    p.add_argument("--answer", choices=["random", "perturb-best"], default="random")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--models", help="comma-separated model names (default: Sophia's usual ones)")
    args = p.parse_args(argv)
    Handler.gw = Gateway(args)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print("LISTENING %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
