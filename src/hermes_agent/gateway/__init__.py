"""The gateway: the agent as a long-running service for chat platforms and the HTTP API.

:mod:`.runner` owns the process (pid file, signals, logs), the inbound queue
in state.db and the routing of each conversation to a session; platform
adapters in :mod:`.platforms` only turn platform events into inbound
messages and send replies out. Nothing here is imported by the base CLI.
"""
