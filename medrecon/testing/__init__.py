"""Helpers for tests and sample data: write synthetic DICOM series (not used when loading)."""
