"""Memory GIN indexes only for org-wide memories: per-person search reads that person's rows instead
(a global index would read every person's posting list for a common word; see endusers/search.py)."""

from django.db import migrations

SQL = [
    ("DROP INDEX IF EXISTS memory_fts_idx", None),
    ("DROP INDEX IF EXISTS memory_trgm_idx", None),
    ('CREATE INDEX IF NOT EXISTS memory_org_fts_idx ON "A_end_user_memories" USING gin (search_vector) '
     "WHERE end_user_id IS NULL AND superseded_by_id IS NULL AND deleted_at IS NULL",
     "DROP INDEX IF EXISTS memory_org_fts_idx"),
    ('CREATE INDEX IF NOT EXISTS memory_org_trgm_idx ON "A_end_user_memories" USING gin (text gin_trgm_ops) '
     "WHERE end_user_id IS NULL AND superseded_by_id IS NULL AND deleted_at IS NULL",
     "DROP INDEX IF EXISTS memory_org_trgm_idx"),
]


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for sql, _undo in SQL:
            schema_editor.execute(sql)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for _sql, undo in reversed(SQL):
            if undo:
                schema_editor.execute(undo)


class Migration(migrations.Migration):
    dependencies = [("endusers", "0005_search_vector")]

    operations = [migrations.RunPython(forwards, backwards)]
