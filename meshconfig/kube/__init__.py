"""Spec models of the kube kinds (filled in by its own modules)."""

from meshconfig.kinds import Kind

KINDS: tuple[Kind, ...] = ()
