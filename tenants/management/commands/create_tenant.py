import json

from django.core.management.base import BaseCommand, CommandError

from tenants.services import TenantError, create_tenant


class Command(BaseCommand):
    help = "Create a tenant with its schema, domain, first admin user and an API key, and print them."

    def add_arguments(self, parser):
        parser.add_argument("slug", help="tenant name, also its schema name (lower-case, e.g. acme)")
        parser.add_argument("--domain", required=True, help="host name of the tenant's pages, e.g. acme.localhost")
        parser.add_argument("--name", help="display name (defaults to the slug)")
        parser.add_argument("--admin-user", default="admin")
        parser.add_argument("--json", action="store_true", help="print one JSON object, for scripts")

    def handle(self, *args, **options):
        try:
            created = create_tenant(
                options["slug"], options["domain"], name=options["name"], admin_user=options["admin_user"]
            )
        except TenantError as exc:
            raise CommandError(str(exc)) from None
        if options["json"]:
            self.stdout.write(json.dumps(created.as_dict()))
            return
        for key, value in created.as_dict().items():
            self.stdout.write(f"{key:15} {value}")
        self.stdout.write("The API key and password are shown only now.")
