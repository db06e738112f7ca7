"""Bad input never kills vpr_node.

Each bad frame is counted and skipped, and a good frame after all of them gets the right match.
"""

from __future__ import annotations

import cv2
from image_samples import big_png, encode, place_image
import numpy as np
from ros_harness import compressed_msg, image_msg, local_xy
from sensor_msgs.msg import Image

from aesvc_vpr.ros.health import FAILING_FRAMES

BURST = 500


def bad_frames() -> list[tuple[str, object]]:
    """List (what, message) for every item of the bad-input list."""
    good = place_image(2)
    unknown = image_msg(good, 1, encoding='rgb9')
    mismatch = image_msg(good, 2)
    mismatch.step += 30                          # rows claim more bytes than the data holds
    zero = Image(height=0, width=0, encoding='rgb8', step=0)
    jpeg = encode('.jpg', np.ascontiguousarray(good[:, :, ::-1]))
    corrupt = compressed_msg(jpeg[:len(jpeg) // 2], 4, 'jpeg')
    nan = Image(height=4, width=4, encoding='32FC1', step=16,
                data=np.full((4, 4), np.nan, np.float32).tobytes())
    huge_raw = Image(height=10_000, width=10_000, encoding='mono8', step=10_000, data=b'\0' * 64)
    huge_png = compressed_msg(big_png(10_000), 7, 'png')
    return [('unknown encoding', unknown), ('step/data mismatch', mismatch),
            ('zero size', zero), ('corrupt JPEG', corrupt), ('NaN 32FC1', nan),
            ('10,000 x 10,000 raw', huge_raw), ('10,000 x 10,000 PNG', huge_png)]


def send_bad_frames(h, compressed: bool) -> int:
    """Publish the bad frames of one transport, each counted before the next; return how many."""
    frames = [(what, msg) for what, msg in bad_frames() if hasattr(msg, 'format') == compressed]
    for count, (what, msg) in enumerate(frames, start=1):
        h.camera_pub.publish(msg)
        h.wait_for(lambda: h.node.stats.bad_frames == count, f'bad frame counted: {what}')
        assert h.node.state == 'active'
    # every frame fails: ERROR from FAILING_FRAMES in a row on, WARN before; never OK
    status = h.wait_for(lambda: (st := h.diagnostic_status()) and
                        {kv.key: kv.value for kv in st.values}.get('bad_frames') ==
                        str(len(frames)) and st, 'diagnostics')
    if len(frames) >= FAILING_FRAMES:
        assert status.level == b'\x02' and 'every frame fails' in status.message, status.message
    else:
        assert status.level == b'\x01' and 'frame(s) failed' in status.message, status.message
    assert h.node.stats.processed == 0
    assert not h.received['candidates']
    return len(frames)


def test_bad_compressed_frames_are_counted_and_a_good_one_then_matches(compressed_harness,
                                                                       small_map) -> None:
    h = compressed_harness
    assert send_bad_frames(h, compressed=True) == 2
    ok, data = cv2.imencode('.png', np.ascontiguousarray(place_image(4)[:, :, ::-1]))
    h.camera_pub.publish(compressed_msg(data.tobytes(), 5000, 'png'))
    candidates, _ = h.wait_result(5000)
    assert (candidates.poses[0].position.x, candidates.poses[0].position.y) == \
        tuple(local_xy(small_map)[4])
    # a result ends the failure report
    h.wait_for(lambda: (st := h.diagnostic_status()) and 'failed' not in st.message,
               'diagnostics after the good frame')


def test_bad_frames_are_counted_and_skipped_then_a_good_frame_matches(harness, small_map):
    h = harness
    assert send_bad_frames(h, compressed=False) == 5

    # a burst: the node keeps only the newest frame, so nothing queues up
    for i in range(BURST):
        h.image_pub.publish(image_msg(place_image(i % 12), 1000 + i))
    stats = h.node.stats
    h.wait_for(lambda: stats.received and
               stats.processed + stats.dropped + stats.bad_frames == stats.received,
               'burst settled')
    assert stats.processed >= 1 and stats.received <= BURST

    h.image_pub.publish(image_msg(place_image(4), 5000))
    candidates, scores = h.wait_result(5000)
    assert (candidates.poses[0].position.x, candidates.poses[0].position.y) == \
        tuple(local_xy(small_map)[4])
    assert scores.data[0] > 0.99
    assert h.node.stats.bad_frames == 5
