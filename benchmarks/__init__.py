"""faceage's standing benchmarks (``python -m benchmarks.<name>``, from the repository root), each writing a JSON of
its figures that ``benchmarks/RESULTS.md`` cites; one-off studies live in :mod:`benchmarks.studies`. Shared helpers
(data location, machine description, JSON writing, the cache folder) are in :mod:`benchmarks.common`."""
