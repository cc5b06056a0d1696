"""``kinto-fxa dev-server``: a Kinto with FxA login and the local FxA server, in one process.

For local development only (``make serve``). The local FxA server listens where
``fxa-oauth.oauth_uri`` points; Kinto listens where ``[server:main]`` says. The page at
``/demo/`` (:data:`DEMO_PAGE`) is the smallest complete web app: sign in, show the user,
create and list records in the user's default bucket, sign out.
"""

import json
import logging
from collections.abc import Callable, Iterable
from configparser import ConfigParser
from typing import Any
from urllib.parse import urlsplit

import waitress
from pyramid.paster import get_app, get_appsettings, setup_logging

from kinto_fxa.settings import parse_settings
from kinto_fxa.testing.fxa_server import LocalFxAServer


logger = logging.getLogger(__name__)

DEMO_PATH = "/demo/"
#: A complete web app using Kinto with Firefox Accounts, to copy: served at ``/demo/`` by the
#: development server, it works from any site listed in ``fxa-oauth.webapp.authorized_domains``
#: (Kinto answers CORS requests). ``__KINTO__`` is replaced by the Kinto server URL.
DEMO_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8">
<title>kinto-fxa demo</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 2em auto">
<h1>kinto-fxa demo</h1>
<p id="signed-out"><button id="sign-in">Sign in with Firefox Accounts</button></p>
<div id="signed-in" hidden>
  <p>Signed in as <code id="user"></code> <button id="sign-out">Sign out</button></p>
  <form id="add"><input id="text" required placeholder="A note"> <button>Add</button></form>
  <ul id="records"></ul>
</div>
<p id="error" style="color: #b00"></p>
<script>
const KINTO = "__KINTO__/v1";  // Your Kinto server.
const RECORDS = KINTO + "/buckets/default/collections/demo/records";  // The user's own bucket.
const $ = (id) => document.getElementById(id);

// 1. Back from the login, the token is in the fragment: keep it, then remove it from the
// address bar (and the history) at once. The fragment never reaches any server.
if (location.hash.length > 1) {
  sessionStorage.setItem("token", decodeURIComponent(location.hash.slice(1)));
  history.replaceState(null, "", location.pathname + location.search);
}

// 2. Every call to Kinto sends it as a bearer token.
async function kinto(url, options = {}) {
  const headers = {Authorization: "Bearer " + sessionStorage.getItem("token")};
  if (options.body) headers["Content-Type"] = "application/json";
  const response = await fetch(url, {...options, headers});
  const body = await response.json();
  if (response.status === 401) signOut();  // Expired or revoked: sign in again.
  if (!response.ok) throw new Error(body.message || response.statusText);
  return body;
}

async function show() {
  const signedIn = sessionStorage.getItem("token") !== null;
  $("signed-in").hidden = !signedIn;
  $("signed-out").hidden = signedIn;
  if (!signedIn) return;
  try {
    const info = await kinto(KINTO + "/");
    if (!info.user) return signOut();  // Token refused (expired, revoked): sign in again.
    $("user").textContent = info.user.id;
    const list = await kinto(RECORDS + "?_sort=last_modified");
    $("records").replaceChildren(...list.data.map((record) => {
      const item = document.createElement("li");
      item.textContent = record.text;  // Text, never HTML.
      return item;
    }));
  } catch (error) {
    $("error").textContent = error.message;
  }
}

function signOut() {
  sessionStorage.removeItem("token");  // Forget the token.
  $("user").textContent = "";
  $("records").replaceChildren();
  show();
}

// 3. Sign in: Kinto runs the OAuth dance and comes back here with the token after the #.
$("sign-in").onclick = () => {
  const back = location.origin + location.pathname + "#";
  location.assign(KINTO + "/fxa-oauth/login?redirect=" + encodeURIComponent(back));
};
$("sign-out").onclick = signOut;
$("add").onsubmit = async (event) => {
  event.preventDefault();
  try {
    await kinto(RECORDS, {method: "POST", body: JSON.stringify({data: {text: $("text").value}})});
    $("text").value = "";
  } catch (error) {
    $("error").textContent = error.message;
  }
  show();
};
show();
</script>
</body></html>
"""

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def demo_page(kinto_url: str) -> str:
    """The demo web app, calling the Kinto at ``kinto_url`` (e.g. ``http://127.0.0.1:8888``)."""
    return DEMO_PAGE.replace("__KINTO__", json.dumps(kinto_url.rstrip("/"))[1:-1])


def with_demo_page(app: WSGIApp, base_url: str) -> WSGIApp:
    """Serve the demo page at ``/demo/`` and everything else with ``app``."""
    page = demo_page(base_url).encode("utf-8")

    def wrapper(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") in (DEMO_PATH, DEMO_PATH.rstrip("/")):
            start_response(
                "200 OK",
                [
                    ("Content-Type", "text/html; charset=utf-8"),
                    ("Content-Length", str(len(page))),
                    ("Cache-Control", "no-store"),
                ],
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
