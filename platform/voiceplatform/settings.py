"""The one settings module. Everything that differs between machines comes from the environment.

DATABASE_URL and REDIS_URL are always set by the time this loads: by the operator, or by
voiceplatform.startup after it started the embedded servers.
"""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from django.core.exceptions import ImproperlyConfigured

from voiceplatform import secret_keys
from voiceplatform.embedded import var_dir

BASE_DIR = Path(__file__).resolve().parents[2]


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


def database_from_url(url: str) -> dict:
    """postgresql://user:pass@host:port/name?host=/socket/dir -> Django DATABASES entry."""
    parsed = urlparse(url)
    if parsed.scheme not in {"postgres", "postgresql"}:
        raise ValueError(f"DATABASE_URL must be a postgresql:// URL, not {parsed.scheme}://")
    query = {key: values[-1] for key, values in parse_qs(parsed.query).items()}
    pool_size = int(env("DATABASE_POOL_SIZE", "0"))
    if pool_size:
        # For the web processes: their request threads (as many as the pool's connections,
        # voiceplatform/sync_handler.py) share the connections, returned at the end of each request.
        query["pool"] = {"min_size": 1, "max_size": pool_size, "timeout": 30}
    return {
        "ENGINE": "django_tenants.postgresql_backend",
        "NAME": parsed.path.lstrip("/") or "postgres",
        "USER": parsed.username or "",
        "PASSWORD": parsed.password or "",
        "HOST": query.pop("host", parsed.hostname or ""),
        "PORT": str(parsed.port or ""),
        "OPTIONS": query,
        "CONN_MAX_AGE": 0 if pool_size else int(env("DATABASE_CONN_MAX_AGE", "60")),
        "CONN_HEALTH_CHECKS": True,
    }


def celery_redis_url(url: str) -> str:
    """Celery/kombu spell a unix-socket Redis as redis+socket:// (redis-py spells it unix://)."""
    return "redis+socket://" + url.removeprefix("unix://") if url.startswith("unix://") else url


# PRODUCTION=true: keys from the environment (strong ones), DEBUG off, HTTPS only (secure cookies,
# HSTS, the proxy's X-Forwarded-Proto trusted), /metrics only with METRICS_TOKEN.
PRODUCTION = env_bool("PRODUCTION", False)
PUBLIC_DOMAIN = env("PUBLIC_DOMAIN", "localhost")
try:
    # Unset keys are generated once and kept in the var directory, shared by every process.
    SECRET_KEY, FIELD_ENCRYPTION_KEY = secret_keys.resolve(os.environ, var_dir(), PRODUCTION)
except secret_keys.WeakKeyError as exc:
    raise ImproperlyConfigured(str(exc)) from None
# Off unless asked for: even then API clients get JSON errors, never a debug page (voiceplatform.api_errors).
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", f"{PUBLIC_DOMAIN},.{PUBLIC_DOMAIN}" if PRODUCTION
                         else "localhost,.localhost,127.0.0.1,[::1],testserver")
if PRODUCTION:
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    # Load balancers and Prometheus probe over plain HTTP inside the network.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
    SECURE_HSTS_SECONDS = int(env("SECURE_HSTS_SECONDS", str(365 * 24 * 3600)))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

# Every request the platform makes to an address a tenant gave (TwiML Url, status callbacks, agent
# streams) goes through core.egress: loopback, private, link-local, multicast and reserved addresses
# are refused unless listed here (host, host:port, address or CIDR, comma-separated).
OUTBOUND_ALLOW = env_list("OUTBOUND_ALLOW", "")

# Multi-tenancy: carriers, numbers and tenants live in the public schema; everything a tenant owns
# lives in its own schema. Moving an app between these lists later is migration surgery.
SHARED_APPS = [
    # `tenants` comes first so its create_tenant / delete_tenant commands replace django-tenants' own.
    "tenants",
    "django_tenants",
    "telephony",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "voiceplatform",
    "axes",
]
TENANT_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
    "tenants.accounts",
    "telephony.calls",
    "campaigns",
]
INSTALLED_APPS = ["daphne"] + SHARED_APPS + [app for app in TENANT_APPS if app not in SHARED_APPS]

TENANT_MODEL = "tenants.Tenant"
# SET search_path once per schema switch, not before every query (it resets on switch, rollback and
# reconnect): a third of the recorder's queries were that statement.
TENANT_LIMIT_SET_CALLS = True
TENANT_DOMAIN_MODEL = "tenants.Domain"
# The REST API is reached by API key from any host name; unknown hosts get the public schema.
SHOW_PUBLIC_IF_NO_TENANT_FOUND = True

MIDDLEWARE = [
    # Static files (admin, API docs, UI) before the tenant lookup: no database query per file.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "voiceplatform.api_errors.ApiErrorsMiddleware",
    "voiceplatform.tenancy.TenantMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
]
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
# Failed sign-ins (browser and admin) are counted per account and per address, in Redis; past the
# limit both are locked for LOGIN_COOLOFF_MINUTES. Accounts are per tenant: the tenant is in the name.
AXES_HANDLER = "axes.handlers.cache.AxesCacheHandler"
AXES_FAILURE_LIMIT = int(env("LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = float(env("LOGIN_COOLOFF_MINUTES", "15")) / 60
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_USERNAME_CALLABLE = "voiceplatform.login_throttle.account_name"
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
# Failed API-key attempts per client address (tenants.accounts.throttle).
API_KEY_FAILURE_LIMIT = int(env("API_KEY_FAILURE_LIMIT", "20"))
API_KEY_FAILURE_WINDOW_S = int(env("API_KEY_FAILURE_WINDOW_S", "600"))
# API credentials checked once are trusted this long by each web process (tenants/accounts/verified.py):
# a revoked key or a suspended tenant is refused everywhere within it.
API_AUTH_CACHE_S = float(env("API_AUTH_CACHE_S", "5"))
# A tenant's caller-ID numbers and the usable carriers, once read, are trusted this long by each process
# placing calls (telephony/calls/services.py): a number removed, or a carrier disabled or found down, is
# left out of new calls everywhere within it (the gateway's failover covers a carrier that just went down).
PLACEMENT_CACHE_S = float(env("PLACEMENT_CACHE_S", "1"))

ROOT_URLCONF = "voiceplatform.urls"
LOGIN_URL = "/accounts/login/"
ASGI_APPLICATION = "voiceplatform.asgi.application"
WSGI_APPLICATION = None

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
                "voiceplatform.ui.access.roles",
            ],
        },
    },
]

DATABASES = {"default": database_from_url(env("DATABASE_URL"))}
DATABASE_ROUTERS = ["django_tenants.routers.TenantSyncRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL")
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # channels_redis blocks 5 s per receive: the socket timeout must be longer (redis-py's default is 5 s).
        "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 10}], "prefix": "vp:asgi"},
    }
}
CACHES = {"default": {"BACKEND": "core.cache.ProcessRedisCache", "LOCATION": REDIS_URL}}

CELERY_BROKER_URL = celery_redis_url(REDIS_URL)
CELERY_RESULT_BACKEND = celery_redis_url(REDIS_URL)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_RESULT_EXPIRES = 3600
# Status callbacks have a queue (and worker) of their own: a slow receiver never delays dialing.
CELERY_TASK_ROUTES = {"telephony.calls.tasks.deliver_webhook": {"queue": "webhooks"}}
CELERY_BEAT_SCHEDULE = {
    "check-carriers": {"task": "telephony.tasks.check_carriers", "schedule": float(env("CARRIER_HEALTH_INTERVAL", "10"))},
    "publish-inventory": {"task": "telephony.tasks.publish_inventory", "schedule": 30.0},
    "dispatch-dialers": {"task": "campaigns.tasks.dispatch_dialers", "schedule": 1.0},
    "give-up-unplaced-calls": {"task": "telephony.calls.tasks.give_up_unplaced_calls", "schedule": 5.0},
    "delete-expired-recordings": {"task": "telephony.calls.tasks.delete_expired_recordings", "schedule": 3600.0},
}

# Recorded calls: media hosts write WAVs to RECORDINGS_SPOOL_DIR (a directory the Celery workers
# share), a task moves them into the "recordings" storage: var/recordings/store, or the S3-compatible
# bucket RECORDINGS_S3_BUCKET when set (django-storages; the endpoint, region and keys below, else
# boto3's own configuration: environment, ~/.aws, instance role).
RECORDINGS_SPOOL_DIR = env("RECORDINGS_SPOOL_DIR", str(BASE_DIR / "var" / "recordings" / "spool"))


def file_storage(local_dir: Path, bucket_folder: str = "") -> dict:
    """The local folder, or (RECORDINGS_S3_BUCKET set) a folder of that S3-compatible bucket."""
    bucket = env("RECORDINGS_S3_BUCKET")
    if not bucket:
        return {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(local_dir)}}
    location = "/".join(part for part in (env("RECORDINGS_S3_PREFIX").strip("/"), bucket_folder) if part)
    options = {"bucket_name": bucket, "endpoint_url": env("RECORDINGS_S3_ENDPOINT_URL"),
               "region_name": env("RECORDINGS_S3_REGION"), "access_key": env("RECORDINGS_S3_ACCESS_KEY_ID"),
               "secret_key": env("RECORDINGS_S3_SECRET_ACCESS_KEY"), "location": location,
               "default_acl": None, "querystring_auth": True, "file_overwrite": False}
    return {"BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {key: value for key, value in options.items() if value != ""}}


STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "recordings": file_storage(BASE_DIR / "var" / "recordings" / "store"),
    # voicemail messages uploaded as audio files (telephony/calls/voicemail_audio.py)
    "voicemail": file_storage(BASE_DIR / "var" / "voicemail", bucket_folder="voicemail"),
}

# Dialer: a contact claimed by a worker that died before placing its call is dialed again after this.
DIALER_UNPLACED_GRACE_S = float(env("DIALER_UNPLACED_GRACE_S", "30"))
# A call still queued this long that Redis never heard of (down when it was placed) ends as not_placed.
CALL_UNPLACED_GRACE_S = float(env("CALL_UNPLACED_GRACE_S", "30"))
# An API call that finds its tenant's or every carrier's concurrent-call cap full waits in its queue for
# room, at most this long after it was placed; then it fails with reason carrier_at_capacity.
CALL_QUEUE_TIMEOUT_S = float(env("CALL_QUEUE_TIMEOUT_S", "600"))
# A campaign is dialed by one loop per DIALER_CPS_PER_SLICE of its CPS, at most DIALER_MAX_SLICES at
# once, each in any dialer worker (campaigns/dialer.py): more worker processes, more cores per campaign.
# Each loop's bookkeeping and each batch cost the same whatever the CPS: fewer, larger loops are
# cheaper (150 CPS: 3.8-4.2 ms of dialer CPU per call with 4 loops, 2.2-3.1 with 2; docs/capacity.md).
DIALER_CPS_PER_SLICE = float(env("DIALER_CPS_PER_SLICE", "75"))
DIALER_MAX_SLICES = int(env("DIALER_MAX_SLICES", "4"))
# The dispatcher (every second) visits only the tenants with campaign activity (campaigns/activity.py);
# every DIALER_FULL_SCAN_S it visits them all, so a campaign Redis lost track of (Redis restarted
# empty, an upgrade) waits at most this long to be dialed again. Seconds, > 0.
DIALER_FULL_SCAN_S = float(env("DIALER_FULL_SCAN_S", "60"))

# Agents that connect in (POST /api/v1/calls with agent_connects): their stream URL carries a token
# good for AGENT_STREAM_TOKEN_TTL_S; once the call is answered the gateway waits
# AGENT_STREAM_CONNECT_TIMEOUT_S for the agent before hanging up (agent_connect_timeout).
AGENT_STREAM_TOKEN_TTL_S = int(env("AGENT_STREAM_TOKEN_TTL_S", "300"))
AGENT_STREAM_CONNECT_TIMEOUT_S = float(env("AGENT_STREAM_CONNECT_TIMEOUT_S", "10"))
# Our WebSocket server as gateways reach it (the relay), and as agents reach it (in status callbacks;
# API responses use the host the request came to).
MEDIA_RELAY_URL = env("MEDIA_RELAY_URL", f"ws://127.0.0.1:{env('HTTP_PORT', '8000')}")
PUBLIC_BASE_URL = env("PUBLIC_BASE_URL", f"http://{PUBLIC_DOMAIN}:{env('HTTP_PORT', '8000')}")

# /metrics (Prometheus) asks for `Authorization: Bearer <METRICS_TOKEN>` when it is set.
METRICS_TOKEN = env("METRICS_TOKEN")

# Carrier health: SIP OPTIONS every CARRIER_HEALTH_INTERVAL seconds; down after N failures in a
# row, back up after M successes.
CARRIER_PING_TIMEOUT = float(env("CARRIER_PING_TIMEOUT", "2"))
# Kamailio (manage.py kamailio_config) in front of the gateways: trusted for inbound INVITEs as carriers are
SIP_BALANCER_ADDRESSES = [a.strip() for a in env("SIP_BALANCER_ADDRESSES", "").split(",") if a.strip()]
CARRIER_DOWN_AFTER = int(env("CARRIER_DOWN_AFTER", "3"))
CARRIER_UP_AFTER = int(env("CARRIER_UP_AFTER", "2"))

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["tenants.accounts.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated",
                                   "tenants.accounts.permissions.ReadOnlyKeysOnlyRead"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "core.api.Pages",
    "DEFAULT_PARSER_CLASSES": ["core.api.JSONBodyParser", "rest_framework.parsers.FormParser",
                               "rest_framework.parsers.MultiPartParser"],
    "PAGE_SIZE": 100,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Voice platform API",
    "DESCRIPTION": "Campaigns, contacts and calls. Authenticate with `Authorization: Bearer <api key>`.",
    "VERSION": "1",
    # Served from the package, not a CDN: nothing is downloaded at run time.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "voiceplatform.openapi.document_errors"],
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
# WhiteNoise serves the apps' static folders straight from the finders, under `make run` and in
# production alike (no collectstatic step); files are re-read on change only in DEBUG.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
WHITENOISE_MAX_AGE = 300
# Vendored files carry their version in their name (vendor/plotly-basic-4.1.1.min.js): a new version is
# a new URL, so browsers may keep them for good.
WHITENOISE_IMMUTABLE_FILE_TEST = r"/vendor/[^/]+-\d+(\.\d+)+\.min\.js$"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # key=value lines; call_sid on every line about a call (core/logs.py)
    "filters": {"call_sid": {"()": "core.logs.CallSidFilter"},
                "routine": {"()": "core.logs.RoutineTaskFilter"}},
    "formatters": {"kv": {"()": "core.logs.KeyValueFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "kv", "filters": ["routine", "call_sid"]}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}, "pgserver": {"level": "WARNING"}},
}
