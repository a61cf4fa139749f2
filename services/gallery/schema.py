"""The Milvus collection of one model version: its fields, its vector index, and creating it once."""

from __future__ import annotations

from typing import Any

from pymilvus import DataType, MilvusClient

from twinstream.config import MilvusSettings

ID_LENGTH = 32
NAME_LENGTH = 128
#: Milvus metric on L2-normalised vectors; converted to Euclidean distance by `cosine_to_euclidean`.
METRIC = "COSINE"


def _schema(client: MilvusClient, dim: int) -> Any:
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=ID_LENGTH)
    schema.add_field("tenant", DataType.VARCHAR, max_length=NAME_LENGTH)
    schema.add_field("subject", DataType.VARCHAR, max_length=NAME_LENGTH)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("enrolled_at", DataType.INT64)
    return schema


def ensure_collection(client: MilvusClient, name: str, dim: int, settings: MilvusSettings) -> None:
    """Create (if missing) and load the collection ``name`` with vectors of size ``dim``.

    Raises:
        ValueError: If the collection exists with another vector size (a name clash between models).
    """
    if client.has_collection(name):
        field = next(f for f in client.describe_collection(name)["fields"] if f["name"] == "vector")
        existing = int(field.get("params", {}).get("dim", dim))
        if existing != dim:
            raise ValueError(f"collection {name} holds {existing}-d vectors, the model makes {dim}-d")
        client.load_collection(name, timeout=settings.load_timeout_s)
        return
    index = client.prepare_index_params()
    # pymilvus 3.0.2 flattens index params and milvus-lite drops them: nest one level (STACK_NOTES.md).
    index.add_index(
        field_name="vector",
        index_type=settings.index_type,
        metric_type=METRIC,
        params={"params": dict(settings.index_params)},
    )
    # Creating and loading take longer than a data call (minutes for a large gallery): their own timeout.
    client.create_collection(
        name, schema=_schema(client, dim), index_params=index, consistency_level="Strong",
        timeout=settings.load_timeout_s,
    )  # fmt: skip
    client.load_collection(name, timeout=settings.load_timeout_s)
