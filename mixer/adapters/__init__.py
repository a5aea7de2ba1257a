"""Mixer's compiled-in adapters, by the name a handler's `compiledAdapter` gives.

Adding an adapter is one module with an `ADAPTER` implementing `base.Adapter`, listed here.
"""

from __future__ import annotations

from types import MappingProxyType

from mixer.adapters import (
    denier,
    kubernetesenv,
    listchecker,
    memquota,
    prometheus,
    redisquota,
    servicegraph,
    stdio,
)
from mixer.adapters.base import Adapter

ADAPTERS: MappingProxyType[str, Adapter] = MappingProxyType(
    {
        module.ADAPTER.name: module.ADAPTER
        for module in (
            denier,
            kubernetesenv,
            listchecker,
            memquota,
            prometheus,
            redisquota,
            servicegraph,
            stdio,
        )
    }
)
