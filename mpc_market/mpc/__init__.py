"""The secure protocol: Shamir shares in limbs over GF(2^127 - 1), job files, secure primitives, the
clearing, settlement and scheme protocols run by each MPyC party, and local runs (client-side sharing,
node supervision, reconstruction). Modules that import mpyc.runtime run only inside a party process."""
