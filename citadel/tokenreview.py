"""Kubernetes service-account tokens, checked by the API server as istiod checks them.

In Kubernetes a workload proves who it is with its projected service-account JWT (audience
`istio-ca`). Citadel does not verify the JWT itself: it asks the API server with a TokenReview
(authentication.k8s.io/v1), which also knows whether the token was revoked or its pod deleted.
Like istiod it accepts only a token the server authenticated for one of citadel's audiences, of
a user in the `system:serviceaccounts` group named `system:serviceaccount:<ns>:<sa>`, and takes
the identity `spiffe://<trust domain>/ns/<ns>/sa/<sa>` from that name.

A burst of renewals would otherwise be one API request per certificate, so successful reviews
are kept for a short while (`cache_ttl`, bounded to `cache_size` tokens, oldest dropped first):
a revoked token can thus still get certificates for up to `cache_ttl`. Refusals are not kept.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from citadel.authn import AuthenticationError, AuthenticatorUnavailable
from meshcore.identity import IdentityError, SpiffeId

ISTIO_CA_AUDIENCE = "istio-ca"
SERVICE_ACCOUNTS_GROUP = "system:serviceaccounts"
CACHE_TTL = 30.0
CACHE_SIZE = 10_000
REQUEST_TIMEOUT = 5.0

_USERNAME = re.compile(r"^system:serviceaccount:([^:]+):([^:]+)$")


def reviewed_identity(
    status: client.V1TokenReviewStatus | None, audiences: Sequence[str], trust_domain: str
) -> SpiffeId:
    """The identity a TokenReview's `status` vouches for, or AuthenticationError saying why not.

    The API's model leaves every field optional in practice (the stubs say otherwise), so each
    is read as possibly absent."""
    if status is None:
        raise AuthenticationError("the API server answered the token review without a status")
    if status.error:
        raise AuthenticationError(f"the API server refused the token: {status.error}")
    if not status.authenticated:
        raise AuthenticationError("the API server did not authenticate the token")
    # An audience-unaware server answers without audiences: the token is then only good for
    # the API server itself, not for citadel.
    if not set(status.audiences or ()) & set(audiences):
        raise AuthenticationError(f"the token is not for audience {' or '.join(audiences)}")
    user = status.user
    username = (user.username if user is not None else None) or ""
    if SERVICE_ACCOUNTS_GROUP not in ((user.groups if user is not None else None) or ()):
        raise AuthenticationError(f"{username or 'the token'} is not a service account")
    match = _USERNAME.match(username)
    if match is None:
        raise AuthenticationError(f"{username!r} is not a service account's user name")
    try:
        return SpiffeId(match[1], match[2], trust_domain)
    except IdentityError as error:
        raise AuthenticationError(str(error)) from error


class TokenReviewAuthenticator:
    """The `Authenticator` of Kubernetes mode, over `api` (which the caller owns and closes)."""

    def __init__(
        self,
        api: client.ApiClient,
        trust_domain: str,
        audiences: Sequence[str] = (ISTIO_CA_AUDIENCE,),
        *,
        cache_ttl: float = CACHE_TTL,
        cache_size: int = CACHE_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not audiences:
            raise ValueError("a token review needs at least one audience")
        self._api = client.AuthenticationV1Api(api)
        self.trust_domain = trust_domain
        self.audiences = list(audiences)
        self.cache_ttl = cache_ttl
        self.cache_size = cache_size
        self._clock = clock
        # sha256(token) -> (identity, when the entry expires); oldest first.
        self._cache: OrderedDict[bytes, tuple[SpiffeId, float]] = OrderedDict()

    async def authenticate(self, token: str) -> SpiffeId:
        key = hashlib.sha256(token.encode()).digest()
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and now < cached[1]:
            return cached[0]
        identity = reviewed_identity(await self._review(token), self.audiences, self.trust_domain)
        self._cache.pop(key, None)
        self._cache[key] = (identity, now + self.cache_ttl)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return identity

    async def _review(self, token: str) -> client.V1TokenReviewStatus | None:
        review = client.V1TokenReview(
            api_version="authentication.k8s.io/v1",
            kind="TokenReview",
            spec=client.V1TokenReviewSpec(token=token, audiences=self.audiences),
        )
        try:
            answer = await self._api.create_token_review(review, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as error:
            raise AuthenticatorUnavailable(
                f"the Kubernetes API failed the token review: {error.status} {error.reason}"
            ) from error
        except (aiohttp.ClientError, TimeoutError) as error:
            raise AuthenticatorUnavailable(
                f"the Kubernetes API is unreachable for token reviews: {error!r}"
            ) from error
        return answer.status
