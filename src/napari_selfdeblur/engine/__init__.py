"""The blind engine: SelfDeblur's two generators, their objective and the optimisation loop.

:func:`~napari_selfdeblur.engine.api.deblur` is the entry point. The engine imports torch, numpy
and the imaging layer below it; never napari, Qt or magicgui.
"""
