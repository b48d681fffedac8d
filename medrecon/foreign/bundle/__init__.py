"""MONAI bundles run faithfully: the bundle's own preprocessing, inferer and postprocessing.

:func:`load_bundle` reads a bundle folder (safely, and only with ``trust=True``)
into a :class:`~medrecon.pipeline.config.Pipeline` with ``engine="bundle"``;
:class:`~medrecon.foreign.bundle.engine.BundleSegmenter` (built through
:func:`medrecon.models.engines.build_engine`) evaluates the config with MONAI's
``ConfigParser`` and runs it on medrecon's Volume. Only the loader and the file
writers are replaced.
"""

from medrecon.foreign.bundle.load import TRUST_FLAG, BundleSpec, is_bundle_folder, load_bundle

__all__ = ["TRUST_FLAG", "BundleSpec", "is_bundle_folder", "load_bundle"]
