#!/usr/bin/env python3
"""A fake Spotify accounts service for the pam_spotify tests (Python 3 standard library only).

This file owns the test double of https://accounts.spotify.com: the token endpoint
(POST /api/token), the authorization endpoint (GET /authorize, with headless consent), fault
injection, and the test-only control endpoints. It listens on loopback only and never logs a
secret, token, code, verifier, state, Authorization header or request/response body.

Usage (see tests/lib.sh, ps_start_server):

    fake_accounts.py --cert CERT --key KEY --port-file FILE [--port 0] [--host 127.0.0.1]
                     [--plain] [--silent] [--log FILE] [--client ID:SECRET ...]
                     [--expires-in 3600]

The chosen port is written to --port-file (digits and a newline, atomically) once listening.
SIGTERM or SIGINT stops the server at once, even while fault threads are still hanging.

--silent makes the whole server a black hole for the "accept and never answer" fault: it accepts
TCP connections and then never answers (no TLS handshake, not one byte sent; what the client
sends is read and dropped) until the client closes the connection or the server stops. It has no
endpoints, not even the control ones; each such connection is logged ("- - held-silent").

Endpoints
---------
POST /api/token        grant_type = client_credentials | authorization_code | refresh_token, as
                       Spotify documents them. Client authentication by HTTP Basic or by
                       client_id/client_secret in the body; PKCE (public) clients send client_id
                       only and prove possession with code_verifier. Errors are Spotify's: 400 with
                       {"error": ..., "error_description": ...}.
GET  /authorize        client_id, response_type=code, redirect_uri, [state, scope,
                       code_challenge_method=S256, code_challenge]. Redirects (302) to redirect_uri
                       with code and state, or error=access_denied when the "authorize" setting is
                       "deny". An unknown client or an unusable redirect_uri gets a 400 HTML page,
                       never a redirect.
POST /__control        merge JSON settings (see DEFAULT_SETTINGS): fault, fault_count, expires_in,
                       retry_after, rotate_refresh, authorize, delay, code_prefix,
                       redirect_status, redirect_location, body_size, chunked. Answers the
                       settings.
POST /__reset          settings, faults and counters back to the start. Issued grants (codes,
                       refresh tokens) survive unless the body is {"grants": true}.
GET  /__stats          {"token_requests", "by_grant": {grant_type|"none": N}, "errors": {error: N},
                       "faults_served", "authorize_requests", "codes_issued",
                       "refresh_tokens_issued", "last_access_token", "last_refresh_token",
                       "issued": [access tokens, fault-free path only], "token_times": [[unix
                       time received, fault or null] for each token request],
                       "active_refresh_tokens",
                       "codes": [authorization codes issued], "refresh_tokens": [refresh tokens
                       issued, minted ones too], "states": [state values received
                       at /authorize], "code_verifiers": [code_verifier values received at the
                       token endpoint, faults or not], "settings"}. The lists let a test learn a client's
                       random secrets after the fact and search its own captures for them.
POST /__revoke         revoke refresh tokens: {"refresh_token": T} one, empty body all.
POST /__refresh_token  mint a refresh token without the browser dance:
                       {"client_id": ID, "scope": "...", "public": true} -> {"refresh_token": T};
                       "refresh_token": T in the request mints that value (a test's sentinel).

Faults (setting "fault"; applied to any POST /api/token after the request has been read, in
place of the real answer; "fault_count" of them, then back to normal): hang, slow_body,
status_500, status_502, status_503, rate_limit, rate_limit_no_retry_after, malformed_json,
wrong_types, missing_fields, negative_expires, absurd_expires, no_expires (no expires_in),
string_expires (expires_in "1800"), huge_body, deep_nesting, nul_bytes (a JSON-escaped
\\u0000), nul_raw (a raw NUL byte), non_utf8, html_error, redirect, token_type_mac, empty_token,
quote_credentials (a 400 whose error_description quotes back every credential the request
carried), sized_body (a good token answer padded to exactly "body_size" bytes; with "chunked"
sent without Content-Length). See FAULTS below. slow_body sends the status line and headers
(with the true Content-Length) at once, then the body at one byte a second.
"""

import argparse
import base64
import dataclasses
import hashlib
import hmac
import json
import os
import re
import select
import signal
import socket
import ssl
import sys
import threading
import time
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_REQUEST_BODY = 64 * 1024
CODE_TTL = 600  # seconds an authorization code stays redeemable
SOCKET_TIMEOUT = 30  # seconds a connection may stall while we read it
FORM_TYPE = "application/x-www-form-urlencoded"

DEFAULT_SETTINGS = {
    "fault": None,  # a FAULTS name, or None
    "fault_count": None,  # token requests that get the fault; None = unlimited
    "expires_in": 3600,  # expires_in of issued access tokens (and of the slow_body fault)
    "retry_after": 7,  # Retry-After of the rate_limit fault
    "rotate_refresh": False,  # refresh_token grant returns a new refresh token, revoking the old
    "authorize": "approve",  # GET /authorize: "approve" or "deny" (error=access_denied)
    "delay": 0,  # seconds to wait before answering a token request
    "code_prefix": "AQ",  # authorization codes start with this (a test's sentinel)
    "redirect_status": 302,  # the redirect fault's status ...
    "redirect_location": "https://127.0.0.2:9/api/token",  # ... and Location
    "body_size": 65536,  # the exact size of the sized_body fault's answer
    "chunked": False,  # sized_body without Content-Length, in chunks
}

# https://developer.spotify.com/documentation/web-api/concepts/scopes
SPOTIFY_SCOPES = frozenset(
    """ugc-image-upload user-read-playback-state user-modify-playback-state
    user-read-currently-playing app-remote-control streaming playlist-read-private
    playlist-read-collaborative playlist-modify-private playlist-modify-public user-follow-modify
    user-follow-read user-read-playback-position user-top-read user-read-recently-played
    user-library-modify user-library-read user-read-email user-read-private user-soa-link
    user-soa-unlink soa-manage-entitlements soa-manage-partner soa-create-partner""".split()
)

VERIFIER_RE = re.compile(r"[A-Za-z0-9._~-]{43,128}")
CHALLENGE_RE = re.compile(r"[A-Za-z0-9_-]{43}")


# --------------------------------------------------------------------------------------------
# Small helpers


def new_secret(nbytes):
    """A random URL-safe string (4 characters per 3 bytes)."""
    return base64.urlsafe_b64encode(os.urandom(nbytes)).decode("ascii").rstrip("=")


def new_access_token():
    return "BQ" + new_secret(75)  # ~102 characters, like Spotify's


def s256(verifier):
    """RFC 7636 code_challenge for a verifier: BASE64URL-NOPAD(SHA256(ASCII(verifier)))."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def json_bytes(obj):
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


def is_loopback_http(uri):
    """Spotify accepts http:// redirect URIs only for loopback IP literals (not "localhost")."""
    parts = urllib.parse.urlsplit(uri)
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "::1")


class OAuthError(Exception):
    """An error answer of the token endpoint: status and Spotify's JSON error object."""

    def __init__(self, error, description, status=400):
        super().__init__(error)
        self.error = error
        self.description = description
        self.status = status

    def body(self):
        return {"error": self.error, "error_description": self.description}


def invalid_client(description="Invalid client"):
    return OAuthError("invalid_client", description)


def invalid_grant(description):
    return OAuthError("invalid_grant", description)


# --------------------------------------------------------------------------------------------
# Server state: settings, counters and issued grants, all behind one lock


@dataclasses.dataclass
class AuthCode:
    client_id: str
    redirect_uri: str
    scope: str
    challenge: str  # "" when the client did not use PKCE
    expires_at: float


@dataclasses.dataclass
class RefreshGrant:
    client_id: str
    scope: str
    public: bool  # issued to a PKCE client: refreshing needs no client secret


@dataclasses.dataclass
class ClientAuth:
    client_id: str
    confidential: bool  # authenticated with the client secret


class State:
    def __init__(self, clients, initial_settings, log_path):
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.clients = dict(clients)  # client_id -> secret
        self.initial_settings = dict(initial_settings)
        self.log_file = open(log_path, "a", buffering=1, encoding="utf-8") if log_path else None
        self.codes = {}
        self.refresh = {}
        self.reset(grants=True)

    # settings and counters ------------------------------------------------------------------

    def reset(self, grants=False):
        with self.lock:
            self.settings = dict(self.initial_settings)
            self.counters = {
                "token_requests": 0,
                "by_grant": {},
                "errors": {},
                "faults_served": 0,
                "authorize_requests": 0,
                "codes_issued": 0,
                "refresh_tokens_issued": 0,
                "last_access_token": None,
                "last_refresh_token": None,
                "issued": [],
                "codes": [],
                "refresh_tokens": [],
                "states": [],
                "code_verifiers": [],
                "token_times": [],
            }
            if grants:
                self.codes.clear()
                self.refresh.clear()

    def update_settings(self, changes):
        """Validate and merge a /__control object; returns the new settings."""
        validated = {key: validate_setting(key, value) for key, value in changes.items()}
        with self.lock:
            self.settings.update(validated)
            return dict(self.settings)

    def snapshot(self):
        with self.lock:
            return dict(self.settings)

    def stats(self):
        with self.lock:
            out = json.loads(json.dumps(self.counters))
            out["active_refresh_tokens"] = len(self.refresh)
            out["settings"] = dict(self.settings)
            return out

    def count_token_request(self, grant_type):
        with self.lock:
            self.counters["token_requests"] += 1
            by_grant = self.counters["by_grant"]
            by_grant[grant_type] = by_grant.get(grant_type, 0) + 1

    def count_authorize_request(self):
        with self.lock:
            self.counters["authorize_requests"] += 1

    def record(self, name, value):
        """Append a received value to the list counter name (states, code_verifiers)."""
        with self.lock:
            self.counters[name].append(value)

    def count_error(self, error):
        with self.lock:
            errors = self.counters["errors"]
            errors[error] = errors.get(error, 0) + 1

    def take_fault(self, received):
        """The fault this token request gets (or None), consuming one from fault_count; logs the
        request's arrival time (server clock, Unix time) and its fault in token_times."""
        with self.lock:
            fault = self.settings["fault"]
            self.counters["token_times"].append([round(received, 3), fault])
            if fault is None:
                return None
            count = self.settings["fault_count"]
            if count is not None:
                if count <= 1:
                    self.settings["fault"] = None
                    self.settings["fault_count"] = None
                else:
                    self.settings["fault_count"] = count - 1
            self.counters["faults_served"] += 1
            return fault

    # issuing ---------------------------------------------------------------------------------

    def record_access_token(self, token):
        with self.lock:
            self.counters["issued"].append(token)
            self.counters["last_access_token"] = token

    def access_token_response(self, scope=None):
        token = new_access_token()
        self.record_access_token(token)
        body = {"access_token": token, "token_type": "Bearer"}
        if scope is not None:
            body["scope"] = scope
        body["expires_in"] = self.snapshot()["expires_in"]
        return body

    def issue_refresh_token(self, client_id, scope, public, token=None):
        token = token or "AQ" + new_secret(96)
        with self.lock:
            self.refresh[token] = RefreshGrant(client_id, scope, public)
            self.counters["refresh_tokens_issued"] += 1
            self.counters["last_refresh_token"] = token
            self.counters["refresh_tokens"].append(token)
        return token

    def issue_code(self, client_id, redirect_uri, scope, challenge):
        with self.lock:
            code = self.settings["code_prefix"] + new_secret(160)
            self.counters["codes"].append(code)
            self.codes[code] = AuthCode(
                client_id, redirect_uri, scope, challenge, time.monotonic() + CODE_TTL
            )
            self.counters["codes_issued"] += 1
        return code

    def redeem_code(self, code):
        """The AuthCode for code, removed (codes are single-use), or None."""
        with self.lock:
            record = self.codes.pop(code, None)
        if record is None or record.expires_at < time.monotonic():
            return None
        return record

    def find_refresh(self, token):
        with self.lock:
            return self.refresh.get(token)

    def revoke_refresh(self, token=None):
        with self.lock:
            if token is None:
                count = len(self.refresh)
                self.refresh.clear()
                return count
            return 1 if self.refresh.pop(token, None) else 0

    # logging ---------------------------------------------------------------------------------

    def log(self, line):
        if self.log_file is None:
            return
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        with self.lock:
            try:
                self.log_file.write(f"{stamp} {line}\n")
            except (OSError, ValueError):
                pass


def validate_setting(key, value):
    """Check one /__control setting; raises ValueError with a message."""
    if key not in DEFAULT_SETTINGS:
        raise ValueError(f"unknown setting {key!r}")
    if key == "fault":
        if value is not None and value not in FAULTS:
            raise ValueError(f"unknown fault {value!r}; known: {', '.join(sorted(FAULTS))}")
    elif key == "fault_count":
        if value is not None and (not is_int(value) or value < 1):
            raise ValueError("fault_count must be a positive integer or null")
    elif key in ("expires_in", "retry_after"):
        if not is_int(value):
            raise ValueError(f"{key} must be an integer")
    elif key == "rotate_refresh":
        if not isinstance(value, bool):
            raise ValueError("rotate_refresh must be true or false")
    elif key == "authorize":
        if value not in ("approve", "deny"):
            raise ValueError('authorize must be "approve" or "deny"')
    elif key == "delay":
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise ValueError("delay must be a non-negative number of seconds")
    elif key == "code_prefix":
        if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", value):
            raise ValueError("code_prefix must be 1 to 64 URL-safe characters")
    elif key == "redirect_status":
        if not is_int(value) or not 300 <= value <= 399:
            raise ValueError("redirect_status must be a 3xx status")
    elif key == "redirect_location":
        if not isinstance(value, str) or not value:
            raise ValueError("redirect_location must be a URL")
    elif key == "body_size":
        if not is_int(value) or not 256 <= value <= 16 * 1024 * 1024:
            raise ValueError("body_size must be an integer from 256 to 16 MiB")
    elif key == "chunked":
        if not isinstance(value, bool):
            raise ValueError("chunked must be true or false")
    return value


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


# --------------------------------------------------------------------------------------------
# The token endpoint: client authentication and one function per grant type


def parse_form(body):
    """The form parameters as a dict; a repeated parameter is invalid_request (RFC 6749 3.2)."""
    try:
        pairs = urllib.parse.parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, errors="strict"
        )
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request", "Invalid request body") from None
    form = {}
    for name, value in pairs:
        if name in form:
            raise OAuthError("invalid_request", f"Duplicate parameter {name}")
        form[name] = value
    return form


def basic_credentials(header):
    """(client_id, secret) from an Authorization: Basic header, or None when absent."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        raise invalid_client()
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise invalid_client() from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise invalid_client()
    return client_id, secret


def authenticate_client(state, authorization, form):
    """Who is asking: Basic auth, or client_id [+ client_secret] in the body."""
    basic = basic_credentials(authorization)
    body_id = form.get("client_id")
    body_secret = form.get("client_secret")
    if basic is not None:
        client_id, secret = basic
        if (body_id is not None and body_id != client_id) or (
            body_secret is not None and body_secret != secret
        ):
            raise invalid_client()
    else:
        client_id, secret = body_id, body_secret
    if not client_id or client_id not in state.clients:
        raise invalid_client()
    if secret is None:
        return ClientAuth(client_id, confidential=False)
    if not hmac.compare_digest(secret.encode(), state.clients[client_id].encode()):
        raise invalid_client("Invalid client secret")
    return ClientAuth(client_id, confidential=True)


def grant_client_credentials(state, auth, form):
    if not auth.confidential:
        raise invalid_client()
    return state.access_token_response()  # Spotify sends no scope for client credentials


def grant_authorization_code(state, auth, form):
    code = form.get("code")
    if not code:
        raise OAuthError("invalid_request", "code must be supplied")
    record = state.redeem_code(code)
    if record is None or record.client_id != auth.client_id:
        raise invalid_grant("Invalid authorization code")
    if form.get("redirect_uri") != record.redirect_uri:
        raise invalid_grant("Invalid redirect URI")
    if record.challenge:
        verifier = form.get("code_verifier", "")
        if not VERIFIER_RE.fullmatch(verifier) or not hmac.compare_digest(
            s256(verifier), record.challenge
        ):
            raise invalid_grant("code_verifier was incorrect")
    elif not auth.confidential:
        raise invalid_client()
    body = state.access_token_response(scope=record.scope)
    body["refresh_token"] = state.issue_refresh_token(
        auth.client_id, record.scope, public=bool(record.challenge)
    )
    return body


def grant_refresh_token(state, auth, form):
    token = form.get("refresh_token")
    if not token:
        raise OAuthError("invalid_request", "refresh_token must be supplied")
    grant = state.find_refresh(token)
    if grant is None or grant.client_id != auth.client_id:
        raise invalid_grant("Invalid refresh token")
    if not grant.public and not auth.confidential:
        raise invalid_client()
    body = state.access_token_response(scope=grant.scope)
    if state.snapshot()["rotate_refresh"]:
        state.revoke_refresh(token)
        body["refresh_token"] = state.issue_refresh_token(
            grant.client_id, grant.scope, grant.public
        )
    return body


GRANTS = {
    "client_credentials": grant_client_credentials,
    "authorization_code": grant_authorization_code,
    "refresh_token": grant_refresh_token,
}


def token_endpoint(state, content_type, authorization, body):
    """Answer a (fault-free) token request: (status, JSON object)."""
    try:
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type != FORM_TYPE:
            raise OAuthError("invalid_request", f"Content-Type must be {FORM_TYPE}")
        form = parse_form(body)
        grant_type = form.get("grant_type")
        if not grant_type:
            raise OAuthError("unsupported_grant_type", "grant_type parameter is missing")
        if grant_type not in GRANTS:
            raise OAuthError(
                "unsupported_grant_type",
                "grant_type must be client_credentials, authorization_code or refresh_token",
            )
        auth = authenticate_client(state, authorization, form)
        return 200, GRANTS[grant_type](state, auth, form)
    except OAuthError as err:
        state.count_error(err.error)
        return err.status, err.body()


def form_values(body, name):
    """The values of a form parameter, tolerant of any body ([] when there is none)."""
    try:
        return urllib.parse.parse_qs(body.decode("utf-8", "replace")).get(name, [])
    except ValueError:
        return []


def grant_type_of(body):
    """The grant_type for the counters, tolerant of any body ("none" when there is none)."""
    values = form_values(body, "grant_type")
    return values[0] if values else "none"


# --------------------------------------------------------------------------------------------
# The authorization endpoint (headless consent)


def authorize_endpoint(state, query):
    """Answer GET /authorize: ("redirect", URL) or ("page", status, text)."""
    params = {k: v[0] for k, v in urllib.parse.parse_qs(query, keep_blank_values=True).items()}
    if "state" in params:
        state.record("states", params["state"])
    client_id = params.get("client_id", "")
    redirect_uri = params.get("redirect_uri", "")
    if client_id not in state.clients:
        return ("page", 400, "INVALID_CLIENT: Invalid client")
    if not redirect_uri:
        return ("page", 400, "INVALID_CLIENT: Invalid redirect URI")
    parts = urllib.parse.urlsplit(redirect_uri)
    if parts.scheme != "https" and not is_loopback_http(redirect_uri):
        return ("page", 400, "INVALID_CLIENT: Insecure redirect URI")
    if parts.fragment:
        return ("page", 400, "INVALID_CLIENT: Invalid redirect URI")

    def back(**answer):
        if "state" in params:
            answer["state"] = params["state"]
        sep = "&" if parts.query else "?"
        return ("redirect", redirect_uri + sep + urllib.parse.urlencode(answer))

    error = authorize_request_error(params)
    if error:
        return back(error=error[0], error_description=error[1])
    if state.snapshot()["authorize"] == "deny":
        return back(error="access_denied")
    code = state.issue_code(
        client_id, redirect_uri, params.get("scope", ""), params.get("code_challenge", "")
    )
    return back(code=code)


def authorize_request_error(params):
    """(error, description) for a malformed /authorize request, else None."""
    if params.get("response_type") != "code":
        return ("unsupported_response_type", "response_type must be code")
    scopes = params.get("scope", "").split()
    if any(scope not in SPOTIFY_SCOPES for scope in scopes):
        return ("invalid_scope", "Invalid scope")
    method = params.get("code_challenge_method")
    challenge = params.get("code_challenge")
    if method is None and challenge is None:
        return None
    if method != "S256":
        return ("invalid_request", "code_challenge_method must be S256")
    if challenge is None or not CHALLENGE_RE.fullmatch(challenge):
        return ("invalid_request", "code_challenge must be a S256 challenge")
    return None


# --------------------------------------------------------------------------------------------
# Faults: each writes the whole (mis)behaving answer of one token request


def good_token_body(handler):
    return {
        "access_token": new_access_token(),
        "token_type": "Bearer",
        "expires_in": handler.settings["expires_in"],
    }


def fault_hang(handler):
    """Read the request, then never answer: wait until the client goes or the server stops."""
    handler.log_line("-")
    handler.wait_for_client_close()


def fault_slow_body(handler):
    """A valid answer, Content-Length and all, with the body trickling at 1 byte per second."""
    data = json_bytes(good_token_body(handler))
    handler.start_response(200, "application/json", len(data))
    for i in range(len(data)):
        handler.wfile.write(data[i : i + 1])
        handler.wfile.flush()
        if handler.server.state.stopping.wait(1):
            return


def fault_status(status, content_type, body):
    def fault(handler):
        handler.send_body(status, content_type, body)

    fault.__doc__ = f"HTTP {status} ({content_type})."
    return fault


def html_page(title):
    """A small HTML error page, like the ones a gateway in front of Spotify serves."""
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n"
        f"<body>\r\n<center><h1>{title}</h1></center>\r\n</body>\r\n</html>\r\n"
    ).encode()


def fault_rate_limit(handler, retry_after=True):
    """429 with Spotify's Web API error body, and Retry-After unless told not to."""
    headers = {"Retry-After": str(handler.settings["retry_after"])} if retry_after else {}
    body = json_bytes({"error": {"status": 429, "message": "API rate limit exceeded"}})
    handler.send_body(429, "application/json", body, headers)


def fault_json(make_body):
    """200 application/json with the raw bytes make_body(handler) returns."""

    def fault(handler):
        handler.send_body(200, "application/json", make_body(handler))

    return fault


def with_changes(**changes):
    """A body maker: a good token body with some members replaced."""
    return lambda handler: json_bytes({**good_token_body(handler), **changes})


def huge_body(handler):
    body = good_token_body(handler)
    body["padding"] = "x" * (1024 * 1024)
    return json_bytes(body)


def raw_token_body(handler, raw_token):
    return (
        b'{"access_token":"'
        + raw_token
        + b'","token_type":"Bearer","expires_in":'
        + str(handler.settings["expires_in"]).encode()
        + b"}"
    )


def fault_redirect(handler):
    """A redirect: by default a 302 to an address where nothing listens (settings
    redirect_status and redirect_location make it e.g. a 307 to another live server)."""
    status = handler.settings["redirect_status"]
    handler.send_body(
        status,
        "text/html",
        html_page(f"{status} Redirect"),
        {"Location": handler.settings["redirect_location"]},
    )


def fault_quote_credentials(handler):
    """A 400 invalid_request whose error_description quotes back every credential the request
    carried (client secret, refresh token, code, code_verifier): a hostile or broken server."""
    quoted = []
    try:
        basic = basic_credentials(handler.headers.get("Authorization"))
    except OAuthError:
        basic = None
    if basic:
        quoted.append(basic[1])
    for name in ("client_secret", "refresh_token", "code", "code_verifier"):
        quoted += form_values(handler.request_body, name)
    body = {"error": "invalid_request", "error_description": "you sent " + " ".join(quoted)}
    handler.send_body(400, "application/json", json_bytes(body))


def fault_sized_body(handler):
    """A good token answer padded to exactly body_size bytes; with "chunked" it goes without
    Content-Length, in 4 KiB chunks, so only the client's own cap can stop it."""
    size = handler.settings["body_size"]
    body = json_bytes({**good_token_body(handler), "padding": ""})
    body = body[:-2] + b"x" * (size - len(body)) + body[-2:]
    if not handler.settings["chunked"]:
        handler.send_body(200, "application/json", body)
        return
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.send_header("Connection", "close")
    handler.end_headers()
    try:
        for i in range(0, len(body), 4096):
            chunk = body[i : i + 4096]
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()
    except (ConnectionError, ssl.SSLError, OSError):
        pass  # the client stopped reading at its cap


FAULTS = {
    "hang": fault_hang,
    "slow_body": fault_slow_body,
    "status_500": fault_status(
        500,
        "application/json",
        json_bytes({"error": "server_error", "error_description": "Unexpected status: 500"}),
    ),
    "status_502": fault_status(502, "text/html", html_page("502 Bad Gateway")),
    "status_503": fault_status(503, "text/html", html_page("503 Service Temporarily Unavailable")),
    "rate_limit": fault_rate_limit,
    "rate_limit_no_retry_after": lambda handler: fault_rate_limit(handler, retry_after=False),
    "malformed_json": fault_json(lambda handler: b'{"access_token": "abc", '),
    "wrong_types": fault_json(
        lambda handler: b'{"access_token": 12345, "token_type": "Bearer", "expires_in": "3600"}'
    ),
    "missing_fields": fault_json(lambda handler: b'{"token_type":"Bearer"}'),
    "negative_expires": fault_json(with_changes(expires_in=-5)),
    "absurd_expires": fault_json(with_changes(expires_in=99999999999)),
    # RFC 6749 5.1 makes expires_in RECOMMENDED; some servers send it as a string
    "no_expires": fault_json(
        lambda handler: json_bytes(
            {k: v for k, v in good_token_body(handler).items() if k != "expires_in"}
        )
    ),
    "string_expires": fault_json(with_changes(expires_in="1800")),
    "huge_body": fault_json(huge_body),
    "deep_nesting": fault_json(lambda handler: b"[" * 10000 + b"]" * 10000),
    # A JSON-escaped NUL (valid JSON; a C string would be cut short) ...
    "nul_bytes": fault_json(lambda handler: raw_token_body(handler, b"BQabc\\u0000def")),
    # ... and a raw NUL byte (invalid JSON: a control character inside a string).
    "nul_raw": fault_json(lambda handler: raw_token_body(handler, b"BQabc\x00def")),
    "non_utf8": fault_json(lambda handler: raw_token_body(handler, b"BQabc\xff\xfedef")),
    "html_error": fault_status(200, "text/html", html_page("Something went wrong")),
    "redirect": fault_redirect,
    "token_type_mac": fault_json(with_changes(token_type="mac")),
    "empty_token": fault_json(with_changes(access_token="")),
    "quote_credentials": fault_quote_credentials,
    "sized_body": fault_sized_body,
}


# --------------------------------------------------------------------------------------------
# HTTP


class Handler(BaseHTTPRequestHandler):
    """One connection, one request (Connection: close), TLS handshake done in this thread."""

    protocol_version = "HTTP/1.1"
    server_version = "fake-accounts"
    timeout = SOCKET_TIMEOUT

    ROUTES = {
        "/api/token": {"POST": "handle_token"},
        "/authorize": {"GET": "handle_authorize"},
        "/__control": {"POST": "handle_control"},
        "/__reset": {"POST": "handle_reset"},
        "/__stats": {"GET": "handle_stats"},
        "/__revoke": {"POST": "handle_revoke"},
        "/__refresh_token": {"POST": "handle_mint_refresh"},
    }

    def version_string(self):
        return self.server_version

    # connection set-up -----------------------------------------------------------------------

    def setup(self):
        self.tls_failed = False
        self.fault = None
        self.grant = None
        if self.server.silent:
            self.tls_failed = True  # nothing of HTTP happens on this connection
            self.hold_silently()
            return
        self.request.settimeout(self.timeout)
        if self.server.tls is not None:
            try:
                self.request = self.server.tls.wrap_socket(self.request, server_side=True)
            except (ssl.SSLError, OSError) as err:
                self.tls_failed = True
                reason = getattr(err, "reason", None) or type(err).__name__
                self.server.state.log(f"- - tls-handshake-failed reason={reason}")
                return
        super().setup()

    def hold_silently(self):
        """--silent: keep the accepted TCP connection and never send a byte; drop what the
        client sends (its TLS ClientHello); end when it closes or the server stops."""
        state = self.server.state
        state.log("- - held-silent")
        while not state.stopping.is_set():
            try:
                readable, _, _ = select.select([self.request], [], [], 0.5)
                if readable and not self.request.recv(4096):
                    return  # the client closed
            except (OSError, ValueError):
                return

    def handle(self):
        if self.tls_failed:
            return
        try:
            super().handle()
        except (ConnectionError, ssl.SSLError, socket.timeout, OSError) as err:
            if getattr(self, "command", None) is None:
                reason = getattr(err, "reason", None) or type(err).__name__
                self.server.state.log(f"- - closed-without-request reason={reason}")
            return  # the client went away: nothing to answer
        if getattr(self, "command", None) is None:
            self.server.state.log("- - closed-without-request")

    def finish(self):
        if not self.tls_failed:
            try:
                super().finish()
            except (ConnectionError, ssl.SSLError, OSError):
                pass

    # dispatch --------------------------------------------------------------------------------

    def dispatch(self):
        self.close_connection = True
        path, _, self.query = self.path.partition("?")
        self.route_path = path
        methods = self.ROUTES.get(path)
        if methods is None:
            self.send_error_json(404, "Not found", "not_found")
        elif self.command not in methods:
            self.send_error_json(405, "Method not allowed", headers={"Allow": ", ".join(methods)})
        else:
            getattr(self, methods[self.command])()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = dispatch

    # endpoints -------------------------------------------------------------------------------

    def handle_token(self):
        body = self.read_body()
        if body is None:
            return
        state = self.server.state
        content_type = self.headers.get("Content-Type", "")
        self.request_body = body
        received = time.time()
        self.grant = grant_type_of(body)
        for verifier in form_values(body, "code_verifier"):
            state.record("code_verifiers", verifier)
        state.count_token_request(self.grant)
        self.settings = state.snapshot()
        if self.settings["delay"] and state.stopping.wait(self.settings["delay"]):
            return
        self.fault = state.take_fault(received)
        if self.fault is not None:
            FAULTS[self.fault](self)
            return
        status, answer = token_endpoint(
            state, content_type, self.headers.get("Authorization"), body
        )
        self.send_json(status, answer)

    def handle_authorize(self):
        state = self.server.state
        state.count_authorize_request()
        answer = authorize_endpoint(state, self.query)
        if answer[0] == "redirect":
            self.send_body(
                302, "text/html", b"", {"Location": answer[1], "Referrer-Policy": "no-referrer"}
            )
        else:
            self.send_body(answer[1], "text/html; charset=utf-8", html_page(answer[2]))

    def handle_control(self):
        changes = self.read_json_object()
        if changes is None:
            return
        try:
            settings = self.server.state.update_settings(changes)
        except ValueError as err:
            self.send_error_json(400, str(err), "bad_setting")
            return
        self.send_json(200, settings)

    def handle_reset(self):
        options = self.read_json_object()
        if options is None:
            return
        self.server.state.reset(grants=options.get("grants") is True)
        self.send_json(200, self.server.state.snapshot())

    def handle_stats(self):
        self.send_json(200, self.server.state.stats())

    def handle_revoke(self):
        options = self.read_json_object()
        if options is None:
            return
        revoked = self.server.state.revoke_refresh(options.get("refresh_token"))
        self.send_json(200, {"revoked": revoked})

    def handle_mint_refresh(self):
        options = self.read_json_object()
        if options is None:
            return
        state = self.server.state
        client_id = options.get("client_id", next(iter(state.clients)))
        if client_id not in state.clients:
            self.send_error_json(400, "unknown client", "bad_setting")
            return
        chosen = options.get("refresh_token")
        if chosen is not None and (
            not isinstance(chosen, str) or not re.fullmatch(r"[A-Za-z0-9._~+/=-]{8,512}", chosen)
        ):
            self.send_error_json(
                400, "refresh_token must be 8 to 512 token characters", "bad_setting"
            )
            return
        token = state.issue_refresh_token(
            client_id, options.get("scope", ""), options.get("public", True) is True, chosen
        )
        self.send_json(200, {"refresh_token": token})

    # reading ---------------------------------------------------------------------------------

    def read_body(self):
        """The request body (bytes), or None after answering an error."""
        length = self.headers.get("Content-Length")
        if length is None:
            if self.headers.get("Transfer-Encoding"):
                self.send_error_json(411, "Length required")
                return None
            return b""
        if not length.isdigit():
            self.send_error_json(400, "Bad Content-Length")
            return None
        if int(length) > MAX_REQUEST_BODY:
            self.send_error_json(413, "Body too large")
            return None
        return self.rfile.read(int(length))

    def read_json_object(self):
        """A control request's JSON object ({} for an empty body), or None after a 400."""
        body = self.read_body()
        if body is None:
            return None
        try:
            obj = json.loads(body) if body.strip() else {}
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            self.send_error_json(400, "expected a JSON object", "bad_setting")
            return None
        return obj

    def wait_for_client_close(self):
        """Block until the peer closes the connection or the server stops."""
        state = self.server.state
        while not state.stopping.is_set():
            try:
                readable, _, _ = select.select([self.connection], [], [], 0.5)
                if readable and not self.connection.recv(4096):
                    return
            except (ssl.SSLWantReadError, socket.timeout):
                continue
            except (OSError, ValueError):
                return

    # writing ---------------------------------------------------------------------------------

    def start_response(self, status, content_type, length, headers=None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Pragma", "no-cache")
        self.send_header("Connection", "close")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()

    def send_body(self, status, content_type, body, headers=None):
        self.start_response(status, content_type, len(body), headers)
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def send_json(self, status, obj, headers=None):
        self.send_body(status, "application/json", json_bytes(obj), headers)

    def send_error_json(self, status, description, error="invalid_request", headers=None):
        self.send_json(status, {"error": error, "error_description": description}, headers)

    # logging: one line per request, never a query string, header or body ---------------------

    def log_request(self, code="-", size="-"):
        self.log_line(getattr(code, "value", code))

    def log_line(self, status):
        method = getattr(self, "command", None) or "-"
        path = getattr(self, "route_path", None) or "-"
        grant = self.grant if self.grant in GRANTS or self.grant == "none" else "other"
        extra = f" grant={grant}" if self.grant else ""
        self.server.state.log(f"{method} {path} {status} fault={self.fault or '-'}{extra}")

    def log_message(self, format, *args):
        pass  # http.server's own messages may quote the request line


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    # listen backlog: socketserver's default of 5 drops the SYNs of a login storm (100 connects at
    # once), and the clients' retransmits then cost them 1 s, 3 s, ... that the real service would not
    request_queue_size = 128

    def __init__(self, address, state, tls, silent=False):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.state = state
        self.tls = tls
        self.silent = silent
        super().__init__(address, Handler)

    def handle_error(self, request, client_address):
        err = sys.exc_info()[1]
        if isinstance(err, (ConnectionError, ssl.SSLError, socket.timeout)):
            return
        self.state.log("- - internal-error " + traceback.format_exc().replace("\n", " | "))


# --------------------------------------------------------------------------------------------
# Main


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Fake Spotify accounts server for tests.")
    parser.add_argument("--cert", help="server certificate (PEM); required unless --plain")
    parser.add_argument("--key", help="server private key (PEM)")
    parser.add_argument("--port-file", required=True, help="where to write the chosen port")
    parser.add_argument("--port", type=int, default=0, help="port (0: ephemeral)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--plain", action="store_true", help="plain HTTP instead of TLS")
    parser.add_argument(
        "--silent",
        action="store_true",
        help="accept TCP connections and never answer (no TLS handshake, nothing sent)",
    )
    parser.add_argument("--log", help="append one line per request to this file")
    parser.add_argument(
        "--client",
        action="append",
        metavar="ID:SECRET",
        help="a registered client (repeatable; default testclient:testsecret)",
    )
    parser.add_argument(
        "--client-file",
        metavar="FILE",
        help="registered clients, one ID:SECRET a line (keeps secrets out of argv)",
    )
    parser.add_argument("--expires-in", type=int, default=3600, help="expires_in of tokens")
    args = parser.parse_args(argv)
    if not args.plain and not args.cert:
        parser.error("--cert is required unless --plain")
    specs = list(args.client or [])
    if args.client_file:
        with open(args.client_file, encoding="ascii") as f:
            specs += [line.strip() for line in f if line.strip()]
    clients = {}
    for spec in specs or ["testclient:testsecret"]:
        client_id, sep, secret = spec.partition(":")
        if not sep or not client_id:
            parser.error("--client and --client-file want ID:SECRET")
        clients[client_id] = secret
    args.clients = clients
    return args


def tls_context(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


def write_port_file(path, port):
    """Write the port atomically: a temporary file in the same directory, then rename."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(f"{port}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main(argv=None):
    args = parse_args(argv)
    settings = dict(DEFAULT_SETTINGS, expires_in=args.expires_in)
    state = State(args.clients, settings, args.log)
    tls = None if args.plain else tls_context(args.cert, args.key or args.cert)
    server = Server((args.host, args.port), state, tls, silent=args.silent)

    def stop(signum, frame):
        state.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threading.Thread(target=server.serve_forever, name="serve", daemon=True).start()
    write_port_file(args.port_file, server.server_address[1])
    tls_mode = "no" if args.plain else "yes"
    silent = " silent" if args.silent else ""
    state.log(f"- - listening port={server.server_address[1]} tls={tls_mode}{silent}")
    while not state.stopping.wait(1):
        pass
    server.shutdown()
    server.server_close()
    state.log("- - stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
