"""Arrays → PNG: grids, heat maps, overlays. Imports nothing from sessions or gRPC."""

from convscope.render.images import channel_grid, encode_png, filter_grid, heatmap, overlay

__all__ = ["channel_grid", "encode_png", "filter_grid", "heatmap", "overlay"]
