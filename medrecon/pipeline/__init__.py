"""Segmentation engine."""
