"""Benchmarks: ``python -m benchmarks`` (all) or ``python -m benchmarks.<name>``.

Each writes OUT/benchmarks/<name>.json and <name>.md (default OUT = results/).
"""

NAMES = ("decompose_cost", "frameworks", "seeds", "scaling", "memory", "parallel")
