"""Check that the Envoy types benchmark still compares like with like.

The numbers in BENCHMARKS.md and docs/decisions/0001-envoy-api-types.md only mean something if
both libraries build the same Cluster. This runs the benchmark's core with a handful of
iterations and compares what each side encoded; it never looks at the timings.
"""

from __future__ import annotations

from benchmarks import envoy_types


def test_both_libraries_encode_the_same_cluster() -> None:
    protobuf, data_plane = envoy_types.run(protobuf_iterations=2, data_plane_iterations=1)

    assert envoy_types.cluster_contents(protobuf.encoded) == envoy_types.cluster_contents(
        data_plane.encoded
    )
    assert envoy_types.cluster_contents(protobuf.encoded)["name"] == envoy_types.CLUSTER_NAME
