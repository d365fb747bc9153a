"""The client's choices (convscope_client/choices.py), which the service parses too: every member accepted by the server as the choice it names (a member and its plain
string alike), and every wrong string refused in the client, before any RPC, with the message the
server gives for it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

import convscope_client
from convscope.choices import parse as service_parse
from convscope.errors import InvalidArgument
from convscope_client import Client, ConvscopeError, InvalidChoice, choices
from tests.nets import NETS, exported
from tests.oracles import random_input

ROOT = Path(__file__).resolve().parents[1]
NAME = "ResNetStyle"  # ReLU units, 3×32×32, ten classes
CHOICES = [
    value
    for value in vars(choices).values()
    if isinstance(value, type) and issubclass(value, choices.Choice) and value is not choices.Choice
]


def test_every_choice_is_exported() -> None:
    assert len(CHOICES) == 15 and {choice.__name__ for choice in CHOICES} <= set(convscope_client.__all__)


@pytest.mark.parametrize("choice", CHOICES, ids=lambda choice: choice.__name__)
def test_the_service_parses_the_clients_choices(choice: type[choices.Choice]) -> None:
    """One set of enums for both ends: the service takes the client's members and refuses a wrong
    value with the client's message, as its own INVALID_ARGUMENT."""
    assert all(service_parse(choice, member.value) is member for member in choice)
    with pytest.raises(InvalidArgument) as caught:
        service_parse(choice, "nonsense")
    assert str(caught.value) == choice.refusal("nonsense")


def test_a_member_and_its_string_are_one_value() -> None:
    assert choices.Rectifier.parse("guided") is choices.Rectifier.GUIDED is choices.Rectifier.parse(choices.Rectifier.GUIDED)
    assert (
        choices.Rectifier.GUIDED == "guided"
        and f"{choices.Rectifier.GUIDED}" == "guided"
        and str(choices.Rectifier.GUIDED) == "guided"
    )
    assert {choices.Layout.NHWC: 1}["NHWC"] == 1
    with pytest.raises(InvalidChoice) as caught:
        choices.Layout.parse("CHW")
    assert isinstance(caught.value, ValueError) and caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.message == "preprocessing layout must be NCHW or NHWC, not 'CHW'"
    assert all(member.description for member in choices.AttributionMethod)


# -- through the server


@pytest.fixture(scope="module")
def model_id(client: Client) -> str:
    return client.upload_model(exported(NAME, "torchscript").SerializeToString(), name=NAME).id


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return random_input((1, *NETS[NAME].input_shape), seed=5)


def test_every_attribution_method_and_metric(client: Client, model_id: str, image: np.ndarray) -> None:
    for method in choices.AttributionMethod:
        for given in (method, method.value):
            result = client.attribution(model_id, image, method=given, steps=4, samples=2, render=False)
            assert result.method == method and np.all(np.isfinite(result.map)), method
    for metric in choices.FaithfulnessMetric:
        result = client.attribution(model_id, image, method="gradient", metrics=[metric.value], pixels_per_step=256, render=False)
        assert list(result.metrics) == [metric]


def test_every_integration_rule_reaches_the_server(client: Client, model_id: str, image: np.ndarray) -> None:
    maps = {
        rule: client.attribution(model_id, image, method="integrated_gradients", integration=rule, steps=3, render=False).map
        for rule in choices.IntegrationRule
    }
    for rule, other in zip(list(maps), list(maps)[1:]):
        assert not np.allclose(maps[rule], maps[other]), f"{rule} and {other} gave the same map: one did not reach the server"


def test_every_rectifier_and_scope(client: Client, model_id: str) -> None:
    graphs = {
        (rule, scope): client.export_backward(model_id, rectifier=rule.value, rectifiers=scope)
        for rule in choices.Rectifier
        for scope in choices.RectifierScope
    }
    for scope in choices.RectifierScope:
        assert len({graphs[rule, scope] for rule in choices.Rectifier}) == len(choices.Rectifier), (
            "each rule builds its own graph"
        )


def test_every_embedding_method(client: Client, model_id: str) -> None:
    images = random_input((12, *NETS[NAME].input_shape), seed=6)
    for method in choices.EmbeddingMethod:
        result = client.embedding(model_id, [images], method=method.value, render=False)
        assert result.method == method and result.coords.shape == (12, 2)


def test_every_preprocessing_choice(client: Client) -> None:
    model = exported(NAME, "torchscript").SerializeToString()
    for field, choice in choices.PREPROCESSING_CHOICES.items():
        for member in choice:
            info = client.upload_model(
                model, name=NAME, preprocessing={field: member if member.value == "NCHW" else member.value}
            )
            assert info.preprocessing[field] == member, (field, member)


def test_every_occlusion_choice(client: Client, model_id: str, image: np.ndarray) -> None:
    scores = {}
    for score in choices.OcclusionScore:
        scores[score] = client.occlusion(model_id, image, window=(16, 16), stride=(16, 16), score=score).baseline_score
    assert scores[choices.OcclusionScore.PROBABILITY] != scores[choices.OcclusionScore.RAW]
    for fill in choices.OcclusionFill:
        assert client.occlusion(model_id, image, window=(16, 16), stride=(16, 16), fill=fill.value).positions.shape == (1, 2, 2)
    for engine in choices.OcclusionEngine:
        result = client.occlusion(model_id, image, window=(16, 16), stride=(16, 16), engine=engine)
        assert engine is choices.OcclusionEngine.AUTO or result.engine == engine


def test_every_adversarial_and_inversion_choice(client: Client, model_id: str, image: np.ndarray) -> None:
    bounds = (float(image.min()) - 1, float(image.max()) + 1)
    for method, norm in [("fgsm", "linf"), ("pgd", "linf"), ("pgd", "l2")]:
        result = client.adversarial(
            model_id, image, method=choices.AdversarialMethod(method), norm=norm, steps=2, epsilon=0.1, bounds=bounds
        )
        assert result.array.shape == image.shape
    starts = {
        start: client.invert(model_id, image, layer="output", steps=1, init=start).array for start in choices.InversionStart
    }
    assert not np.allclose(*starts.values()), "grey and noise start from different images"


# -- wrong strings

Call = Callable[[Client, str, np.ndarray, str], Any]
WRONG: dict[str, Call] = {
    "attribution method": lambda c, m, x, bad: c.attribution(m, x, method=bad),
    "integration": lambda c, m, x, bad: c.attribution(m, x, method="integrated_gradients", integration=bad),
    "metric": lambda c, m, x, bad: c.attribution(m, x, method="gradient", metrics=["deletion", bad]),
    "rectifier": lambda c, m, x, bad: c.export_backward(m, rectifier=bad),
    "embedding method": lambda c, m, x, bad: c.embedding(m, [x], method=bad),
    "layout": lambda c, m, x, bad: c.upload_model(
        exported(NAME, "torchscript").SerializeToString(), preprocessing={"layout": bad}
    ),
    "channel order": lambda c, m, x, bad: c.upload_model(
        exported(NAME, "torchscript").SerializeToString(), preprocessing={"channel_order": bad}
    ),
    "interpolation": lambda c, m, x, bad: c.upload_model(
        exported(NAME, "torchscript").SerializeToString(), preprocessing={"interpolation": bad}
    ),
    "occlusion score": lambda c, m, x, bad: c.occlusion(m, x, score=bad),
    "occlusion fill": lambda c, m, x, bad: c.occlusion(m, x, fill=bad),
    "occlusion engine": lambda c, m, x, bad: c.occlusion(m, x, engine=bad),
    "adversarial method": lambda c, m, x, bad: c.adversarial(m, x, method=bad),
    "adversarial norm": lambda c, m, x, bad: c.adversarial(m, x, method="pgd", norm=bad),
    "inversion start": lambda c, m, x, bad: c.invert(m, x, layer="output", init=bad),
}


@pytest.fixture(scope="module")
def unreachable() -> Iterator[Client]:
    """A client of an address nothing listens on: any call that reaches the network fails UNAVAILABLE."""
    with Client("127.0.0.1:1", timeout=5) as nowhere:
        yield nowhere


PARSE = vars(choices.Choice)["parse"]


def _parse_on_the_server_only(cls: type[choices.Choice], value: str) -> Any:
    """The server runs in this process and parses the same enums: its way in (``convscope.choices.parse``)
    still checks, every other caller's string passes on unchecked."""
    caller = sys._getframe(1).f_globals["__name__"]
    return PARSE.__func__(cls, value) if caller == "convscope.choices" else value  # type: ignore[attr-defined]


@pytest.mark.parametrize("what", list(WRONG))
def test_a_wrong_string_is_refused_before_the_call_with_the_servers_message(
    what: str, client: Client, unreachable: Client, model_id: str, image: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(InvalidChoice) as refused:
        WRONG[what](unreachable, model_id, image, "nonsense")
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT and "'nonsense'" in refused.value.message

    with monkeypatch.context() as unchecked:  # the client passes every string on: the server refuses it
        unchecked.setattr(choices.Choice, "parse", classmethod(_parse_on_the_server_only))
        with pytest.raises(ConvscopeError) as served:
            WRONG[what](client, model_id, image, "nonsense")
    assert served.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.message == served.value.message


def test_a_wrong_rectifier_scope_is_refused_before_the_call(unreachable: Client, model_id: str) -> None:
    with pytest.raises(InvalidChoice, match=r"^INVALID_ARGUMENT: rectifiers must be 'all' or 'relu', not 'some'$"):
        unreachable.export_backward(model_id, rectifiers="some")


def test_mypy_accepts_members_and_strings_and_rejects_other_types(tmp_path: Path) -> None:
    usage = tmp_path / "usage.py"
    usage.write_text(
        "from convscope_client import Client, Rectifier, RectifierScope\n"
        "def use(client: Client) -> None:\n"
        "    client.export_backward('m', rectifier=Rectifier.GUIDED, rectifiers='relu')\n"
        "    client.export_backward('m', rectifier='guided', rectifiers=RectifierScope.RELU)\n"
        "    client.export_backward('m', rectifier=3)\n"
    )
    environment = {**os.environ, "MYPYPATH": str(ROOT / "clients" / "python")}  # the package as a user's checker sees it
    command = [sys.executable, "-m", "mypy", "--no-incremental", str(usage)]
    result = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300)
    assert result.stdout.count("error:") == 1 and 'Argument "rectifier"' in result.stdout and "usage.py:5:" in result.stdout, (
        result.stdout
    )
