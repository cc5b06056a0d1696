"""What a failed token verification ends in, and why (PyFxA's ``fxa.errors`` in spirit).

Outcomes are two exceptions: :class:`InvalidToken` (FxA says no: not authenticated; its
``reason`` says why, one of :data:`REASONS`) and :class:`FxAUnavailable` (we cannot know:
the caller answers 503).
"""

# Why a token is refused (``InvalidToken.reason``, the ``reason`` label of the
# ``fxa_verifications`` metric).
#: The JWT has expired (``exp``).
EXPIRED = "expired"
#: The JWT is not valid yet (``iat`` or ``nbf`` in the future).
NOT_YET_VALID = "not_yet_valid"
#: The JWT names a key FxA does not publish (never negatively cached: the next JWKS refresh
#: may know it).
UNKNOWN_KEY = "unknown_key"
#: Not a JWT nor an opaque token, or a JWT with a missing or mistyped claim or header.
MALFORMED = "malformed"
#: The JWT's signature does not match its key.
SIGNATURE = "signature"
#: The JWT's ``iss`` is missing or not the FxA issuer expected.
ISSUER = "issuer"
#: The JWT's ``typ`` is not ``at+JWT``: another kind of token (ID token, event...).
TOKEN_TYPE = "token_type"
#: FxA's ``/v1/verify`` says the token is invalid.
INVALID = "invalid"
REASONS = (EXPIRED, NOT_YET_VALID, UNKNOWN_KEY, MALFORMED, SIGNATURE, ISSUER, TOKEN_TYPE, INVALID)


class VerificationError(Exception):
    """Base class of the outcomes of a failed verification."""


class InvalidToken(VerificationError):
    """The token is not valid: unknown, expired, forged, revoked or lacking scope.

    ``reason`` is one of :data:`REASONS`, for metrics and for the caller's caching.
    """

    def __init__(self, message: str = "Invalid token", reason: str = INVALID) -> None:
        super().__init__(message)
        self.reason = reason


class FxAUnavailable(VerificationError):
    """FxA could not be asked, or answered something that is not an answer."""
