"""CI and developer tooling, run from the repository root as python -m tools.NAME: gate, benchmark, load test."""
