"""The ``mpc-market`` command line: one module per command group, kept at the edge of the package.

``market`` (clear, settle, generate, demo), ``keys``, ``deploy`` (node, broker, up, round, submit,
results) and ``stats``; ``main`` builds the parser and maps every domain error to one line and
exit status 2.
"""
