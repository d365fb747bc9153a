"""A string that selects behaviour, parsed once where a request enters into an enum member.

Members are ``StrEnum``s, so they compare, hash, format and serialize (JSON, protobuf string
fields) as their value: code that still meets a plain string behaves the same.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Self

from convscope.errors import InvalidArgument


class Choice(StrEnum):
    """Base of every choice.  A subclass lists its members and says how a wrong value is refused:
    ``class Layout(Choice, refusal="... not {value!r}")``, a format string that may also use
    ``{values}`` (a tuple of the members' values), ``{listed}`` (a list) and ``{sorted}``."""

    def __init_subclass__(cls, *, refusal: str, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.refusal_format = refusal

    @classmethod
    def parse(cls, value: str) -> Self:
        """The member named by ``value`` (a member passes through), or InvalidArgument."""
        try:
            return cls(value)
        except ValueError:
            raise InvalidArgument(cls.refusal(value)) from None

    @classmethod
    def values(cls) -> tuple[str, ...]:
        return tuple(member.value for member in cls)

    @classmethod
    def refusal(cls, value: str) -> str:
        """The message for a value that names no member."""
        values = cls.values()
        return cls.refusal_format.format(value=value, values=values, listed=list(values), sorted=sorted(values))
