"""The one HTTP request the LLM planner makes (story/planner.py), with the safety it needs.

`post_json(url, payload, timeout, api_key)` POSTs JSON and returns the decoded JSON reply, or raises a
one-line UserError. Standard library only (http.client), because urllib's defaults do not fit:
- redirects are never followed: urllib re-sends the Authorization header to wherever a redirect
  points, so a server could hand the API key to another host;
- `timeout` is a deadline for the whole request (connect, headers, body), not per read: a server
  that trickles a byte at a time cannot hold `plan` forever. A watchdog shuts the socket at the
  deadline, whatever phase the request is in;
- the reply is capped at MAX_REPLY_BYTES;
- only http:// and https:// URLs (`check_url`), checked before anything is sent.
"""

from __future__ import annotations

import http.client
import json
import math
import socket
import threading
import time
import urllib.parse

from storyreel.core.errors import UserError

MAX_REPLY_BYTES = 4 * 2**20  # a plan is a few KB; chat-completions JSON of a long story stays far below
MAX_TIMEOUT_S = 3600.0
SCHEMES = ("http", "https")


def check_url(url: str, flag: str = "--llm") -> urllib.parse.SplitResult:
    """The parsed URL, or a one-line UserError unless it is http(s)://HOST[:PORT][/PATH]."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - a malformed port raises here
    except ValueError as err:
        raise UserError(f"{flag} {url!r} is not a valid URL ({err})") from None
    if parts.scheme.lower() not in SCHEMES or not parts.hostname:
        raise UserError(f"{flag} {url!r}: give an http:// or https:// URL of an OpenAI-compatible server, "
                        "e.g. http://127.0.0.1:8080/v1")
    if parts.username or parts.password:
        raise UserError(f"{flag} {url!r}: put no credentials in the URL; set $STORYREEL_LLM_API_KEY")
    return parts


def check_timeout(timeout, flag: str = "--llm-timeout") -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not (
            math.isfinite(timeout) and 0 < timeout <= MAX_TIMEOUT_S):
        raise UserError(f"{flag} must be a number of seconds above 0 and at most {MAX_TIMEOUT_S:g} (got {timeout})")
    return float(timeout)


def post_json(url: str, payload: dict, timeout: float, api_key: str | None = None) -> dict:
    """POST `payload` as JSON to `url`; the decoded JSON reply. Everything must finish within `timeout` s."""
    parts = check_url(url)
    timeout = check_timeout(timeout)
    deadline = time.monotonic() + timeout
    body = json.dumps(payload).encode("utf-8")
    headers = {"Content-Type": "application/json", "Accept": "application/json", "Content-Length": str(len(body))}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    connection_class = http.client.HTTPSConnection if parts.scheme.lower() == "https" else http.client.HTTPConnection
    connection = connection_class(parts.hostname, parts.port, timeout=timeout)
    path = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    watchdog = None
    try:
        try:
            connection.connect()
            watchdog = threading.Timer(max(deadline - time.monotonic(), 0.0), _shut, (connection.sock,))
            watchdog.daemon = True
            watchdog.start()
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            raw = _read_capped(response, url, deadline)
        except (OSError, http.client.HTTPException) as err:
            if time.monotonic() >= deadline - 0.01 or isinstance(err, (TimeoutError, socket.timeout)):
                raise UserError(f"LLM server {url} did not answer within --llm-timeout {timeout:g} s; "
                                "raise --llm-timeout or check the server") from None
            reason = " ".join(str(getattr(err, "reason", None) or err).split()) or type(err).__name__
            raise UserError(f"cannot reach LLM server {url} ({reason}); start it or leave out --llm") from None
    finally:
        if watchdog is not None:
            watchdog.cancel()
        connection.close()

    if 300 <= response.status < 400:
        target = response.getheader("Location") or "elsewhere"
        raise UserError(f"LLM server {url} redirects (HTTP {response.status}) to {target[:200]}; storyreel "
                        "follows no redirects (the API key must not go to another address): give the final "
                        "URL with --llm")
    if response.status >= 400:
        detail = " ".join(raw[:400].decode("utf-8", "replace").split())[:200]
        raise UserError(f"LLM server {url} answered HTTP {response.status}: {detail or response.reason}")
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UserError(f"LLM server {url} did not answer with chat-completions JSON") from None


def _read_capped(response, url: str, deadline: float) -> bytes:
    length = response.getheader("Content-Length")
    if length and length.strip().isdigit() and int(length) > MAX_REPLY_BYTES:
        raise UserError(f"LLM server {url} sent a {int(length)}-byte reply; the limit is {MAX_REPLY_BYTES} bytes")
    chunks, size = [], 0
    while True:
        if time.monotonic() >= deadline:
            raise TimeoutError
        chunk = response.read1(65536)  # returns after one read from the socket, so the deadline is checked often
        if not chunk:
            break
        size += len(chunk)
        if size > MAX_REPLY_BYTES:
            raise UserError(f"LLM server {url} sent more than {MAX_REPLY_BYTES} bytes; the limit is "
                            f"{MAX_REPLY_BYTES} bytes")
        chunks.append(chunk)
    if time.monotonic() >= deadline:  # the watchdog cut the connection: what arrived is incomplete
        raise TimeoutError
    return b"".join(chunks)


def _shut(sock) -> None:
    """The deadline passed: end every read or write in progress on `sock`."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except (OSError, AttributeError):
        pass
