"""Constants of the wire protocol that both ends must agree on (the server imports them from
here, beside the generated stubs in ``_proto``, not from the client)."""

from __future__ import annotations

MAX_MESSAGE_BYTES = 2**31 - 1  # gRPC's own cap on one message, set on both ends' channels
