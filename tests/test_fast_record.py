"""The interpreter's private fast TaskRecord constructor builds the very same frozen value."""

from __future__ import annotations

import pickle

import attrs
import pytest

from flowplan.snapshot import TaskRecord, TaskStatus, _make_record


def test_fast_records_equal_attrs_built_ones_and_stay_frozen() -> None:
    args = ("a", TaskStatus.SUCCEEDED, 1, [1], True, None, 1.0, 2.0, 3.0, None, None, False)
    rest = ("key", (), False, False)
    fast, slow = _make_record(*args, *rest), TaskRecord(*args, *rest)
    assert type(fast) is TaskRecord
    assert fast == slow
    assert repr(fast) == repr(slow)
    assert attrs.asdict(fast) == attrs.asdict(slow)
    assert pickle.loads(pickle.dumps(fast)) == slow
    assert attrs.evolve(fast, attempts=2).attempts == 2
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        fast.value = 2  # type: ignore[misc]


def test_the_fast_pending_record_equals_the_default_one() -> None:
    from flowplan.transitions import _pending

    fast, slow = _pending("a"), TaskRecord("a", TaskStatus.PENDING)
    assert fast == slow
    assert repr(fast) == repr(slow)
    assert attrs.asdict(fast) == attrs.asdict(slow)
