"""Fixtures for timing tests; the helpers live in ``_helpers``."""

from __future__ import annotations

from typing import Callable

import pytest

from ._helpers import FakeEvent, FakeTime, spin_ns

@pytest.fixture
def spin() -> Callable[[int], None]:
    return spin_ns


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def fake_event_factory() -> Callable[..., Callable[..., FakeEvent]]:
    def make(now_ns: Callable[[], int]) -> Callable[..., FakeEvent]:
        def factory(enable_timing: bool = False) -> FakeEvent:
            return FakeEvent(now_ns, enable_timing=enable_timing)

        return factory

    return make
