"""The blind engines: SelfDeblur's two generators, their objective and the optimisation loop,
and the MAP kernel estimator.

:func:`napari_selfdeblur.deblur` (in :mod:`napari_selfdeblur.api`) is the entry point. The engine
imports torch, numpy and the imaging layer below it; never napari, Qt or magicgui.
"""
