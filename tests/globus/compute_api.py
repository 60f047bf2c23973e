#!/usr/bin/env python3
"""A stand-in for the Globus Compute web service and one user endpoint, for tests only.

Python 3 standard library only (3.8+). Listens on 127.0.0.1, prints `LISTENING <port>` on stdout, then serves:

  POST /v3/functions                  register a function -> {"function_uuid"}
  POST /v3/endpoints/{ep}/submit      many tasks in one request -> {"request_id","task_group_id","endpoint_id","tasks"}
  GET  /v2/tasks/{id}                 {"task_id","status"[,"result"|"exception","completion_t","details"]}
  POST /v2/batch_status               {"task_ids":[...]} -> {"response":"batch","results":{id: task doc}}
  GET  /v2/endpoints/{ep}/status      {"status":"online"|"offline","details":{...}}
  POST /_control/endpoint             {"online": bool}
  POST /_control/faults               a JSON list; each entry is consumed by the next non-control request
  GET  /_control/requests             every non-control request: method, path, body_size, status
  POST /_control/lose_worker          {"count": n} (default 1): the next n tasks to start fail as a lost worker
  GET  /_control/tasks                the double's view of every task (state, worker, accelerator); for tests

Tasks really run, as an endpoint would run them: --workers threads, each starting a fresh `python3` per task
(WORKER_RUNNER below) with the environment Parsl's HighThroughputExecutor gives a worker. See
tests/globus/README.md for what each behaviour was checked against.
"""

import argparse
import base64
import json
import math
import os
import platform
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# The Globus Compute resource server (the uuid in its scope
# https://auth.globus.org/scopes/facd7ccc-c5f4-42aa-916b-a0e270e2c2a9/all).
COMPUTE_RS = "facd7ccc-c5f4-42aa-916b-a0e270e2c2a9"
COMPUTE_SCOPE = "https://auth.globus.org/scopes/%s/all" % COMPUTE_RS
SDK_VERSION = "4.19.0"  # what the double's "endpoint" claims to run, in task details
MAX_PAYLOAD = 10 * 1024 * 1024  # docs/limits.rst: 10MB on submissions and on results
RESULT_LIMIT = 10 * 1024 * 1024  # engines/helper.py: _RESULT_SIZE_LIMIT = 10 MiB

SUBMIT_KEYS = {"tasks", "task_group_id", "create_queue", "resource_specification", "user_endpoint_config",
               "user_runtime", "result_serializers"}
REGISTER_KEYS = {"function_name", "function_code", "serialized", "meta", "description", "public", "group",
                 "ha_endpoint_id"}
JSON_DATA = "globus_compute_sdk.serialize.JSONData"
DILL_DATA = "globus_compute_sdk.serialize.DillDataBase64"
KNOWN_RESULT_SERIALIZERS = {JSON_DATA, DILL_DATA, "globus_compute_sdk.serialize.concretes.JSONData",
                            "globus_compute_sdk.serialize.concretes.DillDataBase64"}

# globus_compute_common.tasks.TaskState values the double reports.
WAITING_FOR_EP = "waiting-for-ep"
WAITING_FOR_LAUNCH = "waiting-for-launch"
RUNNING = "running"
SUCCESS = "success"
FAILED = "failed"

WORKER_LOST_TEMPLATE = (
    "+" * 68 + "\n"
    "Traceback (most recent call last):\n"
    '  File "/opt/globus-compute/lib/python3.11/site-packages/parsl/executors/high_throughput/executor.py", '
    "line 610, in _result_queue_worker\n"
    "    raise WorkerLost(worker_id, hostname)\n"
    "parsl.executors.high_throughput.errors.WorkerLost: Task failure due to loss of worker {worker} on host {host}\n"
    + "-" * 68
)


class ApiError(Exception):
    """An error answer in the service's shape (funcx-common's FuncxResponseError.pack, code as a string)."""

    def __init__(self, http_status, code, reason, error_args=(), headers=None):
        super().__init__(reason)
        self.http_status = http_status
        self.body = {"status": "Failed", "code": code, "error_args": list(error_args), "reason": reason,
                     "http_status_code": http_status}
        self.headers = headers or {}


def invalid_uuid(value):
    return ApiError(400, "INVALID_UUID", "Invalid UUID provided: %s" % value, [value])


def as_uuid(value):
    try:
        return str(uuid.UUID(str(value)))
    except (ValueError, TypeError, AttributeError):
        raise invalid_uuid(value)


def unpack_buffers(packed):
    """The SDK's pack_buffers framing: concat(f"{len(b)}\\n{b}"), len in code points (Python str length)."""
    out = []
    while packed:
        head, sep, rest = packed.partition("\n")
        if not sep:
            raise ValueError("Missing newline delimiter")
        n = int(head)
        if n < 0 or len(rest) < n:
            raise ValueError("Truncated buffer: expected %d characters, but only %d characters remain" % (n, len(rest)))
        out.append(rest[:n])
        packed = rest[n:]
    return out


def pack_buffers(buffers):
    return "".join("%d\n%s" % (len(b), b) for b in buffers)


# The program each task runs in: `python3 -c WORKER_RUNNER RESULT_FILE`, the task buffer (3 packed buffers:
# function, args, kwargs, as the service concatenates them) on stdin. It mirrors
# globus_compute_endpoint/engines/helper.py:execute_task for the strategies it knows without the SDK: code "st"
# (PureSourceTextInspect: "st\n" + name + ":" + source, exec'd, the name looked up), data "11" (JSONData). Results
# are serialized with the submission's result_serializers (in order), JSONData or DillDataBase64 (pickle, which
# dill reads), DillDataBase64 when none is given, as the SDK's default. It writes {"result"} or {"exception"}
# (a traceback as the endpoint's get_error_string formats it) to RESULT_FILE.
WORKER_RUNNER = r'''
import base64, json, os, pickle, sys, traceback

JSON_DATA = ("globus_compute_sdk.serialize.JSONData", "globus_compute_sdk.serialize.concretes.JSONData")

def unpack(packed):
    out = []
    while packed:
        head, _, rest = packed.partition("\n")
        n = int(head)
        out.append(rest[:n])
        packed = rest[n:]
    return out

def chomp(buf, ident):
    head, _, body = buf.partition("\n")
    if head != ident:
        raise ValueError("Buffer does not start with identifier:%s\n" % ident)
    return body

def decode_data(buf):
    if buf.startswith("11\n"):
        return json.loads(chomp(buf, "11"))
    if buf.startswith("00\n"):
        return pickle.loads(base64.b64decode(chomp(buf, "00")))
    raise ValueError("Invalid header: %s in data payload" % buf[:3])

def decode_code(buf):
    if not buf.startswith("st\n"):
        raise ValueError("Invalid header: %s in data payload (this double runs only PureSourceTextInspect)"
                         % buf[:3])
    name, body = chomp(buf, "st").split(":", 1)
    ns = {}
    exec(compile(body, "<string>", "exec"), ns)
    return ns[name]

def encode(value, strategies):
    errors = []
    for s in strategies:
        try:
            if s in JSON_DATA:
                return "11\n" + json.dumps(value)
            return "00\n" + base64.encodebytes(pickle.dumps(value)).decode()
        except Exception as e:
            errors.append(e)
    raise TypeError("All strategies failed.")

def inner(tb, levels=2):
    while levels > 0:
        tb = tb.tb_next if tb.tb_next is not None else tb
        levels -= 1
    return tb

def main():
    out_path, strategies = sys.argv[1], json.loads(sys.argv[2])
    limit = int(sys.argv[3])
    task = sys.stdin.read()
    try:
        fn_buf, args_buf, kwargs_buf = unpack(task)
        f = decode_code(fn_buf)
        args, kwargs = decode_data(args_buf), decode_data(kwargs_buf)
        raw = f(*args, **kwargs)
        result = encode(raw, strategies or ["globus_compute_sdk.serialize.DillDataBase64"])
        if len(result) > limit:
            answer = {"exception": "MaxResultSizeExceeded(%d, %d)" % (len(result), limit)}
        else:
            answer = {"result": result}
    except Exception as e:
        answer = {"exception": "".join(traceback.format_exception(type(e), e, inner(e.__traceback__)))}
    tmp = out_path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(answer, fh)
    os.replace(tmp, out_path)

main()
'''


class Task:
    __slots__ = ("task_id", "function_id", "endpoint_id", "task_group_id", "buffer", "result_serializers",
                 "status", "result", "exception", "completion_t", "completed_at", "exec_start", "exec_end",
                 "worker", "accelerator", "function_code_size", "arguments_size")

    def __init__(self, **kw):
        for k in self.__slots__:
            setattr(self, k, kw.get(k))


class Compute:
    """The double's state: functions, tasks, endpoint status, rate window, faults, request log. Guarded by `lock`."""

    def __init__(self, args):
        self.lock = threading.Lock()
        self.work = threading.Condition(self.lock)
        self.tokens = set(args.token or [])
        self.auth_state = args.auth_state
        self.result_ttl = args.result_ttl
        self.keep_fetched = args.keep_fetched
        n, _, window = args.rate.partition("/")
        self.rate_n, self.rate_window = int(n), float(window or 10)
        self.max_payload = args.max_payload
        self.result_limit = args.result_limit
        self.endpoints = set(as_uuid(e) for e in (args.endpoint or []))
        self.online = not args.offline
        self.functions = {}
        self.tasks = {}
        self.queue = deque()
        self.faults = deque()
        self.lose = 0
        self.requests = []
        self.recent = deque()  # times of accepted requests within the rate window
        self.accelerators = [a for a in (args.accelerators or "").split(",") if a]
        workers = args.workers
        if self.accelerators:  # Parsl: worker_count = min(len(available_accelerators), worker_count)
            workers = min(workers, len(self.accelerators))
        self.worker_count = max(1, workers)
        self.busy = 0
        self.python = args.worker_python
        self.work_dir = os.path.abspath(args.work_dir or tempfile.mkdtemp(prefix="gc-double-"))
        os.makedirs(self.work_dir, exist_ok=True)
        self.hostname = platform.node() or "localhost"
        self.pool_id = secrets.token_hex(6)
        self.procs = {}
        for rank in range(self.worker_count):
            threading.Thread(target=self.worker, args=(rank,), daemon=True).start()

    # ---- auth, rate limit -------------------------------------------------------------------------------------

    def check_auth(self, header):
        unauthorized = ApiError(401, "UNKNOWN_ERROR", "401 Unauthorized: method requires token authenticated access")
        if not header or not header.startswith("Bearer "):
            raise unauthorized
        token = header[len("Bearer "):].strip()
        if token in self.tokens:
            return
        entry = None
        if self.auth_state:
            try:
                with open(self.auth_state) as f:
                    entry = json.load(f).get("access_tokens", {}).get(token)
            except (OSError, ValueError):
                entry = None
        if not entry or entry.get("revoked") or float(entry.get("exp", 0)) <= time.time():
            raise unauthorized
        rs = entry.get("resource_server")
        if rs is not None and rs != COMPUTE_RS:
            raise ApiError(403, "UNKNOWN_ERROR", "403 Forbidden: Missing Scopes")

    def check_rate(self):
        """At most rate_n accepted requests in any rate_window seconds; a refused one does not count."""
        now = time.time()
        while self.recent and self.recent[0] <= now - self.rate_window:
            self.recent.popleft()
        if len(self.recent) >= self.rate_n:
            wait = max(1, int(math.ceil(self.recent[0] + self.rate_window - now)))
            raise ApiError(429, "TOO_MANY_REQUESTS",
                           "Rate limit exceeded: at most %d requests in %g seconds" % (self.rate_n, self.rate_window),
                           headers={"Retry-After": str(wait)})
        self.recent.append(now)

    # ---- tasks ------------------------------------------------------------------------------------------------

    def expire(self, task):
        """True (and forgets the task) when its result was not fetched within result_ttl of completion."""
        if task.completed_at is not None and time.time() - task.completed_at > self.result_ttl:
            self.tasks.pop(task.task_id, None)
            return True
        return False

    def doc(self, task):
        d = {"task_id": task.task_id, "status": task.status}
        if task.status in (SUCCESS, FAILED):
            if task.result is not None:
                d["result"] = task.result
            if task.exception is not None:
                d["exception"] = task.exception
            d["completion_t"] = task.completion_t
            d["details"] = {
                "os": platform.platform(),
                "python_version": platform.python_version(),
                "globus_compute_sdk_version": SDK_VERSION,
                "endpoint_id": task.endpoint_id,
                "task_transitions": {"execution-start": task.exec_start, "execution-end": task.exec_end},
            }
            if not self.keep_fetched:  # the service deletes a task once its result or exception was read
                self.tasks.pop(task.task_id, None)
        return d

    def register(self, body):
        if not isinstance(body, dict):
            raise ApiError(400, "REQUEST_MALFORMED", "Request Malformed. Missing critical information: body")
        for key in body:
            if key not in REGISTER_KEYS:
                raise ApiError(400, "REQUEST_MALFORMED",
                               "Request Malformed. Missing critical information: unknown field %r" % key, [key])
        for key in ("function_name", "function_code"):
            if not isinstance(body.get(key), str) or not body[key]:
                raise ApiError(400, "REQUEST_KEY_ERROR", "Missing key in JSON request - '%s'" % key, ["'%s'" % key])
        name, code = body["function_name"], body["function_code"]
        if len(code) > self.max_payload:
            raise ApiError(413, "FUNCTION_TOO_LARGE",
                           "Function source code is too large: %d bytes > %d bytes" % (len(code), self.max_payload),
                           [len(code), self.max_payload])
        if body.get("serialized", True):
            try:
                bufs = unpack_buffers(code)
            except ValueError as e:
                raise ApiError(400, "REQUEST_MALFORMED", "Request Malformed. Missing critical information: "
                               "function_code is not a packed buffer (%s)" % e)
            if len(bufs) != 1 or len(bufs[0]) < 3 or bufs[0][2] != "\n":
                raise ApiError(400, "REQUEST_MALFORMED", "Request Malformed. Missing critical information: "
                               "function_code must pack exactly one serialized function")
            packed = code
        else:  # register_source_code: plain source, run as PureSourceTextInspect would
            packed = pack_buffers(["st\n" + name + ":" + code])
        fid = str(uuid.uuid4())
        self.functions[fid] = {"function_name": name, "function_code": packed, "meta": body.get("meta"),
                               "serialized": bool(body.get("serialized", True))}
        return {"function_uuid": fid}

    def submit(self, ep, body, body_size):
        ep = as_uuid(ep)
        if self.endpoints and ep not in self.endpoints:
            raise ApiError(404, "ENDPOINT_NOT_FOUND", "Endpoint %s could not be resolved" % ep, [ep])
        if not isinstance(body, dict):
            raise ApiError(400, "REQUEST_MALFORMED", "Request Malformed. Missing critical information: body")
        for key in body:
            if key not in SUBMIT_KEYS:
                raise ApiError(400, "REQUEST_MALFORMED",
                               "Request Malformed. Missing critical information: unknown field %r" % key, [key])
        if "tasks" not in body:
            raise ApiError(400, "REQUEST_KEY_ERROR", "Missing key in JSON request - 'tasks'", ["'tasks'"])
        tasks = body["tasks"]
        if not isinstance(tasks, dict) or not all(isinstance(v, list) and all(isinstance(p, str) for p in v)
                                                  for v in tasks.values()):
            raise ApiError(400, "REQUEST_MALFORMED", "Request Malformed. Missing critical information: "
                           "tasks must map function ids to lists of serialized arguments")
        serializers = body.get("result_serializers") or []
        if not isinstance(serializers, list) or any(s not in KNOWN_RESULT_SERIALIZERS for s in serializers):
            raise ApiError(400, "REQUEST_MALFORMED", "Request Malformed. Missing critical information: "
                           "unknown result_serializers %r" % (serializers,))
        tgid = as_uuid(body["task_group_id"]) if body.get("task_group_id") else str(uuid.uuid4())
        if body_size > self.max_payload:
            raise ApiError(413, "TASK_PAYLOAD_TOO_LARGE",
                           "Batch submission is too large: %d bytes > %d bytes" % (body_size, self.max_payload),
                           [body_size, self.max_payload])
        planned = []
        for fid, payloads in tasks.items():
            fid_n = as_uuid(fid)
            fn = self.functions.get(fid_n)
            if fn is None:
                raise ApiError(404, "FUNCTION_NOT_FOUND", "Function %s could not be resolved" % fid_n, [fid_n])
            for p in payloads:
                tid = str(uuid.uuid4())
                fsize, asize = len(fn["function_code"]), len(p)
                if fsize + asize > self.max_payload:
                    raise ApiError(413, "TASK_PAYLOAD_TOO_LARGE",
                                   "Payload for task %s in task group %s is too large: %d bytes > %d bytes "
                                   "(%d bytes due to serialized function code, %d bytes due to arguments)"
                                   % (tid, tgid, fsize + asize, self.max_payload, fsize, asize),
                                   [tgid, tid, self.max_payload, fsize, asize])
                planned.append((fid, fid_n, tid, fn["function_code"] + p, fsize, asize))
        answer = {}
        for fid, fid_n, tid, buf, fsize, asize in planned:
            self.tasks[tid] = Task(task_id=tid, function_id=fid_n, endpoint_id=ep, task_group_id=tgid, buffer=buf,
                                   result_serializers=list(serializers), status=WAITING_FOR_EP if not self.online
                                   else WAITING_FOR_LAUNCH, function_code_size=fsize, arguments_size=asize)
            self.queue.append(tid)
            answer.setdefault(fid, []).append(tid)
        self.work.notify_all()
        return {"request_id": str(uuid.uuid4()), "task_group_id": tgid, "endpoint_id": ep, "tasks": answer}

    def get_task(self, tid):
        task = self.tasks.get(tid)
        if task is None or self.expire(task):
            raise ApiError(404, "TASK_NOT_FOUND", "Task %s not found" % tid, [tid])
        return self.doc(task)

    def batch_status(self, body):
        if not isinstance(body, dict) or "task_ids" not in body:
            raise ApiError(400, "REQUEST_KEY_ERROR", "Missing key in JSON request - 'task_ids'", ["'task_ids'"])
        ids = body["task_ids"]
        if not isinstance(ids, list):
            raise ApiError(400, "REQUEST_MALFORMED", "Request Malformed. Missing critical information: task_ids")
        results = {}
        for tid in ids:
            tid = str(tid)
            task = self.tasks.get(tid)
            if task is None or self.expire(task):
                results[tid] = {"task_id": tid, "status": FAILED, "reason": "Unknown task id"}
            else:
                results[tid] = self.doc(task)
        return {"response": "batch", "results": results}

    def endpoint_status(self, ep):
        ep = as_uuid(ep)
        if self.endpoints and ep not in self.endpoints:
            raise ApiError(404, "ENDPOINT_NOT_FOUND", "Endpoint %s could not be resolved" % ep, [ep])
        waiting = sum(1 for t in self.queue if t in self.tasks)
        details = {"total_workers": self.worker_count if self.online else 0,
                   "idle_workers": (self.worker_count - self.busy) if self.online else 0,
                   "pending_tasks": waiting, "outstanding_tasks": waiting + self.busy,
                   "managers": 1 if self.online else 0}
        return {"status": "online" if self.online else "offline", "details": details}

    def set_online(self, online):
        self.online = bool(online)
        for tid in self.queue:
            task = self.tasks.get(tid)
            if task is not None and task.status in (WAITING_FOR_EP, WAITING_FOR_LAUNCH):
                task.status = WAITING_FOR_LAUNCH if self.online else WAITING_FOR_EP
        self.work.notify_all()

    # ---- the endpoint's workers -------------------------------------------------------------------------------

    def worker(self, rank):
        accel = self.accelerators[rank] if self.accelerators else None
        while True:
            with self.work:
                while not (self.online and self.queue):
                    self.work.wait(0.5)
                tid = self.queue.popleft()
                task = self.tasks.get(tid)
                if task is None:
                    continue
                task.status, task.worker, task.accelerator = RUNNING, rank, accel
                task.exec_start = time.time()
                lose = self.lose > 0
                if lose:
                    self.lose -= 1
                self.busy += 1
            try:
                result, exception = self.run_task(task, rank, accel, lose)
            except Exception as e:  # the double's own failure: reported, not hidden
                result, exception = None, "".join(traceback.format_exception(type(e), e, e.__traceback__))
            with self.work:
                self.busy -= 1
                task.exec_end = time.time()
                task.buffer = None
                task.result, task.exception = result, exception
                task.status = FAILED if exception is not None else SUCCESS
                task.completion_t = repr(task.exec_end)
                task.completed_at = task.exec_end

    def run_task(self, task, rank, accel, lose):
        env = dict(os.environ)
        env.update({"PARSL_WORKER_RANK": str(rank), "PARSL_WORKER_COUNT": str(self.worker_count),
                    "PARSL_WORKER_POOL_ID": self.pool_id, "PARSL_WORKER_BLOCK_ID": "0",
                    "GC_TASK_UUID": task.task_id})
        env.pop("GC_TASK_SANDBOX_DIR", None)
        if accel is not None:
            env.update({"CUDA_VISIBLE_DEVICES": accel, "ROCR_VISIBLE_DEVICES": accel, "ZE_AFFINITY_MASK": accel,
                        "ZE_ENABLE_PCI_ID_DEVICE_ORDER": "1"})
        out_path = os.path.join(self.work_dir, ".result-%s.json" % task.task_id)
        log_path = os.path.join(self.work_dir, ".worker-%s.log" % task.task_id)
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([self.python, "-c", WORKER_RUNNER, out_path, json.dumps(task.result_serializers),
                                     str(self.result_limit)], stdin=subprocess.PIPE, stdout=log, stderr=log,
                                    cwd=self.work_dir, env=env, start_new_session=True)
            with self.lock:
                self.procs[task.task_id] = proc
            try:
                if lose:
                    os.killpg(proc.pid, signal.SIGKILL)
                try:
                    proc.stdin.write(task.buffer.encode("utf-8"))
                    proc.stdin.close()
                except (BrokenPipeError, OSError):
                    pass
                proc.wait()
            finally:
                with self.lock:
                    self.procs.pop(task.task_id, None)
        try:
            with open(out_path) as f:
                answer = json.load(f)
            os.unlink(out_path)
        except (OSError, ValueError):
            # No answer: the worker process died (killed, segfault, os._exit): Parsl reports WorkerLost.
            return None, WORKER_LOST_TEMPLATE.format(worker=rank, host=self.hostname)
        return answer.get("result"), answer.get("exception")

    def kill_all(self):
        with self.lock:
            procs = list(self.procs.values())
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "globus-compute-double"
    sys_version = ""
    compute = None  # set by main

    def log_message(self, fmt, *args):  # quiet: tests read /_control/requests
        pass

    def reply(self, status, body, headers=None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        return status

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_PUT(self):
        self.handle_any("PUT")

    def do_DELETE(self):
        self.handle_any("DELETE")

    def handle_any(self, method):
        path = self.path.split("?", 1)[0]
        raw = self.read_body()
        c = self.compute
        if path.startswith("/_control/"):
            return self.control(method, path, raw)
        record = {"method": method, "path": path, "body_size": len(raw), "status": None, "t": time.time()}
        with c.lock:
            c.requests.append(record)
            fault = c.faults.popleft() if c.faults else None
        if fault is not None:
            if fault.get("delay_s"):
                time.sleep(float(fault["delay_s"]))
            if fault.get("drop"):
                record["status"] = "dropped"
                self.close_connection = True
                try:
                    self.connection.shutdown(2)
                except OSError:
                    pass
                return
            if fault.get("status"):
                st = int(fault["status"])
                headers = {}
                if st == 429:
                    headers["Retry-After"] = str(fault.get("retry_after", 1))
                    err = ApiError(429, "TOO_MANY_REQUESTS", "Rate limit exceeded (injected)")
                else:
                    err = ApiError(st, "INTERNAL_ERROR" if st >= 500 else "UNKNOWN_ERROR",
                                   "An unknown error occurred: injected %d" % st)
                # Recorded before the answer goes out: a client that reads /_control/requests
                # right after its answer must find the status there.
                record["status"] = st
                self.reply(st, err.body, headers)
                return
        try:
            with c.lock:
                c.check_rate()
                c.check_auth(self.headers.get("Authorization"))
                status, body = 200, self.route(method, path, raw)
            headers = {}
        except ApiError as e:
            status, body, headers = e.http_status, e.body, e.headers
        record["status"] = status
        self.reply(status, body, headers)

    def route(self, method, path, raw):
        c = self.compute
        parts = [p for p in path.split("/") if p]

        def body():
            try:
                return json.loads(raw.decode("utf-8") or "null")
            except (ValueError, UnicodeDecodeError):
                raise ApiError(400, "REQUEST_MALFORMED", "Request Malformed. Missing critical information: "
                               "body is not JSON")

        if method == "POST" and parts == ["v3", "functions"]:
            return c.register(body())
        if method == "POST" and len(parts) == 4 and parts[:2] == ["v3", "endpoints"] and parts[3] == "submit":
            return c.submit(parts[2], body(), len(raw))
        if method == "GET" and len(parts) == 3 and parts[:2] == ["v2", "tasks"]:
            return c.get_task(parts[2])
        if method == "POST" and parts == ["v2", "batch_status"]:
            return c.batch_status(body())
        if method == "GET" and len(parts) == 4 and parts[:2] == ["v2", "endpoints"] and parts[3] == "status":
            return c.endpoint_status(parts[2])
        raise ApiError(404, "UNKNOWN_ERROR", "404 Not Found: The requested URL was not found on the server.")

    def control(self, method, path, raw):
        c = self.compute
        try:
            req = json.loads(raw.decode() or "null")
        except ValueError:
            return self.reply(400, {"error": "bad control request: not JSON"})
        with c.lock:
            if method == "POST" and path == "/_control/endpoint":
                if not isinstance(req, dict) or "online" not in req:
                    return self.reply(400, {"error": "want {\"online\": bool}"})
                c.set_online(req["online"])
                return self.reply(200, {"online": c.online})
            if method == "POST" and path == "/_control/faults":
                if not isinstance(req, list) or not all(isinstance(f, dict) for f in req):
                    return self.reply(400, {"error": "want a JSON list of fault objects"})
                c.faults.extend(req)
                return self.reply(200, {"queued": len(c.faults)})
            if method == "POST" and path == "/_control/lose_worker":
                c.lose += int((req or {}).get("count", 1))
                return self.reply(200, {"lose": c.lose})
            if method == "GET" and path == "/_control/requests":
                return self.reply(200, c.requests)
            if method == "GET" and path == "/_control/tasks":
                return self.reply(200, {tid: {"status": t.status, "worker": t.worker, "accelerator": t.accelerator,
                                              "function_id": t.function_id, "task_group_id": t.task_group_id}
                                        for tid, t in c.tasks.items()})
            if method == "GET" and path == "/_control/functions":
                return self.reply(200, c.functions)
        return self.reply(404, {"error": "not_found"})


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--token", action="append", help="a bearer token accepted as valid (repeatable)")
    p.add_argument("--auth-state", help="the Globus Auth double's state file; its live tokens are valid")
    p.add_argument("--workers", type=int, default=4, help="worker threads (Parsl: max_workers_per_node)")
    p.add_argument("--accelerators", default="", help="comma-separated, e.g. 0,1,2 (available_accelerators)")
    p.add_argument("--result-ttl", type=float, default=1800.0, help="seconds a completed result waits to be fetched")
    p.add_argument("--rate", default="20/10", help="N/S: at most N requests in any S seconds")
    p.add_argument("--max-payload", type=int, default=MAX_PAYLOAD, help="submission/registration size limit")
    p.add_argument("--result-limit", type=int, default=RESULT_LIMIT, help="serialized result size limit")
    p.add_argument("--endpoint", action="append", help="known endpoint ids (default: any uuid is one endpoint)")
    p.add_argument("--offline", action="store_true", help="start with the endpoint offline")
    p.add_argument("--keep-fetched", action="store_true", help="keep a task after its result was read")
    p.add_argument("--worker-python", default=sys.executable, help="python that runs each task")
    p.add_argument("--work-dir", help="the endpoint's tasks_working_dir (default: a new temporary directory)")
    args = p.parse_args(argv)
    compute = Compute(args)
    Handler.compute = compute
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: (compute.kill_all(), os._exit(0)))
    print("LISTENING %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        compute.kill_all()


if __name__ == "__main__":
    sys.exit(main())
