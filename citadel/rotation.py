"""Root rotation as an operator runs it: a step on the stored CA, between two starts of citadel.

`CertificateAuthority` knows what each step changes; this module loads the CA from its store,
takes the step and stores the result, so `python -m citadel rotate-root` and
`finish-rotation` work on a directory and on the Kubernetes Secret alike. Citadel reads its CA
when it starts: restart it (every replica) after each step.

1. `rotate_stored_root`: a new root signs from the next start; the bundle trusts old and new.
2. Wait until every workload has renewed since citadel restarted with the new root (the longest
   certificate lifetime in use is always enough: 24 hours by default, agents renew at about
   half of it), so that no certificate of the old root is in use and every agent holds the
   bundle. Citadel cannot tell when that is: the old root signed until the restart.
3. `finish_stored_rotation`: the bundle drops the old root.
"""

from __future__ import annotations

from citadel.ca import CertificateAuthority, RotationError
from citadel.cacerts import CaStore
from citadel.pki import KeyType


async def _stored(store: CaStore) -> CertificateAuthority:
    material = await store.load()
    if material is None:
        raise RotationError(f"there is no CA in {store.description}")
    return CertificateAuthority.from_material(material)


async def rotate_stored_root(
    store: CaStore, *, key_type: KeyType, trust_domain: str
) -> CertificateAuthority:
    """Start a rotation of the self-signed root in `store`; the CA as it now is."""
    rotated = (await _stored(store)).rotate_root(key_type, trust_domain)
    await store.replace(rotated)
    return CertificateAuthority.from_material(rotated)


async def finish_stored_rotation(store: CaStore) -> CertificateAuthority:
    """Drop the old root from the bundle in `store`; the CA as it now is."""
    finished = (await _stored(store)).finish_root_rotation()
    await store.replace(finished)
    return CertificateAuthority.from_material(finished)
