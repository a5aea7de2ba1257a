"""A throwaway JWT issuer for RequestAuthentication tests: a signing key, its JWKS, tokens.

Keys are EC P-256 made with `cryptography` per test, tokens ES256 signed with PyJWT (which
py-spiffe, a test dependency, installs). `Issuer.token` makes valid tokens by default and
invalid ones on demand (expired, wrong issuer, wrong audience), so each rejection case needs one
keyword; a second `Issuer` gives a token signed by a key the mesh does not trust.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm


@dataclass(frozen=True)
class Issuer:
    """One issuer (`iss`) with one signing key, published under key id `kid`."""

    name: str
    kid: str
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls, name: str, kid: str = "test-key") -> Issuer:
        return cls(name, kid, ec.generate_private_key(ec.SECP256R1()))

    def jwks(self) -> str:
        """The public key set, as RequestAuthentication's `jwks` (and a JWKS URL) carry it."""
        public: dict[str, Any] = ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        public.update(kid=self.kid, alg="ES256", use="sig")
        return json.dumps({"keys": [public]}, sort_keys=True)

    def token(
        self,
        subject: str = "alice",
        *,
        audience: str | None = None,
        lifetime: float = 3600.0,
        issuer: str | None = None,
        **claims: Any,
    ) -> str:
        """A signed token for `subject`; a negative `lifetime` makes it already expired, and
        `issuer` overrides the `iss` claim."""
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": self.name if issuer is None else issuer,
            "sub": subject,
            "iat": now,
            "exp": now + int(lifetime),
            **claims,
        }
        if audience is not None:
            payload["aud"] = audience
        return jwt.encode(payload, self.key, algorithm="ES256", headers={"kid": self.kid})
