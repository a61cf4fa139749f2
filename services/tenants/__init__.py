"""Per-tenant configuration that every replica applies: operating points (policies)."""
