"""Configuration: defaults and their meaning (``schema``), config.yaml (``loader``),
``.env`` (``envfile``), deep merge (``merge``) and managed mode (``managed``).

Import the submodule you need; this package imports nothing so that commands
which never read the configuration do not pay for YAML.
"""
