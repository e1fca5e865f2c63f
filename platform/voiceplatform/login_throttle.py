"""django-axes counts failed sign-ins per account: an account is a user name within a tenant (each
tenant's schema has its own `admin`), so the name it counts carries the schema."""
from django.db import connection


def account_name(request, credentials) -> str:
    return f"{connection.schema_name}:{(credentials or {}).get('username', '')}"
