"""What every trust role shares: typed errors, the name rule, private files, keys and certificates,
the canonical signed-bytes format and the strict input readers. Imports nothing else from mpc_market."""
