"""Benchmarks run by ``make bench``: each module prints its own table."""
