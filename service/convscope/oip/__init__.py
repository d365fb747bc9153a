"""The Open Inference Protocol (KServe v2): tensors on its wire, and a client for remote servers."""
