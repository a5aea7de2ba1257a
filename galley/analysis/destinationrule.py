"""Analyzer of DestinationRule hosts: a rule for a host no service has does nothing.

A misspelt host (`reveiws`) is accepted by validation and then silently never applies, so the
traffic policy and subsets the user wrote have no effect; Istio warns about it (IST0174).
"""

from __future__ import annotations

from collections.abc import Iterator

from galley.analysis.context import DESTINATION_RULE, Context
from galley.analysis.messages import UNKNOWN_DESTINATION_RULE_HOST, Message
from galley.analysis.registry import ServiceIndex
from meshconfig.networking import DestinationRule


def unknown_hosts(context: Context) -> Iterator[Message]:
    """IST0174: the rule's host (or wildcard) matches no service visible from its namespace."""
    index = ServiceIndex(context)
    for resource, rule in context.of(DESTINATION_RULE, DestinationRule):
        if not index.matches_any(rule.host, resource.metadata.namespace):
            yield UNKNOWN_DESTINATION_RULE_HOST.at(resource, rule.host)
