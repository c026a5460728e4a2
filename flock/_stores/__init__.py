"""Blackboard stores: the protocol, in memory, SQLite, PostgreSQL (and its shared work queue).
"""
