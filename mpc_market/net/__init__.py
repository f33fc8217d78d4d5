"""The deployment over gRPC: signed messages, mutual TLS, configuration files, durable storage, the
shared server recipe, the market node and broker servers, and the participants' and operators'
clients. Every connection is mutual TLS under the deployment CA."""
