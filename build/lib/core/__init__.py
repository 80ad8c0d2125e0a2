"""The shared kernel: what the driver (cluster), the trials (trainables), the experiments
(search_spaces) and the analysis all use, and nothing else.

- `core.errors`: ConfigError and UnknownName, the errors of bad user input;
- `core.config_base`: frozen, self-validating config dataclasses;
- `core.figures`: figure helpers (matplotlib, imported only by the analysis);
- `core.store_schema`: the names of every MLflow tag, param, metric and artifact.

core imports none of the other packages (tests/test_layering.py checks the import graph).
"""
