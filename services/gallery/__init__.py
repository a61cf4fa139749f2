"""Milvus gallery: a collection per model version (enrol, search, delete, list) and each replica's mirror."""
