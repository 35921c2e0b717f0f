"""`python -m hermes_agent` runs the `hermes` command."""

from hermes_agent.cli.main import main

main()
