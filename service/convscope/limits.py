"""How much work one request may ask for: every per-request cap in one place, set by the operator.

Each cap bounds something a single small request can multiply (samples, occluder positions,
optimization steps, path points, decoded pixels); the message names the flag that raises it.
"""

from __future__ import annotations

from dataclasses import dataclass

from convscope.errors import InvalidArgument, ResourceExhausted

DEFAULT_MAX_STEPS = 5000
# Nodes of an uploaded model, subgraphs' included: large vision models have a few thousand.
DEFAULT_MAX_NODES = 100_000
# Decoded pixels per image: a 64-megapixel photo still decodes; a 100000² PNG header does not.
DEFAULT_MAX_IMAGE_PIXELS = 64_000_000


@dataclass(frozen=True)
class RequestLimits:
    max_batch: int = 4096  # samples in one request's input (--max-batch)
    max_occlusion_positions: int = 1 << 20  # occluder positions in one occlusion map (--max-occlusion-positions)
    max_steps: int = DEFAULT_MAX_STEPS  # optimization steps (invert, visualize, adversarial) (--max-steps)
    max_path_points: int = 1024  # integrated-gradients steps, SmoothGrad samples (--max-path-points)
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS  # decoded pixels per image (--max-image-pixels)
    max_nodes: int = DEFAULT_MAX_NODES  # nodes of an uploaded model (--max-nodes)
    max_dataset_files: int = 1_000_000  # files in one server folder a dataset job reads (--max-dataset-files)
    max_dataset_bytes: int = 256 << 30  # bytes one dataset job reads from server folders (--max-dataset-gb)


def check_at_most(value: int, limit: int, what: str, flag: str, advice: str = "") -> None:
    """``what`` (e.g. "occluder positions") may be at most ``limit``; the message says how to fit."""
    if value > limit:
        hint = f"; {advice}" if advice else ""
        raise InvalidArgument(f"{value} {what} is over the server's limit of {limit} ({flag}){hint}")


def check_count(value: int, limit: int, what: str, flag: str) -> None:
    """A count asked for (steps, samples) must be between 1 and ``limit``."""
    if not 1 <= value <= limit:
        raise InvalidArgument(f"{what} must be between 1 and the server's {flag} ({limit}), got {value}")


def check_pixels(width: int, height: int, limit: int, index: int) -> None:
    if width * height > limit:
        raise ResourceExhausted(
            f"image {index} is {width}×{height} = {width * height} pixels, over the server's limit of {limit} "
            "(--max-image-pixels); send it scaled down"
        )
