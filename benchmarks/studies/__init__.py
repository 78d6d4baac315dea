"""One-off studies behind ``benchmarks/RESULTS.md``'s design choices (``python -m benchmarks.studies.<name>``): each
answered one question once (ensembles, distillation, gender sources, alignment padding, ...) and is kept to rerun."""
