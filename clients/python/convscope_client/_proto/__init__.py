"""Generated from protos/convscope/v1 and protos/inference by scripts/gen_protos.py; do not edit."""
