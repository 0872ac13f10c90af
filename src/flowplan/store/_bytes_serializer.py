"""flowrun's serializer protocol (``serialize``/``deserialize``) and the one adapter to ours.

Layer: store (serialization of values for durable stores). flowplan's stores call
:class:`~flowplan.store.ResultSerializer` (``dumps``/``loads``); flowrun's
``SqliteStateStore(serializer=...)`` takes any object with ``serialize(obj) -> bytes`` and
``deserialize(data) -> Any`` (:class:`BytesSerializer`). :func:`as_result_serializer` is the
single place a store turns either kind into the ``dumps``/``loads`` it calls.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import attrs

from flowplan.errors import InvalidOptionError, SerializationError
from flowplan.store._serializers import DecodeError, JsonSerializer, ResultSerializer

__all__ = ["BytesSerializer", "SerializerAdapter", "as_result_serializer"]


@runtime_checkable
class BytesSerializer(Protocol):
    """flowrun's ``ResultSerializer``: turn a task result into bytes and back."""

    def serialize(self, obj: Any) -> bytes:
        """Serialize ``obj`` to bytes."""
        ...

    def deserialize(self, data: bytes) -> Any:
        """Rebuild a value from ``serialize`` output."""
        ...


def _name(obj: object) -> str:
    return type(obj).__qualname__


@attrs.frozen
class SerializerAdapter:
    """A :class:`BytesSerializer` seen as a :class:`~flowplan.store.ResultSerializer`.

    Whatever the wrapped ``serialize`` raises becomes a :class:`SerializationError` (so only
    the task whose value it is fails) and whatever ``deserialize`` raises a
    :class:`~flowplan.store.DecodeError` (so the task runs again on resume), both naming the
    serializer.

    Attributes:
        inner: the user's serializer.
    """

    inner: BytesSerializer

    def dumps(self, value: object) -> bytes:
        """``inner.serialize(value)`` as bytes.

        Raises:
            SerializationError: ``serialize`` raised or returned something other than bytes.
        """
        try:
            data = self.inner.serialize(value)
        except SerializationError:
            raise
        except Exception as exc:
            raise SerializationError(
                f"{_name(self.inner)}.serialize cannot encode a {_name(value)}: "
                f"{type(exc).__name__}: {exc}",
                value_type=_name(value),
            ) from exc
        if not isinstance(data, bytes | bytearray | memoryview):
            raise SerializationError(
                f"{_name(self.inner)}.serialize returned {_name(data)}, not bytes; a "
                "serializer must return the encoded value as bytes",
                value_type=_name(value),
            )
        return bytes(data)

    def loads(self, data: bytes) -> object:
        """``inner.deserialize(data)``.

        Raises:
            DecodeError: ``deserialize`` raised.
        """
        try:
            return self.inner.deserialize(bytes(data))
        except SerializationError:
            raise
        except Exception as exc:
            raise DecodeError(
                f"cannot load stored result: {_name(self.inner)}.deserialize raised "
                f"{type(exc).__name__}: {exc}"
            ) from exc


def as_result_serializer(
    serializer: ResultSerializer | BytesSerializer | None, owner: str
) -> ResultSerializer:
    """The ``dumps``/``loads`` serializer a store uses for ``serializer``.

    ``None`` gives :class:`JsonSerializer`; an object with ``dumps``/``loads`` is used as it is
    (flowplan's own serializers have both pairs); one with only ``serialize``/``deserialize``
    (flowrun's protocol) is wrapped in :class:`SerializerAdapter`.

    Raises:
        InvalidOptionError: ``serializer`` has neither pair of methods.
    """
    if serializer is None:
        return JsonSerializer()
    if isinstance(serializer, ResultSerializer):
        return serializer
    if isinstance(serializer, BytesSerializer):
        return SerializerAdapter(serializer)
    raise InvalidOptionError(
        f"{owner}(serializer=...) expects an object with serialize(obj) -> bytes and "
        f"deserialize(data) -> object (or dumps/loads), got {serializer!r} "
        f"({_name(serializer)}); pass flowplan.JsonSerializer() or "
        "flowplan.PickleSerializer(), or give your class those two methods",
        option="serializer",
        value=serializer,
    )
