"""Run by test_pjsip_errors.py: a pjsua2 endpoint set up as the gateway worker sets up pjsip's log (PjsipLog), filled with as many
calls as the wheel holds toward a far end that never answers, then asked for one more."""
import os
import socket
import sys

import pjsua2 as pj

from core.logs import configure
from telephony.gateway.pj_errors import PJSUA_MAX_CALLS, PjsipLog, describe

configure("INFO", gateway="gw-probe")
far_end = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
far_end.bind(("127.0.0.1", 0))  # takes the INVITEs, never answers: each call holds its slot
ep = pj.Endpoint()
ep.libCreate()
cfg = pj.EpConfig()
cfg.uaConfig.maxCalls = PJSUA_MAX_CALLS
cfg.uaConfig.threadCnt = 0
cfg.uaConfig.mainThreadOnly = True
cfg.logConfig.level = cfg.logConfig.consoleLevel = 1
cfg.logConfig.decor = pj.PJ_LOG_HAS_SENDER
cfg.logConfig.writer = writer = PjsipLog()
ep.libInit(cfg)
transport = pj.TransportConfig()
transport.boundAddress, transport.port = "127.0.0.1", 0
ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, transport)
ep.libStart()
ep.audDevManager().setNullDev()
account_cfg = pj.AccountConfig()
account_cfg.idUri = "sip:gateway@127.0.0.1"
account = pj.Account()
account.create(account_cfg)
calls = []
for n in range(PJSUA_MAX_CALLS + 1):
    call = pj.Call(account)
    try:
        call.makeCall(f"sip:+1415555010{n}@127.0.0.1:{far_end.getsockname()[1]}", pj.CallOpParam(True))
        calls.append(call)
    except pj.Error as exc:
        print(f"REFUSED {len(calls)} {describe(exc)}", flush=True)
        refused = call  # pjsua2 asserts if a never-placed Call is destroyed: kept to the end
ep.hangupAllCalls()
ep.libDestroy()
sys.stderr.flush()
os._exit(0)  # no destructors after libDestroy
