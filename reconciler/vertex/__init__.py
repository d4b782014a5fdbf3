"""The Vertex AI REST client: transport, auth, retries, pagination, error mapping, wire models."""
