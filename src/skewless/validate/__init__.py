"""Validation before publishing, and statistics after it (docs/validation.md).

* :mod:`skewless.validate.suite` - a view's checks: declared expectations plus defaults (pure).
* :mod:`skewless.validate.gate` - the write-audit-publish gate: the checks run with Great
  Expectations on the staged rows; a failure raises ``ValidationFailed`` and keeps a report.
* :mod:`skewless.validate.stats` - per-partition feature statistics in a Delta table, and drift
  (PSI, :mod:`skewless.validate.psi`) against the previous partitions.

Importing this package imports neither Spark nor Great Expectations.
"""
