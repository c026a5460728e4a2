"""Serving a flock: API keys and principals (plain values), the REST API (the server extra).
"""
