"""The public client API, pinned: every name ``convscope_client`` exports, with its signature
and, for classes, those of its public methods.  A change here is a change for every user of the
client; when it is meant, update PINNED in the same commit and say so."""

from __future__ import annotations

import inspect
from enum import Enum

import convscope_client


def public_api() -> dict[str, str]:
    api = {}
    for name in sorted(convscope_client.__all__):
        exported = getattr(convscope_client, name)
        if inspect.isclass(exported) and issubclass(exported, Enum):
            # A choice: its values are its API (an Enum's call signature is the stdlib's).
            api[name] = f"choice {[member.value for member in exported]}"
        else:
            api[name] = str(inspect.signature(exported))
        if inspect.isclass(exported):
            for attribute, member in sorted(vars(exported).items()):
                if attribute.startswith("_"):
                    continue
                if isinstance(member, property):
                    api[f"{name}.{attribute}"] = "property"
                elif callable(member):
                    api[f"{name}.{attribute}"] = str(inspect.signature(getattr(exported, attribute)))
    return api


PINNED = {
    "Activation": "(tensor: 'str', value: 'np.ndarray | None', stats: 'ChannelStats | None', png: 'bytes', shown_channels: 'tuple[int, ...]' = ()) -> None",
    "AdversarialMethod": "choice ['fgsm', 'pgd']",
    "AdversarialNorm": "choice ['linf', 'l2']",
    "Attribution": "(method: 'str', map: 'np.ndarray', png: 'bytes', target: 'int | list[int]', score: 'float | list[float]', output: 'str', target_label: 'str | list[str]' = '', layer_map: 'np.ndarray | None' = None, layer: 'str' = '', warnings: 'tuple[str, ...]' = (), map_on_image: 'np.ndarray | None' = None, metrics: 'dict[str, FaithfulnessCurve]' = <factory>) -> None",
    "AttributionMethod": "choice ['gradient', 'saliency', 'input_x_gradient', 'deconvnet', 'guided_backprop', 'grad_cam', 'guided_grad_cam', 'integrated_gradients', 'smoothgrad']",
    "AttributionMethod.description": "property",
    "ChannelOrder": "choice ['RGB', 'BGR']",
    "ChannelStats": "(mean: 'np.ndarray', max: 'np.ndarray', zero_fraction: 'np.ndarray') -> None",
    "Client": "(address: 'str', *, timeout: 'float | None' = None, metadata: 'Sequence[tuple[str, str]]' = (), token: 'str | None' = None, tls: 'bool | Tls | None' = None) -> 'None'",
    "Client.activation_details": "(self, model_id: 'str', inputs: 'Inputs', *, layers: 'list[str] | None' = None, render: 'bool' = False, values: 'bool' = True, statistics: 'bool' = True, stream: 'bool | None' = None, channels: 'Sequence[int]' = (), top_channels: 'int' = 0, timeout: 'float | None' = None) -> 'list[Activation]'",
    "Client.activations": "(self, model_id: 'str', inputs: 'Inputs', *, layers: 'list[str] | None' = None, timeout: 'float | None' = None) -> 'dict[str, np.ndarray]'",
    "Client.adversarial": "(self, model_id: 'str', image: 'Inputs', *, method: 'AdversarialMethod | str' = <AdversarialMethod.FGSM: 'fgsm'>, epsilon: 'float' = 0.00784313725490196, step_size: 'float | None' = None, steps: 'int' = 10, target: 'int | None' = None, norm: 'AdversarialNorm | str' = <AdversarialNorm.LINF: 'linf'>, random_start: 'bool' = False, seed: 'int' = 0, bounds: 'tuple[float, float] | None' = None, progress: 'StepCallback | None' = None, timeout: 'float | None' = None) -> 'Adversarial'",
    "Client.attribution": "(self, model_id: 'str', inputs: 'Inputs', *, method: 'AttributionMethod | str', target: 'int | np.ndarray | None' = None, output: 'str | None' = None, layer: 'str | None' = None, wrt: 'str | None' = None, steps: 'int' = 50, baseline: 'float | np.ndarray' = 0.0, samples: 'int' = 25, noise: 'float' = 0.15, seed: 'int' = 0, rectifiers: 'RectifierScope | str' = <RectifierScope.ALL: 'all'>, integration: 'IntegrationRule | str' = <IntegrationRule.GAUSS_LEGENDRE: 'gausslegendre'>, render: 'bool' = True, metrics: 'Sequence[FaithfulnessMetric | str]' = (), pixels_per_step: 'int' = 0, timeout: 'float | None' = None) -> 'Attribution'",
    "Client.audit": "(self, model_id: 'str', data: 'str', *, labels: 'str' = '', human: 'str' = '', config_toml: 'str' = '', progress: 'ProgressCallback | None' = None, on_check: 'Callable[[AuditCheck], None] | None' = None, timeout: 'float | None' = None) -> 'AuditReport'",
    "Client.close": "(self) -> 'None'",
    "Client.correspondence": "(self, model_id: 'str', image_a: 'Any', image_b: 'Any', *, layer: 'str | Sequence[str]', points: 'np.ndarray | None' = None, hypercolumn: 'bool' = False, reflections: 'bool' = True, timeout: 'float | None' = None) -> 'Correspondence'",
    "Client.dead_filters": "(self, model_id: 'str', dataset: 'Dataset', *, layers: 'list[str] | None' = None, others: 'Mapping[str, np.ndarray] | None' = None, progress: 'ProgressCallback | None' = None, timeout: 'float | None' = None) -> 'DeadFilterFractions'",
    "Client.delete_model": "(self, model_id: 'str', *, timeout: 'float | None' = None) -> 'None'",
    "Client.embedding": "(self, model_id: 'str', dataset: 'Dataset', *, layer: 'str | None' = None, method: 'EmbeddingMethod | str' = <EmbeddingMethod.TSNE: 'tsne'>, perplexity: 'float' = 30.0, seed: 'int' = 0, render: 'bool' = True, others: 'Mapping[str, np.ndarray] | None' = None, progress: 'ProgressCallback | None' = None, timeout: 'float | None' = None) -> 'Embedding'",
    "Client.export_backward": "(self, model_id: 'str', *, seeds: 'Sequence[str]' = (), wrt: 'Sequence[str]' = (), rectifier: 'Rectifier | str' = <Rectifier.PLAIN: 'plain'>, rectifiers: 'RectifierScope | str' = <RectifierScope.ALL: 'all'>, timeout: 'float | None' = None) -> 'bytes'",
    "Client.filters": "(self, model_id: 'str', layer: 'str', *, render: 'bool' = True, timeout: 'float | None' = None) -> 'Filters'",
    "Client.get_model": "(self, model_id: 'str', *, timeout: 'float | None' = None) -> 'ModelInfo'",
    "Client.invert": "(self, model_id: 'str', image: 'Inputs', *, layer: 'str', steps: 'int' = 200, lr: 'float | None' = None, tv_weight: 'float | None' = None, norm_weight: 'float | None' = None, jitter: 'int' = 0, init: 'InversionStart | str' = <InversionStart.NOISE: 'noise'>, seed: 'int' = 0, progress: 'StepCallback | None' = None, timeout: 'float | None' = None) -> 'Inversion'",
    "Client.list_models": "(self, *, timeout: 'float | None' = None) -> 'list[ModelInfo]'",
    "Client.occlusion": "(self, model_id: 'str', inputs: 'Inputs', *, target: 'int | list[int] | None' = None, output: 'str | None' = None, window: 'tuple[int, int]' = (32, 32), stride: 'tuple[int, int]' = (16, 16), fill: 'float | OcclusionFill | str' = 0.0, score: 'OcclusionScore | str' = <OcclusionScore.PROBABILITY: 'probability'>, progress: 'Callable[[int, int], None] | None' = None, engine: 'OcclusionEngine | str' = <OcclusionEngine.AUTO: 'auto'>, batch_size: 'int' = 0, occluded: 'str | None' = None, tolerance: 'float' = 0.0, timeout: 'float | None' = None) -> 'Occlusion'",
    "Client.top_activations": "(self, model_id: 'str', dataset: 'Dataset', *, layer: 'str', channels: 'list[int] | None' = None, k: 'int' = 9, direction: 'np.ndarray | None' = None, render: 'bool' = True, others: 'Mapping[str, np.ndarray] | None' = None, progress: 'ProgressCallback | None' = None, timeout: 'float | None' = None) -> 'TopActivations'",
    "Client.upload_model": "(self, model: 'str | os.PathLike[str] | bytes', *, name: 'str | None' = None, preprocessing: 'dict[str, Any] | None' = None, labels: 'Sequence[str] | None' = None, side_files: 'dict[str, bytes | str | os.PathLike[str]] | None' = None, input_shape: 'Sequence[int] | Mapping[str, int] | None' = None, timeout: 'float | None' = None) -> 'ModelInfo'",
    "Client.visualize": "(self, model_id: 'str', *, target: 'int | Sequence[int] | None' = None, layer: 'str | None' = None, channel: 'int | None' = None, steps: 'int' = 200, lr: 'float | None' = None, l2: 'float | None' = None, blur_every: 'int | None' = None, blur_sigma: 'float | None' = None, jitter: 'int | None' = None, norm_percentile: 'float | None' = None, seed: 'int' = 0, batch: 'int' = 1, progress: 'StepCallback | None' = None, timeout: 'float | None' = None) -> 'Synthesis'",
    "ConvscopeError": "(code: 'grpc.StatusCode', message: 'str') -> 'None'",
    "DeadFilterFractions": "(fractions: 'dict[str, np.ndarray]', *, samples: 'int', skipped: 'list[SkippedItem]') -> 'None'",
    "Embedding": "(coords: 'np.ndarray', images: 'list[int | str]', png: 'bytes', scatter_png: 'bytes' = b'', layer: 'str' = '', method: 'str' = 'tsne', perplexity: 'float' = 0.0, skipped: 'list[SkippedItem]' = <factory>) -> None",
    "EmbeddingMethod": "choice ['tsne', 'pca']",
    "FaithfulnessMetric": "choice ['deletion', 'insertion']",
    "Filters": "(node: 'str', weights: 'np.ndarray', png: 'bytes', smoothness: 'np.ndarray', mean_smoothness: 'float') -> None",
    "Hit": "(image: 'int | str', value: 'float', location: 'tuple[int, int]', box: 'tuple[int, int, int, int] | None') -> None",
    "IntegrationRule": "choice ['gausslegendre', 'riemann_left', 'riemann_right', 'riemann_middle', 'riemann_trapezoid']",
    "Interpolation": "choice ['bilinear', 'bicubic', 'nearest']",
    "InvalidChoice": "(message: 'str') -> 'None'",
    "InversionStart": "choice ['noise', 'grey']",
    "LayerInfo": "(name: 'str', op_type: 'str', tensor: 'str', shape: 'tuple[int, ...]', dtype: 'str', receptive_field: 'ReceptiveField | None' = None, symbolic_shape: 'tuple[int, ...]' = (), dim_names: 'tuple[str, ...]' = ()) -> None",
    "Layout": "choice ['NCHW', 'NHWC']",
    "ModelInfo": "(id: 'str', name: 'str', inputs: 'tuple[TensorInfo, ...]', outputs: 'tuple[TensorInfo, ...]', layers: 'tuple[LayerInfo, ...]', labels: 'tuple[str, ...]' = (), preprocessing: 'dict[str, object]' = <factory>, dynamic_batch: 'bool' = True, size_bytes: 'int' = 0, layer_count: 'int' = 0, probe_shape: 'tuple[int, ...]' = ()) -> None",
    "Occlusion": "(positions: 'np.ndarray', attribution: 'np.ndarray', png: 'bytes', target: 'int | list[int]', baseline_score: 'float | list[float]', output: 'str', target_label: 'str | list[str]' = '', engine: 'str' = '', window: 'tuple[int, int]' = (32, 32), stride: 'tuple[int, int]' = (16, 16), error_bound: 'float' = 0.0, evaluated: 'int' = 0) -> None",
    "OcclusionEngine": "choice ['auto', 'batched', 'incremental', 'approximate']",
    "OcclusionFill": "choice ['mean', 'blur']",
    "OcclusionScore": "choice ['probability', 'raw']",
    "Progress": "(done: 'int', skipped: 'int', total: 'int | None', seconds: 'float', rate: 'float', eta: 'float | None') -> None",
    "ReceptiveField": "(stride: 'tuple[int, int]', size: 'tuple[int, int]', offset: 'tuple[float, float]', global_context: 'bool' = False) -> None",
    "Rectifier": "choice ['plain', 'guided', 'deconvnet']",
    "RectifierScope": "choice ['all', 'relu']",
    "ServerFolder": "(path: 'str') -> None",
    "ServerPath": "(path: 'str') -> None",
    "SkippedItem": "(image: 'int | str', reason: 'str') -> None",
    "TensorInfo": "(name: 'str', dtype: 'str', shape: 'tuple[int, ...]') -> None",
    "Tls": "(ca: 'PathLike | None' = None, cert: 'PathLike | None' = None, key: 'PathLike | None' = None) -> None",
    "Tls.credentials": "(self) -> 'grpc.ChannelCredentials'",
    "TopActivations": "(hits: 'dict[int, list[Hit]]', *, layer: 'str', pngs: 'dict[int, bytes]', skipped: 'list[SkippedItem]', images: 'int') -> 'None'",
}


def test_the_exported_names_are_the_pinned_ones() -> None:
    assert sorted(convscope_client.__all__) == sorted(name for name in PINNED if "." not in name)


def test_every_exported_signature_is_the_pinned_one() -> None:
    api = public_api()
    changed = {
        name: (PINNED.get(name), api.get(name)) for name in PINNED.keys() | api.keys() if PINNED.get(name) != api.get(name)
    }
    assert not changed, f"the client's public API changed (pinned, now): {changed}"
