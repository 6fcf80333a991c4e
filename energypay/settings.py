"""EnergyPay settings: everything that varies between deployments comes from the environment.

Defaults run a fresh checkout (SQLite, a broker that needs no server, DEBUG on); production sets
DEBUG=false, SECRET_KEY, DATABASE_URL and CELERY_BROKER_URL. See README.md for the table.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from celery.schedules import crontab
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from energypay.env import (
    env_bool,
    env_choice,
    env_database,
    env_decimal,
    env_int,
    env_list,
    env_str,
    env_timezone,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("ENERGYPAY_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", True)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = "insecure-development-key-only-used-with-debug-on"  # noqa: S105 (DEBUG only)
# Rotation: the old key(s) here, comma-separated, keep sessions and reset links signed with them valid
# until they expire; new signatures use SECRET_KEY only.
SECRET_KEY_FALLBACKS = env_list("SECRET_KEY_FALLBACKS", [])
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# --- HTTPS and browser hardening: `manage.py check --deploy` passes with DEBUG off ---
# Plain HTTP is redirected to HTTPS, except /healthz, which load balancers probe over HTTP.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
# Preloading is hard to undo (browsers ship the list), so it is a deliberate choice: set it true.
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# Behind a proxy that terminates TLS and overwrites this header: SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto: https".
# Unset, Django trusts no header (a client could send one).
if _proxy_header := env_str("SECURE_PROXY_SSL_HEADER"):
    _header, _, _value = _proxy_header.partition(":")
    if not _header.strip() or not _value.strip() or " " in _header.strip():
        raise ImproperlyConfigured(
            f"SECURE_PROXY_SSL_HEADER={_proxy_header!r} is not valid: expected a header and a value, "
            "as in 'X-Forwarded-Proto: https'."
        )
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _header.strip().upper().replace("-", "_"), _value.strip())

INSTALLED_APPS = [
    # Django's admin with EnergyPay's site: staff need a second factor (energypay/accounts/admin_site.py).
    "energypay.accounts.apps.SecureAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "csp",
    "energypay.accounts",
    "meters",
    "payments",
    "payments.statements",
    "alarms",
    # The top floor: the admin pages that compose several apps (energypay/admin.py). No models.
    "energypay",
    "energypay.ops",
    "energypay.webhooks",
    "energypay.notifications",
    "energypay.onboarding",
    "import_export",
    "auditlog",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "axes",
]

MIDDLEWARE = [
    # Outermost: request counts and latencies per view for /metrics (energypay/metrics.py), lean lane included.
    "energypay.metrics.middleware",
    # Every /api/ error, whoever answered it (an unknown path, a 405, a crash), in the API's JSON shape.
    "energypay.middleware.api_json_errors",
    # First: an /api/ request whose headers are over the documented size gets JSON 431 before any work.
    "energypay.middleware.api_header_limits",
    "django.middleware.security.SecurityMiddleware",
    # The routes in LEAN_API_ROUTES are answered here, past everything below (they need none of it).
    "energypay.middleware.lean_api",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The language before login (cookie, Accept-Language); household pages switch to the household's (meters/access.py).
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    # Django's, handing the backend the user the session's query loaded (energypay/accounts/middleware.py).
    "energypay.accounts.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",  # request.user.is_verified(): which session passed the second factor
    # After authentication, so it sees request.user: a logged-in answer is never stored by any cache.
    "energypay.middleware.private_no_store",
    "django.contrib.messages.middleware.MessageMiddleware",
    # After authentication: django-auditlog's middleware, on /admin/ only, names the staff member behind each change.
    "energypay.middleware.StaffAuditMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as axes asks: it turns a refused (locked-out) login into the login page that says why.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "energypay.urls"
WSGI_APPLICATION = "energypay.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "energypay.context_processors.alarms",
                "energypay.context_processors.notifications",
                "energypay.context_processors.network",
            ],
        },
    },
]

DATABASES = {"default": env_database("DATABASE_URL", BASE_DIR / "energypay.sqlite3")}
# Persistent connections: the ingest endpoint is hit thousands of times a second.
DATABASES["default"]["CONN_MAX_AGE"] = env_int("CONN_MAX_AGE", 60, minimum=0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # libpq waits for an unreachable server as long as TCP does (minutes); /healthz and requests must not.
    DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", 5)
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # WAL lets the web process read while the worker writes; the timeout absorbs short locks.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHE_URL = env_str("CACHE_URL")
if CACHE_URL.startswith(("redis://", "rediss://", "unix://")):
    # Django's Redis cache, building its redis-py client once (energypay/cache.py).
    CACHES = {"default": {"BACKEND": "energypay.cache.RedisCache", "LOCATION": CACHE_URL}}
elif CACHE_URL:
    raise ImproperlyConfigured("CACHE_URL must be a redis:// URL (or unset for an in-process cache).")
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# Sessions in the database, read with their user, household and tariff in one query (energypay/accounts/sessions.py).
SESSION_ENGINE = "energypay.accounts.sessions"

AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Axes first: a locked-out account or address is refused before its password is even checked.
AUTHENTICATION_BACKENDS = [
    "energypay.accounts.backends.LoginThrottleBackend",
    # ModelBackend's passwords; each request's user comes from its session's query (energypay/accounts/sessions.py).
    "energypay.accounts.backends.HouseholdLoginBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

# --- Login throttling (django-axes) and the admin's second factor (django-otp); docs/operations.md, "Logins" ---
# LOGIN_FAILURE_LIMIT wrong passwords in a row lock the account (any address) and, separately, the client
# address (any account) for LOGIN_COOLOFF_MINUTES after the last failure; a password reset unlocks the account.
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_USERNAME_FORM_FIELD = "username"  # both login forms' field (axes would look for USERNAME_FIELD, "email")
AXES_USERNAME_CALLABLE = "energypay.accounts.lockout.username_of"  # "Anna@Example.com" is anna@example.com
AXES_CLIENT_IP_CALLABLE = "energypay.accounts.lockout.client_ip"
AXES_LOCKOUT_CALLABLE = "energypay.accounts.lockout.locked_out_page"
# A success does not wipe the failures: else an attacker's own login would reset its count against others.
AXES_RESET_ON_SUCCESS = False
# A try while locked is refused without counting: the lock ends when the page says, not later.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_SENSITIVE_PARAMETERS = ["csrfmiddlewaretoken"]  # masked in the stored attempts, as the password is
AXES_VERBOSE = False  # no start-up banner from axes; its log lines name account, address and path only
# Successful logins are kept (admin: Axes, "Access logs") this many days; beat's prune-login-records drops older.
LOGIN_LOG_DAYS = env_int("LOGIN_LOG_DAYS", 90, minimum=1)
# Addresses come from REMOTE_ADDR. Behind N proxies that each append to X-Forwarded-For, TRUSTED_PROXY_COUNT=N
# takes the address the outermost of them saw; a client-sent X-Forwarded-For is never trusted beyond that.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0, minimum=0)
# Staff need a TOTP code (or a recovery code) for the admin. Only a DEBUG demo may turn that off.
ADMIN_REQUIRE_2FA = env_bool("ADMIN_REQUIRE_2FA", True)
if not ADMIN_REQUIRE_2FA and not DEBUG:
    raise ImproperlyConfigured("ADMIN_REQUIRE_2FA=false is for DEBUG demos only: the admin needs a second factor.")
OTP_TOTP_ISSUER = env_str("OTP_TOTP_ISSUER", "EnergyPay")  # the name authenticator apps show
RECOVERY_CODE_COUNT = 10
OTP_ADMIN_HIDE_SENSITIVE_DATA = True  # the admin never shows another person's TOTP secret or recovery codes

# Where the site is (https://energypay.example): every absolute link in a mail is built from it (lib/urls.py);
# mails leave links out when it is unset. ALARM_SITE_URL, its former name, is still read when SITE_URL is unset.
SITE_URL = env_str("SITE_URL") or env_str("ALARM_SITE_URL")

# Mails other than password reset go through lib/mail.py: one template trio per mail (subject, text, html).
# Password reset mails go through Django's backend: SMTP when EMAIL_HOST is set. Without it, DEBUG prints mails
# to the console; with DEBUG off a mail would land in the server log with its reset link, so it is not sent:
# the log says that a mail to whom went unsent, never its body (energypay.accounts.mail).
EMAIL_HOST = env_str("EMAIL_HOST")
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "energypay.accounts.mail.UnsentMailBackend",
)
EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "EnergyPay <no-reply@energypay.localhost>")

# Household pages speak the household's language (meters.Household.language, set by the switch in
# the page); before login, the language cookie or the browser's Accept-Language (LocaleMiddleware).
# Catalogs: locale/ (the project's templates) and each app's locale/; docs/i18n.md.
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("es", "Español")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env_timezone("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True
# Amounts are formatted by lib/money.py with Babel in the active language: "€1,234.56", "1234,56 €".

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "static"

# --- Pages (docs/architecture.md, "Pages") ---
# Chart.js from a CDN, pinned, with its Subresource Integrity hash (sha384 of that exact file).
CHART_JS_URL = "https://cdn.jsdelivr.net/npm/chart.js@4.5.0/dist/chart.umd.min.js"
CHART_JS_INTEGRITY = "sha384-XcdcwHqIPULERb2yDEM4R0XaQKU3YnDsrTmjACBZyfdVVqjh6xQ4/DCMd7XLcA6Y"
# Content-Security-Policy (django-csp): scripts and styles come from this site's static files, plus the one
# pinned Chart.js file (CHART_JS_URL, also checked by its integrity hash); nothing inline runs.
# Data reaches JavaScript through json_script (type application/json is data, not a script).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, CHART_JS_URL],
        "style-src": [SELF],
        "img-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# --- Request headers on /api/ (energypay/middleware.py, gunicorn.conf.py, docs/operations.md) ---
# The documented limits: X-PAYMENT up to 32 KiB, all headers together up to 48 KiB. gunicorn and nginx
# are set a little higher, so the application sees an oversized request and answers JSON 431.
API_MAX_PAYMENT_HEADER_BYTES = 32 * 1024
API_MAX_HEADER_BYTES = 48 * 1024
# URL names served past the session, CSRF, auth, messages and page-policy middleware (energypay/middleware.py
# lean_api): JSON endpoints for machines that use none of it, where it would cost more than the view.
LEAN_API_ROUTES = ["api-readings", "api-me-usage", "api-me-balance", "api-me-settlements"]

# --- Metrics (energypay/metrics.py, docs/operations.md "Metrics") ---
# A bearer token that may read /metrics besides staff (a Prometheus job's authorization); empty: staff only.
METRICS_TOKEN = env_str("METRICS_TOKEN")

# --- The household read API (energypay/readapi.py, docs/api.md) ---
# Requests per minute per personal access token; over it, 429 with Retry-After.
API_TOKEN_RATE_LIMIT_PER_MINUTE = env_int("API_TOKEN_RATE_LIMIT_PER_MINUTE", 60, minimum=1)

# --- Meter ingest (docs/architecture.md, "Meter ingest") ---
INGEST_MAX_READINGS = 1000
INGEST_MAX_BODY_BYTES = 1024 * 1024
INGEST_FUTURE_TOLERANCE = timedelta(minutes=5)
INGEST_RATE_LIMIT_PER_MINUTE = env_int("INGEST_RATE_LIMIT_PER_MINUTE", 60, minimum=1)
# How far back a meter token may bill: older readings are held for staff review (docs/ingest.md).
INGEST_BACKFILL_DAYS = env_int("INGEST_BACKFILL_DAYS", 7, minimum=1)
# The in-order single reading in one SQL statement on PostgreSQL (meters/fastpath.py); off, every request takes
# the Python path, which judges every case (and is what SQLite always runs).
INGEST_FAST_PATH = env_bool("INGEST_FAST_PATH", True)
# Rejected readings are counted by reason for the staff status page (meters never imports the project package).
INGEST_REJECTED_HOOK = "energypay.ops.rejections.record"

# --- Partitions of readings and the hourly ledger, on PostgreSQL (meters/partitions.py, docs/operations.md) ---
# One partition per UTC month (week, day), and this many periods made ahead by beat's ensure-partitions.
# At a million meters, readings grow ~12 GB a day: week or day partitions keep each one's indexes in RAM.
PARTITION_INTERVAL = env_choice("PARTITION_INTERVAL", "month", ("month", "week", "day"))
PARTITIONS_AHEAD = env_int("PARTITIONS_AHEAD", 3, minimum=1)

# --- Payments (docs/architecture.md, "The money path", "BSV facts the code relies on") ---
BSV_NETWORK = env_choice("BSV_NETWORK", "local", ("local", "regtest", "testnet", "mainnet"))
# An extended private key (tprv... for local/regtest/testnet, xprv... for mainnet). Every household
# key derives from it; none is stored. Without it, DEBUG on a local or regtest network makes a random
# one in var/ (never in the repository); anywhere else the server refuses to start.
WALLET_MASTER_KEY = env_str("WALLET_MASTER_KEY")
if not WALLET_MASTER_KEY and not (DEBUG and BSV_NETWORK in {"local", "regtest"}):
    raise ImproperlyConfigured("WALLET_MASTER_KEY must be set unless DEBUG is on with BSV_NETWORK local or regtest.")
WALLET_DEV_KEY_FILE = VAR_DIR / "dev-wallet-master.key"
UTILITY_ADDRESS = env_str("UTILITY_ADDRESS")
if not UTILITY_ADDRESS and BSV_NETWORK in {"testnet", "mainnet"}:
    raise ImproperlyConfigured("UTILITY_ADDRESS must be set for testnet and mainnet.")
PRICE_SOURCE = env_choice(
    "PRICE_SOURCE", "fixed" if BSV_NETWORK in {"local", "regtest"} else "coingecko", ("fixed", "coingecko")
)
BSV_EUR_PRICE = env_decimal("BSV_EUR_PRICE", Decimal("30.00"), positive=True)
COINGECKO_API_KEY = env_str("COINGECKO_API_KEY")
PRICE_MAX_AGE = timedelta(seconds=env_int("PRICE_MAX_AGE", 900, minimum=60))
# regtest: a Bitcoin SV node's JSON-RPC, e.g. http://user:password@127.0.0.1:18332
BSV_NODE_RPC_URL = env_str("BSV_NODE_RPC_URL", "http://energypay:energypay@127.0.0.1:18332")
# testnet / mainnet: ARC to broadcast, WhatsOnChain to read.
ARC_URL = env_str(
    "ARC_URL", "https://arc.gorillapool.io" if BSV_NETWORK == "mainnet" else "https://testnet.arc.gorillapool.io"
)
ARC_API_KEY = env_str("ARC_API_KEY")
WOC_API_KEY = env_str("WOC_API_KEY")
# ARC calls back with each transaction's status (payments/arc_callbacks.py) when both SITE_URL and this
# per-deployment secret are set: the broadcast registers SITE_URL + /api/v1/arc/callback and the token,
# which ARC sends back as "Authorization: Bearer <token>". Without them polling alone follows payments.
ARC_CALLBACK_TOKEN = env_str("ARC_CALLBACK_TOKEN")
if ARC_CALLBACK_TOKEN and len(ARC_CALLBACK_TOKEN) < 32:
    raise ImproperlyConfigured("ARC_CALLBACK_TOKEN must be at least 32 characters (e.g. `openssl rand -hex 32`).")
# A callback whose "timestamp" is older than this many seconds is refused (401), as a replay would be.
ARC_CALLBACK_MAX_AGE = timedelta(seconds=env_int("ARC_CALLBACK_MAX_AGE", 600, minimum=30))
if timedelta(days=1) < ARC_CALLBACK_MAX_AGE:
    raise ImproperlyConfigured(
        "ARC_CALLBACK_MAX_AGE must be at most 86400 seconds (the callback log keeps a day at least)."
    )
SETTLEMENT_GRACE_MINUTES = env_int("SETTLEMENT_GRACE_MINUTES", 5, minimum=0)
FEE_SATS_PER_KB = env_int("FEE_SATS_PER_KB", 100, minimum=1)
# Block explorer for txid links; none for local and regtest, whose transactions no explorer knows.
EXPLORER_TX_URL = {
    "testnet": "https://test.whatsonchain.com/tx/{txid}",
    "mainnet": "https://whatsonchain.com/tx/{txid}",
}.get(BSV_NETWORK, "")
# The community comparison: what unlocking it costs, for how long, and the smallest bucket shown.
COMMUNITY_PRICE_SATS = env_int("COMMUNITY_PRICE_SATS", 1000, minimum=1)
COMMUNITY_ACCESS_DAYS = env_int("COMMUNITY_ACCESS_DAYS", 30, minimum=1)
COMMUNITY_MIN_HOUSEHOLDS = 5

# --- Statements (docs/billing.md, "Statements") ---
# Who issues them: printed on every statement and snapshotted on it when issued.
STATEMENT_ISSUER_NAME = env_str("STATEMENT_ISSUER_NAME", "EnergyPay Demo Utility")
# A Spanish NIF of 9 characters: VERI*FACTU records name the issuer by it (the default is a made-up company's).
STATEMENT_ISSUER_TAX_ID = env_str("STATEMENT_ISSUER_TAX_ID", "B12345674")
STATEMENT_ISSUER_ADDRESS = env_str("STATEMENT_ISSUER_ADDRESS", "Calle de Ejemplo 1, 28001 Madrid, Spain")
# The issuer's clock: issue dates and the numbering year (EP-2026-...) are its local dates.
STATEMENT_TIME_ZONE = env_timezone("STATEMENT_TIME_ZONE", "Europe/Madrid")
# A household's month is issued this many hours after it ends in its time zone (late readings, the last settlement).
STATEMENT_ISSUE_DELAY_HOURS = env_int("STATEMENT_ISSUE_DELAY_HOURS", 6, minimum=0)
# How many closed months the jobs look back on: a statement still missing is issued, a changed one corrected.
STATEMENT_RECENT_MONTHS = env_int("STATEMENT_RECENT_MONTHS", 3, minimum=1)
# Called inside the issuing transaction with the statements it inserted (dotted path; none by default).
STATEMENT_ISSUED_HOOK = env_str("STATEMENT_ISSUED_HOOK")

# --- Invoice records (docs/spain.md, "VERI*FACTU") ---
# How the issuer keeps its invoice records: "verifactu" (chained records of every statement, the QR and the
# legend on it). "sii" (the issuer reports through the SII instead) is not supported yet: a system check
# refuses to start with it.
INVOICE_RECORDS_MODE = env_choice("INVOICE_RECORDS_MODE", "verifactu", ("verifactu", "sii"))
# Which AEAT validation service the statements' QR codes point at: "test" (pre-production) or "production".
VERIFACTU_ENVIRONMENT = env_choice("VERIFACTU_ENVIRONMENT", "test", ("test", "production"))
# The invoicing system as each record names it (SistemaInformatico): who produced it, and this installation.
VERIFACTU_PRODUCER_NAME = env_str("VERIFACTU_PRODUCER_NAME", STATEMENT_ISSUER_NAME)
VERIFACTU_PRODUCER_TAX_ID = env_str("VERIFACTU_PRODUCER_TAX_ID", STATEMENT_ISSUER_TAX_ID)
VERIFACTU_INSTALLATION_NUMBER = env_str("VERIFACTU_INSTALLATION_NUMBER", "1")
# Sending the records to the AEAT (docs/spain.md, "Sending the records"; docs/operations.md). Off by default: the
# records are kept and exported either way, and issuing never waits for the AEAT. On, beat sends the pending ones
# over SOAP with mutual TLS, the client certificate and its key from these files (PEM; never in the repository).
VERIFACTU_SEND_ENABLED = env_bool("VERIFACTU_SEND_ENABLED", False)
VERIFACTU_ENDPOINT = env_str(
    "VERIFACTU_ENDPOINT",
    {
        "test": "https://prewww1.aeat.es/wlpl/TIKE-CONT/ws/SistemaFacturacion/VerifactuSOAP",
        "production": "https://www1.agenciatributaria.gob.es/wlpl/TIKE-CONT/ws/SistemaFacturacion/VerifactuSOAP",
    }[VERIFACTU_ENVIRONMENT],
)
VERIFACTU_CERT_FILE = env_str("VERIFACTU_CERT_FILE")
VERIFACTU_KEY_FILE = env_str("VERIFACTU_KEY_FILE")
# The CA bundle that checks the AEAT's server certificate; empty: the system's (certifi's) bundle.
VERIFACTU_CA_FILE = env_str("VERIFACTU_CA_FILE")
VERIFACTU_TIMEOUT = env_int("VERIFACTU_TIMEOUT", 60, minimum=5)  # seconds to connect and to wait for the answer

# --- Alarms (README.md, "Alarms") ---
# meters and payments call these after usage changes and after a settlement chunk (they never import alarms).
USAGE_CHANGED_HOOK = "alarms.hooks.usage_changed"
SETTLEMENT_DONE_HOOK = "alarms.hooks.settled"
# Each web process sends at most one evaluation task per window for all households whose usage changed.
ALARM_USAGE_WINDOW_SECONDS = env_int("ALARM_USAGE_WINDOW_SECONDS", 30, minimum=0)

# --- Webhooks out (docs/webhooks.md) ---
# payments, alarms and meters tell what happened through this function, in the transaction of the change:
# it writes the outbox rows for every endpoint subscribed (energypay/webhooks/outbox.py) and the household's
# notifications (energypay/notifications/inbox.py).
EVENT_HOOK = "energypay.eventhook.record"
# Receivers on private, loopback or link-local addresses (SSRF), and plain http://, only where allowed: off in
# production (DEBUG off), on for a local demo whose receiver listens on 127.0.0.1.
WEBHOOK_ALLOW_PRIVATE_TARGETS = env_bool("WEBHOOK_ALLOW_PRIVATE_TARGETS", DEBUG)
WEBHOOK_ALLOW_HTTP = env_bool("WEBHOOK_ALLOW_HTTP", DEBUG)
WEBHOOK_CONNECT_TIMEOUT = env_int("WEBHOOK_CONNECT_TIMEOUT", 5, minimum=1)  # seconds: DNS, TCP and TLS each
WEBHOOK_READ_TIMEOUT = env_int("WEBHOOK_READ_TIMEOUT", 10, minimum=1)  # seconds more for sending and the answer
WEBHOOK_RETRY_HOURS = env_int("WEBHOOK_RETRY_HOURS", 48, minimum=24)  # a delivery is retried this long, then given up
WEBHOOK_DISABLE_AFTER_DAYS = env_int("WEBHOOK_DISABLE_AFTER_DAYS", 5, minimum=1)  # of nothing but failures
WEBHOOK_ROTATION_GRACE_HOURS = env_int("WEBHOOK_ROTATION_GRACE_HOURS", 24, minimum=1)  # the old secret signs too
WEBHOOK_METER_SILENT_HOURS = env_int("WEBHOOK_METER_SILENT_HOURS", 6, minimum=1)  # meter.silent after this long

# --- Bulk onboarding: households and meters imported from CSV/XLSX in the admin (energypay/onboarding/) ---
ONBOARDING_MAX_ROWS = env_int("ONBOARDING_MAX_ROWS", 10_000, minimum=1)  # rows in one file; more: refused
ONBOARDING_MAX_BYTES = env_int("ONBOARDING_MAX_BYTES", 10 * 1024 * 1024, minimum=1024)  # an upload larger: refused
# How long after an import its staff member may download the meter tokens (once); later, tokens are issued per meter.
ONBOARDING_TOKEN_DOWNLOAD_MINUTES = env_int("ONBOARDING_TOKEN_DOWNLOAD_MINUTES", 60, minimum=1)

# --- Operations: /healthz and the staff status page (energypay/health.py, energypay/status.py) ---
HEALTH_BEAT_MAX_AGE = env_int("HEALTH_BEAT_MAX_AGE", 180, minimum=60)  # seconds since beat's last heartbeat tick
HEALTH_SIGNED_MAX_AGE = env_int("HEALTH_SIGNED_MAX_AGE", 300, minimum=60)  # seconds a settlement may stay signed
HEALTH_CACHE_SECONDS = env_int("HEALTH_CACHE_SECONDS", 30, minimum=0)  # how long the network's answer is reused
HEALTH_TIMEOUT_SECONDS = env_int("HEALTH_TIMEOUT_SECONDS", 2, minimum=1)  # per check: query, broker connection
# The status page (not /healthz) fails the settlement backlog while households owe more than this in all.
STATUS_ARREARS_MAX_EUR = env_decimal("STATUS_ARREARS_MAX_EUR", Decimal("100"))

# --- Celery ---
# The default broker keeps messages in files under var/: web, worker and beat on one machine
# share it with no server. Production sets CELERY_BROKER_URL=redis://...
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL == "filesystem://":
    # The files have no host; naming one spares every process kombu's "No hostname was supplied" warning.
    CELERY_BROKER_URL = "filesystem://localhost/"
    _queue_dir = VAR_DIR / "celery-queue"
    for _folder in (_queue_dir, VAR_DIR / "celery-processed", VAR_DIR / "celery-control"):
        _folder.mkdir(parents=True, exist_ok=True)  # web, worker and beat may start in any order
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "processed_folder": str(VAR_DIR / "celery-processed"),
        # Broadcast (worker remote control) messages; kombu's default is ./control in the working directory.
        "control_folder": str(VAR_DIR / "celery-control"),
        "store_processed": False,
    }
elif not CELERY_BROKER_URL.startswith(("redis://", "rediss://", "amqp://", "memory://")):
    raise ImproperlyConfigured("CELERY_BROKER_URL must be filesystem://, redis://, rediss:// or amqp://.")
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# Periodic jobs. Each is idempotent, so an overlapping or repeated tick does no harm.
CELERY_BEAT_SCHEDULE = {
    "heartbeat": {"task": "energypay.tasks.heartbeat", "schedule": 60.0},
    "refresh-price": {"task": "payments.tasks.refresh_price", "schedule": 120.0},
    # Every contract's standing charge, silent meters included, for the hours that ended: before
    # the settlement run, so that it pays them in the same hour.
    "accrue-standing-charges": {
        "task": "meters.tasks.accrue_standing",
        "schedule": crontab(minute=max(SETTLEMENT_GRACE_MINUTES % 60 - 3, 0)),
    },
    # HH:05 by default: the grace for late readings.
    "settle-closed-hour": {
        "task": "payments.tasks.settle_closed_hour",
        "schedule": crontab(minute=SETTLEMENT_GRACE_MINUTES % 60),
    },
    "watch-settlements": {"task": "payments.tasks.watch_settlements", "schedule": 60.0},
    # Alarms: time-based rules (silent meter, balance runway, arrears) and firing ones; then the outbox.
    "evaluate-alarms": {"task": "alarms.tasks.evaluate_periodic", "schedule": 300.0},
    "send-alarm-notifications": {"task": "alarms.tasks.send_notifications", "schedule": 60.0},
    "watch-community-passes": {"task": "payments.tasks.watch_community_passes", "schedule": 60.0},
    "watch-withdrawals": {"task": "payments.tasks.watch_withdrawals", "schedule": 60.0},
    "watch-deposits": {"task": "payments.tasks.watch_deposits", "schedule": 120.0},
    "send-notification-mail": {"task": "energypay.notifications.tasks.send_mail", "schedule": 60.0},
    # Webhooks: send what the outbox holds; watch arrears and silent meters for their events.
    "deliver-webhooks": {"task": "energypay.webhooks.tasks.deliver_due", "schedule": 10.0},
    "detect-webhook-events": {"task": "energypay.webhooks.tasks.detect_events", "schedule": 300.0},
    # Hourly, away from HH:05: partitions ahead, and rows the default partition caught moved out. Never drops any.
    "ensure-partitions": {"task": "meters.tasks.ensure_partitions", "schedule": crontab(minute=35)},
    # Statements: every hour, the months that closed (by each household's clock); daily, the corrective
    # notes for late readings in recent months; every minute, the mail outbox.
    "issue-statements": {"task": "payments.statements.tasks.issue_due_statements", "schedule": crontab(minute=25)},
    "correct-statements": {
        "task": "payments.statements.tasks.correct_statements",
        "schedule": crontab(hour=4, minute=45),
    },
    "send-statement-mail": {"task": "payments.statements.tasks.send_statement_mail", "schedule": 60.0},
    # VERI*FACTU: the records waiting for the AEAT, when VERIFACTU_SEND_ENABLED (honours the wait it asks for).
    "send-invoice-records": {"task": "payments.statements.tasks.send_invoice_records", "schedule": 30.0},
    "prune-login-records": {
        "task": "energypay.accounts.tasks.prune_login_records",
        "schedule": crontab(hour=3, minute=17),
    },
}
if BSV_NETWORK == "local":
    CELERY_BEAT_SCHEDULE["mine-block"] = {"task": "payments.tasks.mine_block", "schedule": 180.0}

# --- Retention: what the growing tables keep (docs/operations.md, "Retention") ---
# Each table's prune command runs daily, at night (UTC), in bounded DELETEs of RETENTION_BATCH_SIZE rows;
# none deletes what a settlement, a pass, an unsent mail or an alarm still firing refers to.
RETENTION_QUOTES_DAYS = env_int("RETENTION_QUOTES_DAYS", 30, minimum=1)
RETENTION_REJECTIONS_DAYS = env_int("RETENTION_REJECTIONS_DAYS", 30, minimum=1)
RETENTION_ALARM_EVENTS_DAYS = env_int("RETENTION_ALARM_EVENTS_DAYS", 365, minimum=1)
RETENTION_LEDGER_DAYS = env_int("RETENTION_LEDGER_DAYS", 30, minimum=1)
RETENTION_WEBHOOK_DAYS = env_int("RETENTION_WEBHOOK_DAYS", 30, minimum=1)
RETENTION_NOTIFICATION_DAYS = env_int("RETENTION_NOTIFICATION_DAYS", 365, minimum=1)
RETENTION_ARC_CALLBACK_DAYS = env_int("RETENTION_ARC_CALLBACK_DAYS", 30, minimum=1)
RETENTION_BATCH_SIZE = env_int("RETENTION_BATCH_SIZE", 1000, minimum=1)
CELERY_BEAT_SCHEDULE |= {
    "prune-quotes": {"task": "payments.tasks.prune_quotes", "schedule": crontab(hour=3, minute=10)},
    "prune-ledger": {"task": "payments.tasks.prune_ledger", "schedule": crontab(hour=3, minute=20)},
    "prune-alarm-events": {"task": "alarms.tasks.prune_alarm_events", "schedule": crontab(hour=3, minute=30)},
    "prune-rejections": {"task": "energypay.tasks.prune_rejections", "schedule": crontab(hour=3, minute=40)},
    "prune-webhooks": {"task": "energypay.webhooks.tasks.prune_webhooks", "schedule": crontab(hour=3, minute=50)},
    "prune-arc-callbacks": {"task": "payments.tasks.prune_arc_callbacks", "schedule": crontab(hour=3, minute=55)},
    "prune-notifications": {
        "task": "energypay.notifications.tasks.prune_notifications",
        "schedule": crontab(hour=3, minute=57),
    },
}
CELERY_TIMEZONE = "UTC"
# Workers log through LOGGING below (format, secret redaction) instead of Celery's own handlers.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# One line per event: "time LEVEL logger event key=value ..." or, with LOG_FORMAT=json, one JSON object.
# Every record passes energypay.logging.RedactSecrets on its way out.
LOG_FORMAT = env_choice("LOG_FORMAT", "text", ("text", "json"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "line": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "energypay.logging.JsonFormatter"},
    },
    "filters": {"redact": {"()": "energypay.logging.RedactSecrets"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "line",
            "filters": ["redact"],
        }
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        # Per-request lines from the dev server are noise next to the ingest log lines.
        "django.server": {"level": "WARNING"},
        # At DEBUG, Django logs each missing template variable with the whole context (CSRF tokens, household
        # data, the admin's one-time meter token): never, whatever LOG_LEVEL says.
        "django.template": {"level": "INFO"},
        # axes says INFO for every successful login and clean-up; failures and lockouts stay (WARNING).
        "axes": {"level": "WARNING"},
        # WeasyPrint narrates every step of every statement PDF at INFO; its warnings (a missing font) stay.
        "weasyprint": {"level": "WARNING"},
        "fontTools": {"level": "WARNING"},
    },
}
