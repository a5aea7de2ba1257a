"""Citadel's counters, named as Istio's citadel names them, shared by its serving processes.

With `--workers N` several processes answer CreateCertificate on the same ports, and any of them
may serve a given call, but only the first one serves /metrics. So the counts live in one
shared-memory array, a row per process: each process adds to its own row only (one writer per
cell, so no lock), and the monitoring server reports the sum of each column.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from ctypes import c_double
from enum import IntEnum

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector


class CitadelCounter(IntEnum):
    """A column of the shared array."""

    CSRS = 0
    ISSUED = 1
    AUTHENTICATION_FAILURES = 2
    CSR_ERRORS = 3


_EXPOSED = {
    CitadelCounter.CSRS: ("citadel_server_csr_count", "The number of CSRs received."),
    CitadelCounter.ISSUED: (
        "citadel_server_success_cert_issuance_count",
        "The number of certificates issuances that have succeeded.",
    ),
    CitadelCounter.AUTHENTICATION_FAILURES: (
        "citadel_server_authentication_failure_count",
        "The number of authentication failures.",
    ),
    CitadelCounter.CSR_ERRORS: (
        "citadel_server_csr_parsing_err_count",
        "The number of errors occurred when parsing the CSR.",
    ),
}


class SharedCounters:
    """Counts of `processes` serving processes; handed to each one as it is spawned."""

    def __init__(self, processes: int) -> None:
        if processes < 1:
            raise ValueError("citadel needs at least one serving process")
        self.processes = processes
        self._values = multiprocessing.get_context("spawn").RawArray(
            c_double, processes * len(CitadelCounter)
        )

    def inc(self, process: int, counter: CitadelCounter) -> None:
        self._values[process * len(CitadelCounter) + counter] += 1

    def per_process(self, counter: CitadelCounter) -> list[float]:
        """How much each process counted, in process order."""
        width = len(CitadelCounter)
        return [self._values[row * width + counter] for row in range(self.processes)]

    def total(self, counter: CitadelCounter) -> float:
        return sum(self.per_process(counter))


class CitadelMetrics:
    """One process's view: it counts into its own row; `registry` (what /metrics serves)
    reports every process's counts together."""

    def __init__(self, counters: SharedCounters, process: int = 0) -> None:
        if not 0 <= process < counters.processes:
            raise ValueError(f"process {process} has no row among {counters.processes}")
        self.counters = counters
        self.process = process
        self.registry = CollectorRegistry()
        self.registry.register(_SummedCounters(counters))

    def inc(self, counter: CitadelCounter) -> None:
        self.counters.inc(self.process, counter)


class _SummedCounters(Collector):
    def __init__(self, counters: SharedCounters) -> None:
        self._counters = counters

    def collect(self) -> Iterator[CounterMetricFamily]:
        for counter, (name, documentation) in _EXPOSED.items():
            yield CounterMetricFamily(name, documentation, value=self._counters.total(counter))
