"""The Check cache: verdicts reused by referenced attributes, bounded by time and uses."""

from __future__ import annotations

from mixer.check_cache import CheckCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


REVIEWS_V3 = {"source.labels": {"app": "reviews", "version": "v3"}, "request.id": "1"}


def test_same_referenced_values_hit_others_miss() -> None:
    cache = CheckCache(Clock())
    references = [("source.labels", "version"), ("x.absent", None)]
    cache.store(REVIEWS_V3, references, "deny", 10.0, 100)
    assert cache.lookup({**REVIEWS_V3, "request.id": "2"}) == "deny"
    other = {"source.labels": {"app": "reviews", "version": "v2"}}
    assert cache.lookup(other) is None
    # An attribute that was absent when the verdict was made must still be absent.
    assert cache.lookup({**REVIEWS_V3, "x.absent": "now present"}) is None
    assert (cache.hits, cache.misses) == (1, 2)


def test_each_shape_is_tried() -> None:
    cache = CheckCache(Clock())
    cache.store({"a": "1"}, [("a", None)], "first", 10.0, 100)
    cache.store({"a": "2", "b": "x"}, [("a", None), ("b", None)], "second", 10.0, 100)
    assert cache.lookup({"a": "1", "b": "y"}) == "first"
    assert cache.lookup({"a": "2", "b": "x"}) == "second"


def test_valid_duration_and_use_count_bound_an_entry() -> None:
    clock = Clock()
    cache = CheckCache(clock)
    cache.store({"a": "1"}, [("a", None)], "ok", 5.0, 2)
    assert cache.lookup({"a": "1"}) == "ok"
    assert cache.lookup({"a": "1"}) == "ok"
    assert cache.lookup({"a": "1"}) is None  # two uses only
    cache.store({"a": "1"}, [("a", None)], "ok", 5.0, 100)
    clock.now = 5.0
    assert cache.lookup({"a": "1"}) is None
    cache.store({"a": "1"}, [("a", None)], "ok", 0.0, 100)
    assert len(cache) == 0  # nothing to reuse


def test_size_bound_and_clear() -> None:
    cache = CheckCache(Clock(), max_entries=2)
    for value in "123":
        cache.store({"a": value}, [("a", None)], value, 10.0, 10)
    assert len(cache) == 2
    assert cache.lookup({"a": "1"}) is None
    assert cache.lookup({"a": "3"}) == "3"
    cache.clear()
    assert cache.lookup({"a": "3"}) is None
