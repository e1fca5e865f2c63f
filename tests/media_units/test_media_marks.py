"""The marks a call's record keeps (media/marks.py through StreamSession): each mark's name, when the agent
sent it and when it came back, in order; a `clear` brings the pending ones back as cleared; a mark the call
ended before never played; a chatty agent's marks past the first 200 (or past 32 KB of them) are counted,
not kept, so the report still fits the media host's one link packet."""
import base64
import json

from media import host_link
from media.marks import MARKS_BYTES, MARKS_KEPT
from media.stream_session import StreamSession

FRAME = bytes(range(160))


def agent_says(session: StreamSession, frames: int, mark: str) -> None:
    payload = base64.b64encode(FRAME * frames).decode()
    session.feed_text(json.dumps({"event": "media", "media": {"payload": payload}}))
    session.feed_text(json.dumps({"event": "mark", "mark": {"name": mark}}))


def test_marks_are_kept_in_order_with_how_they_came_back():
    session = StreamSession("AC" + "1" * 32, "CA" + "2" * 32)
    agent_says(session, 2, "hello")
    agent_says(session, 1, "hello")  # names may repeat
    agent_says(session, 1, "question")
    agent_says(session, 1, "x" * 100)
    for _ in range(3):  # the caller hears both hellos
        session.pull_outbound()
    session.feed_text(json.dumps({"event": "clear"}))  # the caller spoke over the question
    agent_says(session, 1, "goodbye")  # the call ends before it plays

    hello, hello_again, question, long_name, goodbye = session.marks.report()
    assert [m["name"] for m in (hello, hello_again, question, goodbye)] == ["hello", "hello", "question", "goodbye"]
    assert long_name["name"] == "x" * 64
    assert hello["sent_at"] <= hello["played_at"] <= hello_again["played_at"] <= question["played_at"]
    assert "cleared" not in hello and "cleared" not in hello_again
    assert question["cleared"] and long_name["cleared"]
    assert goodbye["played_at"] is None


def test_a_chatty_agent_keeps_only_the_first_marks():
    session = StreamSession("AC" + "1" * 32, "CA" + "2" * 32)
    for n in range(MARKS_KEPT + 50):
        agent_says(session, 1, f"m{n}")
        session.pull_outbound()

    marks = session.marks.report()
    assert session.marks.total == MARKS_KEPT + 50 and len(marks) == MARKS_KEPT
    assert marks[-1]["name"] == f"m{MARKS_KEPT - 1}" and all(m["played_at"] is not None for m in marks)


def test_long_escaped_names_stay_within_the_link_packet():
    session = StreamSession("AC" + "1" * 32, "CA" + "2" * 32)
    for n in range(MARKS_KEPT):
        agent_says(session, 1, f"{n}" + "\U0001F600" * 70)  # each character 12 bytes of JSON
        session.pull_outbound()

    marks = session.marks.report()
    assert 0 < len(marks) < MARKS_KEPT and marks[-1]["name"].startswith(f"{len(marks) - 1}")
    assert len(host_link.encode({"op": "report", "report": {"marks": marks}})) <= MARKS_BYTES < host_link.MAX_PACKET
