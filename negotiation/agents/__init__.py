"""Agents: the negotiation flow as MCP tools, on ``/mcp`` (Streamable HTTP) and on stdio.

Built on the official MCP Python SDK's low-level server (docs/AGENTS.md says why). The tools run
the same units of work as the HTTP handlers, so an MCP round and an HTTP round are the same rows.
"""
