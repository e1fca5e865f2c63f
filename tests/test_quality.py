"""Call-quality formulas against worked examples computed by hand (media/quality.py)."""
import pytest

from media.quality import (
    JitterEstimator,
    LossCounter,
    RtpQuality,
    estimated_mos,
    post_dial_delay_ms,
    r_factor,
    setup_latency_ms,
)


def test_jitter_follows_rfc3550_on_a_known_trace():
    # 8 kHz, one packet per 20 ms = 160 timestamp units; the arrival times wobble.
    #  pkt  rtp ts  arrival   arrival diff (units)  ts diff  D     J = J + (|D| - J)/16
    #  1    0       0 ms      -                     -        -     0
    #  2    160     20 ms     160                   160      0     0
    #  3    320     50 ms     240                   160      80    0 + 80/16 = 5
    #  4    480     60 ms     80                    160      -80   5 + (80 - 5)/16 = 9.6875
    #  5    640     80 ms     160                   160      0     9.6875 - 9.6875/16 = 9.08203125
    # 9.08203125 units / 8 units per ms = 1.13525390625 ms
    trace = [(0, 0.000), (160, 0.020), (320, 0.050), (480, 0.060), (640, 0.080)]
    jitter = JitterEstimator()
    seen = []
    for ts, arrival in trace:
        jitter.add(arrival, ts)
        seen.append(jitter.jitter)
    assert seen == pytest.approx([0, 0, 5, 9.6875, 9.08203125])
    assert jitter.jitter_ms == pytest.approx(1.13525390625)


def test_jitter_is_zero_for_a_perfect_stream_across_the_timestamp_wrap():
    jitter = JitterEstimator()
    start = 2**32 - 320  # the 32-bit RTP timestamp wraps after the second packet
    for i in range(6):
        jitter.add(10.0 + i * 0.020, (start + i * 160) % 2**32)
    assert jitter.jitter_ms == pytest.approx(0, abs=1e-6)


def test_loss_counts_across_the_sequence_wrap():
    # base 65533; 0 is lost; 65534 also arrives late (reordered), after 1.
    # extended max = 1 cycle (65536) + 3 = 65539; expected = 65539 - 65533 + 1 = 7
    # received = 65533, 65535, 1, 65534, 2, 3 = 6  ->  lost 1, loss 1/7
    loss = LossCounter()
    for seq in (65533, 65535, 1, 65534, 2, 3):
        loss.add(seq)
    assert loss.extended_max == 65539
    assert (loss.expected, loss.received, loss.lost) == (7, 6, 1)
    assert loss.loss_fraction == pytest.approx(1 / 7)


def test_no_packets_means_no_loss():
    assert LossCounter().loss_fraction == 0.0


def test_mos_of_a_perfect_line_is_about_4_4():
    # eff = 0 + 0 + 10 = 10 < 160: R = 93.2 - 10/40 = 92.95
    # MOS = 1 + 0.035*92.95 + 7e-6*92.95*32.95*7.05 = 1 + 3.25325 + 0.151144 = 4.404394
    assert r_factor(0, 0, 0) == pytest.approx(92.95)
    assert estimated_mos(0, 0, 0) == pytest.approx(4.404394, abs=1e-5)


def test_mos_of_a_long_jittery_lossy_line():
    # eff = 200 + 2*30 + 10 = 270 >= 160: delay impairment = (270 - 120)/10 = 15
    # R = 93.2 - 15 - 2.5*2 = 73.2
    # MOS = 1 + 0.035*73.2 + 7e-6*73.2*13.2*26.8 = 1 + 2.562 + 0.1812666 = 3.7432666
    assert r_factor(200, 30, 2) == pytest.approx(73.2)
    assert estimated_mos(200, 30, 2) == pytest.approx(3.7432666, abs=1e-5)


def test_mos_stays_on_its_scale():
    # 40 % loss: R = 93.2 - 0.25 - 100 < 0, where the cubic would turn back up: MOS is 1.
    assert estimated_mos(0, 0, 40) == 1.0
    assert 1.0 <= estimated_mos(0, 0, 0) <= 4.5


def test_a_stream_report_combines_jitter_loss_and_mos():
    stream = RtpQuality()
    # 10 packets every 20 ms, perfectly timed, seq 5 missing
    for seq in range(10):
        if seq != 5:
            stream.on_packet(seq, seq * 160, seq * 0.020)
    report = stream.report(latency_ms=100)
    assert report["jitter_ms"] == pytest.approx(0)
    assert (report["lost"], report["expected"]) == (1, 10)
    assert report["loss_percent"] == pytest.approx(10.0)
    # eff = 110: R = 93.2 - 2.75 - 25 = 65.45 -> MOS = 1 + 2.29075 + 7e-6*65.45*5.45*34.55 = 3.3770
    assert report["mos"] == pytest.approx(3.377, abs=1e-3)


def test_setup_latencies_are_milliseconds_from_the_invite():
    assert post_dial_delay_ms(100.0, 100.25) == pytest.approx(250)
    assert setup_latency_ms(100.0, 103.5) == pytest.approx(3500)
    assert post_dial_delay_ms(100.0, None) is None
    assert setup_latency_ms(100.0, None) is None
