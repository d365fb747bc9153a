"""The approximate occlusion engine (adaptive drill-down, methods/drilldown.py) against the exact map.

==========================================  ====================================================
ours                                        oracle
==========================================  ====================================================
``engine="approximate"``, tolerance 0       the exact (batched) map: equal to 1e-6
reported ``error_bound``                    max |approximate − exact| over the map, on the
                                            bundled EfficientNet-Lite0 with three photos and a
                                            random-weight ResNet on a smooth image: bound ≥ error
interpolation                               a bilinear score surface is interpolated exactly
batches of a drill-down round               every position once, in order, ≤ the batch size,
                                            a multiple of the workers, sizes within 1
bad tolerance                               INVALID_ARGUMENT (method layer and gRPC)
==========================================  ====================================================
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from PIL import Image
from skimage import data

from convscope.core import Convscope
from convscope.errors import InvalidArgument
from convscope.methods import drilldown
from convscope.methods.occlusion import OcclusionOptions, OcclusionResult, even_batches
from convscope.model.preprocessing import input_from_tensor
from convscope_client import Client, ConvscopeError
from tests.conftest import BUNDLED_MODEL
from tests.nets import exported


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Convscope]:
    convscope = Convscope(tmp_path_factory.mktemp("approximate-store"))
    yield convscope
    convscope.close()


def _png(pixels: np.ndarray) -> bytes:
    encoded = io.BytesIO()
    Image.fromarray(pixels).save(encoded, format="PNG")
    return encoded.getvalue()


def _occlusion(core: Convscope, model_id: str, model_input, **options: object) -> OcclusionResult:
    *_, result = core.occlusion(model_id, model_input, OcclusionOptions.parse(**options))  # type: ignore[arg-type]
    assert isinstance(result, OcclusionResult)
    return result


def _smooth_image(size: int) -> np.ndarray:
    """A photo shrunk to ``size`` and standardized: a natural image, not noise."""
    photo = Image.fromarray(data.coffee()).resize((size, size), Image.Resampling.BILINEAR)
    pixels = np.asarray(photo, np.float32).transpose(2, 0, 1)[None]
    return (pixels - pixels.mean()) / pixels.std()


def test_tolerance_zero_is_the_exact_map(core):
    record = core.upload([("", exported("ResNetStyle", "torchscript").SerializeToString())])
    model_input = input_from_tensor(record, _smooth_image(32))
    exact = _occlusion(core, record.id, model_input, window=(6, 6), stride=(2, 2), engine="batched", targets=[1, 4])
    approximate = _occlusion(core, record.id, model_input, window=(6, 6), stride=(2, 2), engine="approximate", targets=[1, 4])
    assert approximate.engine == "approximate"
    assert approximate.evaluated == exact.positions[0].size and approximate.error_bound == 0
    np.testing.assert_allclose(approximate.positions, exact.positions, rtol=0, atol=1e-6)
    np.testing.assert_allclose(approximate.attribution, exact.attribution, rtol=0, atol=1e-6)


@pytest.mark.parametrize("photo", ["chelsea", "astronaut", "coffee"])
def test_reported_bound_holds_on_efficientnet(core, photo):
    record = core.upload([("", BUNDLED_MODEL.read_bytes())])
    model_input = core.prepare(record, images=[_png(getattr(data, photo)())])
    exact = _occlusion(core, record.id, model_input, engine="incremental")
    for tolerance in (0.1, 0.2):
        approximate = _occlusion(core, record.id, model_input, engine="approximate", tolerance=tolerance)
        error = float(np.abs(approximate.positions - exact.positions).max())
        assert approximate.evaluated < exact.positions.size, "nothing was interpolated: the bound is not exercised"
        assert error <= approximate.error_bound < tolerance, (
            f"{photo} at {tolerance}: error {error:.4f}, bound {approximate.error_bound:.4f}"
        )


def test_reported_bound_holds_on_a_resnet(core):
    record = core.upload([("", exported("ResNetStyle", "torchscript").SerializeToString())])
    model_input = input_from_tensor(record, _smooth_image(32))
    exact = _occlusion(core, record.id, model_input, window=(4, 4), stride=(1, 1), engine="batched", targets=[0, 3])
    scale = float(np.ptp(exact.positions))
    approximate = _occlusion(
        core, record.id, model_input, window=(4, 4), stride=(1, 1), engine="approximate", targets=[0, 3], tolerance=0.3 * scale
    )
    error = float(np.abs(approximate.positions - exact.positions).max())
    assert approximate.evaluated < exact.positions[0].size
    assert error <= approximate.error_bound, f"error {error:.4f}, bound {approximate.error_bound:.4f}"


def test_bilinear_surface_is_interpolated_exactly():
    rows, cols = np.meshgrid(np.arange(9.0), np.arange(7.0), indexing="ij")
    surface = (1 + 0.1 * rows) * (2 - 0.2 * cols)
    scores = np.full((9, 7, 1), np.nan)
    flat = scores.reshape(-1, 1)
    wanted = drilldown.coarse_positions((9, 7))
    while len(wanted):  # as the method drives it, with the scores looked up instead of run
        flat[wanted, 0] = surface.ravel()[wanted]
        wanted = drilldown.to_refine(scores, 10.0)
    interpolated = int(np.isnan(flat).sum())
    bound = drilldown.interpolate(scores)
    assert interpolated > 0
    np.testing.assert_allclose(scores[..., 0], surface, rtol=1e-12)
    assert 0 < bound < 10.0


@pytest.mark.parametrize("count", [0, 1, 7, 13, 14, 20, 49, 169, 729])
def test_rounds_split_evenly_over_the_workers(count):
    positions = np.arange(count, dtype=np.int64) * 3
    batches = even_batches(positions, 13, 2)
    np.testing.assert_array_equal(np.concatenate(batches) if batches else positions, positions)
    sizes = [len(batch) for batch in batches]
    assert all(0 < size <= 13 for size in sizes)
    assert len(sizes) == min(count, 2 * -(-count // 26)), sizes  # a 20-position round: 10 + 10, not 13 + 7
    assert not sizes or max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize(
    "options",
    [
        {"engine": "approximate", "tolerance": -0.1},
        {"engine": "approximate", "tolerance": float("nan")},
        {"engine": "approximate", "tolerance": float("inf")},
        {"engine": "incremental", "tolerance": 0.05},
    ],
)
def test_bad_tolerance_is_refused(options):
    with pytest.raises(InvalidArgument, match="tolerance"):
        OcclusionOptions.parse(**options)


def test_rpc_refuses_bad_tolerance_and_reports_the_bound(client: Client):
    model_id = client.upload_model(exported("ResNetStyle", "torchscript").SerializeToString(), name="ResNetStyle").id
    x = _smooth_image(32)
    with pytest.raises(ConvscopeError) as refused:
        client.occlusion(model_id, x, window=(6, 6), stride=(2, 2), engine="approximate", tolerance=-1.0)
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT and "tolerance" in str(refused.value)
    result = client.occlusion(model_id, x, window=(6, 6), stride=(2, 2), engine="approximate", tolerance=1e9, score="raw")
    assert result.engine == "approximate" and 0 < result.evaluated < result.positions.size and result.error_bound > 0
