"""Imaging utilities below the engine: dtypes and value ranges, colour, noise estimation, PSFs,
array layouts (stacks, channels) and FFT building blocks of deconvolution.
"""
