"""The agent: one tool-calling loop shared by the CLI, the gateway, cron and ACP."""
