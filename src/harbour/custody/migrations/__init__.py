"""Alembic migrations of the custody database (env.py, script.py.mako, versions/).

Run them with :func:`harbour.custody.db.upgrade`; no alembic.ini is involved. This
module holds what env.py and the regeneration script share: which modules define
tables, and how the project's column types are written into a revision.

A revision states the schema in plain SQLAlchemy types rather than importing
:class:`~harbour.custody.db.Amount` or :class:`~harbour.custody.db.UtcDateTime`:
a revision is a frozen record of DDL, and one that imported the live type would
silently build a different schema on a fresh database if the type ever changed.
"""

from __future__ import annotations

import importlib
from typing import Any, Final, Literal

from alembic.autogenerate.api import AutogenContext
from sqlalchemy import MetaData, TypeDecorator

from harbour.custody.db import AMOUNT_DIGITS, Amount, Base, UtcDateTime

TABLE_MODULES: Final = (
    "harbour.custody.models",
    "harbour.custody.audit",
    "harbour.custody.notices",
    "harbour.custody.claims",
)
"""Modules whose import registers tables on :data:`Base.metadata`: every table of the schema."""


def target_metadata() -> MetaData:
    """``Base.metadata`` with every table of the custody schema registered on it."""
    for name in TABLE_MODULES:
        importlib.import_module(name)
    return Base.metadata


def render_item(kind: str, obj: Any, context: AutogenContext) -> str | Literal[False]:
    """Write the project's column types into a revision as the DDL types they stand for.

    The revision template imports ``sqlalchemy as sa``; False means Alembic's own rendering.
    """
    if kind != "type" or not isinstance(obj, TypeDecorator):
        return False
    if isinstance(obj, Amount):
        numeric = f"sa.Numeric(precision={AMOUNT_DIGITS}, scale=0)"
        return f"sa.String(length={AMOUNT_DIGITS}).with_variant({numeric}, 'postgresql')"
    if isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    if type(obj).load_dialect_impl is TypeDecorator.load_dialect_impl and type(obj.impl).__module__.startswith(
        "sqlalchemy.sql"
    ):
        return f"sa.{obj.impl!r}"  # same DDL on every backend: the underlying type
    raise TypeError(
        f"no migration rendering for column type {type(obj).__qualname__}: "
        "add it to harbour.custody.migrations.render_item"
    )
