"""The HTML sign-in page of ``GET /v1/authorization``: an email field and a button."""

from __future__ import annotations

import html
from collections.abc import Mapping

from webob import Response


_SIGN_IN_PAGE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Sign in - local Firefox Accounts</title></head>
<body>
<h1>Sign in to continue to {name}</h1>
<p>Local FxA server for development: no password, any email address signs in.</p>
<form method="post" action="{action}">
{hidden}
<label>Email <input type="email" name="email" value="{email}" required{readonly}></label>
<button type="submit">Sign in</button>
</form>
</body>
</html>
"""


def sign_in_page(client_name: str, action: str, params: Mapping[str, str]) -> Response:
    """The page asking for an email, that POSTs ``params`` (the authorization request)
    back to ``action``."""
    hidden = "\n".join(
        f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
        for name, value in params.items()
        if name != "email"
    )
    page = _SIGN_IN_PAGE.format(
        name=html.escape(client_name),
        action=html.escape(action),
        hidden=hidden,
        email=html.escape(params.get("email", "")),
        readonly=" readonly" if params.get("action") == "force_auth" else "",
    )
    response = Response(status=200, content_type="text/html", charset="utf-8", text=page)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
