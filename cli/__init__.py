"""Entry points above `services` and `training`: the `twinstream` CLI, the demo, benchmarks, the dev stack.

Nothing below this package imports it (an import-linter contract in `make lint` keeps it so).
"""
