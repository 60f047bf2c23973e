"""Unit tests of the Globus Compute double and of the trial function host/src/executor/globus/trial.py
(bash tests/globus/run-tests.sh).

The SdkWireFormatTest class needs the real globus-compute-sdk (scripts/setup-globus-sdk.sh); under a python
without it those tests are skipped, with the reason printed by unittest.
"""

import ast
import glob
import http.client
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import compute_api as gc  # noqa: E402

try:
    import globus_compute_sdk  # noqa: F401
    from globus_compute_sdk.serialize import ComputeSerializer, JSONData, PureSourceTextInspect, DillDataBase64
    from globus_compute_sdk.serialize.utils import pack_buffers as sdk_pack, unpack_buffers as sdk_unpack
    from globus_compute_sdk.sdk.batch import Batch
    from globus_compute_sdk.sdk.client import FunctionRegistrationData
    from globus_compute_sdk.errors import MaxResultSizeExceeded, TaskExecutionFailed
    from globus_compute_sdk.version import __version__ as SDK_VERSION
    HAVE_SDK = True
except ImportError:
    HAVE_SDK = False

EP = "6f3a0c2e-7d1b-4e5a-9c8d-0123456789ab"
JSON_RESULTS = ["globus_compute_sdk.serialize.JSONData"]
# The function the Rust globus executor registers (include_str!'d there).
TRIAL_PATH = os.path.join(HERE, "..", "..", "host", "src", "executor", "globus", "trial.py")
with open(TRIAL_PATH) as _f:
    TRIAL_SOURCE = _f.read()


def find_python38():
    """A working python3.8 (a pyenv shim may exist without one), or None."""
    cands = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3.8")))
    if shutil.which("python3.8"):
        cands.append(shutil.which("python3.8"))
    for cand in cands:
        try:
            subprocess.run([cand, "-c", "import sys; assert sys.version_info[:2] == (3, 8)"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
            return cand
        except (OSError, subprocess.SubprocessError):
            continue
    return None


PY38 = find_python38()


def st_function(name, source):
    """What the Rust host registers: pack(["st\\n" + name + ":" + source])."""
    return gc.pack_buffers(["st\n" + name + ":" + source])


def json_task(args, kwargs=None):
    return gc.pack_buffers(["11\n" + json.dumps(args), "11\n" + json.dumps(kwargs or {})])


class Server:
    def __init__(self, *args):
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "compute_api.py"), "--port", "0"]
                                     + list(args), stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("LISTENING "), line
        self.port = int(line.split()[1])

    def request(self, method, path, body=None, token="good-token", raw=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        h = {}
        if token is not None:
            h["Authorization"] = "Bearer " + token
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            h["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=h)
        resp = conn.getresponse()
        out = resp.read()
        conn.close()
        return resp.status, json.loads(out), resp

    def control(self, method, path, body=None):
        return self.request(method, "/_control/" + path, body, token=None)[1]

    def register(self, name, source, **kw):
        st, body, _ = self.request("POST", "/v3/functions",
                                   {"function_name": name, "function_code": st_function(name, source)}, **kw)
        assert st == 200, body
        return body["function_uuid"]

    def submit(self, fid, payloads, ep=EP, serializers=JSON_RESULTS, **extra):
        body = {"tasks": {fid: payloads}, "create_queue": False}
        if serializers:
            body["result_serializers"] = serializers
        body.update(extra)
        return self.request("POST", "/v3/endpoints/%s/submit" % ep, body)

    def wait(self, tids, timeout=20, every=0.05):
        """Polls batch_status until every task is done; returns {tid: doc} (each fetched once)."""
        done, deadline = {}, time.time() + timeout
        while len(done) < len(tids) and time.time() < deadline:
            st, body, _ = self.request("POST", "/v2/batch_status", {"task_ids": [t for t in tids if t not in done]})
            assert st == 200, body
            for tid, doc in body["results"].items():
                if doc["status"] in ("success", "failed"):
                    done[tid] = doc
            time.sleep(every)
        assert len(done) == len(tids), "tasks not done: %s" % done
        return done

    def status_of(self, tid):
        return self.control("GET", "tasks").get(tid, {}).get("status")

    def close(self):
        self.proc.terminate()
        self.proc.wait(5)
        self.proc.stdout.close()


def wait_until(pred, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


ADD = "def add(x, y=0):\n    return {'sum': x + y, 'cwd': __import__('os').getcwd()}\n"
BOOM = "def boom(msg):\n    raise ValueError(msg)\n"
SLEEPY = "def sleepy(s):\n    import time\n    time.sleep(s)\n    return s\n"
ENVF = ("def envf():\n    import os\n    keys = ['CUDA_VISIBLE_DEVICES', 'ROCR_VISIBLE_DEVICES', 'ZE_AFFINITY_MASK',\n"
        "            'ZE_ENABLE_PCI_ID_DEVICE_ORDER', 'PARSL_WORKER_RANK', 'PARSL_WORKER_COUNT', 'GC_TASK_UUID']\n"
        "    return {k: os.environ.get(k) for k in keys}\n")


class RoutesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s = Server("--token", "good-token", "--rate", "1000/10", "--workers", "2")

    @classmethod
    def tearDownClass(cls):
        cls.s.close()

    def test_register_submit_poll_result(self):
        fid = self.s.register("add", ADD)
        uuid.UUID(fid)
        st, body, _ = self.s.submit(fid, [json_task([2], {"y": 3}), json_task([10])])
        self.assertEqual(st, 200, body)
        self.assertEqual(set(body), {"request_id", "task_group_id", "endpoint_id", "tasks"})
        self.assertEqual(body["endpoint_id"], EP)
        tids = body["tasks"][fid]
        self.assertEqual(len(tids), 2)
        docs = self.s.wait(tids)
        a, b = docs[tids[0]], docs[tids[1]]
        self.assertEqual(a["status"], "success")
        self.assertTrue(a["result"].startswith("11\n"))
        self.assertEqual(json.loads(a["result"][3:])["sum"], 5)
        self.assertEqual(json.loads(b["result"][3:])["sum"], 10)
        self.assertEqual(a["task_id"], tids[0])
        float(a["completion_t"])
        self.assertIsInstance(a["completion_t"], str)
        self.assertIn("task_transitions", a["details"])
        self.assertNotIn("exception", a)

    def test_a_fetched_result_is_gone(self):
        fid = self.s.register("add", ADD)
        tid = self.s.submit(fid, [json_task([1])])[1]["tasks"][fid][0]
        wait_until(lambda: self.s.status_of(tid) == "success")
        st, doc, _ = self.s.request("GET", "/v2/tasks/" + tid)
        self.assertEqual((st, doc["status"]), (200, "success"))
        st, doc, _ = self.s.request("GET", "/v2/tasks/" + tid)
        self.assertEqual(st, 404)
        self.assertEqual(doc, {"status": "Failed", "code": "TASK_NOT_FOUND", "error_args": [tid],
                               "reason": "Task %s not found" % tid, "http_status_code": 404})
        st, body, _ = self.s.request("POST", "/v2/batch_status", {"task_ids": [tid]})
        self.assertEqual(body, {"response": "batch", "results": {tid: {"task_id": tid, "status": "failed",
                                                                       "reason": "Unknown task id"}}})

    def test_pending_task_doc_has_no_result(self):
        fid = self.s.register("sleepy", SLEEPY)
        tid = self.s.submit(fid, [json_task([1.0])])[1]["tasks"][fid][0]
        self.assertTrue(wait_until(lambda: self.s.status_of(tid) == "running"))
        st, doc, _ = self.s.request("GET", "/v2/tasks/" + tid)
        self.assertEqual((st, doc), (200, {"task_id": tid, "status": "running"}))
        self.assertEqual(self.s.wait([tid])[tid]["status"], "success")

    def test_exception_is_a_failed_task_with_the_traceback(self):
        fid = self.s.register("boom", BOOM)
        tid = self.s.submit(fid, [json_task(["no good"])])[1]["tasks"][fid][0]
        doc = self.s.wait([tid])[tid]
        self.assertEqual(doc["status"], "failed")
        self.assertNotIn("result", doc)
        self.assertTrue(doc["exception"].startswith("Traceback (most recent call last):\n"), doc)
        self.assertIn('File "<string>", line 2, in boom', doc["exception"])
        self.assertTrue(doc["exception"].endswith("ValueError: no good\n"), doc["exception"])

    def test_task_runs_in_the_work_dir_and_default_serializer_is_dill_base64(self):
        fid = self.s.register("add", ADD)
        tid = self.s.submit(fid, [json_task([1])], serializers=None)[1]["tasks"][fid][0]
        doc = self.s.wait([tid])[tid]
        self.assertTrue(doc["result"].startswith("00\n"), doc)

    def test_submit_validation(self):
        fid = self.s.register("add", ADD)
        good = json_task([1])
        cases = [
            ({"tasks": {fid: [good]}, "bogus": 1}, 400, "REQUEST_MALFORMED"),
            ({"create_queue": False}, 400, "REQUEST_KEY_ERROR"),
            ({"tasks": {fid: [1]}}, 400, "REQUEST_MALFORMED"),
            ({"tasks": {str(uuid.uuid4()): [good]}}, 404, "FUNCTION_NOT_FOUND"),
            ({"tasks": {"not-a-uuid": [good]}}, 400, "INVALID_UUID"),
            ({"tasks": {fid: [good]}, "result_serializers": ["my.Own"]}, 400, "REQUEST_MALFORMED"),
        ]
        for body, status, code in cases:
            st, answer, _ = self.s.request("POST", "/v3/endpoints/%s/submit" % EP, body)
            self.assertEqual((st, answer["code"], answer["http_status_code"]), (status, code, status), body)
            self.assertEqual(set(answer), {"status", "code", "error_args", "reason", "http_status_code"})
        st, answer, _ = self.s.request("POST", "/v3/endpoints/not-a-uuid/submit", {"tasks": {fid: [good]}})
        self.assertEqual((st, answer["code"]), (400, "INVALID_UUID"))
        st, answer, _ = self.s.request("POST", "/v3/endpoints/%s/submit" % EP, raw=b"{nope")
        self.assertEqual((st, answer["code"]), (400, "REQUEST_MALFORMED"))
        # Nothing was queued by the refused submissions.
        self.assertFalse([t for t in self.s.control("GET", "tasks").values() if t["function_id"] != fid
                          and t["status"] not in ("success", "failed", "running")])

    def test_register_validation(self):
        for body, code in [({"function_name": "f"}, "REQUEST_KEY_ERROR"),
                           ({"function_name": "f", "function_code": "3\nst\n", "extra": 1}, "REQUEST_MALFORMED"),
                           ({"function_name": "f", "function_code": "99\nst\nf:x"}, "REQUEST_MALFORMED")]:
            st, answer, _ = self.s.request("POST", "/v3/functions", body)
            self.assertEqual((st, answer["code"]), (400, code), body)

    def test_size_limit_is_10_mb(self):
        fid = self.s.register("add", ADD)
        big = json_task(["x" * (10 * 1024 * 1024)])
        st, answer, _ = self.s.submit(fid, [big])
        self.assertEqual(st, 413)
        self.assertEqual(answer["code"], "TASK_PAYLOAD_TOO_LARGE")
        self.assertIn("too large", answer["reason"])
        almost = json_task(["x" * (10 * 1024 * 1024 - 2000)])
        st, answer, _ = self.s.submit(fid, [almost])
        self.assertEqual(st, 200, answer)
        self.s.wait(answer["tasks"][fid], timeout=30)

    def test_task_limit_counts_function_code_and_arguments(self):
        s = Server("--token", "good-token", "--max-payload", "2000")
        try:
            fid = s.register("big", "def big():\n    return %r\n" % ("y" * 1500))
            st, answer, _ = s.submit(fid, [json_task(["x" * 600])])
            self.assertEqual((st, answer["code"]), (413, "TASK_PAYLOAD_TOO_LARGE"))
            self.assertRegex(answer["reason"], r"^Payload for task \S+ in task group \S+ is too large: \d+ bytes > "
                             r"2000 bytes \(\d+ bytes due to serialized function code, \d+ bytes due to arguments\)$")
            self.assertEqual(answer["error_args"][2:], [2000, len(st_function("big", "def big():\n    return %r\n"
                                                                              % ("y" * 1500))),
                                                        len(json_task(["x" * 600]))])
            self.assertEqual(s.control("GET", "tasks"), {})
            self.assertEqual(s.submit(fid, [json_task([])])[0], 200)
        finally:
            s.close()

    def test_endpoint_status(self):
        st, body, _ = self.s.request("GET", "/v2/endpoints/%s/status" % EP)
        self.assertEqual(st, 200)
        self.assertEqual(body["status"], "online")
        self.assertEqual(set(body["details"]), {"total_workers", "idle_workers", "pending_tasks",
                                                "outstanding_tasks", "managers"})
        self.assertEqual(body["details"]["total_workers"], 2)

    def test_unknown_route_and_task(self):
        st, body, _ = self.s.request("GET", "/v2/nothing")
        self.assertEqual(st, 404)
        st, body, _ = self.s.request("GET", "/v2/tasks/" + str(uuid.uuid4()))
        self.assertEqual((st, body["code"]), (404, "TASK_NOT_FOUND"))
        st, body, _ = self.s.request("POST", "/v2/batch_status", {"ids": []})
        self.assertEqual((st, body["code"]), (400, "REQUEST_KEY_ERROR"))

    def test_requests_are_recorded(self):
        self.s.request("GET", "/v2/endpoints/%s/status" % EP)
        self.s.request("POST", "/v2/batch_status", {"task_ids": []}, token=None)
        log = self.s.control("GET", "requests")
        self.assertEqual(log[-2]["method"], "GET")
        self.assertEqual(log[-2]["path"], "/v2/endpoints/%s/status" % EP)
        self.assertEqual((log[-2]["status"], log[-2]["body_size"]), (200, 0))
        self.assertEqual((log[-1]["status"], log[-1]["body_size"]), (401, len(b'{"task_ids": []}')))
        self.assertFalse(any(r["path"].startswith("/_control") for r in log))

    def test_faults(self):
        self.s.control("POST", "faults", [{"status": 429, "retry_after": 7}, {"status": 500}, {"drop": True}])
        st, body, resp = self.s.request("GET", "/v2/endpoints/%s/status" % EP)
        self.assertEqual((st, resp.getheader("Retry-After"), body["code"]), (429, "7", "TOO_MANY_REQUESTS"))
        st, body, _ = self.s.request("GET", "/v2/endpoints/%s/status" % EP)
        self.assertEqual(st, 500)
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionError)):
            self.s.request("GET", "/v2/endpoints/%s/status" % EP)
        st, body, _ = self.s.request("GET", "/v2/endpoints/%s/status" % EP)
        self.assertEqual(st, 200)
        self.assertEqual([r["status"] for r in self.s.control("GET", "requests")[-4:]], [429, 500, "dropped", 200])

    def test_lost_worker(self):
        fid = self.s.register("add", ADD)
        self.s.control("POST", "lose_worker", {})
        tids = self.s.submit(fid, [json_task([1])])[1]["tasks"][fid]
        doc = self.s.wait(tids)[tids[0]]
        self.assertEqual(doc["status"], "failed")
        self.assertRegex(doc["exception"], r"\s*parsl\.\S+\.WorkerLost: Task failure due to loss of worker \d+ on host")
        self.assertTrue(doc["exception"].startswith("+" * 68 + "\n"))
        # The next task runs normally.
        tid = self.s.submit(fid, [json_task([1])])[1]["tasks"][fid][0]
        self.assertEqual(self.s.wait([tid])[tid]["status"], "success")

    def test_a_worker_process_that_dies_is_a_lost_worker(self):
        fid = self.s.register("die", "def die():\n    import os\n    os._exit(3)\n")
        tid = self.s.submit(fid, [json_task([])])[1]["tasks"][fid][0]
        self.assertIn("WorkerLost", self.s.wait([tid])[tid]["exception"])

    def test_non_json_result_with_json_serializer_fails(self):
        fid = self.s.register("objf", "def objf():\n    return object()\n")
        tid = self.s.submit(fid, [json_task([])])[1]["tasks"][fid][0]
        doc = self.s.wait([tid])[tid]
        self.assertEqual(doc["status"], "failed")
        self.assertIn("All strategies failed.", doc["exception"])


class AuthTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp()
        self.state = os.path.join(self.tmp, "auth.json")
        now = time.time()
        with open(self.state, "w") as f:
            json.dump({"access_tokens": {
                "live": {"exp": now + 600, "revoked": False, "resource_server": gc.COMPUTE_RS,
                         "scope": gc.COMPUTE_SCOPE},
                "expired": {"exp": now - 1, "revoked": False, "resource_server": gc.COMPUTE_RS},
                "revoked": {"exp": now + 600, "revoked": True, "resource_server": gc.COMPUTE_RS},
                "other-rs": {"exp": now + 600, "revoked": False, "resource_server": "auth.globus.org"},
            }}, f)
        self.s = Server("--token", "cli-token", "--auth-state", self.state)

    def tearDown(self):
        self.s.close()
        shutil.rmtree(self.tmp)

    def test_tokens(self):
        path = "/v2/endpoints/%s/status" % EP
        self.assertEqual(self.s.request("GET", path, token="cli-token")[0], 200)
        self.assertEqual(self.s.request("GET", path, token="live")[0], 200)
        unauthorized = {"status": "Failed", "code": "UNKNOWN_ERROR", "error_args": [],
                        "reason": "401 Unauthorized: method requires token authenticated access",
                        "http_status_code": 401}
        for token in (None, "expired", "revoked", "nobody"):
            st, body, _ = self.s.request("GET", path, token=token)
            self.assertEqual((st, body), (401, unauthorized), token)
        st, body, _ = self.s.request("GET", path, token="other-rs")
        self.assertEqual((st, body["reason"]), (403, "403 Forbidden: Missing Scopes"))

    def test_state_file_is_reread(self):
        path = "/v2/endpoints/%s/status" % EP
        with open(self.state) as f:
            state = json.load(f)
        state["access_tokens"]["live"]["revoked"] = True
        with open(self.state, "w") as f:
            json.dump(state, f)
        self.assertEqual(self.s.request("GET", path, token="live")[0], 401)


class RateLimitTest(unittest.TestCase):
    def test_more_than_n_in_the_window_is_429_with_retry_after(self):
        s = Server("--token", "good-token", "--rate", "4/1")
        try:
            path = "/v2/endpoints/%s/status" % EP
            statuses = [s.request("GET", path)[0] for _ in range(4)]
            self.assertEqual(statuses, [200] * 4)
            st, body, resp = s.request("GET", path)
            self.assertEqual((st, body["code"], body["http_status_code"]), (429, "TOO_MANY_REQUESTS", 429))
            self.assertEqual(resp.getheader("Retry-After"), "1")
            self.assertEqual(s.request("GET", path)[0], 429)  # refused requests do not extend the window
            time.sleep(1.1)
            self.assertEqual(s.request("GET", path)[0], 200)
            # control routes are never limited
            self.assertEqual(len(s.control("GET", "requests")), 7)
        finally:
            s.close()

    def test_default_is_20_per_10_s(self):
        s = Server("--token", "good-token")
        try:
            path = "/v2/endpoints/%s/status" % EP
            statuses = [s.request("GET", path)[0] for _ in range(21)]
            self.assertEqual(statuses, [200] * 20 + [429])
        finally:
            s.close()


class LifecycleTest(unittest.TestCase):
    def test_offline_endpoint_holds_tasks_in_waiting_for_ep(self):
        s = Server("--token", "good-token", "--rate", "1000/10", "--offline")
        try:
            fid = s.register("add", ADD)
            tid = s.submit(fid, [json_task([1])])[1]["tasks"][fid][0]
            st, body, _ = s.request("GET", "/v2/endpoints/%s/status" % EP)
            self.assertEqual(body["status"], "offline")
            self.assertEqual(body["details"]["pending_tasks"], 1)
            time.sleep(0.6)
            st, doc, _ = s.request("GET", "/v2/tasks/" + tid)
            self.assertEqual(doc, {"task_id": tid, "status": "waiting-for-ep"})
            s.control("POST", "endpoint", {"online": True})
            self.assertEqual(s.request("GET", "/v2/endpoints/%s/status" % EP)[1]["status"], "online")
            self.assertEqual(s.wait([tid])[tid]["status"], "success")
        finally:
            s.close()

    def test_queued_behind_busy_workers_is_waiting_for_launch(self):
        s = Server("--token", "good-token", "--rate", "1000/10", "--workers", "1")
        try:
            fid = s.register("sleepy", SLEEPY)
            a, b = s.submit(fid, [json_task([0.8]), json_task([0.0])])[1]["tasks"][fid]
            self.assertTrue(wait_until(lambda: s.status_of(a) == "running"))
            self.assertEqual(s.request("GET", "/v2/tasks/" + b)[1]["status"], "waiting-for-launch")
            s.wait([a, b])
        finally:
            s.close()

    def test_a_result_not_fetched_within_the_ttl_is_lost(self):
        s = Server("--token", "good-token", "--rate", "1000/10", "--result-ttl", "0.5")
        try:
            fid = s.register("add", ADD)
            a, b = s.submit(fid, [json_task([1]), json_task([2])])[1]["tasks"][fid]
            self.assertTrue(wait_until(lambda: s.status_of(a) == "success" and s.status_of(b) == "success"))
            time.sleep(0.8)
            st, body, _ = s.request("GET", "/v2/tasks/" + a)
            self.assertEqual((st, body["code"]), (404, "TASK_NOT_FOUND"))
            st, body, _ = s.request("POST", "/v2/batch_status", {"task_ids": [b]})
            self.assertEqual(body["results"][b], {"task_id": b, "status": "failed", "reason": "Unknown task id"})
        finally:
            s.close()

    def test_accelerators_are_pinned_like_parsl(self):
        s = Server("--token", "good-token", "--rate", "1000/10", "--workers", "4", "--accelerators", "3,5")
        try:
            fid = s.register("envf", ENVF)
            st, body, _ = s.request("GET", "/v2/endpoints/%s/status" % EP)
            self.assertEqual(body["details"]["total_workers"], 2)  # min(workers, len(accelerators))
            tids = s.submit(fid, [json_task([]) for _ in range(4)])[1]["tasks"][fid]
            envs = [json.loads(d["result"][3:]) for d in s.wait(tids).values()]
            for e in envs:
                self.assertIn(e["ZE_AFFINITY_MASK"], ("3", "5"))
                self.assertEqual(e["CUDA_VISIBLE_DEVICES"], e["ZE_AFFINITY_MASK"])
                self.assertEqual(e["ROCR_VISIBLE_DEVICES"], e["ZE_AFFINITY_MASK"])
                self.assertEqual(e["ZE_ENABLE_PCI_ID_DEVICE_ORDER"], "1")
                self.assertEqual(e["ZE_AFFINITY_MASK"], "35"[int(e["PARSL_WORKER_RANK"])])
                self.assertEqual(e["PARSL_WORKER_COUNT"], "2")
            self.assertEqual(sorted(e["GC_TASK_UUID"] for e in envs), sorted(tids))
        finally:
            s.close()

    def test_result_size_limit(self):
        s = Server("--token", "good-token", "--rate", "1000/10", "--result-limit", "200")
        try:
            fid = s.register("big", "def big(n):\n    return 'x' * n\n")
            small, large = s.submit(fid, [json_task([10]), json_task([300])])[1]["tasks"][fid]
            docs = s.wait([small, large])
            self.assertEqual(docs[small]["status"], "success")
            self.assertEqual(docs[large]["exception"], "MaxResultSizeExceeded(%d, 200)" % (300 + 5))
        finally:
            s.close()


class FramingTest(unittest.TestCase):
    def test_pack_lengths_are_code_points(self):
        bufs = ["st\nf:def f():\n    return 'é→😀'\n", "11\n[\"ü\"]", ""]
        packed = gc.pack_buffers(bufs)
        self.assertTrue(packed.startswith("%d\n" % len(bufs[0])))
        self.assertNotEqual(len(bufs[0]), len(bufs[0].encode()))
        self.assertEqual(gc.unpack_buffers(packed), bufs)
        with self.assertRaises(ValueError):
            gc.unpack_buffers("10\nshort")


@unittest.skipUnless(HAVE_SDK, "globus-compute-sdk not importable: run scripts/setup-globus-sdk.sh and "
                     "tests/globus/run-tests.sh to check the wire format against the real SDK")
class SdkWireFormatTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s = Server("--token", "good-token", "--rate", "1000/10", "--keep-fetched")

    @classmethod
    def tearDownClass(cls):
        cls.s.close()

    def test_sdk_version_is_the_pinned_one(self):
        self.assertEqual(SDK_VERSION, gc.SDK_VERSION)

    def test_framing_matches_the_sdk(self):
        bufs = ["st\nf:def f():\n    return 'é→😀'\n", "11\n[\"ü\"]"]
        self.assertEqual(gc.pack_buffers(bufs), sdk_pack(bufs))
        self.assertEqual(gc.unpack_buffers(sdk_pack(bufs)), sdk_unpack(gc.pack_buffers(bufs)))

    def test_what_the_rust_host_packs_is_what_the_sdk_decodes(self):
        # The function: the host's bytes decode with the SDK's own PureSourceTextInspect.
        serde = ComputeSerializer(strategy_code=PureSourceTextInspect(), strategy_data=JSONData())
        packed = st_function("run_trial", TRIAL_SOURCE)
        (fn_buf,) = serde.unpack_buffers(packed)
        fn = serde.deserialize(fn_buf)
        self.assertEqual(fn.__name__, "run_trial")
        # The arguments: JSONData, packed as [args, kwargs], as the SDK's Batch.add builds them.
        args, kwargs = ["echo hi", "/tmp/x"], {"walltime": 5.0, "params": {"lr": 0.1, "name": "ü"}}
        ours = json_task(args, kwargs)
        a, k = serde.unpack_buffers(ours)
        self.assertEqual((serde.deserialize(a), serde.deserialize(k)), (args, kwargs))
        batch = Batch(task_group_id=None, serializer=serde, result_serializers=JSON_RESULTS)
        batch.add(str(uuid.uuid4()), args=tuple(args), kwargs=kwargs)
        (sdk_payload,) = list(batch.tasks.values())[0]
        self.assertEqual(ours, sdk_payload)
        # And the full task buffer the service hands the endpoint: function + arguments, 3 buffers.
        f, fa, fk = serde.unpack_and_deserialize(packed + ours)
        self.assertEqual((f.__name__, fa, fk), ("run_trial", args, kwargs))

    def test_sdk_bodies_are_accepted_and_run(self):
        serde = ComputeSerializer(strategy_code=PureSourceTextInspect(), strategy_data=JSONData())
        mod_dir = tempfile.mkdtemp()
        with open(os.path.join(mod_dir, "gc_sdk_add.py"), "w") as f:
            f.write(ADD)  # PureSourceTextInspect uses inspect.getsource: the function must come from a file
        sys.path.insert(0, mod_dir)
        try:
            import importlib
            mod = importlib.import_module("gc_sdk_add")
            reg = FunctionRegistrationData(function=mod.add, serializer=serde).to_dict()
        finally:
            sys.path.remove(mod_dir)
            shutil.rmtree(mod_dir)
        self.assertTrue(reg["function_code"].startswith("%d\nst\nadd:" % len("st\nadd:" + ADD)))
        self.assertEqual(reg["function_code"], st_function("add", ADD))
        st, body, _ = self.s.request("POST", "/v3/functions", reg)
        self.assertEqual(st, 200, body)
        fid = body["function_uuid"]
        batch = Batch(task_group_id=None, serializer=serde, result_serializers=JSON_RESULTS,
                      user_runtime=None)
        batch.add(fid, args=(4,), kwargs={"y": 6})
        from globus_compute_sdk.sdk.batch import create_user_runtime
        batch.user_runtime = create_user_runtime()
        st, body, _ = self.s.request("POST", "/v3/endpoints/%s/submit" % EP, batch.prepare())
        self.assertEqual(st, 200, body)
        tid = body["tasks"][fid][0]
        doc = self.s.wait([tid])[tid]
        self.assertEqual(ComputeSerializer().deserialize(doc["result"])["sum"], 10)
        # The SDK's own result handling accepts the double's task document.
        self.assertEqual(JSONData().deserialize(doc["result"])["sum"], 10)

    def test_register_source_code_body(self):
        # Client.register_source_code sends the plain source with serialized=False.
        st, body, _ = self.s.request("POST", "/v3/functions", {
            "function_name": "add", "function_code": ADD, "serialized": False,
            "meta": {"python_version": "3.11.7", "sdk_version": SDK_VERSION}})
        self.assertEqual(st, 200, body)
        fid = body["function_uuid"]
        tid = self.s.submit(fid, [json_task([1], {"y": 1})])[1]["tasks"][fid][0]
        self.assertEqual(JSONData().deserialize(self.s.wait([tid])[tid]["result"])["sum"], 2)

    def test_default_result_serializer_decodes_with_the_sdk(self):
        fid = self.s.register("add", ADD)
        tid = self.s.submit(fid, [json_task([20], {"y": 2})], serializers=None)[1]["tasks"][fid][0]
        result = self.s.wait([tid])[tid]["result"]
        self.assertTrue(result.startswith(DillDataBase64.identifier))
        self.assertEqual(ComputeSerializer().deserialize(result)["sum"], 22)

    def test_failure_texts_are_what_the_sdk_recognises(self):
        self.s.control("POST", "lose_worker", {"count": 1})
        fid = self.s.register("add", ADD)
        tid = self.s.submit(fid, [json_task([1])])[1]["tasks"][fid][0]
        exc = self.s.wait([tid])[tid]["exception"]
        self.assertTrue(TaskExecutionFailed.WORKER_LOST_REGEX.search(exc), exc)
        self.assertEqual(repr(MaxResultSizeExceeded(305, 200)), "MaxResultSizeExceeded(305, 200)")

    def test_sdk_web_client_talks_to_the_double(self):
        import globus_sdk
        client = globus_sdk.ComputeClientV3(base_url="http://127.0.0.1:%d" % self.s.port,
                                            authorizer=globus_sdk.AccessTokenAuthorizer("good-token"))
        v2 = globus_sdk.ComputeClientV2(base_url="http://127.0.0.1:%d" % self.s.port,
                                        authorizer=globus_sdk.AccessTokenAuthorizer("good-token"))
        fid = client.register_function({"function_name": "add", "function_code": st_function("add", ADD),
                                        "serialized": True})["function_uuid"]
        r = client.submit(EP, {"tasks": {fid: [json_task([3], {"y": 4})]}, "create_queue": False,
                               "result_serializers": JSON_RESULTS})
        tid = r["tasks"][fid][0]
        self.assertTrue(wait_until(lambda: v2.get_task(tid)["status"] == "success"))
        self.assertEqual(JSONData().deserialize(v2.get_task_batch([tid])["results"][tid]["result"])["sum"], 7)
        self.assertEqual(v2.get_endpoint_status(EP)["status"], "online")
        with self.assertRaises(globus_sdk.GlobusAPIError) as ctx:
            v2.get_task(str(uuid.uuid4()))
        self.assertEqual((ctx.exception.http_status, ctx.exception.code), (404, "TASK_NOT_FOUND"))


class TrialFunctionTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp()

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def run_standalone(self, python, *args, **kwargs):
        """exec the registered source alone, in `python -I -S` (no site-packages, no user paths)."""
        code = ("import json, sys\nns = {}\nexec(sys.stdin.read(), ns)\n"
                "print(json.dumps(ns['run_trial'](*json.loads(sys.argv[1]), **json.loads(sys.argv[2]))))")
        out = subprocess.run([python, "-I", "-S", "-c", code, json.dumps(args), json.dumps(kwargs)],
                             input=TRIAL_SOURCE, stdout=subprocess.PIPE, universal_newlines=True, timeout=30,
                             check=True, env=dict(os.environ, ZE_AFFINITY_MASK="7"))
        return json.loads(out.stdout)

    def test_source_is_python_3_8(self):
        ast.parse(TRIAL_SOURCE, feature_version=(3, 8))
        tree = ast.parse(TRIAL_SOURCE)
        self.assertEqual([type(n).__name__ for n in tree.body], ["FunctionDef"])  # nothing else at top level

    def test_success_with_result_and_metrics(self):
        d = os.path.join(self.tmp, "t1")
        cmd = ("cat params.json; echo '{\"epoch\": 1, \"loss\": 0.5}' > metrics.jsonl; "
               "echo '{\"epoch\": 2, \"loss\": 0.25}' >> metrics.jsonl; echo 'cut' >> metrics.jsonl; "
               "echo '{\"loss\": 0.25, \"acc\": 0.9}' > result.json; echo done")
        for python in [sys.executable] + ([PY38] if PY38 else []):
            r = self.run_standalone(python, cmd, d, params={"lr": 0.1}, env={"ALCF_TRIAL_ID": "3"})
            self.assertEqual(r["returncode"], 0, python)
            self.assertIsNone(r["exception_name"])
            self.assertEqual(r["result"], {"loss": 0.25, "acc": 0.9})
            self.assertEqual(r["metrics"], [{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.25}])
            self.assertEqual(r["accelerator"], "7")
            self.assertTrue(r["log_tail"].endswith("done"))
            with open(os.path.join(d, "stdout.log")) as f:
                self.assertIn('{"lr": 0.1}', f.read())
        if not PY38:
            print("trial.py: no python3.8 found; checked its syntax with ast feature_version=(3, 8) only",
                  file=sys.stderr)

    def test_failure_tail_is_stderr(self):
        d = os.path.join(self.tmp, "t2")
        r = self.run_standalone(sys.executable, "for i in $(seq 1 80); do echo line$i >&2; done; exit 3", d,
                                log_tail_lines=5)
        self.assertEqual((r["returncode"], r["exception_name"]), (3, "subprocess.CalledProcessError"))
        self.assertEqual(r["log_tail"], "line76\nline77\nline78\nline79\nline80")
        self.assertIsNone(r["result"])
        self.assertEqual(r["metrics"], [])

    def test_walltime_kills_the_process_group_and_returns_124(self):
        d = os.path.join(self.tmp, "t3")
        t0 = time.time()
        r = self.run_standalone(sys.executable, "sleep 30 & sleep 30; echo never", d, walltime=0.5)
        self.assertLess(time.time() - t0, 10)
        self.assertEqual((r["returncode"], r["exception_name"]), (124, "subprocess.TimeoutExpired"))
        self.assertIsNone(r["log_tail"])

    def pythons(self):
        return [sys.executable] + ([PY38] if PY38 else [])

    def write(self, d, name, data):
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, name), "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)

    def read(self, d, name):
        with open(os.path.join(d, name)) as f:
            return f.read()

    def test_outcome_json_is_the_returned_dict(self):
        for i, python in enumerate(self.pythons()):
            d = os.path.join(self.tmp, "o%d" % i)
            self.write(d, "outcome.json", '{"job": "old"}')  # stale: gone before the command starts
            r = self.run_standalone(python, "test ! -e outcome.json || exit 7; echo '{\"loss\": 1}' > result.json",
                                    d, job="study-trial-5-a1", attempt=1)
            self.assertEqual(r["returncode"], 0, python)
            self.assertEqual(list(r), ["job", "attempt", "returncode", "result", "result_text", "result_truncated",
                                       "metrics", "metrics_truncated", "log_tail", "accelerator", "worker_rank",
                                       "host", "elapsed_s", "exception_name"])
            self.assertEqual((r["job"], r["attempt"]), ("study-trial-5-a1", 1))
            self.assertEqual((r["result_truncated"], r["metrics_truncated"]), (False, False))
            self.assertEqual(json.loads(self.read(d, "outcome.json")), r)
            self.assertEqual(sorted(os.listdir(d)), ["outcome.json", "result.json", "stderr.log", "stdout.log"])

    def test_collect_returns_the_outcome_of_the_same_job_only(self):
        for i, python in enumerate(self.pythons()):
            d = os.path.join(self.tmp, "c%d" % i)
            r = self.run_standalone(python, "echo '{\"loss\": 2}' > result.json; echo ran >> ran.txt", d,
                                    job="j-1", attempt=2)
            hit = self.run_standalone(python, "echo ran >> ran.txt", d, job="j-1", attempt=2, collect=True)
            self.assertEqual(hit, dict(r, collected=True), python)
            self.assertEqual(self.read(d, "ran.txt"), "ran\n")  # collect ran nothing
            miss = self.run_standalone(python, "true", d, job="j-2", collect=True)
            self.assertEqual(miss, {"collected": False, "job": "j-2"})
            gone = os.path.join(self.tmp, "never-%d" % i)
            self.assertEqual(self.run_standalone(python, "true", gone, job="j-1", collect=True),
                             {"collected": False, "job": "j-1"})
            self.assertFalse(os.path.exists(gone))
            self.write(d, "outcome.json", "{garbage")
            self.assertEqual(self.run_standalone(python, "true", d, job="j-1", collect=True),
                             {"collected": False, "job": "j-1"})

    def test_a_rerun_waits_for_the_earlier_run_of_its_trial(self):
        # A cancelled attempt still running (Globus Compute cannot stop it): attempt 2 starts after it ends,
        # and attempt 1's files end up whole beside the new directory.
        d = os.path.join(self.tmp, "lock", "000001")
        first = subprocess.Popen(
            [sys.executable, "-c", "import json, sys\nns = {}\nexec(sys.stdin.read(), ns)\n"
             "ns['run_trial']('sleep 1.5; date +%s.%N > ended; echo a1 > result.json', sys.argv[1], job='j.a1')", d],
            stdin=subprocess.PIPE, universal_newlines=True)
        first.stdin.write(TRIAL_SOURCE)
        first.stdin.close()
        self.assertTrue(wait_until(lambda: os.path.exists(os.path.join(d, "stdout.log")), 10))
        r = self.run_standalone(sys.executable, "date +%s.%N > started; echo '{\"loss\": 2}' > result.json", d,
                                job="j.a2", attempt=2, rerun="fresh")
        self.assertEqual(first.wait(timeout=30), 0)
        self.assertEqual(r["returncode"], 0)
        ended = float(self.read(d + ".attempt-1", "ended"))
        started = float(self.read(d, "started"))
        self.assertGreater(started, ended)
        self.assertEqual(self.read(d + ".attempt-1", "result.json"), "a1\n")
        self.assertEqual(json.loads(self.read(d, "outcome.json"))["job"], "j.a2")

    def test_fresh_rerun_moves_the_earlier_attempt_aside(self):
        for i, python in enumerate(self.pythons()):
            d = os.path.join(self.tmp, "f%d" % i)
            self.run_standalone(python, "echo one; echo x > ckpt; echo '{\"loss\": 1}' > result.json", d,
                                job="a1", attempt=1, rerun="fresh")
            r = self.run_standalone(python, "ls -A; test ! -e ckpt && test ! -e result.json", d, params={"x": 1},
                                    job="a2", attempt=2, rerun="fresh")
            self.assertEqual((r["returncode"], r["result"], r["job"], r["attempt"]), (0, None, "a2", 2), python)
            self.assertEqual(self.read(d, "stdout.log").split(), ["params.json", "stderr.log", "stdout.log"])
            aside = d + ".attempt-1"
            self.assertEqual(self.read(aside, "stdout.log"), "one\n")
            self.assertEqual(json.loads(self.read(aside, "outcome.json"))["job"], "a1")
            self.assertTrue(os.path.exists(os.path.join(aside, "ckpt")))
            # the same attempt again (its task lost, say): .attempt-1 is taken, so .attempt-1.2
            self.run_standalone(python, "echo three", d, job="a2b", attempt=2, rerun="fresh")
            self.assertEqual(self.read(d + ".attempt-1.2", "stdout.log").split(),
                             ["params.json", "stderr.log", "stdout.log"])
            self.assertEqual(self.read(d, "stdout.log"), "three\n")
            # attempt 1 never moves anything aside
            self.run_standalone(python, "echo four", d, attempt=1, rerun="fresh")
            self.assertEqual(self.read(d, "stdout.log"), "three\nfour\n")

    def test_resume_keeps_the_directory_and_renames_the_logs(self):
        for i, python in enumerate(self.pythons()):
            d = os.path.join(self.tmp, "r%d" % i)
            self.run_standalone(python, "echo one; echo oops >&2; echo epoch-1 > ckpt", d, job="a1", attempt=1,
                                rerun="resume")
            r = self.run_standalone(python, "echo \"two from $(cat ckpt)\"", d, job="a2", attempt=2, rerun="resume")
            self.assertEqual((r["returncode"], r["job"], r["attempt"]), (0, "a2", 2), python)
            self.assertEqual(self.read(d, "stdout.attempt-1.log"), "one\n")
            self.assertEqual(self.read(d, "stderr.attempt-1.log"), "oops\n")
            self.assertEqual(self.read(d, "stdout.log"), "two from epoch-1\n")
            self.assertEqual(self.read(d, "stderr.log"), "")
            self.assertFalse(os.path.exists(d + ".attempt-1"))
            self.assertEqual(json.loads(self.read(d, "outcome.json"))["job"], "a2")
            self.run_standalone(python, "echo three", d, job="a3", attempt=3, rerun="resume")
            self.assertEqual(self.read(d, "stdout.attempt-2.log"), "two from epoch-1\n")
            self.assertEqual(self.read(d, "stdout.log"), "three\n")

    def test_result_text_is_raw(self):
        d = os.path.join(self.tmp, "n")
        text = '{"loss": NaN, "lr": 1.50, "s": "\\u00fc"}\n'
        self.write(d, "result.json", text)
        r = self.run_standalone(sys.executable, "true", d)
        self.assertEqual(r["result_text"], text)
        self.assertTrue(math.isnan(r["result"]["loss"]))
        self.assertEqual((r["result"]["lr"], r["result"]["s"], r["result_truncated"]), (1.5, "ü", False))
        self.write(d, "result.json", b"[" * 100000 + b"\xff")  # garbage: not JSON, not UTF-8, too deep
        r = self.run_standalone(sys.executable, "true", d)
        self.assertIsNone(r["result"])
        self.assertEqual(r["result_text"], "[" * 100000 + "\ufffd")

    def test_result_text_is_capped_at_1_mib(self):
        d = os.path.join(self.tmp, "big")
        fits = '{"pad": "%s"}' % ("x" * ((1 << 20) - 11))
        self.assertEqual(len(fits), 1 << 20)
        self.write(d, "result.json", fits)
        r = self.run_standalone(sys.executable, "true", d)
        self.assertEqual((r["result_text"], r["result"]["pad"][:3], r["result_truncated"]), (fits, "xxx", False))
        self.write(d, "result.json", fits + " ")
        r = self.run_standalone(sys.executable, "true", d)
        self.assertEqual((r["result"], r["result_text"], r["result_truncated"]), (None, None, True))
        self.assertEqual(json.loads(self.read(d, "outcome.json"))["result_truncated"], True)

    def test_metrics_are_capped(self):
        d = os.path.join(self.tmp, "m")
        r = self.run_standalone(sys.executable, "seq 1 10005 | sed 's/.*/{\"i\": &}/' > metrics.jsonl", d)
        self.assertEqual(len(r["metrics"]), 10000)
        self.assertEqual((r["metrics"][0], r["metrics"][-1], r["metrics_truncated"]), ({"i": 1}, {"i": 10000}, True))
        # exactly 10000 metrics (and garbage lines, which are no metrics) is not cut
        self.write(d, "metrics.jsonl", b"".join(b'{"i": %d}\n' % i for i in range(10000)) + b"\xff{\n\n[[[\n")
        r = self.run_standalone(sys.executable, "true", d)
        self.assertEqual((len(r["metrics"]), r["metrics_truncated"]), (10000, False))
        # 4 MiB of text: 5000 lines of 1 KiB are cut after the last whole line within the first 4 MiB
        line = b'{"pad": "' + b"y" * 1012 + b'"}\n'
        self.assertEqual(len(line), 1024)
        self.write(d, "metrics.jsonl", line * 5000)
        r = self.run_standalone(sys.executable, "true", d)
        self.assertEqual((len(r["metrics"]), r["metrics_truncated"]), (4096, True))
        self.write(d, "metrics.jsonl", line * 4096)
        r = self.run_standalone(sys.executable, "true", d)
        self.assertEqual((len(r["metrics"]), r["metrics_truncated"]), (4096, False))

    def test_end_to_end_through_the_double(self):
        args = ["--token", "good-token", "--accelerators", "0,1"]
        if PY38:
            args += ["--worker-python", PY38]  # the endpoint's python is not the laptop's
        s = Server(*args)
        try:
            st, body, _ = s.request("POST", "/v3/functions", {
                "function_name": "run_trial", "function_code": st_function("run_trial", TRIAL_SOURCE),
                "serialized": True, "meta": {"python_version": "3.11", "sdk_version": "4.19.0",
                                             "serde_identifier": "st"}})
            self.assertEqual(st, 200, body)
            fid = body["function_uuid"]
            cmd = ("python3 -c 'import json,os; p=json.load(open(\"params.json\")); "
                   "json.dump({\"score\": p[\"x\"] * 2, \"tile\": os.environ[\"ZE_AFFINITY_MASK\"]}, "
                   "open(\"result.json\",\"w\"))'")
            payloads = [json_task([cmd, os.path.join(self.tmp, "trial-%d" % i)],
                                  {"walltime": 20, "params": {"x": i}, "job": "job-%d" % i, "attempt": 1,
                                   "rerun": "fresh", "collect": False}) for i in range(3)]
            payloads.append(json_task(["sleep 5", os.path.join(self.tmp, "slow")], {"walltime": 0.3}))
            st, body, _ = s.submit(fid, payloads)
            self.assertEqual(st, 200, body)
            tids = body["tasks"][fid]
            docs = s.wait(tids, timeout=30, every=0.5)  # under the service's 20 requests / 10 s
            self.assertLessEqual(len(s.control("GET", "requests")), 20)
            outs = [json.loads(docs[t]["result"][3:]) for t in tids]
            for i, out in enumerate(outs[:3]):
                self.assertEqual(docs[tids[i]]["status"], "success")
                self.assertEqual(out["returncode"], 0, out)
                self.assertEqual(out["result"]["score"], 2 * i)
                self.assertIn(out["accelerator"], ("0", "1"))
                self.assertEqual(out["result"]["tile"], out["accelerator"])  # the trial program sees its tile
                self.assertEqual((out["job"], out["attempt"]), ("job-%d" % i, 1))
                with open(os.path.join(self.tmp, "trial-%d" % i, "outcome.json")) as f:
                    self.assertEqual(json.load(f), out)  # what a collect task would find
            self.assertEqual((outs[3]["returncode"], outs[3]["exception_name"]), (124, "subprocess.TimeoutExpired"))
            if HAVE_SDK:
                self.assertEqual(ComputeSerializer().deserialize(docs[tids[0]]["result"]), outs[0])
        finally:
            s.close()


if __name__ == "__main__":
    unittest.main()
