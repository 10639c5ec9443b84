"""Where frames come from, one kind of camera a module, each a
:class:`~edge_runtime.sources.frame_source.FrameSource` handing out BGR frames on a thread of its
own:

- :mod:`~edge_runtime.sources.frame_source`: the base class and the hand-over between threads;
- :mod:`~edge_runtime.sources.opencv_source`: USB/V4L2 cameras, video files, stream URLs (OpenCV);
- :mod:`~edge_runtime.sources.picamera`: the Raspberry Pi camera module (Picamera2);
- :mod:`~edge_runtime.sources.ai_camera`: the Raspberry Pi AI Camera, each frame with its
  sensor's answer;
- :mod:`~edge_runtime.sources.camera_spec`: the ``--camera`` grammar (parsing opens nothing);
- :mod:`~edge_runtime.sources.open_source`: opening what a ``--camera`` value names;
- :mod:`~edge_runtime.sources.listing`: ``--list-cameras``.

OpenCV and Picamera2 are imported by the modules that use them, when they are used.
"""
