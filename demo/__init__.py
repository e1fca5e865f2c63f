"""The demo far ends `make run` starts beside the platform: a SIP carrier that answers and plays a
spoken prompt (demo.carrier) and an AI agent on a WebSocket (demo.agent). Not part of the product:
no production app imports this package (tests/test_architecture.py); it reuses media's codec and RTP."""
