"""A string that selects behaviour, parsed once where a request enters into an enum member.

Members are ``str`` enums, so they compare, hash, format and serialize (JSON, protobuf string
fields) as their value: code that still meets a plain string behaves the same.  The base is the
client's (``convscope_client/choices.py``), so both ends parse and refuse alike; here a wrong
value is the service's InvalidArgument.
"""

from __future__ import annotations

from convscope.errors import InvalidArgument
from convscope_client import choices as client_choices


class Choice(client_choices.Choice):
    """Base of every choice.  A subclass lists its members and says how a wrong value is refused:
    ``class Layout(Choice, refusal="... not {value!r}")``, a format string that may also use
    ``{values}`` (a tuple of the members' values), ``{listed}`` (a list) and ``{sorted}``."""

    @classmethod
    def refused(cls, message: str) -> Exception:
        return InvalidArgument(message)
