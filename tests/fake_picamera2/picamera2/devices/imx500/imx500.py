"""Stand-in for picamera2 0.3.36's ``picamera2/devices/imx500/imx500.py``.

The same imports at import time (so a missing dependency fails here as there), and the same
``IMX500`` and ``NetworkIntrinsics`` behaviour for what edge_runtime touches, copied where the
real code decides it: how ``IMX500()`` finds the upload's progress (and prints to stdout when it
cannot), ``show_network_fw_progress_bar()``'s non-daemon child, ``get_fw_upload_progress()``,
``get_outputs()`` (both metadata keys needed), ``get_kpi_info()`` (an int32 pair, picamera2
043d20e) and the intrinsics read from the ``.rpk``. The driver and the camera are the package's
(``picamera2/__init__.py``).
"""

import ctypes
import json
import multiprocessing
import os
import struct
import time
from enum import IntEnum

import Imath  # noqa: F401  (the real module imports it, for tensor injection, since 0.3.32)
import jsonschema
import numpy as np
import OpenEXR  # noqa: F401
from libarchive.read import fd_reader
from libcamera import Rectangle, Size  # noqa: F401
from tqdm import tqdm
from videodev2 import VIDIOC_S_CTRL, v4l2_control  # noqa: F401

from picamera2 import FW_NETWORK_STAGE, NETWORKS, Picamera2, _record, driver_progress

NETWORK_NAME_LEN = 64
MAX_NUM_TENSORS = 16
MAX_NUM_DIMENSIONS = 16

FW_LOADER_STAGE = 0
FW_MAIN_STAGE = 1


class OutputTensorInfo(ctypes.LittleEndianStructure):
    _fields_ = [
        ('tensor_data_num', ctypes.c_uint32),
        ('num_dimensions', ctypes.c_uint32),
        ('size', ctypes.c_uint16 * MAX_NUM_DIMENSIONS),
    ]


class CnnOutputTensorInfoExported(ctypes.LittleEndianStructure):
    _fields_ = [
        ('network_name', ctypes.c_char * NETWORK_NAME_LEN),
        ('num_tensors', ctypes.c_uint32),
        ('info', OutputTensorInfo * MAX_NUM_TENSORS),
        ('frameCount', ctypes.c_uint8),
    ]


class NetworkIntrinsics:
    """What a network says about itself (``network_intrinsics`` in its ``.rpk``)."""

    SCHEMA = {
        "type": "object",
        "properties": {
            "task": {"type": "string", "enum": ["classification", "object detection",
                                                "pose estimation", "segmentation"]},
            "inference_rate": {"type": "number", "minimum": 0},
            "cpu": {"type": "object", "properties": {
                "bbox_normalization": {"type": "boolean"},
                "bbox_order": {"type": "string", "enum": ["xy", "yx"]},
                "softmax": {"type": "boolean"},
                "post_processing": {"type": "string"}}},
            "classes": {"type": "object", "properties": {
                "labels": {"type": "array", "items": {"type": "string"}},
                "ignore_undefined": {"type": "boolean"}}},
        },
    }

    def __init__(self, val=None):
        if val is not None:
            jsonschema.validate(val, self.SCHEMA)
        self.intrinsics: dict | None = val

    def _get(self, key, default=None):
        return self.intrinsics.get(key, default) if self.intrinsics else default

    @property
    def task(self) -> str | None:
        return self._get('task')

    @property
    def inference_rate(self) -> float | None:
        return self._get('inference_rate')

    @property
    def softmax(self) -> bool | None:
        """The network's output is logits: softmax is to be applied on the CPU (the
        classification demo does ``if intrinsics.softmax: np_output = softmax(np_output)``)."""
        return self._get('cpu', {}).get('softmax')

    @property
    def labels(self) -> list | None:
        return self._get('classes', {}).get('labels')

    def update_with_defaults(self):
        self.intrinsics = {'inference_rate': 30.0} | (self.intrinsics or {})


class IMX500:
    """The AI Camera's sensor: a network handed to the driver, its answers read from metadata."""

    class FwProgressType(IntEnum):
        NONE = (0,)  # fw update progress bar not available
        DIRECT = (1,)  # can read files in /sys/kernel/debug directly
        INDIRECT = 2  # need to use debug_stream* scripts with passwordless sudo

    def __init__(self, network_file: str, camera_id: str = '', tensor_injection: bool = False):
        self.__cfg = {'network_file': network_file, 'input_tensor': {}}
        sensors = [c for c in Picamera2.global_camera_info() if c.get('Model') == 'imx500']
        if not sensors:
            raise RuntimeError('IMX500: Requested camera dev-node not found')  # the real words
        self.__camera_num = sensors[0].get('Num', 0)
        self.imx500_device_id = '10-001a'  # the I2C bus and address, as /sys names the device
        self.spi_device_id = self.imx500_device_id.replace('001a', '0040')
        self.calls: list[str] = []
        self.frames = 0

        how = os.environ.get("FAKE_PICAMERA2_IMX500_PROGRESS", "none")
        if how == "denied":  # picamera2 before 0.3.35 opened the debugfs files here
            raise PermissionError(13, "Permission denied",
                                  f"/sys/kernel/debug/imx500-fw:{self.imx500_device_id}"
                                  "/fw_progress")
        if how == "direct":
            self.fw_progress = IMX500.FwProgressType.DIRECT
        else:
            self.fw_progress = IMX500.FwProgressType.NONE
            print("IMX500 firmware update progress bar is not available")

        if self.config['network_file'] != '':
            self.__set_network_firmware(os.path.abspath(self.config['network_file']))
            self.__ni_from_network(os.path.abspath(self.config['network_file']))
        _record(self.calls, "imx500:" + os.path.basename(network_file))

    @property
    def camera_num(self):
        return self.__camera_num

    @property
    def config(self) -> dict:
        return self.__cfg

    @property
    def network_file(self) -> str:
        """The network the driver uploads at the camera's start (the stand-in's own)."""
        return os.path.abspath(self.config['network_file'])

    @property
    def network_intrinsics(self) -> NetworkIntrinsics | None:
        return self.__cfg.get('intrinsics', None)

    def _fw_progress_read(self):
        assert self.fw_progress != IMX500.FwProgressType.NONE
        return "{} {} {}\n".format(*driver_progress())  # cat .../imx500-fw:ID/fw_progress

    def _fw_progress_chunk_read(self):
        assert self.fw_progress != IMX500.FwProgressType.NONE
        return "0\n"  # cat .../rp2040-spi:ID/transfer_progress: the block's bytes so far

    def get_fw_upload_progress(self, stage_req) -> tuple:
        """Returns the current progress of the fw upload in the form of (current, total)."""
        progress = self._fw_progress_read().strip().split()
        stage = int(progress[0])
        progress_block = int(progress[1])
        size = int(progress[2])
        progress_chunk = int(self._fw_progress_chunk_read().strip())
        if stage == stage_req:
            return (min(progress_block + progress_chunk, size), size)
        else:
            return (0, 0)

    def show_network_fw_progress_bar(self):
        _record(self.calls, "fw_progress")
        if self.fw_progress == IMX500.FwProgressType.NONE:
            return
        p = multiprocessing.Process(target=self.__do_progress_bar,
                                    args=(FW_NETWORK_STAGE, 'Network Firmware Upload'))
        p.start()
        p.join(0)

    def __do_progress_bar(self, stage_req, title):
        with tqdm(unit='bytes', unit_scale=True, unit_divisor=1024, desc=title, leave=True) as t:
            last_update = 0
            while True:
                current, total = self.get_fw_upload_progress(stage_req)
                if total:
                    t.total = total
                    t.update(current - last_update)
                    last_update = current
                    if current > 0.95 * total:
                        t.update(total - last_update)
                        break
                time.sleep(0.5)

    def set_auto_aspect_ratio(self):
        _record(self.calls, "auto_aspect_ratio")

    def get_outputs(self, metadata: dict, add_batch=False) -> list | None:
        """Get the model outputs."""
        output_tensor = metadata.get('CnnOutputTensor')
        if not output_tensor:
            return None

        np_output = np.fromiter(output_tensor, dtype=np.float32)
        output_shapes = self.get_output_shapes(metadata)
        offset = 0
        outputs = []
        for tensor_shape in output_shapes:
            size = np.prod(tensor_shape)
            reshaped_tensor = np_output[offset: offset + size].reshape(tensor_shape, order='F')
            if add_batch:
                reshaped_tensor = np.expand_dims(reshaped_tensor, 0)
            outputs.append(reshaped_tensor)
            offset += size
        return outputs

    def get_output_shapes(self, metadata: dict) -> list:
        """Get the model output shapes if no output return empty list."""
        output_tensor_info = metadata.get('CnnOutputTensorInfo')
        if not output_tensor_info:
            return []
        output_tensor_info = self.__get_output_tensor_info(output_tensor_info)['info']
        return [o['size'] for o in output_tensor_info]

    def __get_output_tensor_info(self, tensor_info) -> dict:
        if type(tensor_info) not in [bytes, bytearray]:
            tensor_info = bytes(tensor_info)
        size = ctypes.sizeof(CnnOutputTensorInfoExported)
        if len(tensor_info) != size:
            raise ValueError(f'tensor info length {len(tensor_info)} does not match expected '
                             f'size {size}')
        parsed = CnnOutputTensorInfoExported()
        ctypes.memmove(ctypes.addressof(parsed), tensor_info, size)
        return {'network_name': parsed.network_name.decode('utf-8').strip('\x00'),
                'num_tensors': parsed.num_tensors, 'frameCount': parsed.frameCount,
                'info': [{'tensor_data_num': t.tensor_data_num,
                          'num_dimensions': t.num_dimensions,
                          'size': list(t.size)[0: t.num_dimensions]}
                         for t in parsed.info[0: parsed.num_tensors]]}

    @staticmethod
    def get_kpi_info(metadata: dict) -> tuple | None:
        """Return the KPI parameters in the form (dnn_runtime, dsp_runtime) in milliseconds."""
        kpi_info = metadata.get('CnnKpiInfo')
        if kpi_info is None:
            return None
        dnn_runtime, dsp_runtime = kpi_info[0], kpi_info[1]
        return dnn_runtime / 1000, dsp_runtime / 1000

    def answer(self) -> dict:
        """The metadata the sensor adds to a frame once its network runs (what libcamera's
        IPA passes on: the output tensor, its shape, the sensor's times in µs)."""
        scores = json.loads(os.environ.get("FAKE_PICAMERA2_IMX500_SCORES") or "[0.1, 0.7, 0.2]")
        info = CnnOutputTensorInfoExported(network_name=b"stand-in", num_tensors=1)
        info.info[0].tensor_data_num = len(scores)
        info.info[0].num_dimensions = 1
        info.info[0].size[0] = len(scores)
        return {"CnnOutputTensor": [float(s) for s in scores],
                "CnnOutputTensorInfo": list(bytes(info)), "CnnKpiInfo": [4200, 900]}

    def __set_network_firmware(self, network_filename: str):
        """The network handed to the driver, which uploads it when the camera starts."""
        if not os.path.isfile(network_filename):
            raise RuntimeError(f'Firmware file {network_filename} does not exist.')
        NETWORKS[self.camera_num] = self

    def __ni_from_network(self, network_filename: str):
        """Extracts 'network_intrinsics' from CPIO-archive appended to the network rpk."""
        with open(network_filename, 'rb') as fp:
            fw = memoryview(fp.read())

        cpio_offset = 0
        while True:
            (magic, size) = struct.unpack('>4sI', fw[:8]) if len(fw) >= 8 else (b'', 0)
            if not magic == b'9464':
                break
            fw = fw[8:]
            flags = struct.unpack('8B', fw[:8])
            device_lock_flag = flags[6]
            fw = fw[(size + 60 - 8):]
            (magic,) = struct.unpack('4s', fw[:4])
            if not magic == b'3695':
                raise RuntimeError(f'No matching footer found in firmware file {network_filename}')
            fw = fw[4:]
            cpio_offset += size + 64
            if (device_lock_flag & 0x01) == 1:
                fw = fw[32:]
                cpio_offset += 32

        cpio_fd = os.open(network_filename, os.O_RDONLY)
        os.lseek(cpio_fd, cpio_offset, os.SEEK_SET)
        with fd_reader(cpio_fd) as archive:
            for entry in archive:
                if 'network_intrinsics' == str(entry):
                    self.__cfg['intrinsics'] = NetworkIntrinsics(
                        json.loads(b''.join(entry.get_blocks())))
        os.close(cpio_fd)
