"""Bootstrap tokens: how a workload of the local mesh proves its identity before it has a cert.

In Kubernetes, Istio trusts service-account JWTs checked by the API server; the local mesh has
no API server, so citadel mints an opaque token per workload instead, bound to one identity and
authenticated with an HMAC key that never leaves the CA directory. Whoever can read a token may
obtain certificates for its identity, exactly like a mounted service-account token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from pathlib import Path

from citadel.authn import AuthenticationError
from citadel.cacerts import write_private
from meshcore.identity import SpiffeId

TOKEN_KEY = "token-key"
_PREFIX = "v1"


class TokenError(AuthenticationError):
    """The token is malformed, forged, or names no valid identity."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenAuthority:
    """Mints and checks bootstrap tokens; the local mesh's `Authenticator`."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the token key needs at least 32 bytes")
        self._key = key

    @classmethod
    def load_or_create(cls, directory: Path) -> TokenAuthority:
        """The authority whose key is `directory/token-key`, created (mode 0600) if missing."""
        path = directory / TOKEN_KEY
        if not path.exists():
            directory.mkdir(parents=True, exist_ok=True)
            write_private(path, secrets.token_bytes(32))
        return cls(path.read_bytes())

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def mint(self, identity: SpiffeId) -> str:
        payload = f"{_PREFIX}.{_b64(identity.uri.encode())}"
        return f"{payload}.{self._mac(payload)}"

    def verify(self, token: str) -> SpiffeId:
        """The identity `token` was minted for; TokenError if this authority did not mint it."""
        prefix, _, rest = token.partition(".")
        encoded, _, mac = rest.partition(".")
        if prefix != _PREFIX or not encoded or not mac:
            raise TokenError("malformed token")
        if not hmac.compare_digest(mac, self._mac(f"{prefix}.{encoded}")):
            raise TokenError("token signature does not verify")
        try:
            return SpiffeId.parse(_unb64(encoded).decode())
        except ValueError as error:
            raise TokenError(f"token names no valid identity: {error}") from error

    async def authenticate(self, token: str) -> SpiffeId:
        return self.verify(token)
