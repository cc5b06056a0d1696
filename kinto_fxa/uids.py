"""What an FxA account id (uid) looks like: the one rule, for tokens and account events.

FxA uids are 32 lowercase hexadecimal digits (a UUID without dashes). Anything else is
refused, never normalised: ``fxa:ABC...`` and ``fxa:abc...`` would be two Kinto users, and
``<uid>-notes`` is the user id of another client's user (``fxa-oauth.clients.notes``). The
whole string must match (``fullmatch``: ``re.match`` with ``$`` lets a final newline
through).

No Pyramid and no Kinto here: :mod:`kinto_fxa.verification` and :mod:`kinto_fxa.accounts`
both import it.
"""

import re
from typing import Any


#: An FxA uid: exactly 32 lowercase hex digits. Use :func:`is_fxa_uid` (or ``fullmatch``).
FXA_UID = re.compile(r"[0-9a-f]{32}")


def is_fxa_uid(value: Any) -> bool:
    """Whether ``value`` is a string that is exactly an FxA uid."""
    return isinstance(value, str) and FXA_UID.fullmatch(value) is not None
