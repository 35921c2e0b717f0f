"""Loopback protocol peers that the tests and the benchmark start (see aimock.py, llm_server.py)."""
