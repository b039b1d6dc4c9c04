"""The ``distillery`` command line, one module per command group (``main`` assembles them)."""
