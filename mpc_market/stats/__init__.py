"""Grid-operator statistics: meters encrypt packed readings under an operator's Paillier key, an
aggregator multiplies ciphertexts per feeder or zone, the operator decrypts only the totals."""
