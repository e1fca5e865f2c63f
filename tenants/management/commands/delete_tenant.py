from django.core.management.base import BaseCommand, CommandError

from tenants.services import TenantError, drop_tenant


class Command(BaseCommand):
    help = "Delete a tenant: its domains, its schema and every record in it. Cannot be undone."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    def handle(self, *args, **options):
        slug = options["slug"]
        if not options["yes"] and input(f"Type the tenant name to delete {slug!r} and all its data: ") != slug:
            raise CommandError("not confirmed; nothing deleted")
        try:
            drop_tenant(slug)
        except TenantError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"tenant {slug} deleted")
