import signal
import subprocess
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core.redis_client import get_redis
from telephony import balancer


class Command(BaseCommand):
    help = ("Write Kamailio's configuration (kamailio.cfg), dispatcher list (dispatcher.list) and numbers table "
            "(numbers: each number's region's set) for the live gateway pool into --dir; with --watch N, rewrite "
            "the list and table every N s when they changed and tell the running Kamailio (kamcmd "
            "dispatcher.reload, htable.reload).")

    def add_arguments(self, parser):
        parser.add_argument("--dir", required=True, help="folder for kamailio.cfg, dispatcher.list, kamailio.ctl")
        parser.add_argument("--listen", default="0.0.0.0:5060", help="Kamailio's address for carriers, IP:PORT")
        parser.add_argument("--region", default="", help="only this region's gateways (one balancer per region)")
        parser.add_argument("--watch", type=float, default=0, help="keep the list current, every N seconds")
        parser.add_argument("--children", type=int, default=2, help="Kamailio's UDP worker processes")

    def handle(self, *args, dir, listen, region, watch, children, **options):
        folder = Path(dir).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit():
            raise CommandError(f"--listen {listen!r}: expected IP:PORT")
        list_path, ctl_path = folder / "dispatcher.list", folder / "kamailio.ctl"
        (folder / "kamailio.cfg").write_text(
            balancer.kamailio_cfg(host, int(port), list_path, ctl_path, children=children))
        written = self.write_list(list_path, region)
        self.stdout.write(f"wrote {folder / 'kamailio.cfg'}, {list_path} and {folder / balancer.NUMBERS_TABLE}")
        if not watch:
            return
        stopping = []
        signal.signal(signal.SIGTERM, lambda *a: stopping.append(1))
        signal.signal(signal.SIGINT, lambda *a: stopping.append(1))
        while not stopping:
            time.sleep(watch)
            text = self.write_list(list_path, region, written)
            for what, command in (("dispatcher list", "dispatcher.reload"),
                                  ("numbers table", f"htable.reload {balancer.NUMBERS_TABLE}")):
                if text[what] != written[what]:
                    reload = subprocess.run(["kamcmd", "-s", f"unix:{ctl_path}", *command.split()],
                                            capture_output=True, text=True)
                    self.stdout.write(f"{what} changed: reload {'ok' if reload.returncode == 0 else reload.stderr}")
            written = text

    def write_list(self, path: Path, region: str, previous: dict | None = None) -> dict[str, str]:
        """The dispatcher list and the numbers table, each file written when it changed."""
        r = get_redis()
        gateways = balancer.live_gateways(r, region)
        text = {"dispatcher list": balancer.dispatcher_list(gateways),
                "numbers table": balancer.numbers_table(r, gateways)}
        for what, file in (("dispatcher list", path), ("numbers table", path.parent / balancer.NUMBERS_TABLE)):
            if previous is None or text[what] != previous[what]:
                file.with_name(file.name + ".tmp").write_text(text[what])
                file.with_name(file.name + ".tmp").replace(file)
        return text
