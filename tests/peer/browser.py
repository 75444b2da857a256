#!/usr/bin/env python3
"""tests/peer/browser.py: a scripted browser for the peer tests (Python 3 standard library only).

    browser.py --cacert CA [--paste] [--timeout N] AUTHORIZE_URL

Opens AUTHORIZE_URL and follows the authorization server's redirects (301/302/303/307/308) with a
cookie jar, trusting only CA for HTTPS. The test server (oidc_server.mjs) completes login and
consent by itself, so the dance is nothing but redirects. When a redirect points to a loopback
listener (http://127.0.0.1..., http://[::1]...; the product's redirect_uri):

  without --paste  GET it (delivering code and state, or the error, to the product's listener) and
                   print the listener's HTTP status (e.g. "200") on stdout; exit 0 whatever the
                   status, as long as the listener answered.
  with --paste     do not fetch it; print the URL on stdout, as a user would paste it.

Any other answer (a non-redirect from the server, a redirect elsewhere, TLS or network errors, too
many redirects, the deadline) is an error: a one-line message on stderr and exit 1. Usage errors
exit 2. Every request has a timeout and the whole run a deadline (--timeout, default 20 s).
Nothing read from the URLs is printed except the final loopback URL with --paste.
"""

import argparse
import http.cookiejar
import socket
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

MAX_REDIRECTS = 20
REQUEST_TIMEOUT = 10.0


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """Hand redirects back to us instead of following them."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def fail(msg):
    print(f"browser.py: {msg}", file=sys.stderr)
    sys.exit(1)


def is_loopback_listener(url):
    p = urllib.parse.urlsplit(url)
    return p.scheme == "http" and p.hostname in ("127.0.0.1", "::1")


def snippet(body):
    text = body[:400].decode("utf-8", "replace").strip()
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())


def main():
    ap = argparse.ArgumentParser(description="follow an OAuth authorization through redirects")
    ap.add_argument("--cacert", required=True, help="CA certificate (PEM) trusted for HTTPS")
    ap.add_argument("--paste", action="store_true", help="print the loopback redirect URL instead of fetching it")
    ap.add_argument("--timeout", type=float, default=20.0, help="overall deadline in seconds (default 20)")
    ap.add_argument("url", help="the authorization URL")
    a = ap.parse_args()

    if not a.url.startswith("https://"):
        print("browser.py: the authorization URL must be https://", file=sys.stderr)
        sys.exit(2)
    try:
        ctx = ssl.create_default_context(cafile=a.cacert)
    except (OSError, ssl.SSLError) as e:
        print(f"browser.py: cannot load CA {a.cacert}: {e}", file=sys.stderr)
        sys.exit(2)

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}),  # never a proxy: everything is on 127.0.0.1
        urllib.request.HTTPSHandler(context=ctx),
        urllib.request.HTTPCookieProcessor(jar),
        NoRedirect(),
    )
    opener.addheaders = [("User-Agent", "pam_spotify-peer-browser/1")]
    deadline = time.monotonic() + a.timeout

    def fetch(url):
        """GET url; return (status, headers, body) for any HTTP answer."""
        left = deadline - time.monotonic()
        if left <= 0:
            fail(f"deadline of {a.timeout:g} s passed")
        try:
            with opener.open(url, timeout=min(REQUEST_TIMEOUT, left)) as r:
                return r.status, r.headers, r.read(65536)
        except urllib.error.HTTPError as e:
            try:
                body = e.read(65536)
            except Exception:  # noqa: BLE001 - the body is only for the message
                body = b""
            return e.code, e.headers, body
        except (urllib.error.URLError, OSError, socket.timeout, ssl.SSLError) as e:
            reason = getattr(e, "reason", e)
            fail(f"GET {urllib.parse.urlsplit(url)._replace(query='').geturl()}: {reason}")

    url = a.url
    for _ in range(MAX_REDIRECTS):
        path = urllib.parse.urlsplit(url)._replace(query="", fragment="").geturl()
        status, headers, body = fetch(url)
        if status not in (301, 302, 303, 307, 308):
            fail(f"GET {path}: HTTP {status} where a redirect was expected: {snippet(body)}")
        loc = headers.get("Location")
        if not loc:
            fail(f"GET {path}: HTTP {status} without a Location header")
        nxt = urllib.parse.urljoin(url, loc)
        if is_loopback_listener(nxt):
            if a.paste:
                print(nxt)
                return 0
            lstatus, _, _ = fetch(nxt)
            print(lstatus)
            return 0
        if urllib.parse.urlsplit(nxt).scheme != "https":
            fail(f"GET {path}: redirected to a non-https, non-loopback URL")
        url = nxt
    fail(f"more than {MAX_REDIRECTS} redirects")


if __name__ == "__main__":
    sys.exit(main())
