"""The napari adapter: widgets, the tasks they run in worker threads, sample data, functions.

These modules import torch only when a run starts, so napari starts quickly.
"""
