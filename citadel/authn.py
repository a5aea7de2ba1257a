"""How citadel learns who a caller is from a bearer token, whichever kind of token it is.

The local mesh mints its own bootstrap tokens (`tokens`); in Kubernetes, workloads present
their service-account JWTs and the API server vouches for them (`tokenreview`). The server
needs only the identity or a reason to refuse, so both are an `Authenticator`, chosen by
option. The two failures differ for the caller: a token that names no identity is final
(UNAUTHENTICATED), while an authenticator that cannot decide now is worth a retry
(UNAVAILABLE).
"""

from __future__ import annotations

from typing import Protocol

from meshcore.identity import SpiffeId


class AuthenticationError(ValueError):
    """The caller presented no credential, or one that names no identity of the mesh."""


class AuthenticatorUnavailable(RuntimeError):
    """The authenticator could not check the token now (its backend failed)."""


class Authenticator(Protocol):
    async def authenticate(self, token: str) -> SpiffeId:
        """The identity `token` proves; AuthenticationError or AuthenticatorUnavailable."""
        ...
