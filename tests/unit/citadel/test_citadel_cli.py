"""`python -m citadel` options map onto CitadelOptions the way the brief of each flag says."""

from __future__ import annotations

import datetime

from citadel.__main__ import parse_args


def test_defaults_and_lifetimes_in_hours() -> None:
    args = parse_args(["--ca-dir", "/tmp/ca", "--ttl", "2", "--max-ttl", "48"])
    assert (args.port, args.mtls_port, args.monitoring_port) == (8060, 8061, 15014)
    assert args.ttl == datetime.timedelta(hours=2)
    assert args.max_ttl == datetime.timedelta(hours=48)
    assert parse_args(["--ca-dir", "x"]).ttl == datetime.timedelta(hours=24)
