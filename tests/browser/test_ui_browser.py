"""The browser UI end to end, in chromium: a business user builds and starts a campaign from a CSV
with bad rows and watches it progress; a platform admin adds a carrier and tests it; members and
other tenants' users are kept out. Screenshots of each main page land in tests/artifacts/ui/."""
from __future__ import annotations

import re

import pytest
from django_tenants.utils import schema_context
from playwright.sync_api import expect

from tests.browser.conftest import ARTIFACTS, SHOP, shot, sign_in

pytestmark = pytest.mark.usefixtures("committed")

CSV = """phone,name,time zone,plan
+14155550101,Ada Lovelace,America/Los_Angeles,gold
+14155550102,Grace Hopper,America/New_York,silver
call me maybe,Bad Row,UTC,gold
+14155550103,Alan Turing,Mars/Olympus_Mons,gold
+14155550104,Edsger Dijkstra,,bronze
+14155550105,Barbara Liskov,Europe/Amsterdam,gold
"""


def test_a_business_user_builds_starts_and_watches_a_campaign(page, ui_server, shop, tmp_path):
    base = f"http://{SHOP}.localhost:{ui_server}"
    sign_in(page, base, "member", "member-pass-1")
    expect(page).to_have_url(f"{base}/campaigns/")
    expect(page.get_by_role("heading", name="Campaigns")).to_be_visible()
    shot(page, "01-campaigns-empty")

    page.get_by_role("link", name="New campaign").first.click()
    page.get_by_label("Campaign name").fill("Browser spring promo")
    csv_file = tmp_path / "contacts.csv"
    csv_file.write_text(CSV)
    page.get_by_label("Contacts (CSV file)").set_input_files(str(csv_file))
    shot(page, "02-wizard-contacts")
    page.get_by_role("button", name="Continue").click()

    expect(page.get_by_role("heading", name="Which column is which?")).to_be_visible()
    expect(page.get_by_role("table")).to_contain_text("call me maybe")
    expect(page.get_by_label("Phone number column")).to_have_value("0")  # guessed from the header
    expect(page.get_by_label("Time zone column")).to_have_value("2")
    shot(page, "03-wizard-columns")
    page.get_by_role("button", name="Import contacts").click()

    expect(page.get_by_role("heading", name="Import report")).to_be_visible()
    expect(page.locator("#imported")).to_have_text("4")
    expect(page.locator("#error-count")).to_have_text("2")
    errors = page.locator("#import-errors")
    expect(errors).to_contain_text("call me maybe")
    expect(errors).to_contain_text("unknown time zone")
    expect(errors.locator("tbody tr")).to_have_count(2)
    shot(page, "04-wizard-import-report")
    page.get_by_role("link", name=re.compile(r"Continue with 4 contacts")).click()

    expect(page.get_by_role("heading", name="How to call")).to_be_visible()
    page.get_by_label("+14155550150").check()
    page.get_by_label("Calls per second").fill("5")
    page.get_by_label("Calling window opens").fill("00:00")
    page.get_by_label("Calling window closes").fill("23:59")
    for day in ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"):
        page.get_by_label(day, exact=True).check()
    page.get_by_label("Failed: attempts").fill("1")
    shot(page, "05-wizard-calling")
    page.get_by_role("button", name="Continue").click()

    expect(page.get_by_role("heading", name="Your AI agent")).to_be_visible()
    page.get_by_label("AI endpoint URL").fill("ftp://wrong.example.com")
    page.get_by_label("Custom parameters").fill("voice=alloy\nlanguage=en")
    page.get_by_role("button", name="Save and continue").click()
    expect(page.locator(".field.invalid")).to_contain_text("Must start with wss://")
    expect(page.get_by_label("Custom parameters")).to_have_value("voice=alloy\nlanguage=en")  # kept
    shot(page, "06-wizard-agent-error")
    page.get_by_label("AI endpoint URL").fill("wss://agent.example.com/media")
    page.get_by_role("button", name="Save and continue").click()

    expect(page.get_by_role("heading", name=re.compile("Test call"))).to_be_visible()
    page.get_by_label("Call this number").fill("+14155550123")
    page.get_by_role("button", name="Place test call").click()
    expect(page.locator("[data-field=status]")).to_have_text("failed")  # no carrier is reachable here
    expect(page.locator("[data-field=reason]")).to_have_text("no_carrier_available")
    shot(page, "07-wizard-test-call")
    page.get_by_role("link", name="Continue to review").click()

    expect(page.locator("#review-contacts")).to_have_text("4")
    shot(page, "08-wizard-review")
    page.get_by_role("button", name="Start campaign now").click()

    expect(page.locator("#campaign-state")).to_have_text("Running")
    expect(page.locator("#kpi-total")).to_have_text("4")
    expect(page.locator("#kpi-remaining")).to_have_text("4")
    campaign_url = page.url

    # Calls end (the dialer's part is played here: no gateway runs in this test) and the page follows.
    from campaigns.models import Campaign, CampaignContact
    from campaigns.services import campaign_contacts_claim, record_attempt_outcome

    with schema_context(SHOP):
        campaign = Campaign.objects.get(name="Browser spring promo")
        ids = list(CampaignContact.objects.filter(campaign=campaign).order_by("pk").values_list("pk", flat=True))
        campaign_contacts_claim(ids[:3])
        record_attempt_outcome(ids[0], "answered", "CAbrowser1")
        record_attempt_outcome(ids[1], "failed", "CAbrowser2")
    expect(page.locator("#kpi-answered")).to_have_text("1")
    expect(page.locator("#kpi-failed")).to_have_text("1")
    expect(page.locator("#kpi-dialed")).to_have_text("3")
    expect(page.locator("#kpi-remaining")).to_have_text("2")
    shot(page, "09-campaign-running")

    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#campaign-state")).to_have_text("Paused")
    expect(page.get_by_role("button", name="Resume")).to_be_visible()
    with page.expect_download() as download:
        page.get_by_role("link", name="Export results (CSV)").click()
    exported = download.value.path().read_text(encoding="utf-8-sig")
    assert "Ada Lovelace" in exported and "done" in exported
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#campaign-state")).to_have_text("Running")

    with schema_context(SHOP):
        record_attempt_outcome(ids[2], "answered", "CAbrowser3")
        campaign_contacts_claim(ids[3:])
        record_attempt_outcome(ids[3], "answered", "CAbrowser4")
    expect(page.locator("#campaign-state")).to_have_text("Completed")
    expect(page.locator("#kpi-remaining")).to_have_text("0")
    expect(page.get_by_role("button", name="Pause")).to_be_hidden()
    page.set_viewport_size({"width": 820, "height": 1180})  # tablet
    shot(page, "10-campaign-completed-tablet")
    assert page.url == campaign_url


def test_a_tenant_admin_manages_settings(page, ui_server, shop):
    base = f"http://{SHOP}.localhost:{ui_server}"
    sign_in(page, base, shop.admin_user, shop.admin_password)
    page.goto(f"{base}/settings/api-keys/")
    page.get_by_label("Key name").fill("CRM")
    page.get_by_role("button", name="Create key").click()
    key = page.locator("#new-api-key").inner_text()
    assert key.startswith(shop.account_sid + ".")
    shot(page, "11-settings-api-keys")
    page.reload()
    expect(page.locator("#new-api-key")).to_have_count(0)  # shown once

    page.goto(f"{base}/settings/do-not-call/")
    page.get_by_label("Phone number").fill("12345")
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.locator(".field.invalid")).to_contain_text("must start with '+'")
    page.get_by_label("Phone number").fill("+14155550177")
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.locator("#dnc-list")).to_contain_text("+14155550177")
    shot(page, "12-settings-do-not-call")

    page.goto(f"{base}/settings/webhooks/")
    page.get_by_text("Show the secret").click()
    expect(page.locator("#webhook-secret")).to_be_visible()
    shot(page, "13-settings-webhooks")
    page.goto(f"{base}/settings/users/")
    shot(page, "14-settings-users")


def test_a_platform_admin_adds_a_carrier_and_tests_it(page, ui_server, platform_admin, sipp_options_port, shop):
    base = f"http://localhost:{ui_server}"
    sign_in(page, base, *platform_admin)
    expect(page).to_have_url(f"{base}/platform/carriers/")
    page.get_by_role("link", name="Add carrier").click()
    page.get_by_label("Name", exact=True).fill("ui-trunk")
    page.get_by_label("Host", exact=True).fill("not a host!")
    page.get_by_label("Digest password").fill("s3cret-pass")
    page.get_by_role("button", name="Add carrier").click()
    expect(page.locator(".field.invalid")).to_contain_text("host")
    expect(page.get_by_label("Name", exact=True)).to_have_value("ui-trunk")  # kept
    expect(page.get_by_label("Digest password")).to_have_value("")  # write-only: never sent back
    page.get_by_label("Host", exact=True).fill("127.0.0.1")
    page.get_by_label("Port", exact=True).fill(str(sipp_options_port or 9))
    page.get_by_label("Digest password").fill("s3cret-pass")
    page.get_by_label("Priority").fill("10")
    page.get_by_label("Region").fill("us")
    page.get_by_role("button", name="Add carrier").click()
    expect(page.locator(".messages")).to_contain_text("Carrier “ui-trunk”")
    assert "s3cret-pass" not in page.content()
    page.get_by_role("button", name="Test with OPTIONS").click()
    if sipp_options_port:
        expect(page.locator(".messages")).to_contain_text("answered 200")
        expect(page.locator("#carrier-health")).to_have_text("up")
    else:
        expect(page.locator(".messages")).to_contain_text("OPTIONS to ui-trunk")
    shot(page, "15-platform-carrier")
    page.get_by_role("link", name="Back to carriers").click()
    row = page.locator("#carrier-list tr", has_text="ui-trunk")
    expect(row).to_contain_text("127.0.0.1")
    expect(row).to_contain_text("up" if sipp_options_port else "")
    shot(page, "16-platform-carriers")

    page.goto(f"{base}/platform/numbers/new/")
    page.get_by_label("Number (E.164)").fill("+14155550160")
    page.get_by_label("Assigned to").select_option(label="UI Shop (uishop)")
    page.get_by_label("Inbound AI endpoint").fill("wss://agent.example.com/inbound")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#number-list")).to_contain_text("+14155550160")
    shot(page, "17-platform-numbers")
    page.goto(f"{base}/platform/tenants/")
    shot(page, "18-platform-tenants")
    page.goto(f"{base}/platform/gateways/")
    shot(page, "19-platform-gateways")

    from telephony.models import Carrier, Number

    Carrier.objects.filter(name="ui-trunk").delete()
    Number.objects.filter(e164="+14155550160").delete()


def test_a_member_cannot_reach_admin_pages(page, ui_server, shop):
    base = f"http://{SHOP}.localhost:{ui_server}"
    sign_in(page, base, "member", "member-pass-1")
    expect(page.get_by_role("link", name="API keys")).to_have_count(0)
    for path in ("/settings/api-keys/", "/settings/users/", "/settings/do-not-call/", "/settings/webhooks/"):
        response = page.goto(base + path)
        assert response.status == 403, path
        expect(page.get_by_role("heading", name="Admins only")).to_be_visible()
    shot(page, "20-member-refused")
    response = page.goto(base + "/platform/carriers/")
    assert response.status == 404
    page.goto(f"http://localhost:{ui_server}/platform/carriers/")  # the public host: a stranger there
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next="))


def test_a_user_of_one_tenant_cannot_open_another_tenants_pages(page, ui_server, shop, tenant_b):
    sign_in(page, f"http://{SHOP}.localhost:{ui_server}", shop.admin_user, shop.admin_password)
    other = f"http://{tenant_b.domain}:{ui_server}"
    page.goto(other + "/campaigns/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/campaigns/"))
    page.get_by_label("Username").fill(shop.admin_user)
    page.get_by_label("Password").fill(shop.admin_password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".form-errors")).to_contain_text("Please enter a correct username and password")
    shot(page, "21-other-tenant-refused")
    assert (ARTIFACTS / "21-other-tenant-refused.png").exists()
