"""Keep the galley load benchmark runnable and honest, at a scale of a few dozen resources.

The numbers in BENCHMARKS.md only mean something if the run really delivers every generated
resource to both subscribers and every edit reaches them with the content written. The
benchmark checks both itself (it raises otherwise); this runs it small and looks at what it
counted, never at the timings.
"""

from __future__ import annotations

from benchmarks import galley_load
from meshconfig import validate_document
from tests.integration.mesh import allocate_block


def test_generated_resources_are_valid_and_of_every_kind() -> None:
    documents = galley_load.generate(25)

    kinds = [validate_document(document).kind.id for document in documents]
    assert len(kinds) == 25
    assert set(kinds) == set(galley_load.KIND_IDS)


def test_both_subscribers_get_every_resource_and_every_change() -> None:
    result = galley_load.run(50, 3, per_file=10, host=f"{allocate_block()}.250", load_timeout_s=60)

    assert result.load.resources == 50 and result.load.files == 5
    assert set(result.load.until_loaded_s) == {"sotw", "delta"}
    assert {role: len(seen) for role, seen in result.changes.latencies_ms.items()} == {
        "sotw": 3,
        "delta": 3,
    }
    assert set(result.peak_rss_mib) == {"galley", "sotw", "delta"}
