"""The core: artifacts and declarations, routing decisions, the work queue and activation
lifecycle, the runtime and the orchestrator that ties them together.
"""
