from __future__ import annotations

from django.urls import path

from payments.views import community, settlements, topup, wallet, withdrawals

urlpatterns = [
    path("payments/", settlements.settlement_list, name="settlement-list"),
    path("payments/<int:pk>/", settlements.settlement_detail, name="settlement-detail"),
    path("payments/<int:pk>/state", settlements.settlement_state, name="settlement-state"),
    path("payments.csv", settlements.settlements_csv, name="settlements-csv"),
    path("wallet/", wallet.wallet_page, name="wallet"),
    path("wallet/qr.svg", wallet.wallet_qr, name="wallet-qr"),
    path("wallet/top-up/", topup.top_up_page, name="top-up"),
    path("community/", community.community_page, name="community"),
    path("community/unlock", community.unlock, name="community-unlock"),
    path("account/close/", withdrawals.account_page, name="account-close"),
    path("account/close/confirm", withdrawals.close, name="account-close-confirm"),
    path("account/withdraw/preview", withdrawals.preview, name="withdrawal-preview"),
    path("account/withdraw/confirm", withdrawals.confirm, name="withdrawal-confirm"),
    path("account/withdrawals/<int:pk>/", withdrawals.withdrawal_detail, name="withdrawal-detail"),
]
