"""The MCP client: hermes talks to Model Context Protocol servers.

- :mod:`.config` reads and checks ``mcp_servers.<name>`` and resolves ``${VAR}``;
- :mod:`.manager` keeps one connection per server for the whole process
  (chat, gateway, cron and ACP share it), on a loop of its own;
- :mod:`.tools` turns a server's tools, resources and prompts into hermes tools;
- :mod:`.stdio` starts a stdio server confined, like every command of the agent;
- :mod:`.pins` holds a tool whose definition changed after it was used;
- :mod:`.oauth` (OAuth 2.1 login and token store) is written separately.

Nothing here is imported unless ``mcp_servers`` has an enabled server: the
``mcp`` SDK costs ~100 ms to import.
"""
