"""pjsip's own errors in the platform's words. pjsip reports a failure as a status number and its own
text ("Too many objects (PJ_ETOOMANY) [status=70010]"); the gateway's logs and call records say what
it means for the platform instead ("gateway worker full (4 calls)"). pjsip's log lines come through
PjsipLog into Python logging (the platform's key=value lines), never pjsip's console format."""
from __future__ import annotations

import logging
import re

import pjsua2 as pj

# Compiled into the pjsua2 wheel: PJSUA_MAX_CALLS=4 (measured: the 5th makeCall raises PJ_ETOOMANY)
# and PJSUA_MAX_ACC=8 (the 9th Account.create aborts the process on an assertion).
PJSUA_MAX_CALLS = 4
PJSUA_MAX_ACC = 8

MESSAGES = {
    70010: f"gateway worker full ({PJSUA_MAX_CALLS} calls)",  # PJ_ETOOMANY
    70007: "gateway worker out of memory",  # PJ_ENOMEM
    70011: "gateway worker busy",  # PJ_EBUSY
    171001: "gateway worker busy",  # PJSIP_EBUSY
    70018: "carrier host name does not resolve",  # PJ_ERESOLVE
    171039: "invalid SIP address (check the carrier's URI)",  # PJSIP_EINVALIDURI
    171060: "unsupported SIP transport (the gateway speaks UDP)",  # PJSIP_EUNSUPTRANSPORT
    171064: "no SIP transport for this address",  # PJSIP_ETPNOTSUITABLE
    171065: "no SIP transport for this address",  # PJSIP_ETPNOTAVAIL
    120111: "carrier refused the connection",  # ECONNREFUSED
    120110: "carrier did not answer the connection (timed out)",  # ETIMEDOUT
    120101: "carrier network unreachable",  # ENETUNREACH
    120113: "carrier host unreachable",  # EHOSTUNREACH
    171140: "call already ended",  # PJSIP_ESESSIONTERMINATED
    171141: "call not in a state for this",  # PJSIP_ESESSIONSTATE
    420006: "no audio device (the gateway needs none for a bridged call)",  # PJMEDIA_EAUD_NODEFDEV
}
_STATUS = re.compile(r"[\[(]status=(\d+)[\])]")
# pjsip's levels: 1 error, 2 warning, 3 info, 4 and more debug.
_LEVELS = {0: logging.ERROR, 1: logging.ERROR, 2: logging.WARNING, 3: logging.INFO}


def message(status: int) -> str:
    return MESSAGES.get(status, f"SIP stack error {status}")


def describe(exc: pj.Error) -> str:
    """A pjsua2 exception in the platform's words (for logs and the call's reason)."""
    return message(exc.status)


class PjsipLog(pj.LogWriter):
    """pjsip's log lines as records of the ``gateway.pjsip`` logger. A line about a failure becomes the
    platform's message, with pjsip's status number and source file; known failures are WARNING (the
    worker handles them and says what it does), unknown ones stay ERROR. Keep a reference to it as
    long as the endpoint lives (pjsip holds only a pointer)."""

    log = logging.getLogger("gateway.pjsip")

    def write(self, entry) -> None:
        sender, _, text = entry.msg.strip().partition(" ")
        text = text.strip().lstrip(".")
        if found := _STATUS.search(text):
            status = int(found.group(1))
            level = logging.WARNING if status in MESSAGES else logging.ERROR
            self.log.log(level, "%s (pjsip status %d in %s)", message(status), status, sender)
        else:
            self.log.log(_LEVELS.get(entry.level, logging.DEBUG), "%s: %s", sender, text)
