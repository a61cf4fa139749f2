"""HTTP API and the batched matching pipeline (the Serve ingress that the stream's handle also calls)."""
