"""Benchmarks; not part of .ci/run. See BENCHMARKS.md."""
