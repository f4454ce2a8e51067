"""PostgreSQL: a covering index so one person's memory search is an index-only scan of their
search vectors (the table is read only for the hits' texts)."""

from django.db import migrations

CREATE = (
    'CREATE INDEX IF NOT EXISTS memory_user_search_idx ON "A_end_user_memories" (end_user_id, created_at DESC) '
    "INCLUDE (id, search_vector) WHERE superseded_by_id IS NULL AND deleted_at IS NULL"
)


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS memory_user_search_idx")


class Migration(migrations.Migration):
    dependencies = [("endusers", "0006_org_memory_indexes")]

    operations = [migrations.RunPython(forwards, backwards)]
