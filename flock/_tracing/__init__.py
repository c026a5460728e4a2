"""Tracing: spans, their export, the trace store and its views.
"""
