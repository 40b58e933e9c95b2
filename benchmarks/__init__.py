"""Benchmarks of the SR serving path; each script prints ratios measured in one run."""
