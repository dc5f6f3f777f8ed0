"""Camera → frames → aiortc tracks, with IR night processing (OpenCV).

The media package knows no broker and no call: it turns a :class:`~.source.FrameSource`
(synthetic pattern, V4L2 camera or Raspberry Pi camera) into frames on the event loop through
one :class:`~.capture.Capture` thread per device, and into WebRTC video through
:class:`~.track.CameraTrack`. Frames stay in memory; nothing is ever written to disk.
"""
