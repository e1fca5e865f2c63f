"""Playout buffer: frame exactness, mark timing, clear, overflow, padding rule."""
import os
import threading

from media.playout import PlayoutBuffer


def drain(buf, limit=10_000):
    """Pull until idle with no marks; return (frames, [(pull_index, marks)])."""
    frames, marks = [], []
    for i in range(limit):
        f, m = buf.pull_frame()
        if m:
            marks.append((i, m))
        if f is None and not m:
            break
        if f is not None:
            assert len(f) == 160
            frames.append(f)
    return frames, marks


def test_frames_are_exact_whatever_the_payload_sizes():
    data = os.urandom(1 + 7 + 159 + 161 + 1000 + 160 + 2)
    buf = PlayoutBuffer()
    off = 0
    for size in (1, 7, 159, 161, 1000, 160, 2):
        buf.append(data[off:off + size])
        off += size
    frames, _ = drain(buf)
    whole = len(data) // 160
    assert len(frames) == whole
    assert b"".join(frames) == data[:whole * 160]
    # the partial tail stays queued (more audio may come) ...
    assert buf.queued_bytes == len(data) % 160
    assert buf.pull_frame() == (None, [])
    # ... and is completed by more audio
    buf.append(b"\x01" * (160 - len(data) % 160))
    f, m = buf.pull_frame()
    assert f == data[whole * 160:] + b"\x01" * (160 - len(data) % 160) and m == []


def test_mark_pads_partial_frame_with_silence_and_is_reported_with_its_last_frame():
    buf = PlayoutBuffer()
    audio = os.urandom(1000)  # 6 frames + 40 bytes
    buf.append(audio)
    buf.mark("end")
    for i in range(6):
        f, m = buf.pull_frame()
        assert f == audio[i * 160:(i + 1) * 160] and m == []
    f, m = buf.pull_frame()
    assert f == audio[960:] + b"\xff" * 120
    assert m == ["end"]
    assert buf.pull_frame() == (None, [])
    assert buf.stats.pad_bytes == 120


def test_marks_only_after_preceding_audio_played():
    buf = PlayoutBuffer()
    buf.append(b"\x01" * 320)
    buf.mark("a")
    buf.append(b"\x02" * 160)
    buf.mark("b")
    buf.mark("c")  # same position as b: reported together, in order
    buf.append(b"\x03" * 160)
    assert buf.pending_marks == ["a", "b", "c"]
    assert buf.pull_frame() == (b"\x01" * 160, [])
    assert buf.pull_frame() == (b"\x01" * 160, ["a"])
    assert buf.pull_frame() == (b"\x02" * 160, ["b", "c"])
    assert buf.pull_frame() == (b"\x03" * 160, [])
    assert buf.pull_frame() == (None, [])
    assert buf.stats.marks_reported == 3


def test_mark_on_empty_buffer_reported_at_next_pull():
    buf = PlayoutBuffer()
    buf.mark("x")
    buf.mark("y")
    assert buf.pull_frame() == (None, ["x", "y"])
    assert buf.pull_frame() == (None, [])


def test_mark_not_reported_while_partial_audio_before_it_is_unplayed():
    buf = PlayoutBuffer()
    buf.append(b"\x05" * 100)
    assert buf.pull_frame() == (None, [])  # partial: waits for more
    buf.mark("m")  # now padded
    assert buf.pull_frame() == (b"\x05" * 100 + b"\xff" * 60, ["m"])


def test_clear_returns_pending_marks_in_order_and_empties_at_once():
    buf = PlayoutBuffer()
    buf.append(b"\x01" * 160)
    buf.mark("first")
    buf.append(b"\x02" * 1600)
    buf.mark("second")
    buf.append(b"\x03" * 800)
    buf.mark("third")
    buf.mark("fourth")
    assert buf.pull_frame() == (b"\x01" * 160, ["first"])
    assert buf.pull_frame() == (b"\x02" * 160, [])
    assert buf.clear() == ["second", "third", "fourth"]
    assert buf.queued_bytes == 0
    assert buf.pending_marks == []
    assert buf.pull_frame() == (None, [])
    assert buf.stats.cleared_bytes == 1440 + 800
    # usable again, positions restart cleanly
    buf.append(b"\x04" * 200)
    buf.mark("after")
    assert buf.pull_frame() == (b"\x04" * 160, [])
    assert buf.pull_frame() == (b"\x04" * 40 + b"\xff" * 120, ["after"])
    assert buf.clear() == []


def test_overflow_drops_newest_and_is_counted():
    buf = PlayoutBuffer(max_seconds=1.0)  # 8000 bytes of mu-law
    assert buf.max_bytes == 8000
    data = os.urandom(10_000)
    assert buf.append(data) == 2000
    assert buf.append(b"\x00" * 160) == 160  # still full
    buf.mark("m")  # marks are never dropped
    assert buf.stats.overflow_bytes == 2160
    assert buf.stats.overflow_events == 2
    frames, marks = drain(buf)
    assert b"".join(frames) == data[:8000]  # the oldest audio is kept intact, in order
    assert marks == [(49, ["m"])]
    # room again after playing
    assert buf.append(b"\x07" * 160) == 0


def test_end_pads_trailing_partial_frame():
    buf = PlayoutBuffer()
    buf.append(b"\x09" * 170)
    buf.end()
    assert buf.pull_frame() == (b"\x09" * 160, [])
    assert buf.pull_frame() == (b"\x09" * 10 + b"\xff" * 150, [])
    assert buf.pull_frame() == (None, [])


def test_l16_frames_and_silence():
    buf = PlayoutBuffer(frame_bytes=640, silence=0x00, bytes_per_second=32000)
    buf.append(b"\x11" * 700)
    buf.mark("m")
    f1, m1 = buf.pull_frame()
    f2, m2 = buf.pull_frame()
    assert (len(f1), m1) == (640, [])
    assert f2 == b"\x11" * 60 + b"\x00" * 580 and m2 == ["m"]


def test_concurrent_pull_and_append_keeps_byte_order():
    buf = PlayoutBuffer()
    data = os.urandom(160 * 2000)
    got = []
    done = threading.Event()

    def puller():
        while not done.is_set() or buf.queued_bytes >= 160:
            f, _ = buf.pull_frame()
            if f is not None:
                got.append(f)

    t = threading.Thread(target=puller)
    t.start()
    for i in range(0, len(data), 333):
        buf.append(data[i:i + 333])
    done.set()
    t.join()
    assert b"".join(got) == data[:len(b"".join(got))]
    assert len(got) == 2000
