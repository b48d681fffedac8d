"""nnU-Net v2 results folders as medrecon pipelines ("bring your own model").

``load_nnunet(folder)`` reads a trained model's dataset.json, plans.json and
checkpoints and returns a Pipeline whose engine reproduces nnU-Net's
prediction; nnunetv2 itself is not needed at run time. Imports here are lazy so
``import medrecon.foreign.nnunet`` stays cheap.
"""

from __future__ import annotations

__all__ = ["is_nnunet_folder", "load_nnunet"]


def is_nnunet_folder(path) -> bool:
    """True for an nnU-Net v2 trainer results folder or a dataset folder holding some."""
    from medrecon.foreign.nnunet.folder import is_nnunet_folder as detect

    return detect(path)


def load_nnunet(
    path, *, folds=None, configuration=None, checkpoint="checkpoint_final.pth", tta=True
):
    """A Pipeline (engine ``nnunet``) for the nnU-Net v2 model in ``path``.

    ``folds`` None uses every ``fold_*`` holding ``checkpoint``; ``configuration``
    picks one in a dataset folder (default 3d_fullres, else the only one);
    ``tta`` turns mirroring test-time augmentation on or off.
    """
    from medrecon.foreign.nnunet.folder import load_nnunet as load

    return load(path, folds=folds, configuration=configuration, checkpoint=checkpoint, tta=tta)
