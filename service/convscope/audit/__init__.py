"""`convscope audit`: a model check for CI, computed from one shared pass over a labelled dataset.

``config`` reads the TOML thresholds, ``dataset`` turns a folder or CSV into labelled items,
``engine`` runs the pass and the checks, ``stats`` holds the intervals and multiple-testing
procedure, ``attributes`` the per-image measurements, and ``report`` writes report.json,
junit.xml and report.html.
"""
