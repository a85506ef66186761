"""Helpers the tests and the benchmarks share (never imported by production code).

models (full-size random-init builders for benchmarks), probes (peak memory and call counters),
synthetic_records (index records without decoding video), workspace (the indexed corpus, characters
and story the browser tests and the UI screenshots use). Helpers only tests use live in tests/.
"""
