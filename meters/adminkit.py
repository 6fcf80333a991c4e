"""Building blocks every app's admin uses: read-only pages, counted relations and the "operate" permission.

They live in the lowest floor that has an admin, so payments and alarms import them from here and no
app's admin imports another's. They import nothing but Django.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import get_permission_codename
from django.db.models import Count, IntegerField, Model, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest


def count_of(model: type[Model], field: str) -> Coalesce:
    """COUNT(*) of ``model`` rows whose ``field`` points at the outer row, as a correlated subquery.

    Unlike Count() over a join, the changelist's own COUNT(*) leaves it out, and only the rows of
    the page shown compute it (through the foreign key's index).
    """
    rows = model.objects.filter(**{field: OuterRef("pk")}).order_by().values(field)
    return Coalesce(Subquery(rows.annotate(n=Count("pk")).values("n"), output_field=IntegerField()), 0)


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


class NoEditing:
    """Ledger data: staff look, nobody adds, edits or deletes (an admin or inline mixin)."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class Operate:
    """The "operate" permission of ``@admin.action(permissions=["operate"])``: the model's change permission.

    Pages that edit nothing still run actions that change state (move money, pause a rule); whoever
    may only view the model sees no action at all.
    """

    def has_operate_permission(self, request: HttpRequest) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.{get_permission_codename('change', opts)}")


class ReadOnlyAdmin(NoEditing, admin.ModelAdmin):
    pass


class ReadOnlyInline(NoEditing, admin.TabularInline):
    extra = 0
    max_num = 0
    can_delete = False
