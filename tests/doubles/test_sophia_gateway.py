"""Unit tests of the Sophia gateway double (python3 -m unittest tests/doubles/test_sophia_gateway.py)."""

import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import sophia_gateway as sg  # noqa: E402

CHAT = sg.CHAT_PATH
MODEL = "meta-llama/Llama-3.3-70B-Instruct"


def proposals_schema(k):
    return {"type": "object", "required": ["proposals"], "properties": {"proposals": {
        "type": "array", "minItems": 1, "maxItems": k, "items": {
            "type": "object", "additionalProperties": False, "required": ["lr", "layers", "opt"],
            "properties": {"lr": {"type": "number", "minimum": 0.0, "maximum": 1.0},
                           "layers": {"type": "integer", "minimum": 1, "maximum": 8},
                           "opt": {"enum": ["adam", "sgd"]}}}}}}


class Server:
    def __init__(self, *args):
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "sophia_gateway.py"), "--port", "0"]
                                     + list(args), stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("LISTENING "), line
        self.port = int(line.split()[1])

    def request(self, method, path, body=None, token="good-token", headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = "Bearer " + token
        data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
        if data is not None:
            h["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=h)
        resp = conn.getresponse()
        raw = resp.read()
        conn.close()
        try:
            return resp.status, json.loads(raw), resp
        except ValueError:
            return resp.status, raw, resp

    def chat(self, body=None, **kw):
        body = body if body is not None else {"model": MODEL, "messages": [{"role": "user", "content": "hello"}]}
        return self.request("POST", CHAT, body, **kw)

    def faults(self, faults):
        return self.request("POST", "/_control/faults", faults, token=None)

    def close(self):
        self.proc.terminate()
        self.proc.wait(5)
        self.proc.stdout.close()


class GatewayTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s = Server("--token", "good-token", "--seed", "7")

    @classmethod
    def tearDownClass(cls):
        cls.s.close()

    def test_health_needs_no_auth(self):
        status, body, _ = self.s.request("GET", "/resource_server/health", token=None)
        self.assertEqual((status, body), (200, {"status": "ok"}))

    def test_answer_is_an_openai_chat_completion(self):
        status, body, _ = self.s.chat({"model": MODEL, "messages": [{"role": "user", "content": "x" * 9}]})
        self.assertEqual(status, 200)
        self.assertEqual(body["object"], "chat.completion")
        self.assertEqual(body["model"], MODEL)
        choice = body["choices"][0]
        self.assertEqual((choice["index"], choice["message"]["role"], choice["finish_reason"]),
                         (0, "assistant", "stop"))
        self.assertEqual(body["usage"]["prompt_tokens"], 3)  # ceil(9 / 4)
        self.assertEqual(body["usage"]["completion_tokens"], -(-len(choice["message"]["content"]) // 4))

    def test_missing_or_unknown_token_is_401(self):
        status, body, _ = self.s.chat(token=None)
        self.assertEqual(status, 401)
        self.assertIn("Missing ('Authorization'", body["detail"])
        status, body, _ = self.s.chat(token="bad-token")
        self.assertEqual(status, 401)
        self.assertEqual(body["error"]["code"], "unauthorized")
        self.assertEqual(self.s.chat(token="bad-token")[1]["error"]["message"], "Access token expired.")

    def test_unknown_fields_and_out_of_range_values_are_422(self):
        base = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
        for extra in ({"guided_json": {}}, {"structured_outputs": {}}, {"top_k": 5}, {"strict": True},
                      {"temperature": 2.5}, {"temperature": -0.1}, {"n": 129}, {"max_tokens": -1},
                      {"response_format": {"type": "json_schema", "json_schema": {"name": "x" * 65, "schema": {}}}},
                      {"response_format": {"type": "json_schema", "strict": True,
                                           "json_schema": {"name": "x", "schema": {}}}},
                      {"response_format": {"type": "yaml"}}):
            status, body, _ = self.s.chat(dict(base, **extra))
            self.assertEqual(status, 422, extra)
            self.assertIn("detail", body)
        status, body, _ = self.s.chat({"model": MODEL, "messages": [{"role": "user", "content": "hi", "x": 1}]})
        self.assertEqual(status, 422)
        self.assertEqual(body["detail"][0]["loc"][-1], "x")

    def test_accepted_fields_pass(self):
        body = {"model": MODEL, "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
                "temperature": 2, "n": 128, "max_tokens": 10, "seed": 3,
                "response_format": {"type": "json_schema",
                                    "json_schema": {"name": "x", "strict": True, "schema": {"type": "object"}}}}
        self.assertEqual(self.s.chat(body)[0], 200)

    def test_unknown_model_is_404_endpoint_not_found(self):
        status, body, _ = self.s.chat({"model": "no/Such-Model-1.0", "messages": []})
        self.assertEqual(status, 404)
        self.assertEqual(body["error"]["code"], "endpoint_not_found")
        self.assertIn("sophia-vllm-nosuch-model-10", body["error"]["message"])

    def test_structured_answer_satisfies_the_schema(self):
        schema = {"type": "object", "required": ["a", "b", "c", "d", "e", "f"], "properties": {
            "a": {"type": "array", "minItems": 2, "maxItems": 4, "items": {"type": "integer", "minimum": 3,
                                                                           "maximum": 5}},
            "b": {"type": "number", "minimum": -1.5, "maximum": -1.0},
            "c": {"enum": ["x", "y"]}, "d": {"type": "string"}, "e": {"type": "boolean"},
            "f": {"type": "object", "properties": {"g": {"type": ["null", "integer"], "minimum": 0, "maximum": 0}}}}}
        for _ in range(10):
            status, body, _ = self.s.chat({"model": MODEL, "messages": [{"role": "user", "content": "q"}],
                                           "response_format": {"type": "json_schema",
                                                               "json_schema": {"name": "t", "schema": schema}}})
            self.assertEqual(status, 200)
            v = json.loads(body["choices"][0]["message"]["content"])
            self.assertTrue(2 <= len(v["a"]) <= 4 and all(3 <= x <= 5 and isinstance(x, int) for x in v["a"]))
            self.assertTrue(-1.5 <= v["b"] <= -1.0)
            self.assertIn(v["c"], ["x", "y"])
            self.assertIsInstance(v["d"], str)
            self.assertIsInstance(v["e"], bool)
            self.assertEqual(v["f"], {"g": 0})

    def test_faults_are_consumed_in_order(self):
        self.s.faults([{"status": 408}, {"status": 429, "retry_after": 3}, {"status": 503},
                       {"status": 202, "retry_after": 1}, {"status": 401}, {"status": 500}])
        got = []
        for _ in range(7):
            status, body, resp = self.s.chat()
            got.append((status, resp.getheader("Retry-After")))
            if status not in (200, 202):
                self.assertIn("message", body["error"])
        self.assertEqual(got, [(408, None), (429, "3"), (503, None), (202, "1"), (401, None), (500, None),
                               (200, None)])

    def test_unauthorized_request_consumes_no_fault(self):
        self.s.faults([{"status": 500}])
        self.assertEqual(self.s.chat(token="bad-token")[0], 401)
        self.assertEqual(self.s.chat()[0], 500)

    def test_slow_and_delay(self):
        self.s.faults([{"slow_s": 0.3}, {"status": 408, "delay_s": 0.3}])
        t = time.monotonic()
        self.assertEqual(self.s.chat()[0], 200)
        self.assertEqual(self.s.chat()[0], 408)
        self.assertGreaterEqual(time.monotonic() - t, 0.6)

    def test_truncate_sends_less_than_content_length(self):
        self.s.faults([{"truncate": True}])
        conn = http.client.HTTPConnection("127.0.0.1", self.s.port, timeout=5)
        conn.request("POST", CHAT, body=json.dumps({"model": MODEL, "messages": []}),
                     headers={"Authorization": "Bearer good-token"})
        resp = conn.getresponse()
        with self.assertRaises(http.client.IncompleteRead):
            resp.read()
        conn.close()

    def test_malformed_content_and_garbage_body(self):
        self.s.faults([{"malformed": True}, {"garbage": True}])
        status, body, _ = self.s.chat()
        with self.assertRaises(ValueError):
            json.loads(body["choices"][0]["message"]["content"])
        status, body, _ = self.s.chat()
        self.assertEqual(status, 200)
        self.assertIsInstance(body, bytes)

    def test_jobs_mirrors_jobs_by_status_and_model_state(self):
        status, jobs, _ = self.s.request("GET", "/resource_server/sophia/jobs")
        self.assertEqual(status, 200)
        for key in ("running", "queued", "stopped", "others", "private_batch_running", "private_batch_queued",
                    "cluster_status"):
            self.assertIn(key, jobs)
        running = [j for j in jobs["running"] if j["Models"] == MODEL]
        self.assertEqual(running[0]["Model Status"], "running")
        self.assertEqual(running[0]["Framework"], "vllm")
        self.assertEqual(running[0]["Cluster"], "sophia")
        self.s.faults([{"status": 408, "model_state": "queued"}])
        self.assertEqual(self.s.chat()[0], 408)
        jobs = self.s.request("GET", "/resource_server/sophia/jobs")[1]
        queued = [j for j in jobs["queued"] if j["Models"] == MODEL]
        self.assertEqual((queued[0]["Model Status"], queued[0]["Job State"]), ("queued", "Q"))
        self.assertEqual(self.s.chat()[0], 200)  # an answer means the model runs
        jobs = self.s.request("GET", "/resource_server/sophia/jobs")[1]
        self.assertTrue(any(j["Models"] == MODEL for j in jobs["running"]))
        self.assertEqual(self.s.request("GET", "/resource_server/sophia/jobs", token="bad")[0], 401)

    def test_requests_log_shows_auth_presence_and_token_prefix_only(self):
        self.s.chat({"model": MODEL, "messages": [{"role": "user", "content": "logme"}]})
        self.s.chat(token=None)
        log = self.s.request("GET", "/_control/requests", token=None)[1]
        mine = [r for r in log if isinstance(r["body"], dict) and r["body"]["messages"][0]["content"] == "logme"]
        self.assertEqual((mine[-1]["authorization"], mine[-1]["token_prefix"], mine[-1]["status"]),
                         (True, "good", 200))
        self.assertEqual((log[-1]["authorization"], log[-1]["status"]), (False, 401))
        self.assertNotIn("good-token", json.dumps(log))


class AuthStateTest(unittest.TestCase):
    def test_tokens_from_the_auth_doubles_state_file(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "state.json")
            now = time.time()
            with open(path, "w") as f:
                json.dump({"access_tokens": {
                    "live": {"exp": now + 3600, "scope": "s", "resource_server": "r", "revoked": False},
                    "old": {"exp": now - 1, "scope": "s", "resource_server": "r", "revoked": False},
                    "gone": {"exp": now + 3600, "scope": "s", "resource_server": "r", "revoked": True}}}, f)
            s = Server("--auth-state", path)
            try:
                self.assertEqual(s.chat(token="live")[0], 200)
                self.assertEqual(s.chat(token="old")[0], 401)
                self.assertEqual(s.chat(token="gone")[0], 401)
                with open(path, "w") as f:  # read per request
                    json.dump({"access_tokens": {"old": {"exp": now + 60, "revoked": False}}}, f)
                self.assertEqual(s.chat(token="old")[0], 200)
                self.assertEqual(s.chat(token="live")[0], 401)
            finally:
                s.close()


class PerturbBestTest(unittest.TestCase):
    def prompt(self, best):
        state = {"objective": "loss", "direction": "minimize", "best": best, "count": 3}
        return [{"role": "system", "content": "propose"},
                {"role": "user", "content": "Propose.\n```json\n%s\n```\n" % json.dumps(state)}]

    def test_proposals_stay_near_the_best_and_are_deterministic(self):
        best = [{"params": {"lr": 0.5, "layers": 4, "opt": "adam"}, "value": 0.1}]
        body = {"model": MODEL, "messages": self.prompt(best),
                "response_format": {"type": "json_schema", "json_schema": {"name": "proposals",
                                                                           "schema": proposals_schema(3)}}}
        answers = []
        for _ in range(2):
            s = Server("--token", "good-token", "--answer", "perturb-best", "--seed", "1")
            try:
                answers.append(json.loads(s.chat(body)[1]["choices"][0]["message"]["content"]))
            finally:
                s.close()
        self.assertEqual(answers[0], answers[1])
        props = answers[0]["proposals"]
        self.assertEqual(len(props), 3)
        for p in props:
            self.assertLessEqual(abs(p["lr"] - 0.5), 0.1 + 1e-9)
            self.assertTrue(isinstance(p["layers"], int) and 3 <= p["layers"] <= 5)
            self.assertIn(p["opt"], ["adam", "sgd"])

    def test_clamped_into_the_schema_range(self):
        rng = sg.random.Random(0)
        for _ in range(50):
            v = sg.perturb(1.0, {"type": "number", "minimum": 0, "maximum": 1}, rng)
            self.assertTrue(0.9 - 1e-9 <= v <= 1.0)

    def test_without_a_state_block_answers_any_valid_value(self):
        rng = sg.random.Random(0)
        v = sg.perturb_best(proposals_schema(2), None, rng)
        self.assertTrue(1 <= len(v["proposals"]) <= 2)


if __name__ == "__main__":
    unittest.main()
