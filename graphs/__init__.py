"""The block DAG core: text format, op registry, validator, edits, canonical hash, cost model,
budget fitting, macro networks, PyTorch compilation and source export, and the NB201 bridge.

Import what you need from the submodules; this package does nothing on import.
"""
