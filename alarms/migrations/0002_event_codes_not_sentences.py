"""Alarm events store codes and numbers, not English sentences.

- ``description`` goes: every row already holds what renders it (``rule_kind`` and ``threshold``), and
  rendering it when shown is what lets the sentence be translated (AlarmEvent.description).
- ``facts`` holds what else an evaluation found, by code (``settlement.failed``, ``settlement.overdue``).
- ``detail`` becomes ``legacy_detail``: rows written before facts existed keep their sentence and show
  it as before, since their numbers (how many payments were refused) were never stored apart.

Going back renders both sentences into the old columns again, so no text is lost either way.
"""

from django.db import migrations, models


def to_sentences(apps, schema_editor):
    from alarms.rules import describe, render_facts

    AlarmEvent = apps.get_model("alarms", "AlarmEvent")
    for event in AlarmEvent.objects.only("pk", "rule_kind", "threshold", "facts", "legacy_detail").iterator():
        event.description = describe(event.rule_kind, event.threshold)[:200]
        if event.facts:
            event.legacy_detail = render_facts(event.facts)[:500]
        event.save(update_fields=["description", "legacy_detail"])


class Migration(migrations.Migration):
    dependencies = [
        ("alarms", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="alarmevent",
            name="facts",
            field=models.JSONField(
                blank=True,
                default=list,
                help_text='What else it found, by code: [{"code": "settlement.failed", "count": 1}].',
            ),
        ),
        migrations.RenameField(model_name="alarmevent", old_name="detail", new_name="legacy_detail"),
        migrations.AlterField(
            model_name="alarmevent",
            name="legacy_detail",
            field=models.CharField(blank=True, editable=False, max_length=500),
        ),
        # A default, so that going back can add the column to existing rows before filling it.
        migrations.AlterField(
            model_name="alarmevent", name="description", field=models.CharField(default="", max_length=200)
        ),
        # Forwards nothing to convert; backwards the sentences are rendered into the old columns.
        migrations.RunPython(migrations.RunPython.noop, to_sentences),
        migrations.RemoveField(model_name="alarmevent", name="description"),
    ]
