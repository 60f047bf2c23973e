"""Unit tests of the Globus Auth double: run it as a subprocess and talk HTTP to it on loopback."""

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SOPHIA = "https://auth.globus.org/scopes/681c10cc-f684-4540-bcd7-0b4df3bc26ef/action_all"
REDIRECT = "https://auth.globus.org/v2/web/auth-code"


def challenge(verifier):
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


class GlobusAuthDouble(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.state = os.path.join(self.dir.name, "state.json")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "globus_auth.py"), "--port", "0", "--state", self.state,
             "--access-ttl", "100"],
            stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        self.assertTrue(line.startswith("LISTENING "), line)
        self.base = f"http://127.0.0.1:{int(line.split()[1])}"

    def tearDown(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.proc.stdout.close()
        self.dir.cleanup()

    def call(self, path, form=None, js=None):
        data = None
        headers = {}
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if js is not None:
            data = json.dumps(js).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.base + path, data=data, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def login(self, verifier="v" * 43, scopes=("openid", "profile", "email", SOPHIA)):
        status, body = self.call("/_control/code", js={"code_challenge": challenge(verifier), "scopes": list(scopes)})
        self.assertEqual(status, 200, body)
        code = json.loads(body)["code"]
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                "client_id": "cid", "code_verifier": verifier}
        return code, form, self.call("/v2/oauth2/token", form=form)

    def state_tokens(self):
        with open(self.state) as f:
            return json.load(f)["access_tokens"]

    def test_code_exchange_checks_pkce_and_returns_every_resource_server(self):
        _, form, (status, body) = self.login()
        self.assertEqual(status, 200, body)
        answer = json.loads(body)
        self.assertEqual(answer["resource_server"], "auth.globus.org")
        self.assertEqual([t["resource_server"] for t in answer["other_tokens"]],
                         ["681c10cc-f684-4540-bcd7-0b4df3bc26ef"])
        self.assertEqual(answer["other_tokens"][0]["scope"], SOPHIA)
        self.assertTrue(answer["refresh_token"] and answer["other_tokens"][0]["refresh_token"])
        payload = answer["id_token"].split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        self.assertEqual(claims["preferred_username"], "ada@anl.gov")
        # The code is used up.
        status, body = self.call("/v2/oauth2/token", form=form)
        self.assertEqual((status, json.loads(body)["error"]), (400, "invalid_grant"))
        tokens = self.state_tokens()
        self.assertIn(answer["access_token"], tokens)
        self.assertFalse(tokens[answer["access_token"]]["revoked"])

    def test_a_wrong_verifier_is_refused(self):
        status, body = self.call("/_control/code", js={"code_challenge": challenge("right" * 9), "scopes": [SOPHIA]})
        code = json.loads(body)["code"]
        status, body = self.call("/v2/oauth2/token", form={
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "client_id": "cid", "code_verifier": "wrong" * 9})
        self.assertEqual(status, 400)
        self.assertIn("PKCE", body)

    def test_the_authorize_page_shows_a_working_code(self):
        verifier = "a" * 50
        query = urllib.parse.urlencode({
            "client_id": "cid", "redirect_uri": REDIRECT, "scope": "openid " + SOPHIA, "state": "s",
            "response_type": "code", "code_challenge": challenge(verifier), "code_challenge_method": "S256"},
            quote_via=urllib.parse.quote)
        status, page = self.call("/v2/oauth2/authorize?" + query)
        self.assertEqual(status, 200, page)
        code = re.search(r'<code id="auth-code">([^<]+)</code>', page).group(1)
        status, body = self.call("/v2/oauth2/token", form={
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "client_id": "cid", "code_verifier": verifier})
        self.assertEqual(status, 200, body)
        status, _ = self.call("/v2/oauth2/authorize?client_id=cid")
        self.assertEqual(status, 400)

    def test_refresh_revoke_and_log(self):
        _, _, (status, body) = self.login()
        sophia = json.loads(body)["other_tokens"][0]
        status, body = self.call("/v2/oauth2/token", form={
            "grant_type": "refresh_token", "refresh_token": sophia["refresh_token"], "client_id": "cid"})
        self.assertEqual(status, 200, body)
        fresh = json.loads(body)
        self.assertNotEqual(fresh["access_token"], sophia["access_token"])
        self.assertEqual(fresh["resource_server"], sophia["resource_server"])
        self.assertEqual(fresh["expires_in"], 100)
        self.assertEqual(self.call("/_control/ttl", js={"access_ttl": 7})[0], 200)
        status, body = self.call("/v2/oauth2/token", form={
            "grant_type": "refresh_token", "refresh_token": sophia["refresh_token"], "client_id": "cid"})
        self.assertEqual(json.loads(body)["expires_in"], 7)
        self.assertEqual(self.call("/_control/ttl", js={"access_ttl": "x"})[0], 400)

        status, body = self.call("/v2/oauth2/token/revoke", form={"token": fresh["access_token"], "client_id": "cid"})
        self.assertEqual((status, json.loads(body)), (200, {"active": False}))
        self.assertTrue(self.state_tokens()[fresh["access_token"]]["revoked"])

        self.assertEqual(self.call("/_control/revoke_refresh", js={})[0], 200)
        status, body = self.call("/v2/oauth2/token", form={
            "grant_type": "refresh_token", "refresh_token": sophia["refresh_token"], "client_id": "cid"})
        self.assertEqual((status, json.loads(body)), (400, {"error": "invalid_grant"}))

        status, body = self.call("/_control/log")
        log = json.loads(body)
        grants = [e["params"].get("grant_type") for e in log if e["path"] == "/v2/oauth2/token"]
        self.assertEqual(grants, ["authorization_code", "refresh_token", "refresh_token", "refresh_token"])
        self.assertEqual(sum(e["path"] == "/v2/oauth2/token/revoke" for e in log), 1)
        # Secrets are cut in the log.
        self.assertNotIn(sophia["refresh_token"], body)
        self.assertNotIn(fresh["access_token"], body)


if __name__ == "__main__":
    unittest.main()
