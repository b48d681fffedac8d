"""DICOM reading: headers -> slice records -> stacks -> volumes."""
