"""Acme uploads its spring leads as CSV: good rows land in the list, bad rows come back with their line
number, duplicates are listed by line and counted, do-not-call numbers counted, and a file that is too big or not UTF-8 imports
nothing."""
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, override_settings
from django_tenants.utils import schema_context

from campaigns import imports, services
from campaigns.models import Contact, ContactList, DoNotCall

pytestmark = pytest.mark.django_db



def api(key):
    return Client(HTTP_AUTHORIZATION=f"Bearer {key}")


@pytest.fixture
def spring_leads(tenant_a):
    with schema_context(tenant_a.tenant):
        return ContactList.objects.create(name="Acme spring leads", default_region="US")


def upload(key, contact_list_id, content: bytes, filename="leads.csv", **extra):
    return api(key).post(
        f"/api/v1/contact-lists/{contact_list_id}/upload",
        {"file": SimpleUploadedFile(filename, content, content_type="text/csv"), **extra},
    )


def contacts_in(tenant, contact_list):
    with schema_context(tenant.tenant):
        return {c.phone: c for c in Contact.objects.filter(contact_list=contact_list)}


MESSY_CSV = (
    "phone,name,time zone,plan,last_order\n"  # line 1
    "+1 415 555 0100,Ada Lovelace,,gold,2024-01-05\n"  # 2 good: Los Angeles derived
    "(212) 555-0199,Grace Hopper,America/Chicago,silver,\n"  # 3 good: written time zone kept, US region
    "not-a-number,Bad Phone,,gold,\n"  # 4 bad phone
    ",Empty Phone,,gold,\n"  # 5 empty phone
    "+14155550101,Too,Many,Columns,here,extra\n"  # 6 wrong column count
    "415-555-0100,Ada again,,gold,\n"  # 7 duplicate of line 2 (same E.164)
    "+81 90 1234 5678,Kenji,,platinum,2024-02-01\n"  # 8 good: Tokyo derived
    "+1 202 555 0143,Unknown Zone,Mars/Olympus,gold,\n"  # 9 bad time zone
    "\n"  # blank line: skipped, not a row
    '"+442079460000","Ann, with comma",,"multi\nline note",\n'  # 11-12 good (quoted newline)
    "+15551234567,Not Valid,,gold,\n"  # 13 not a valid US number
)


def test_messy_csv_keeps_good_rows_and_reports_bad_ones_by_line(tenant_a, spring_leads):
    response = upload(tenant_a.api_key, spring_leads.pk, MESSY_CSV.encode())
    assert response.status_code == 201, response.content
    report = response.json()

    assert report["total_rows"] == 10
    assert report["imported"] == 4
    assert report["duplicates"] == 1
    assert report["duplicate_rows"] == [{"line": 7, "reason": "same number as line 2", "value": "415-555-0100"}]
    assert report["do_not_call"] == 0
    errors = {e["line"]: e for e in report["errors"]}
    assert sorted(errors) == [4, 5, 6, 9, 13]
    assert "not a phone number" in errors[4]["reason"] and errors[4]["value"] == "not-a-number"
    assert errors[5]["reason"] == "phone is empty"
    assert errors[6]["reason"] == "expected 5 columns, found 6"
    assert "time zone" in errors[9]["reason"] and errors[9]["value"] == "Mars/Olympus"
    assert "not a valid number" in errors[13]["reason"]
    assert report["error_count"] == 5 and report["errors_not_shown"] == 0
    assert report["imported"] + report["duplicates"] + report["do_not_call"] + report["error_count"] == report["total_rows"]

    contacts = contacts_in(tenant_a, spring_leads)
    assert set(contacts) == {"+14155550100", "+12125550199", "+819012345678", "+442079460000"}
    ada = contacts["+14155550100"]
    assert ada.name == "Ada Lovelace"  # the first row of a duplicate wins
    assert ada.time_zone == "America/Los_Angeles"  # derived from the number
    assert ada.variables == {"plan": "gold", "last_order": "2024-01-05"}  # extra columns kept
    assert contacts["+12125550199"].time_zone == "America/Chicago"  # a written time zone wins
    assert contacts["+819012345678"].time_zone == "Asia/Tokyo"
    assert contacts["+442079460000"].name == "Ann, with comma"
    assert contacts["+442079460000"].variables["plan"] == "multi\nline note"


def test_numbers_already_in_the_list_are_merged_and_counted(tenant_a, spring_leads):
    first = upload(tenant_a.api_key, spring_leads.pk, b"phone,name\n+14155550100,Ada\n+14155550102,Bob\n")
    assert first.json()["imported"] == 2
    second = upload(tenant_a.api_key, spring_leads.pk, b"phone,name\n4155550100,Ada again\n+14155550103,Cy\n")
    report = second.json()
    assert (report["imported"], report["duplicates"], report["total_rows"]) == (1, 1, 2)
    assert report["duplicate_rows"] == [{"line": 2, "reason": "already in this contact list", "value": "+14155550100"}]
    contacts = contacts_in(tenant_a, spring_leads)
    assert len(contacts) == 3 and contacts["+14155550100"].name == "Ada"


def test_a_column_named_like_a_platform_parameter_is_kept_under_another_name(tenant_a, spring_leads):
    report = upload(tenant_a.api_key, spring_leads.pk, b"phone,name,campaign\n+14155550100,Ada,spring-2024\n").json()
    assert report["imported"] == 1
    assert report["warnings"] == ["column “campaign” is kept as “campaign (column 3)”: the platform sets a parameter "
                                  "named campaign on every call itself, which would replace the contact's value"]
    assert contacts_in(tenant_a, spring_leads)["+14155550100"].variables == {"campaign (column 3)": "spring-2024"}


def test_do_not_call_numbers_are_filtered_out_and_counted(tenant_a, spring_leads):
    key = tenant_a.api_key
    assert api(key).post("/api/v1/do-not-call", {"phone": "+14155550104", "reason": "asked"}).status_code == 201
    response = upload(key, spring_leads.pk, b"phone,name\n+14155550100,Ada\n(415) 555-0104,Blocked\n")
    report = response.json()
    assert (report["imported"], report["do_not_call"]) == (1, 1)
    assert set(contacts_in(tenant_a, spring_leads)) == {"+14155550100"}


def test_utf8_with_bom_and_non_ascii_names(tenant_a, spring_leads):
    content = "\ufeffPhone,Name,City\n+14155550100,Zoë Ümlaut,Zürich\n".encode()
    report = upload(tenant_a.api_key, spring_leads.pk, content).json()
    assert report["imported"] == 1
    contact = contacts_in(tenant_a, spring_leads)["+14155550100"]
    assert contact.name == "Zoë Ümlaut" and contact.variables == {"City": "Zürich"}


def test_default_region_of_the_upload_overrides_the_lists(tenant_a, spring_leads):
    report = upload(tenant_a.api_key, spring_leads.pk, b"phone\n020 7946 0000\n", default_region="GB").json()
    assert report["imported"] == 1, report
    assert contacts_in(tenant_a, spring_leads)["+442079460000"].time_zone == "Europe/London"


def test_a_file_not_in_utf8_is_refused_and_nothing_is_imported(tenant_a, spring_leads):
    latin1 = "phone,name\n+14155550100,Ada\n+14155550101,José Müller\n".encode("latin-1")
    response = upload(tenant_a.api_key, spring_leads.pk, latin1)
    assert response.status_code == 400
    assert "not UTF-8" in response.json()["file"][0]
    assert contacts_in(tenant_a, spring_leads) == {}


def test_a_file_over_the_size_limit_is_refused_and_nothing_is_imported(tenant_a, spring_leads):
    content = b"phone,name\n" + b"".join(f"+1415555{i:04d},Lead {i}\n".encode() for i in range(100, 200))
    with override_settings(CONTACT_UPLOAD_MAX_BYTES=1000):
        response = upload(tenant_a.api_key, spring_leads.pk, content)
    assert response.status_code == 400
    assert "too big" in response.json()["file"][0] and "1000 bytes" in response.json()["file"][0]
    assert contacts_in(tenant_a, spring_leads) == {}


def test_a_file_without_a_phone_column_is_refused(tenant_a, spring_leads):
    response = upload(tenant_a.api_key, spring_leads.pk, b"name,email\nAda,ada@example.com\n")
    assert response.status_code == 400
    assert "no phone column" in response.json()["file"][0]
    assert contacts_in(tenant_a, spring_leads) == {}


def test_an_empty_file_is_refused(tenant_a, spring_leads):
    response = upload(tenant_a.api_key, spring_leads.pk, b"")
    assert response.status_code == 400


def test_the_error_list_is_capped_with_a_count_of_the_rest(tenant_a, spring_leads):
    rows = "".join(f"bad-{i},x\n" for i in range(imports.MAX_REPORTED_ERRORS + 25))
    with schema_context(tenant_a.tenant):
        report = services.contact_list_import(spring_leads, io.BytesIO(f"phone,name\n{rows}".encode()))
    assert report.error_count == imports.MAX_REPORTED_ERRORS + 25
    assert len(report.errors) == imports.MAX_REPORTED_ERRORS
    assert report.as_dict()["errors_not_shown"] == 25
    assert report.errors[0]["line"] == 2


def test_a_large_import_spans_several_batches(tenant_a, spring_leads):
    count = imports.BATCH_SIZE * 2 + 17
    rows = "".join(f"+1212555{i % 10000:04d},Lead {i}\n" if i < 10000 else f"+1646555{i % 10000:04d},Lead {i}\n"
                   for i in range(count))
    with schema_context(tenant_a.tenant):
        DoNotCall.objects.create(phone="+12125550007")
        report = services.contact_list_import(spring_leads, io.BytesIO(f"phone,name\n{rows}".encode()))
        assert Contact.objects.filter(contact_list=spring_leads).count() == count - 1
    assert (report.imported, report.do_not_call, report.error_count) == (count - 1, 1, 0)


def test_another_tenants_list_cannot_be_uploaded_to(tenant_a, tenant_b, spring_leads):
    response = upload(tenant_b.api_key, spring_leads.pk, b"phone\n+14155550100\n")
    assert response.status_code == 404
    assert contacts_in(tenant_a, spring_leads) == {}
    assert api(tenant_b.api_key).get(f"/api/v1/contact-lists/{spring_leads.pk}/contacts").status_code == 404


def test_contacts_of_a_list_are_paginated(tenant_a, spring_leads):
    upload(tenant_a.api_key, spring_leads.pk, b"phone\n+14155550100\n+14155550101\n+14155550102\n")
    page = api(tenant_a.api_key).get(f"/api/v1/contact-lists/{spring_leads.pk}/contacts?limit=2").json()
    assert page["count"] == 3
    assert [c["phone"] for c in page["results"]] == ["+14155550100", "+14155550101"]
    assert page["next"]
    listed = api(tenant_a.api_key).get(f"/api/v1/contact-lists/{spring_leads.pk}").json()
    assert listed["contact_count"] == 3 and listed["default_region"] == "US"


def test_an_upload_spooled_to_disk_imports_the_same(tenant_a, spring_leads):
    with override_settings(FILE_UPLOAD_MAX_MEMORY_SIZE=10):  # Django keeps it in a temporary file
        response = upload(tenant_a.api_key, spring_leads.pk, b"phone,name\n+14155550100,Ada\nbad,Bob\n")
    assert response.status_code == 201, response.content
    assert (response.json()["imported"], response.json()["errors"][0]["line"]) == (1, 3)
