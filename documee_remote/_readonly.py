"""Read-only analyses: one parsed result shared by every caller of the read cache.

A private copy of a Django-size analysis (70 MB of JSON, about a million
objects) costs as much as parsing it again (0.6 s; ``model_copy(deep=True)``
3 s), which would make a cache hit almost as slow as a cold load. So the read
cache hands every caller the *same* parsed analysis, made read-only so that no
caller can change what the others see:

* each model instance's class becomes a read-only twin (a subclass, so
  ``isinstance`` and serialization are unchanged) whose ``__setattr__`` and
  ``__delattr__`` raise :class:`ReadOnlyAnalysisError`;
* its lists and dicts become :class:`ReadOnlyList` / :class:`ReadOnlyDict`,
  whose mutating methods raise the same.

Freezing a whole analysis eagerly would cost about a second, so it is lazy: the
root is frozen when it is handed out, and every list, dict or model is frozen
the first time it is reached through a frozen one (attribute access, indexing,
iteration, ``values()``, ``items()``, ``get()``). What is never looked at is
never touched. ``copy.deepcopy`` and ``model_copy(deep=True)`` give ordinary,
mutable objects, and so does a pickle round trip (``multiprocessing``);
``to_dict()`` and ``model_dump()`` give plain data as always.

The way around it (``obj.__dict__[...]``, ``list.append(frozen, x)``) is not
guarded: this protects against mistakes, not against intent.
"""

from __future__ import annotations

import copy as _copy
from collections.abc import Iterator
from typing import Any, NoReturn, SupportsIndex, TypeVar, cast, overload

from pydantic import BaseModel

from .errors import ReadOnlyAnalysisError

__all__ = ["ReadOnlyAnalysisError", "ReadOnlyDict", "ReadOnlyList", "freeze", "is_frozen"]

_M = TypeVar("_M")


def _refuse(self: object, *args: object, **kwargs: object) -> NoReturn:
    raise ReadOnlyAnalysisError(
        f"this {type(self).__name__} is shared through the read cache and read-only; "
        "load it with copy=True for one you may change"
    )


def _frozen(value: Any) -> Any:
    """``value`` made read-only (lists, dicts, models); anything else as it is."""
    kind = type(value)
    if kind is list:
        return ReadOnlyList(value)
    if kind is dict:
        return ReadOnlyDict(value)
    if isinstance(value, BaseModel) and kind not in _FROZEN_CLASSES:
        value.__class__ = _twin(type(value))
    return value


class ReadOnlyList(list[Any]):
    """A list whose mutating methods raise; elements come out read-only too."""

    __slots__ = ()

    append = extend = insert = pop = remove = clear = sort = reverse = _refuse
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse

    @overload
    def __getitem__(self, index: SupportsIndex) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: SupportsIndex | slice) -> Any:
        if isinstance(index, slice):
            return ReadOnlyList(self._raw_slice(index))
        value = list.__getitem__(self, index)
        frozen = _frozen(value)
        if frozen is not value:
            list.__setitem__(self, index, frozen)  # the same content, frozen once
        return frozen

    def _raw_slice(self, index: slice) -> list[Any]:
        return [self[i] for i in range(*index.indices(len(self)))]

    def __iter__(self) -> Iterator[Any]:
        for i in range(len(self)):
            yield self[i]

    def __reversed__(self) -> Iterator[Any]:
        for i in range(len(self) - 1, -1, -1):
            yield self[i]

    def copy(self) -> list[Any]:
        """A new, mutable list of the (read-only) elements."""
        return list(iter(self))

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        return [_copy.deepcopy(v, memo) for v in list.__iter__(self)]

    def __reduce__(self) -> tuple[Any, ...]:
        return (list, (list(list.__iter__(self)),))


class ReadOnlyDict(dict[Any, Any]):
    """A dict whose mutating methods raise; values come out read-only too."""

    __slots__ = ()

    __setitem__ = __delitem__ = __ior__ = _refuse
    pop = popitem = clear = update = setdefault = _refuse

    def __getitem__(self, key: Any) -> Any:
        value = dict.__getitem__(self, key)
        frozen = _frozen(value)
        if frozen is not value:
            dict.__setitem__(self, key, frozen)
        return frozen

    def get(self, key: Any, default: Any = None) -> Any:
        # Not dict.get: the value must come out through __getitem__, frozen.
        return self[key] if key in self else default  # noqa: SIM401

    def __iter__(self) -> Iterator[Any]:
        # Defined so that dict(self) and {**self} go through __getitem__ (they
        # copy the raw values of a dict subclass that keeps dict's own iterator).
        return dict.__iter__(self)

    def values(self) -> Any:  # a list, not a view: each value frozen on the way out
        return [self[k] for k in dict.__iter__(self)]

    def items(self) -> Any:
        return [(k, self[k]) for k in dict.__iter__(self)]

    def copy(self) -> dict[Any, Any]:
        """A new, mutable dict of the (read-only) values."""
        return {k: self[k] for k in dict.__iter__(self)}

    def __or__(self, other: Any) -> dict[Any, Any]:
        return {**self.copy(), **other}

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[Any, Any]:
        return {_copy.deepcopy(k, memo): _copy.deepcopy(v, memo) for k, v in dict.items(self)}

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (dict(dict.items(self)),))


#: pydantic's lookup of unknown fields (``extra="allow"``), declared for type checkers
#: only under TYPE_CHECKING=False.
_PYDANTIC_GETATTR: Any = getattr(BaseModel, "__getattr__")  # noqa: B009

_TWINS: dict[type[BaseModel], type[BaseModel]] = {}
_FROZEN_CLASSES: set[type] = set()


def _model_getattribute(self: BaseModel, name: str) -> Any:
    value = object.__getattribute__(self, name)
    if name.startswith("_") or (
        type(value) not in (list, dict) and not isinstance(value, BaseModel)
    ):
        return value
    frozen = _frozen(value)
    if frozen is not value:
        fields = object.__getattribute__(self, "__dict__")
        if fields.get(name) is value:
            fields[name] = frozen
    return frozen


def _model_getattr(self: BaseModel, name: str) -> Any:
    # Unknown fields (``extra="allow"``) are found by pydantic's __getattr__.
    value = _PYDANTIC_GETATTR(self, name)
    frozen = _frozen(value)
    extra = self.__pydantic_extra__
    if frozen is not value and extra is not None and extra.get(name) is value:
        extra[name] = frozen
    return frozen


def _model_deepcopy(self: BaseModel, memo: dict[int, Any] | None = None) -> BaseModel:
    base = type(self).__mro__[1]
    mutable = cast(BaseModel, object.__new__(base))
    memo = {} if memo is None else memo
    memo[id(self)] = mutable
    object.__setattr__(mutable, "__dict__", _copy.deepcopy(self.__dict__, memo))
    object.__setattr__(mutable, "__pydantic_extra__", _copy.deepcopy(self.__pydantic_extra__, memo))
    object.__setattr__(mutable, "__pydantic_fields_set__", set(self.__pydantic_fields_set__))
    object.__setattr__(
        mutable, "__pydantic_private__", _copy.deepcopy(self.__pydantic_private__, memo)
    )
    return mutable


def _model_reduce(self: BaseModel) -> tuple[Any, ...]:
    # The twin class has no importable name: a pickled shared analysis comes back
    # as an ordinary, private one of its base class.
    base = type(self).__mro__[1]
    return (_private_copy, (base, self.model_dump(round_trip=True)))


def _private_copy(base: type[BaseModel], data: dict[str, Any]) -> BaseModel:
    return base.model_validate(data)


def _twin(cls: type[BaseModel]) -> type[BaseModel]:
    twin = _TWINS.get(cls)
    if twin is None:
        metaclass: Any = type(cls)
        twin = metaclass(
            f"ReadOnly{cls.__name__}",
            (cls,),
            {
                "__slots__": (),
                "__module__": cls.__module__,
                "__doc__": f"A read-only {cls.__name__} shared by the read cache.",
                "__setattr__": _refuse,
                "__delattr__": _refuse,
                "__getattribute__": _model_getattribute,
                "__getattr__": _model_getattr,
                "__deepcopy__": _model_deepcopy,
                "__reduce__": _model_reduce,
                "__reduce_ex__": lambda self, protocol: _model_reduce(self),
            },
        )
        _TWINS[cls] = twin
        _FROZEN_CLASSES.add(twin)
    return twin


def freeze(model: _M) -> _M:
    """Make ``model`` (a pydantic model) read-only, lazily, in place; return it."""
    return cast(_M, _frozen(model))


def is_frozen(value: object) -> bool:
    """True for what :func:`freeze` made read-only."""
    return isinstance(value, ReadOnlyList | ReadOnlyDict) or type(value) in _FROZEN_CLASSES
