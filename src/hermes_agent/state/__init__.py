"""Persistent state in ``HERMES_HOME/state.db``: sessions, messages and their search index.

The store is one SQLite file (see :mod:`hermes_agent.state.db`) shared by every
front end: the terminal chat, the gateway, cron jobs and ACP all record their
conversations here, and ``hermes sessions`` reads them back. Nothing in this
package is imported at start-up; only the commands that need the store load it.
"""
