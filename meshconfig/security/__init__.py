"""Spec models of the security kinds (filled in by its own modules)."""

from meshconfig.kinds import Kind

KINDS: tuple[Kind, ...] = ()
