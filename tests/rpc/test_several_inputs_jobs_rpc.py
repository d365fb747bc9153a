"""Dataset jobs and maps on the photo for a model with a second, non-image input (a per-sample
scale): the scale goes once with the job and scales every code; a photo sent beside it comes
back with its map projected onto it."""

from __future__ import annotations

import io

import grpc
import numpy as np
import skimage.data
import torch
from PIL import Image

from convscope_client import Client
from convscope_client._proto import convscope_pb2 as pb
from convscope_client._proto import convscope_pb2_grpc as pb_grpc
from convscope_client.inputs import fill_input
from tests.dynamic_nets import initialized
from tests.methods.test_several_inputs import ScaledClassifier, exported
from tests.oracles import assert_maps_agree, random_input


def test_top_activations_and_embedding_take_the_other_inputs(client: Client) -> None:
    module = initialized(ScaledClassifier(), seed=21)
    info = client.upload_model(exported(module))
    scaled = next(layer.tensor for layer in info.layers if layer.op_type == "Mul")
    batch = random_input((6, 3, 16, 16), seed=22)
    for factor in (1.0, 3.0):
        top = client.top_activations(
            info.id, [batch], layer=scaled, channels=[0, 2], k=3, render=False, others={"scale": np.array([factor], np.float32)}
        )
        with torch.no_grad():
            features = module.features(torch.from_numpy(batch)).relu().numpy() * factor
        for channel in (0, 2):
            best = features[:, channel].reshape(len(batch), -1).max(axis=1)
            order = np.argsort(-best, kind="stable")[:3]
            assert [hit.image for hit in top[channel]] == order.tolist()
            np.testing.assert_allclose([hit.value for hit in top[channel]], best[order], rtol=1e-5)
    embedding = client.embedding(
        info.id, [batch], layer=scaled, method="pca", render=False, others={"scale": np.ones((1, 1), np.float32)}
    )
    assert embedding.coords.shape == (6, 2) and np.isfinite(embedding.coords).all()


def test_map_on_image_for_a_photo_sent_beside_another_input(client: Client) -> None:
    module = initialized(ScaledClassifier(), seed=23)
    info = client.upload_model(exported(module), preprocessing={"size": [32, 32], "resize": 40})
    photo = skimage.data.astronaut()[::4, ::4]  # 128×128
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="PNG")
    scale = np.array([[2.0]], np.float32)
    result = client.attribution(info.id, {"image": buffer.getvalue(), "scale": scale}, method="gradient", target=1)
    assert result.map_on_image is not None and result.map_on_image.shape == photo.shape[:2]
    # The 32² crop is the centre of the photo resized to 40², rows and columns [4, 36) there, so
    # [12.8, 115.2) of the photo: the map lands there and nowhere else.
    inside = np.abs(result.map_on_image[13:115, 13:115]).sum()
    assert inside > 0 and np.abs(result.map_on_image).sum() == inside
    crop = np.asarray(Image.fromarray(photo).resize((40, 40), Image.Resampling.BILINEAR).crop((4, 4, 36, 36)))
    image = torch.from_numpy((crop.transpose(2, 0, 1)[None] / np.float32(255)).astype(np.float32)).requires_grad_(True)
    module(torch.from_numpy(scale), image)[:, 1].sum().backward()
    assert image.grad is not None
    assert_maps_agree(result.map[0], image.grad.numpy()[0])


def test_the_unary_dead_filters_rpc_feeds_each_batch_its_other_inputs(client: Client) -> None:
    info = client.upload_model(exported(initialized(ScaledClassifier(), seed=24)))
    scaled = next(layer.tensor for layer in info.layers if layer.op_type == "Mul")
    request = pb.DeadFiltersRequest(model_id=info.id, layers=[scaled])
    # One batch scaled to zero (every channel dead), one kept: each channel dead on half.
    for seed, factor in ((0, 0.0), (1, 1.0)):
        fill_input(
            request.inputs.add(), {"image": random_input((2, 3, 16, 16), seed=seed), "scale": np.full((2, 1), factor, np.float32)}
        )
    with grpc.insecure_channel(client.address) as channel:
        response = pb_grpc.ConvscopeStub(channel).DeadFilters(request, timeout=60)
    assert response.samples == 4
    np.testing.assert_allclose(response.layers[0].zero_fraction, 0.5)
