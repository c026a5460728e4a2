"""The commands of the ``flock`` command line (``flock.cli`` dispatches to them).
"""
