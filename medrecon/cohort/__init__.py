"""Cohort processing: many studies through `medrecon run`, resumable and fault-isolated."""
