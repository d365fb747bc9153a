"""Arrays → PNG: grids, heat maps, overlays. Imports nothing from sessions or gRPC."""

from convscope.render.figures import attribution_figure, channel_grid, occlusion_figure
from convscope.render.images import encode_png, filter_grid

__all__ = ["attribution_figure", "channel_grid", "encode_png", "filter_grid", "occlusion_figure"]
