"""`hermes-acp`: the agent in an editor, over the Agent Client Protocol (JSON-RPC on stdio).

One of four front ends of the same agent (with the chat, the gateway and
cron): it builds agents through :mod:`hermes_agent.agent.factory`, keeps its
sessions in state.db like the others (so `hermes chat -r ID` continues an
editor's session and the other way round), and asks for approval through
the editor (``session/request_permission``) where the chat asks on the
terminal. It never imports another front end.

Modules: :mod:`.server` (process entry, stdio, the protocol routes the SDK
lacks), :mod:`.agent` (the protocol's agent side), :mod:`.session` (one
editor session: its turn queue, cancellation and updates), :mod:`.mapping`
(tool calls, prompts and history as ACP values).
"""
