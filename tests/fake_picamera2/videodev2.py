"""Stand-in for ``videodev2`` (apt ``python3-videodev2``): the V4L2 control structures and ioctl
numbers picamera2's IMX500 helper imports (``linux/videodev2.h``)."""

import ctypes

VIDIOC_G_CTRL = 0xC008561B
VIDIOC_S_CTRL = 0xC008561C
VIDIOC_G_EXT_CTRLS = 0xC0205647
VIDIOC_S_EXT_CTRLS = 0xC0205648


class v4l2_control(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint32), ("value", ctypes.c_int32)]


class v4l2_ext_control(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint32), ("size", ctypes.c_uint32),
                ("reserved2", ctypes.c_uint32 * 1), ("p_u32", ctypes.POINTER(ctypes.c_uint32))]


class v4l2_ext_controls(ctypes.Structure):
    _fields_ = [("which", ctypes.c_uint32), ("count", ctypes.c_uint32),
                ("error_idx", ctypes.c_uint32), ("request_fd", ctypes.c_int32),
                ("reserved", ctypes.c_uint32 * 1), ("controls", ctypes.POINTER(v4l2_ext_control))]
