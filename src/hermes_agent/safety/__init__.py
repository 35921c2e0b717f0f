"""Safety: what the agent may run, where it runs, and what it may touch.

The pieces, each readable alone:

- :mod:`.places`: the one place that knows which paths are protected
  (hermes' secrets, its gate, its state, its own code, shell start-up files).
  The classifier, the file tools and the sandbox all ask it.
- the command classifier and the gate (*may this run?*): parses a shell
  command, decides safe / needs approval / refused, asks the user, audits.
- :mod:`.sandbox` (*where does it run?*): kernel confinement (Landlock, or
  bubblewrap) for every process the agent starts, so that what a command can
  touch does not depend on the classifier understanding its spelling.
"""
