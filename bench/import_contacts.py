"""Benchmark: import a 100,000-row contact CSV into a tenant's list and print rows/s as JSON.

    .venv/bin/python bench/import_contacts.py [--rows 100000] [--http]

Runs against its own throw-away PostgreSQL (embedded, in a temporary folder) unless DATABASE_URL is
set, creates a tenant, writes a realistic CSV to a temporary file (US numbers written in local format,
some international, extra columns, 1% duplicates, 0.5% bad phones, 0.5% on do-not-call) and imports it
through the service (`campaigns.services.contact_list_import`), or with --http through the REST
endpoint (multipart upload, authentication included). Each run uses a fresh contact list.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]


def write_csv(path: Path, rows: int, seed: int = 7) -> list[str]:
    """The CSV file; returns numbers to put on do-not-call."""
    rng = random.Random(seed)
    area_codes = ["212", "213", "312", "415", "512", "617", "646", "702", "713", "818"]
    plans = ["gold", "silver", "bronze"]
    dnc: list[str] = []
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("phone,name,time zone,plan,customer_id,last_order\n")
        for i in range(rows):
            roll = rng.random()
            if roll < 0.005:
                phone = f"bad-{i}"
            elif roll < 0.015 and i > 0:
                phone = f"+1{area_codes[(i - 1) % 10]}555{(i - 1) // 10 % 10000:04d}"  # a duplicate
            elif roll < 0.10:
                phone = f"+44 20 7946 {i % 10000:04d}"
            else:
                local = f"{area_codes[i % 10]}555{i // 10 % 10000:04d}"
                phone = f"({local[:3]}) {local[3:6]}-{local[6:]}" if i % 2 else local
                if roll > 0.995:
                    dnc.append(f"+1{local}")
            zone = "America/Chicago" if i % 7 == 0 else ""
            out.write(f"{phone},Lead {i},{zone},{plans[i % 3]},C{i:07d},2024-0{i % 9 + 1}-1{i % 9}\n")
    return dnc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--http", action="store_true", help="upload through the REST API instead of the service")
    args = parser.parse_args()

    run_dir = Path(tempfile.mkdtemp(prefix="vp-bench-"))
    os.environ.setdefault("VOICEPLATFORM_VAR_DIR", str(run_dir))
    if not os.environ.get("DATABASE_URL"):
        from voiceplatform.embedded import start_postgres

        os.environ["DATABASE_URL"] = start_postgres(run_dir / "postgres")
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")  # not used by an import
    os.environ["DJANGO_SETTINGS_MODULE"] = "voiceplatform.settings"
    os.environ.setdefault("DEBUG", "false")

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django_tenants.utils import schema_context

    from campaigns import services
    from campaigns.models import ContactList, DoNotCall
    from tenants.models import Tenant
    from tenants.services import create_tenant, ensure_public_tenant

    try:
        call_command("migrate_schemas", shared=True, interactive=False, verbosity=0)
        ensure_public_tenant()
        slug = "bench"
        if Tenant.objects.filter(schema_name=slug).exists():
            from tenants.services import drop_tenant

            drop_tenant(slug)
        credentials = create_tenant(slug, f"{slug}.localhost", name="Bench")

        csv_path = run_dir / "contacts.csv"
        dnc = write_csv(csv_path, args.rows)
        size = csv_path.stat().st_size
        with schema_context(slug):
            DoNotCall.objects.bulk_create([DoNotCall(phone=p) for p in dnc], ignore_conflicts=True)
            contact_list = ContactList.objects.create(name="Bench leads", default_region="US")

        started = time.perf_counter()
        if args.http:
            from django.test import Client

            client = Client(HTTP_AUTHORIZATION=f"Bearer {credentials.api_key}")
            with csv_path.open("rb") as upload:
                response = client.post(f"/api/v1/contact-lists/{contact_list.pk}/upload", {"file": upload})
            connection.set_schema_to_public()
            if response.status_code != 201:
                raise SystemExit(f"upload failed: {response.status_code} {response.content[:500]!r}")
            report = response.json()
        else:
            with schema_context(slug), csv_path.open("rb") as upload:
                report = services.contact_list_import(contact_list, upload, size=size).as_dict()
        seconds = time.perf_counter() - started

        print(json.dumps({
            "path": "http" if args.http else "service",
            "rows": report["total_rows"],
            "file_bytes": size,
            "seconds": round(seconds, 2),
            "rows_per_s": round(report["total_rows"] / seconds),
            "imported": report["imported"],
            "duplicates": report["duplicates"],
            "do_not_call": report["do_not_call"],
            "errors": report["error_count"],
            "cpus": os.cpu_count(),
        }))
    finally:
        connection.close()
        if (run_dir / "postgres").exists():
            import pgserver

            pgserver.get_server(run_dir / "postgres").cleanup()  # stop our embedded server first
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
