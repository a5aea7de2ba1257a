"""Every galley unit test can use Widget documents (see galley_test_kind)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit.galley.galley_test_kind import widget_kind


@pytest.fixture(autouse=True)
def _widgets() -> Iterator[None]:
    with widget_kind():
        yield
