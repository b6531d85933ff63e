"""Canonical column names shared by every stage. Use these constants, never string literals."""

from __future__ import annotations


class Columns:
    """Names of the canonical columns in recctl's Parquet files."""

    User = "user_id"
    Item = "item_id"
    Event = "event"
    Timestamp = "timestamp"
    Value = "value"
    Weight = "weight"
    UserIdx = "user_idx"
    ItemIdx = "item_idx"
    Score = "score"
    Rank = "rank"
    Model = "model"
    Source = "source"
    Variant = "variant"
    GeneratedAt = "generated_at"

    #: canonical interactions written by ``ingest``
    Interactions = [User, Item, Event, Timestamp, Value]
    #: aggregated, indexed interactions written by ``preprocess``
    Matrix = [UserIdx, ItemIdx, Weight]
    #: recommendations written by ``recommend``
    Recommendations = [User, Rank, Item, Score, Model]
