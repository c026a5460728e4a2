"""Live runs: events, runtime variables, map over many inputs, the terminal view.
"""
