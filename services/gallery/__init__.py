"""Milvus gallery: collection per model version, enrol/search/delete/list, and match decisions."""
