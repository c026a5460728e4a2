"""MCP: an agent uses an MCP server's tools (``.with_mcp``); ``flock mcp`` serves a flock as one."""
