"""Between the engine and a real provider: typed errors, deadlines, retries, rate limits, circuit
breakers, fallbacks and budgets.
"""
