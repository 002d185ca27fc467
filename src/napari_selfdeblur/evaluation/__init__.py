"""Evaluation: quality metrics (the Levin protocol), datasets, the built-in sample and the
analysis instruments (spectra, loss landscapes, seed studies).
"""
