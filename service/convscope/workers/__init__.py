"""Sandboxed worker processes: every onnxruntime load and run of an uploaded model happens in one."""
