"""regsync benchmarks: run by hand (`python -m benchmarks`), never in CI."""
