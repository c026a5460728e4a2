"""The DSPy engine: semantic signatures, adapters, contracts, the offline model, model calls.
"""
