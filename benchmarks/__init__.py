"""Benchmarks of the Valkey session store: ``python -m benchmarks`` (see ``benchmarks/README.md``)."""
