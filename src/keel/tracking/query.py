"""The ``--where``/``--sort`` language now lives with the store that runs it
(:mod:`keel.store.querylang`); these names are kept for callers of 0.1."""

from keel.store.querylang import (  # noqa: F401
    FIELDS, BoolOp, Compare, Field, In, Not, Query, SortKey, fields_of, parse, parse_sort, tokenize,
)

__all__ = ["FIELDS", "Query", "parse", "parse_sort"]
