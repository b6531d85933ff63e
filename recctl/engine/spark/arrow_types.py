"""Arrow schema -> Spark schema, for the results of recctl's functions run inside Spark tasks."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

__all__ = ["spark_schema"]


def spark_schema(schema: pa.Schema) -> Any:
    """The Spark ``StructType`` of an Arrow schema (the types recctl's task results use).

    Raises
    ------
    TypeError
        For an Arrow type recctl's tasks never return.
    """
    from pyspark.sql import types as T

    def convert(t: pa.DataType) -> Any:
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            return T.StringType()
        if pa.types.is_int64(t):
            return T.LongType()
        if pa.types.is_int32(t):
            return T.IntegerType()
        if pa.types.is_int16(t) or pa.types.is_int8(t):
            return T.ShortType()
        if pa.types.is_float32(t):
            return T.FloatType()
        if pa.types.is_float64(t):
            return T.DoubleType()
        if pa.types.is_boolean(t):
            return T.BooleanType()
        if pa.types.is_timestamp(t):
            return T.TimestampType()
        raise TypeError(f"no Spark type for Arrow {t}")

    return T.StructType([T.StructField(f.name, convert(f.type), True) for f in schema])
