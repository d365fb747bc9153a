"""A string that selects behaviour, parsed once where a request enters into an enum member.

The enums are the client's (``convscope_client/choices.py``): one list of members and one
refusal message per choice for both ends of the wire.  Members are ``str`` enums, so they
compare, hash, format and serialize (JSON, protobuf string fields) as their value: code that
still meets a plain string behaves the same.  ``parse`` is the service's way in: a wrong value
is the service's InvalidArgument, with the message the client gives.
"""

from __future__ import annotations

from typing import TypeVar

from convscope.errors import InvalidArgument
from convscope_client.choices import Choice, InvalidChoice

Parsed = TypeVar("Parsed", bound=Choice)


def parse(choice: type[Parsed], value: str) -> Parsed:
    """The member of ``choice`` that ``value`` names (a member passes through)."""
    try:
        return choice.parse(value)
    except InvalidChoice as refused:
        raise InvalidArgument(refused.message) from None
