#!/usr/bin/env python
"""Django's command-line utility, with the embedded PostgreSQL and Redis started when not configured."""
import os
import sys
from pathlib import Path

# The project package lives in platform/voiceplatform. platform/ is a source folder, not a package, so
# `import platform` still finds the standard library module.
sys.path.insert(0, str(Path(__file__).resolve().parent / "platform"))


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voiceplatform.settings")
    from voiceplatform.startup import prepare_process

    prepare_process()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
