"""The browser UI end to end, in chromium: a business user builds a campaign from a CSV with bad rows,
starts it, and watches it dialed for real (gateway pool → SIPp) on its page and on the live tenant
dashboard until it completes; a platform admin adds a carrier and tests it; members and other
tenants' users are kept out. Screenshots of each main page land in tests/artifacts/ui/."""
from __future__ import annotations

import datetime as dt
import re
import zoneinfo

import pytest
from django_tenants.utils import schema_context
from playwright.sync_api import expect

from tests.browser.conftest import ARTIFACTS, BROWSER_ZONE, SHOP, shot, sign_in

pytestmark = pytest.mark.usefixtures("committed")

GOOD_ROWS = 14
CSV = "phone,name,time zone,plan\n" + "".join(
    f"+1415555{110 + i:04d},Contact {i + 1},{zone},gold\n"
    for i, zone in enumerate(["America/Los_Angeles", "America/New_York", "", "Europe/Amsterdam"] * 3 + ["UTC", ""])
) + """call me maybe,Bad Row,UTC,gold
+1415555,Too Short,UTC,silver
+14155550199,Alan Turing,Mars/Olympus_Mons,gold
(415) 555-0110,Contact 1 again,,gold
"""
DASHBOARD_FIGURES = """() => ({
    attempted: document.getElementById("kpi-attempted").textContent,
    chartNow: document.getElementById("chart-now").data.map(t => t.y.reduce((a, b) => a + (b || 0), 0)),
    outcomes: document.getElementById("chart-outcomes").data.map(t => [t.name, t.y.reduce((a, b) => a + (b || 0), 0)]),
})"""
PLOTLY_TRACES = "() => Object.keys(Plotly.PlotSchema.get().traces).sort()"
PLOTLY_LOADED = """() => performance.getEntriesByType("resource").filter(r => r.name.includes("plotly"))
    .map(r => [r.name, r.encodedBodySize])"""
WATCH_ACTIVE = """() => {  // every value the "calls now" figure takes while the socket pushes updates
    const el = document.getElementById("kpi-active");
    window.activeSeen = [el.textContent];
    new MutationObserver(() => window.activeSeen.push(el.textContent))
        .observe(el, {childList: true, characterData: true, subtree: true});
}"""


def test_a_business_user_builds_starts_and_watches_a_campaign_dialed_for_real(page, ui_server, shop, voice_stack,
                                                                              tmp_path):
    base = f"http://{SHOP}.localhost:{ui_server}"
    sign_in(page, base, "member", "member-pass-1")
    expect(page).to_have_url(f"{base}/campaigns/")
    expect(page.get_by_role("heading", name="Campaigns")).to_be_visible()
    shot(page, "01-campaigns-empty")

    # 1. Contacts: a CSV with 14 good rows, 3 bad ones and a duplicate.
    page.get_by_role("link", name="New campaign").first.click()
    page.get_by_label("Campaign name").fill("Browser spring promo")
    csv_file = tmp_path / "contacts.csv"
    csv_file.write_text(CSV)
    page.get_by_label("Contacts (CSV file)").set_input_files(str(csv_file))
    shot(page, "02-wizard-contacts")
    page.get_by_role("button", name="Continue").click()

    expect(page.get_by_role("heading", name="Which column is which?")).to_be_visible()
    expect(page.get_by_role("table")).to_contain_text("Contact 1")
    expect(page.get_by_label("Phone number column")).to_have_value("0")  # guessed from the header
    expect(page.get_by_label("Time zone column")).to_have_value("2")
    shot(page, "03-wizard-columns")
    page.get_by_role("button", name="Import contacts").click()

    # 2. The line-by-line report: bad rows listed with their line and why, good rows kept.
    expect(page.get_by_role("heading", name="Import report")).to_be_visible()
    expect(page.locator("#imported")).to_have_text(str(GOOD_ROWS))
    expect(page.locator("#error-count")).to_have_text("3")
    errors = page.locator("#import-errors")
    expect(errors.locator("tbody tr")).to_have_count(3)
    expect(errors.locator("tbody tr").nth(0)).to_contain_text("call me maybe")
    expect(errors.locator("tbody tr").nth(0)).to_contain_text(str(GOOD_ROWS + 2))  # its line in the file
    expect(errors.locator("tbody tr").nth(1)).to_contain_text("+1415555")
    expect(errors.locator("tbody tr").nth(2)).to_contain_text("unknown time zone")
    expect(page.locator("#duplicate-count")).to_have_text("1")  # and the duplicate is shown, not only counted
    expect(page.locator("#import-duplicates tbody tr")).to_have_text(
        [re.compile(rf"{GOOD_ROWS + 5}\s*\(415\) 555-0110\s*same number as line 2")])
    shot(page, "04-wizard-import-report")
    page.get_by_role("link", name=re.compile(rf"Continue with {GOOD_ROWS} contacts")).click()

    # 3. How to call: a caller ID, 4 calls per second, at most 6 at once, all day every day.
    expect(page.get_by_role("heading", name="How to call")).to_be_visible()
    page.get_by_label("+14155550150").check()
    page.get_by_label("Calls per second").fill("4")
    page.get_by_label("Max concurrent calls").fill("6")
    page.get_by_label("Calling window opens").fill("00:00")
    page.get_by_label("Calling window closes").fill("23:59")
    for day in ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"):
        page.get_by_label(day, exact=True).check()
    page.get_by_label("Failed: attempts").fill("1")
    shot(page, "05-wizard-calling")
    page.get_by_role("button", name="Continue").click()

    # 4. The AI agent: a wrong URL is refused next to the field, what was typed stays.
    expect(page.get_by_role("heading", name="Your AI agent")).to_be_visible()
    page.get_by_label("AI endpoint URL").fill("ftp://wrong.example.com")
    page.get_by_label("Custom parameters").fill("voice=alloy\nlanguage=en")
    page.get_by_role("button", name="Save and continue").click()
    expect(page.locator(".field.invalid")).to_contain_text("Must start with wss://")
    expect(page.get_by_label("Custom parameters")).to_have_value("voice=alloy\nlanguage=en")  # kept
    shot(page, "06-wizard-agent-error")
    page.get_by_label("AI endpoint URL").fill(voice_stack.agent_url)
    page.get_by_role("button", name="Save and continue").click()

    # 5. A test call to one number goes through the gateway to SIPp and is answered.
    expect(page.get_by_role("heading", name=re.compile("Test call"))).to_be_visible()
    page.get_by_label("Call this number").fill("+14155550123")
    page.get_by_role("button", name="Place test call").click()
    try:
        expect(page.locator("[data-field=status]")).to_have_text("completed", timeout=30000)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{voice_stack.tails()}") from None
    expect(page.locator("[data-field=outcome]")).to_have_text("answered")
    shot(page, "07-wizard-test-call")
    page.get_by_role("link", name="Continue to review").click()

    expect(page.locator("#review-contacts")).to_have_text(str(GOOD_ROWS))
    shot(page, "08-wizard-review")

    # 6. Start later: the time is typed in the browser's own time zone, named next to it; a time that
    #    has passed is refused next to the field, and what was typed stays.
    start_on, zone = page.get_by_label("Start on (date and time)"), page.get_by_label("Time zone of that time")
    expect(zone).to_have_value(BROWSER_ZONE)
    start_on.fill("2020-03-01T09:30")
    page.get_by_role("button", name="Schedule start").click()
    expect(page.locator("#id_start_at_error")).to_contain_text("This time has passed")
    expect(start_on).to_have_value("2020-03-01T09:30")
    expect(zone).to_have_value(BROWSER_ZONE)
    shot(page, "09-wizard-schedule-error")
    tomorrow = dt.datetime.now(zoneinfo.ZoneInfo(BROWSER_ZONE)) + dt.timedelta(days=1)
    start_on.fill(tomorrow.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Schedule start").click()
    expect(page.locator("#campaign-state")).to_have_text("Scheduled")
    expect(page.locator("#campaign-schedule")).to_contain_text(f"({BROWSER_ZONE})")
    expect(page.locator("#kpi-dialed")).to_have_text("0")
    shot(page, "10-campaign-scheduled")

    # The tenant dashboard, in a second tab, live over its WebSocket before the campaign starts.
    dashboard = page.context.new_page()
    dashboard_errors: list[str] = []
    dashboard.on("pageerror", lambda exc: dashboard_errors.append(str(exc)))
    dashboard.goto(f"{base}/dashboard/")
    expect(dashboard.locator("#socket-status")).to_contain_text("live")
    for chart in ("now", "outcomes", "asr", "setup", "mos", "ai"):
        expect(dashboard.locator(f"#chart-{chart} .main-svg").first).to_be_visible()  # plotly drew it
    # with plotly.js's basic bundle (a static file, 1.2 MB), not the full one (4.8 MB)
    assert dashboard.evaluate(PLOTLY_TRACES) == ["bar", "pie", "scatter"]
    [(bundle, size)] = dashboard.evaluate(PLOTLY_LOADED)
    assert "/static/vendor/plotly-basic-" in bundle and 0 < size < 1_500_000, (bundle, size)
    expect(dashboard.locator("#kpi-attempted")).not_to_have_text("–")
    before = dashboard.evaluate(DASHBOARD_FIGURES)  # the test call is in already
    attempted_before, answered_before = int(before["attempted"]), dict(before["outcomes"]).get("answered", 0)
    dashboard.evaluate(WATCH_ACTIVE)

    # 7. No need to wait for tomorrow: start it now. The dialer calls everyone through the gateway
    #    pool to SIPp; the campaign page follows.
    page.get_by_role("button", name="Start", exact=True).click()
    expect(page.locator("#campaign-state")).to_have_text(re.compile("Running|Completed"))
    expect(page.locator("#campaign-schedule")).to_be_hidden()
    expect(page.locator("#kpi-total")).to_have_text(str(GOOD_ROWS))
    campaign_url = page.url
    expect(page.locator("#kpi-dialed")).not_to_have_text("0")
    shot(page, "11-campaign-running")

    # The dashboard's figures and graphs move while the campaign runs, without a reload.
    expect(dashboard.locator("#kpi-attempted")).not_to_have_text(str(attempted_before), timeout=20000)
    during = dashboard.evaluate(DASHBOARD_FIGURES)
    assert during["chartNow"] != before["chartNow"], (before, during)  # the per-second bars moved
    shot(dashboard, "12-dashboard-live")

    try:
        expect(page.locator("#campaign-state")).to_have_text("Completed", timeout=60000)
        expect(page.locator("#kpi-answered")).to_have_text(str(GOOD_ROWS))
        expect(page.locator("#kpi-dialed")).to_have_text(str(GOOD_ROWS))
        expect(page.locator("#kpi-failed")).to_have_text("0")
        expect(page.locator("#kpi-remaining")).to_have_text("0")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{voice_stack.tails()}") from None
    expect(page.get_by_role("button", name="Pause")).to_be_hidden()
    shot(page, "13-campaign-completed")

    expect(dashboard.locator("#kpi-attempted")).to_have_text(str(attempted_before + GOOD_ROWS))
    after = dashboard.evaluate(DASHBOARD_FIGURES)
    assert dict(after["outcomes"]).get("answered") == answered_before + GOOD_ROWS, (before, after)
    assert any(value not in ("0", "–") for value in dashboard.evaluate("() => window.activeSeen")), \
        "the calls-now figure never showed a call in flight"
    expect(dashboard.locator("#latest-calls tr")).not_to_have_count(0)
    shot(dashboard, "14-dashboard-after")
    assert not dashboard_errors, dashboard_errors
    dashboard.close()

    # Every contact was called exactly once, and answered.
    from campaigns.models import Campaign
    from telephony.calls.models import Call

    with schema_context(SHOP):
        campaign = Campaign.objects.get(name="Browser spring promo")
        calls = list(Call.objects.filter(campaign_id=campaign.pk))
    assert len(calls) == GOOD_ROWS and len({c.to_number for c in calls}) == GOOD_ROWS
    assert {c.outcome for c in calls} == {"answered"}

    with page.expect_download() as download:
        page.get_by_role("link", name="Export results (CSV)").click()
    exported = download.value.path().read_text(encoding="utf-8-sig").splitlines()
    assert len(exported) == GOOD_ROWS + 1 and all(",done," in row for row in exported[1:])
    page.set_viewport_size({"width": 820, "height": 1180})  # tablet
    shot(page, "15-campaign-completed-tablet")
    assert page.url == campaign_url


def test_a_scheduled_campaign_starts_by_itself_when_its_time_comes(page, ui_server, shop, voice_stack):
    """Beat's periodic dialer task starts a scheduled campaign at its start time, with nobody on the page."""
    from campaigns.models import Campaign, Contact, ContactList
    from campaigns.services import campaign_create

    start_at = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    with schema_context(SHOP):
        contacts = ContactList.objects.create(name="Two early birds")
        Contact.objects.bulk_create(Contact(contact_list=contacts, phone=phone, time_zone="UTC")
                                    for phone in ("+14155550140", "+14155550141"))
        campaign = campaign_create(
            name="Early birds", contact_list=contacts, caller_ids=["+14155550150"], stream_url=voice_stack.agent_url,
            cps=5, window_start=dt.time(0), window_end=dt.time(23, 59), weekdays=list(range(7)), start_at=start_at)
    assert campaign.state == Campaign.State.SCHEDULED

    base = f"http://{SHOP}.localhost:{ui_server}"
    sign_in(page, base, "member", "member-pass-1")
    page.goto(f"{base}/campaigns/")
    row = page.locator("tr", has_text="Early birds")
    expect(row).to_contain_text("Scheduled")
    expect(row).to_contain_text(f"({BROWSER_ZONE})")  # its start time, in the browser's zone
    page.get_by_role("link", name="Early birds").click()
    expect(page.locator("#campaign-state")).to_have_text("Scheduled")
    local = start_at.astimezone(zoneinfo.ZoneInfo(BROWSER_ZONE))
    expect(page.locator("#campaign-schedule")).to_contain_text(f"{local.hour % 12 or 12}:{local:%M}")

    with schema_context(SHOP):  # the clock reaches its start time
        Campaign.objects.filter(pk=campaign.pk).update(start_at=dt.datetime.now(dt.UTC))
    try:
        expect(page.locator("#campaign-state")).to_have_text(re.compile("Running|Completed"), timeout=15000)
        expect(page.locator("#campaign-schedule")).to_be_hidden()
        expect(page.locator("#campaign-state")).to_have_text("Completed", timeout=30000)
        expect(page.locator("#kpi-answered")).to_have_text("2")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{voice_stack.tails()}") from None
    expect(page.get_by_role("link", name="Edit settings")).to_be_hidden()  # a started campaign keeps its settings
    shot(page, "16-scheduled-campaign-started-by-itself")


def test_a_tenant_admin_manages_settings(page, ui_server, shop):
    base = f"http://{SHOP}.localhost:{ui_server}"
    sign_in(page, base, shop.admin_user, shop.admin_password)
    page.goto(f"{base}/settings/api-keys/")
    page.get_by_label("Key name").fill("CRM")
    page.get_by_role("button", name="Create key").click()
    key = page.locator("#new-api-key").inner_text()
    assert key.startswith(shop.account_sid + ".")
    shot(page, "21-settings-api-keys")
    page.reload()
    expect(page.locator("#new-api-key")).to_have_count(0)  # shown once

    page.goto(f"{base}/settings/do-not-call/")
    page.get_by_label("Phone number").fill("12345")
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.locator(".field.invalid")).to_contain_text("must start with '+'")
    page.get_by_label("Phone number").fill("+14155550177")
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.locator("#dnc-list")).to_contain_text("+14155550177")
    shot(page, "22-settings-do-not-call")

    page.goto(f"{base}/settings/webhooks/")
    page.get_by_label("Status callback URL").fill("http://10.0.0.9/hooks")
    page.get_by_role("button", name="Save URL").click()
    expect(page.locator("#webhook-url .field.invalid")).to_be_visible()  # a private address is refused
    page.get_by_label("Status callback URL").fill("http://127.0.0.1:9/uishop-calls")
    page.get_by_role("button", name="Save URL").click()
    expect(page.locator(".messages")).to_contain_text("now report to http://127.0.0.1:9/uishop-calls")
    expect(page.get_by_label("Status callback URL")).to_have_value("http://127.0.0.1:9/uishop-calls")
    page.get_by_label("Status callback URL").fill("")  # the other tests' calls send no callback
    page.get_by_role("button", name="Save URL").click()
    expect(page.locator(".messages")).to_contain_text("no longer send any")
    page.get_by_text("Show the auth token").click()
    expect(page.locator("#auth-token")).to_be_visible()
    shot(page, "23-settings-webhooks")
    page.goto(f"{base}/settings/users/")
    shot(page, "24-settings-users")


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
    shot(page, "25-platform-carrier")
    page.get_by_role("link", name="Back to carriers").click()
    row = page.locator("#carrier-list tr", has_text="ui-trunk")
    expect(row).to_contain_text("127.0.0.1")
    expect(row).to_contain_text("up" if sipp_options_port else "")
    shot(page, "26-platform-carriers")

    page.goto(f"{base}/platform/numbers/new/")
    page.get_by_label("Number (E.164)").fill("+14155550160")
    page.get_by_label("Assigned to").select_option(label="UI Shop (uishop)")
    page.get_by_label("Inbound AI endpoint").fill("wss://agent.example.com/inbound")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#number-list")).to_contain_text("+14155550160")
    shot(page, "27-platform-numbers")
    page.goto(f"{base}/platform/tenants/")
    shot(page, "28-platform-tenants")
    page.goto(f"{base}/platform/gateways/")
    shot(page, "29-platform-gateways")

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
    shot(page, "30-member-refused")
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
    shot(page, "31-other-tenant-refused")
    assert (ARTIFACTS / "31-other-tenant-refused.png").exists()
