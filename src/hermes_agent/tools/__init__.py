"""The agent's tools: the registry and toolsets (``registry``) and one module per toolset."""
