"""An in-process data plane per test module, for method tests that need no gRPC."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from convscope.core import Convscope


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Convscope]:
    service = Convscope(tmp_path_factory.mktemp("store"))
    yield service
    service.close()
