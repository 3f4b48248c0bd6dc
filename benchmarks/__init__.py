"""Research benchmarks behind the product's defaults: scripts run from the repository root as
``python -m benchmarks.<script>``, their shared pieces in :mod:`benchmarks.common`, their results under
``benchmarks/results/``. Not part of the installed package."""
