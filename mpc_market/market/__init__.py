"""The market in the clear: configuration, orders, readings, the book of order vectors, the clearing
rule, deviation settlement, community schemes, result and bill types, CSV output and generated
communities. No MPC and no network here; ``plain`` is the reference every secure result must equal."""
