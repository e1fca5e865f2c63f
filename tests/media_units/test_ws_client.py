"""The gateway's own WebSocket client (media/ws_client.py) against the `websockets` package's server:
the parts of RFC 6455 an agent's server may use on us - refusals, fragments, pings, close codes,
oversized messages."""
import asyncio

import pytest
from websockets.asyncio.server import serve
from websockets.datastructures import Headers
from websockets.http11 import Response

from media import ws_client
from media.stream_session import AGENT_CLOSED, CONNECT_FAILED, StreamSession, run_outbound

ACC = "AC" + "1" * 32
CALL = "CA" + "2" * 32


def run(coro):
    async def guarded():
        async with asyncio.timeout(30):  # a hang guard only
            return await coro
    return asyncio.run(guarded())


async def server(handler, **options):
    srv = await serve(handler, "127.0.0.1", 0, **options)
    return srv, f"ws://127.0.0.1:{srv.sockets[0].getsockname()[1]}/agent?call=1"


def test_an_http_refusal_is_a_handshake_error_naming_the_status():
    def refuse(connection, request):
        return Response(403, "Forbidden", Headers(), b"no\n")

    async def main():
        srv, url = await server(lambda ws: ws.wait_closed(), process_request=refuse)
        with pytest.raises(ws_client.HandshakeError, match="HTTP 403"):
            await ws_client.connect(url)
        session = StreamSession(ACC, CALL)
        assert await run_outbound(url, session, connect_timeout=5) == CONNECT_FAILED
        assert "403" in session.end_detail
        srv.close()

    run(main())


def test_messages_fragmented_or_whole_arrive_whole_and_our_frames_reach_the_server():
    received = []

    async def agent(ws):
        await ws.send("whole")
        await ws.send(["frag", "ment", "ed"])  # one text message in three frames
        await ws.send(b"\x00\x01")
        received.append(await ws.recv())
        received.append(await ws.recv())

    async def main():
        srv, url = await server(agent)
        sock = await ws_client.connect(url)
        assert await sock.recv() == "whole"
        got = []
        sock.set_handlers(lambda data, is_text: got.append((data, is_text)))
        await sock.send("héllo")
        await sock.send("x" * 70000)  # 64-bit length header
        await asyncio.wait_for(sock.closed, 5)
        assert got == [("fragmented", True), (b"\x00\x01", False)]
        assert received == ["héllo", "x" * 70000]
        srv.close()

    run(main())


def test_server_pings_are_answered_so_the_connection_stays_up():
    async def agent(ws):
        await asyncio.sleep(0.5)  # the server pings every 0.1 s and drops us without pongs
        await ws.send("still here")
        await ws.wait_closed()

    async def main():
        srv, url = await server(agent, ping_interval=0.1, ping_timeout=0.2)
        sock = await ws_client.connect(url)
        assert await sock.recv() == "still here"
        await sock.close(1000)
        assert sock.closed.result()[0] == 1000
        srv.close()

    run(main())


def test_the_agents_close_code_and_reason_reach_the_call_record_detail():
    async def agent(ws):
        await ws.recv()  # connected
        await ws.close(4000, "conversation over")

    async def main():
        srv, url = await server(agent)
        session = StreamSession(ACC, CALL)
        assert await run_outbound(url, session, connect_timeout=5) == AGENT_CLOSED
        assert session.end_detail == "close code 4000 conversation over"
        srv.close()

    run(main())


def test_a_message_over_the_size_limit_closes_with_1009():
    async def agent(ws):
        await ws.send("y" * 5000)
        await ws.wait_closed()

    async def main():
        srv, url = await server(agent)
        sock = await ws_client.connect(url, max_size=4096)
        sock.set_handlers(lambda data, is_text: None)
        code, why = await asyncio.wait_for(sock.closed, 5)
        assert code == 1009 and "limit" in why
        srv.close()

    run(main())
