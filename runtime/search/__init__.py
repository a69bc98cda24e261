"""Ranking: exact top-k over gallery rows (numpy, FAISS, the int8 first pass with exact re-rank),
tie-breaking, and re-ranking (k-reciprocal, query expansion). Imports only runtime.base.
"""
