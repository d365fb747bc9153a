"""Incremental inference: which part of a graph a local change of its input reaches, and
the sub-models that recompute only that part (occlusion uses them)."""
