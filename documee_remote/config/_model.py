"""The pydantic model of the S3 options, kept out of the store-opening path.

:class:`~documee_remote.config.S3Options` validates valid options by hand, so
that opening an ``s3://`` store does not import pydantic (~30 ms of a Lambda
cold start) nor build a model (~15 ms). Everything it does not accept as it
is comes here: this model coerces what pydantic's lax mode coerces and raises
pydantic's ``ValidationError`` for the rest, with the messages it always had.
It also gives the options' JSON schema.

The model is built from ``S3Options.model_fields`` and the rule functions of
:mod:`.options`, so the two validators cannot drift apart field by field;
``tests/test_config.py`` also checks them against each other on many inputs.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from .options import (
    S3Options,
    _check_combinations,
    _check_endpoint_url,
    _check_role_session_name,
)

__all__ = ["S3OptionsModel"]


def _endpoint_url(cls: type[BaseModel], value: str | None) -> str | None:
    return None if value is None else _check_endpoint_url(value)


def _role_session_name(cls: type[BaseModel], value: str) -> str:
    return _check_role_session_name(value)


def _combinations(self: BaseModel) -> BaseModel:
    _check_combinations(self.__dict__)
    return self


def _field(name: str) -> tuple[Any, Any]:
    spec = S3Options.model_fields[name]
    kwargs: dict[str, Any] = {"description": spec.description, "repr": spec.repr}
    if spec.ge is not None:
        kwargs["ge"] = spec.ge
    if spec.gt is not None:
        kwargs["gt"] = spec.gt
    return spec.annotation, Field(spec.default, **kwargs)


_VALIDATORS: dict[str, Any] = {
    "_check_endpoint_url": field_validator("endpoint_url")(_endpoint_url),
    "_check_session_name": field_validator("role_session_name")(_role_session_name),
    "_check_combinations": model_validator(mode="after")(_combinations),
}

_FIELDS: dict[str, Any] = {name: _field(name) for name in S3Options.model_fields}

#: The pydantic model of :class:`~documee_remote.config.S3Options`: the same
#: fields, defaults, rules and error messages (its title is ``S3Options`` too).
S3OptionsModel: type[BaseModel] = create_model(
    "S3Options",
    __config__=ConfigDict(frozen=True, extra="forbid"),
    __doc__=S3Options.__doc__,
    __module__=__name__,
    __validators__=_VALIDATORS,
    **_FIELDS,
)
