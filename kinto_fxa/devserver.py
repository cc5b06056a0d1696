"""``kinto-fxa dev-server``: a Kinto with FxA login and the local FxA server, in one process.

For local development only (``make serve``). The local FxA server listens where
``fxa-oauth.oauth_uri`` points; Kinto listens where ``[server:main]`` says. A tiny page at
``/demo/`` receives the token at the end of the login dance and calls Kinto with it.
"""

import logging
from collections.abc import Callable, Iterable
from configparser import ConfigParser
from typing import Any
from urllib.parse import quote, urlsplit

import waitress
from pyramid.paster import get_app, get_appsettings, setup_logging

from kinto_fxa.settings import parse_settings
from kinto_fxa.testing.fxa_server import LocalFxAServer


logger = logging.getLogger(__name__)

DEMO_PATH = "/demo/"
DEMO_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>kinto-fxa demo</title></head>
<body style="font-family: sans-serif; max-width: 50em; margin: 2em auto">
<h1>kinto-fxa demo</h1>
<p><a href="/v1/fxa-oauth/login?redirect={redirect}">Sign in with (local) Firefox Accounts</a></p>
<p>Token: <code id="token">(none yet)</code></p>
<pre id="whoami"></pre>
<script>
const token = decodeURIComponent(window.location.hash.slice(1));
if (token) {{
  document.getElementById("token").textContent = token.slice(0, 24) + "...";
  fetch("/v1/", {{headers: {{Authorization: "Bearer " + token}}}})
    .then(r => r.json())
    .then(body => document.getElementById("whoami").textContent =
          JSON.stringify(body.user, null, 2));
}}
</script>
</body></html>
"""

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def with_demo_page(app: WSGIApp, base_url: str) -> WSGIApp:
    """Serve the demo page at ``/demo/`` and everything else with ``app``."""
    redirect = quote(base_url + DEMO_PATH + "#", safe="")
    page = DEMO_PAGE.format(redirect=redirect).encode("utf-8")

    def wrapper(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") in (DEMO_PATH, DEMO_PATH.rstrip("/")):
            start_response(
                "200 OK",
                [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(page)))],
            )
            return [page]
        return app(environ, start_response)

    return wrapper


def main(ini_path: str) -> None:
    setup_logging(ini_path)
    settings = parse_settings(get_appsettings(ini_path))

    if settings.oauth_uri is None:
        raise SystemExit(f"{ini_path}: set fxa-oauth.oauth_uri to where the local FxA listens")
    fxa_location = urlsplit(settings.oauth_uri)
    fxa = LocalFxAServer(host=fxa_location.hostname or "127.0.0.1", port=fxa_location.port or 80)
    for client in settings.clients:
        if client.client_id:
            fxa.register_client(client.client_id, client.client_secret, client.redirect_uri)
    fxa.start()

    parser = ConfigParser()
    parser.read(ini_path)
    host = parser.get("server:main", "host", fallback="127.0.0.1")
    port = parser.getint("server:main", "port", fallback=8888)
    base_url = f"http://{host}:{port}"

    app = with_demo_page(get_app(ini_path), base_url)
    print(
        f"""
kinto-fxa development server
  Kinto:            {base_url}/v1/
  Local FxA server: {fxa.url}  (sign in with any email address, no password)
  Try the login:    open {base_url}{DEMO_PATH}
  Or mint a token:  curl -s -X POST {fxa.url}/__test__/token \\
                         -H 'Content-Type: application/json' -d '{{"email": "alice@example.com"}}'
                    curl -s {base_url}/v1/ -H 'Authorization: Bearer <access_token>'
Press Ctrl-C to stop.
""",
        flush=True,
    )
    try:
        waitress.serve(app, host=host, port=port, threads=4)
    finally:
        fxa.stop()
