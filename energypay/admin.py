"""Admin pages that show several apps at once, composed here on the top floor.

Each app defines its own columns (meters: the household and its meters; payments: its wallet and
arrears; statements: the action that issues last month's statement; onboarding: import and export
of households with their meters); only this module knows them all. So no app unregisters
another's admin, and the order of INSTALLED_APPS decides nothing.

The audit log's list is django-auditlog's own admin; its search is set here to our user model's fields.
"""

from __future__ import annotations

from auditlog.admin import LogEntryAdmin
from django.contrib import admin

from energypay.onboarding.admin import OnboardingActions
from meters.admin import HouseholdAdmin as MetersHouseholdAdmin
from meters.models import Household
from payments.admin.households import WalletColumns
from payments.statements.admin import StatementActions


@admin.register(Household)
class HouseholdAdmin(OnboardingActions, StatementActions, WalletColumns, MetersHouseholdAdmin):
    list_display = [*MetersHouseholdAdmin.list_display, *WalletColumns.list_display]
    list_select_related = [*MetersHouseholdAdmin.list_select_related, *WalletColumns.list_select_related]
    list_filter = [*MetersHouseholdAdmin.list_filter, *WalletColumns.list_filter]
    readonly_fields = [*MetersHouseholdAdmin.readonly_fields, *WalletColumns.readonly_fields]


# django-auditlog's list searches actor__first_name and actor__last_name, fields of Django's own user model that
# ours (email, full_name) does not have: every search would fail. Its admin class reads this attribute per request.
LogEntryAdmin.search_fields = ["object_repr", "changes", "actor__email", "actor__full_name", "actor_email"]
