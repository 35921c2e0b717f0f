"""Skills: procedures the agent loads when a task calls for them.

A skill is a directory holding a ``SKILL.md`` (YAML front matter with ``name``
and ``description``, then Markdown instructions) and, optionally, supporting
files (templates, scripts, references). The system prompt lists only names and
descriptions; the agent reads a body when it needs it (``skill_view``), and can
write its own skills from experience (``skill_manage``).

- :mod:`hermes_agent.skills.loader`: finding, parsing and validating skills;
- ``bundled/``: the skills that ship with hermes (package data).
"""
