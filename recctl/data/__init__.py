"""Data layer: ingest raw files, preprocess into indexed matrices, build features.

polars frames become scipy.sparse matrices here and only here (``recctl.data.dataset``).
"""
