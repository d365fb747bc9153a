"""Generated from protos/convscope/v1 by scripts/gen_protos.py; do not edit."""
