#!/usr/bin/env python3
"""A Globus Auth double for alcf-host's tests (Python 3 stdlib only, loopback only).

    globus_auth.py --port 0 --state FILE [--access-ttl S]

prints `LISTENING <port>` on stdout, then serves:

  GET  /v2/oauth2/authorize     a page showing a code for the request's code_challenge and scope
                                (<code id="auth-code">CODE</code>), as Globus's auth-code page does
  POST /v2/oauth2/token         grant_type=authorization_code (PKCE S256 checked) or refresh_token
  POST /v2/oauth2/token/revoke  token, client_id -> {"active": false}
  POST /_control/code           {"code_challenge", "scopes": [...]} -> {"code"}
  POST /_control/revoke_refresh revoke every refresh token
  POST /_control/ttl            {"access_ttl": S}: the lifetime of access tokens issued from now on
  GET  /_control/log            every request received (secrets cut to their first 4 characters)

After every change it writes the issued access tokens to --state FILE (atomic rename) as
{"access_tokens": {TOKEN: {"exp", "scope", "resource_server", "revoked"}}}: the Sophia gateway
double reads that file to decide 401s.
"""

import argparse
import base64
import hashlib
import html
import json
import os
import secrets
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

AUTH_RS = "auth.globus.org"
SCOPE_PREFIX = "https://auth.globus.org/scopes/"
IDENTITY_SCOPES = {"openid", "profile", "email"}
# Values that are secrets: the log keeps only their first 4 characters.
SECRET_KEYS = {"code", "code_verifier", "refresh_token", "token", "access_token"}

USER = {"sub": "b3c0d4e2-0000-4000-8000-00000000a1cf", "preferred_username": "ada@anl.gov", "email": "ada@example.org"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def s256(verifier: str) -> str:
    return b64url(hashlib.sha256(verifier.encode()).digest())


def resource_server_of(scope: str):
    """The resource server a scope string belongs to, or None for an identity scope."""
    if scope in IDENTITY_SCOPES:
        return AUTH_RS
    if scope.startswith(SCOPE_PREFIX):
        rest = scope[len(SCOPE_PREFIX):]
        return rest.split("/", 1)[0] or None
    return None


class Auth:
    """The double's state; every method runs under `lock`."""

    def __init__(self, state_path: str, access_ttl: int):
        self.lock = threading.Lock()
        self.state_path = state_path
        self.access_ttl = access_ttl
        self.codes = {}  # code -> {"challenge", "scopes"}
        self.access = {}  # token -> {"exp", "scope", "resource_server", "revoked"}
        self.refresh = {}  # token -> {"scope", "resource_server", "revoked"}
        self.log = []
        self.save()

    def save(self):
        tmp = self.state_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"access_tokens": self.access}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_path)

    def new_code(self, challenge: str, scopes):
        code = "code-" + secrets.token_urlsafe(12)
        self.codes[code] = {"challenge": challenge, "scopes": list(scopes)}
        return code

    def issue(self, resource_server: str, scope: str, with_refresh: bool):
        token = "at-" + secrets.token_urlsafe(24)
        self.access[token] = {
            "exp": int(time.time()) + self.access_ttl,
            "scope": scope,
            "resource_server": resource_server,
            "revoked": False,
        }
        answer = {
            "access_token": token,
            "expires_in": self.access_ttl,
            "resource_server": resource_server,
            "token_type": "Bearer",
            "scope": scope,
        }
        if with_refresh:
            refresh = "rt-" + secrets.token_urlsafe(24)
            self.refresh[refresh] = {"scope": scope, "resource_server": resource_server, "revoked": False}
            answer["refresh_token"] = refresh
        return answer

    def exchange(self, form):
        code = form.get("code", "")
        entry = self.codes.pop(code, None)  # a code works once
        if entry is None:
            return 400, {"error": "invalid_grant", "error_description": "unknown or used code"}
        if not form.get("client_id"):
            return 401, {"error": "invalid_client"}
        if form.get("redirect_uri") != "https://auth.globus.org/v2/web/auth-code":
            return 400, {"error": "invalid_grant", "error_description": "redirect_uri mismatch"}
        if s256(form.get("code_verifier", "")) != entry["challenge"]:
            return 400, {"error": "invalid_grant", "error_description": "PKCE verification failed"}
        by_rs = {}
        for scope in entry["scopes"]:
            rs = resource_server_of(scope)
            if rs is not None:
                by_rs.setdefault(rs, []).append(scope)
        if not by_rs:
            return 400, {"error": "invalid_scope"}
        answers = [self.issue(rs, " ".join(scopes), True) for rs, scopes in by_rs.items()]
        # Globus puts the auth.globus.org token first (with the id_token), the rest in other_tokens.
        answers.sort(key=lambda a: a["resource_server"] != AUTH_RS)
        first = answers[0]
        if AUTH_RS in by_rs:
            now = int(time.time())
            claims = dict(USER, iss="https://auth.globus.org", aud=form.get("client_id"), iat=now, exp=now + 172800)
            first["id_token"] = ".".join(
                [b64url(b'{"alg":"RS512","typ":"JWT"}'), b64url(json.dumps(claims).encode()), b64url(b"unsigned")]
            )
        first["other_tokens"] = answers[1:]
        self.save()
        return 200, first

    def refreshed(self, form):
        entry = self.refresh.get(form.get("refresh_token", ""))
        if entry is None or entry["revoked"]:
            return 400, {"error": "invalid_grant"}
        answer = self.issue(entry["resource_server"], entry["scope"], False)
        answer["refresh_token"] = form["refresh_token"]  # Globus does not rotate refresh tokens
        self.save()
        return 200, answer

    def revoke(self, form):
        token = form.get("token", "")
        for table in (self.access, self.refresh):
            if token in table:
                table[token]["revoked"] = True
        self.save()
        return 200, {"active": False}

    def revoke_all_refresh(self):
        for entry in self.refresh.values():
            entry["revoked"] = True
        return 200, {"revoked": len(self.refresh)}


def redact(params):
    return {k: (v[:4] + "…" if k in SECRET_KEYS else v) for k, v in params.items()}


class Handler(BaseHTTPRequestHandler):
    # Headers and body go out in separate writes: with Nagle's algorithm the body waits for the
    # client's delayed ACK (~40 ms a request), which no real gateway adds.
    disable_nagle_algorithm = True
    server_version = "globus-auth-double"
    auth: Auth = None  # set by main

    def log_message(self, fmt, *args):  # quiet: the tests read /_control/log instead
        pass

    def reply(self, status, body, content_type="application/json"):
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n).decode("utf-8", "replace") if n > 0 else ""

    def record(self, path, params):
        self.auth.log.append({"method": self.command, "path": path, "params": redact(params)})

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        with self.auth.lock:
            if url.path == "/_control/log":
                return self.reply(200, self.auth.log)
            self.record(url.path, query)
            if url.path == "/v2/oauth2/authorize":
                missing = [
                    k
                    for k in ("client_id", "redirect_uri", "scope", "state", "response_type", "code_challenge")
                    if not query.get(k)
                ]
                if missing or query.get("code_challenge_method") != "S256" or query.get("response_type") != "code":
                    return self.reply(400, f"<p>bad authorize request: missing {missing}</p>", "text/html")
                code = self.auth.new_code(query["code_challenge"], query["scope"].split())
                page = (
                    "<html><body><p>Native App Authorization Code</p>"
                    f'<code id="auth-code">{html.escape(code)}</code></body></html>'
                )
                return self.reply(200, page, "text/html")
        self.reply(404, {"error": "not_found"})

    def do_POST(self):
        path = urllib.parse.urlsplit(self.path).path
        raw = self.body()
        with self.auth.lock:
            if path.startswith("/_control/"):
                self.record(path, {})
                if path == "/_control/code":
                    try:
                        req = json.loads(raw or "{}")
                        code = self.auth.new_code(str(req["code_challenge"]), [str(s) for s in req["scopes"]])
                    except (ValueError, KeyError, TypeError) as e:
                        return self.reply(400, {"error": f"bad control request: {e}"})
                    return self.reply(200, {"code": code})
                if path == "/_control/ttl":
                    try:
                        self.auth.access_ttl = int(json.loads(raw)["access_ttl"])
                    except (ValueError, KeyError, TypeError) as e:
                        return self.reply(400, {"error": f"bad control request: {e}"})
                    return self.reply(200, {"access_ttl": self.auth.access_ttl})
                if path == "/_control/revoke_refresh":
                    return self.reply(*self.auth.revoke_all_refresh())
                return self.reply(404, {"error": "not_found"})
            form = dict(urllib.parse.parse_qsl(raw))
            self.record(path, form)
            if path == "/v2/oauth2/token":
                grant = form.get("grant_type")
                if grant == "authorization_code":
                    return self.reply(*self.auth.exchange(form))
                if grant == "refresh_token":
                    return self.reply(*self.auth.refreshed(form))
                return self.reply(400, {"error": "unsupported_grant_type"})
            if path == "/v2/oauth2/token/revoke":
                return self.reply(*self.auth.revoke(form))
        self.reply(404, {"error": "not_found"})


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--state", required=True, help="where to write the issued access tokens (JSON)")
    p.add_argument("--access-ttl", type=int, default=172800, help="access token lifetime in seconds")
    args = p.parse_args(argv)
    Handler.auth = Auth(args.state, args.access_ttl)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"LISTENING {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
