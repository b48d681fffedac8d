"""Models medrecon did not train, run as their own runners run them: nnU-Net v2
results folders, TotalSegmentator's weights and MONAI bundles.

Each kind reads its model into a :class:`~medrecon.pipeline.config.Pipeline`
whose ``engine`` names the engine that runs it (:mod:`medrecon.models.engines`).
"""
