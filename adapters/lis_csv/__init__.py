"""LIS CSV exports: a folder of files, one DiagnosticReport unit per order."""
