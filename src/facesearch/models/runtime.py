"""Where the ONNX models (YuNet, SFace) run on CPU: OpenVINO or onnxruntime, chosen by ``inference.engine``.

The OpenCV zoo files are int8 *block*-quantised (weight-only ``DequantizeLinear`` with per-block scales).
OpenVINO's ONNX reader refuses that form and onnxruntime runs it slowly, so the graph is dequantised once:
onnxruntime's basic optimisation with QDQ fusion disabled constant-folds every ``DequantizeLinear`` into a
plain fp32 ``Conv``/``Gemm`` graph, saved in ``inference.cache_dir`` under the source file's sha256.

OpenVINO then compiles that graph with dynamic input shapes (any batch, any photo size) and, with
``inference.precision: auto``, in bfloat16 where the CPU computes it natively (AMX / AVX512-BF16), fp32
elsewhere. Measured here (README: Performance): SFace 3.5 ms/face (bf16) vs 27 ms with onnxruntime,
cosine >= 0.9995 to the fp32 vectors. Compiled blobs are cached too, so a cold CLI compiles nothing.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from facesearch.errors import ConfigError
from facesearch.settings import InferenceSettings

log = logging.getLogger(__name__)


class GraphRunner(Protocol):
    """One loaded graph: ``run`` takes the single input array and returns the outputs in graph order."""

    description: str

    def run(self, batch: np.ndarray) -> list[np.ndarray]: ...


def cache_dir(settings: InferenceSettings) -> Path:
    if settings.cache_dir is not None:
        return Path(settings.cache_dir)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "facesearch" / "models"


def resolve_engine(settings: InferenceSettings) -> str:
    """``auto`` -> ``openvino`` when it is installed, else ``onnxruntime``; an engine asked for but absent is a ConfigError."""
    import importlib.util

    has_openvino = importlib.util.find_spec("openvino") is not None
    if settings.engine == "auto":
        return "openvino" if has_openvino else "onnxruntime"
    if settings.engine == "openvino" and not has_openvino:
        raise ConfigError("inference.engine: openvino is not installed (pip install openvino), or use inference.engine=onnxruntime")
    return settings.engine


def dequantised_graph(path: Path, sha256: str, dynamic_dims: Sequence[int], settings: InferenceSettings) -> Path:
    """``path`` as a plain fp32 graph (block-quantised weights folded) whose input ``dynamic_dims`` take any size.

    Built once per source digest. The dims are freed before folding, so no shape is folded into a constant.
    """
    target = cache_dir(settings) / f"{path.stem}-{sha256[:16]}-fp32-dyn{''.join(map(str, dynamic_dims))}.onnx"
    if target.is_file():
        return target
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    dequantise_weights(model)
    initializers = {init.name for init in model.graph.initializer}
    consumed = {name for node in model.graph.node for name in node.input}
    for value in [i for i in model.graph.input if i.name in initializers or i.name not in consumed]:
        model.graph.input.remove(value)  # weights listed as graph inputs are not constants: they would not fold
    for value in model.graph.input:
        for dim in dynamic_dims:
            value.type.tensor_type.shape.dim[dim].dim_param = f"d{dim}"
    for value in model.graph.output:  # outputs follow the input (batch, anchors): shapes are inferred
        for dim in value.type.tensor_type.shape.dim:
            dim.dim_param = "n"
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC  # standard ONNX ops only
        options.optimized_model_filepath = tmp
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        os.replace(tmp, target)  # atomic: a concurrent process sees the whole file or none
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    log.info("dequantised %s -> %s", path.name, target)
    return target


def dequantise_weights(model: Any) -> int:
    """Replace every ``DequantizeLinear`` of constant weights by its fp32 result (per-tensor, per-axis or blocked).

    Done in numpy because onnxruntime refuses YuNet's nodes (``block_size`` set on a per-tensor scale) and
    OpenVINO refuses SFace's (blocked scales). Returns the number of nodes replaced.
    """
    from onnx import numpy_helper

    weights = {init.name: init for init in model.graph.initializer}
    replaced = []
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or not all(name in weights for name in node.input if name):
            continue
        attrs = {a.name: a.i for a in node.attribute}
        x = numpy_helper.to_array(weights[node.input[0]]).astype(np.float32)
        scale = numpy_helper.to_array(weights[node.input[1]]).astype(np.float32)
        zero = numpy_helper.to_array(weights[node.input[2]]).astype(np.float32) if len(node.input) > 2 and node.input[2] else np.zeros_like(scale)
        axis, block = attrs.get("axis", 1) % max(x.ndim, 1), attrs.get("block_size", 0)
        if scale.size > 1:
            if block:  # blocked: each scale covers `block` consecutive elements along `axis`
                scale, zero = (np.repeat(v, block, axis=axis).take(range(x.shape[axis]), axis=axis) for v in (scale, zero))
            else:  # per-axis: one scale per slice along `axis`
                shape = [1] * x.ndim
                shape[axis] = -1
                scale, zero = scale.reshape(shape), zero.reshape(shape)
        model.graph.initializer.append(numpy_helper.from_array(((x - zero) * scale).astype(np.float32), node.output[0]))
        replaced.append(node)
    for node in replaced:
        model.graph.node.remove(node)
    return len(replaced)


# OpenVINO's Python binding sets itself up on the first ``Tensor.data`` read of a process (a one-time init that
# needs the GIL). Two threads making that first read at once deadlocked (seen in the test suite: the detect
# stage and the embed thread; one waits for the GIL inside the init, the other holds the GIL waiting for the
# init). The first call of the process, every compile and every new infer request therefore run under a
# Python lock, whose waiters release the GIL.
_OPENVINO_FIRST_CALL = threading.RLock()
_OPENVINO_READY = threading.Event()


def rgb_u8_graph(graph: Path) -> Path:
    """``graph`` (input 1x3xHxW float BGR) as an OpenVINO IR whose input is the photo itself: 1xHxWx3 uint8 RGB.

    OpenVINO's pre-processing converts, reorders the channels and transposes inside the compiled model (fused
    into the first convolution), which costs less than doing it in numpy (~6 ms per 1024-px photo). Saved next
    to ``graph`` once, so the compiled-blob cache applies as for any model file.
    """
    target = graph.with_name(f"{graph.stem}-rgb-u8.xml")
    if target.is_file() and target.with_suffix(".bin").is_file():
        return target
    import openvino as ov
    from openvino.preprocess import ColorFormat, PrePostProcessor

    ppp = PrePostProcessor(ov.Core().read_model(str(graph)))
    ppp.input(0).tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(ColorFormat.RGB)
    ppp.input(0).preprocess().convert_element_type(ov.Type.f32).convert_color(ColorFormat.BGR)
    ppp.input(0).model().set_layout(ov.Layout("NCHW"))
    tmp = target.with_name(f"{target.stem}.{os.getpid()}.tmp.xml")
    ov.save_model(ppp.build(), str(tmp), compress_to_fp16=False)
    os.replace(tmp.with_suffix(".bin"), target.with_suffix(".bin"))  # weights first: an .xml never names a missing .bin
    os.replace(tmp, target)
    return target


def planar_bgr(batch: np.ndarray) -> np.ndarray:
    """NxHxWx3 uint8 RGB -> Nx3xHxW float32 BGR, one plane at a time (half the time of one transposed copy)."""
    out = np.empty((batch.shape[0], 3, *batch.shape[1:3]), dtype=np.float32)
    for channel in range(3):
        out[:, channel] = batch[..., 2 - channel]
    return out


class OpenVinoRunner:
    """A graph compiled by OpenVINO with dynamic input dims; one infer request per calling thread."""

    def __init__(self, graph: Path, settings: InferenceSettings, threads: int) -> None:
        import openvino as ov

        core = ov.Core()
        core.set_property({"CACHE_DIR": str(cache_dir(settings) / "openvino")})
        precision = self._precision(core, settings.precision)
        # explicit streams: concurrent calls (two photos being detected) run side by side, not queued
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": settings.streams, "INFERENCE_PRECISION_HINT": precision}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        config["ENABLE_CPU_PINNING"] = pins_threads(threads)
        self._compiled = core.compile_model(str(graph), "CPU", config)  # from the file: the blob cache applies
        self._local = threading.local()
        self.description = f"OpenVINO {ov.__version__.split('-')[0]} {precision}"

    @staticmethod
    def _precision(core: Any, requested: str) -> str:
        native_bf16 = "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if requested == "bf16" and not native_bf16:
            log.warning("inference.precision=bf16 but this CPU has no native bfloat16; running fp32")
        return "bf16" if requested in ("auto", "bf16") and native_bf16 else "f32"

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        request = getattr(self._local, "request", None)
        if request is None:
            with _OPENVINO_FIRST_CALL:
                request = self._local.request = self._compiled.create_infer_request()
        if not _OPENVINO_READY.is_set():
            with _OPENVINO_FIRST_CALL:  # see _OPENVINO_FIRST_CALL: the process's first call runs alone
                outputs = self._infer(request, batch)
                _OPENVINO_READY.set()
                return outputs
        return self._infer(request, batch)

    def _infer(self, request: Any, batch: np.ndarray) -> list[np.ndarray]:
        request.infer({0: batch})
        return [np.array(request.get_output_tensor(i).data) for i in range(len(self._compiled.outputs))]


def pins_threads(threads: int) -> bool:
    """Whether OpenVINO may pin its inference threads to cores: only when this runner gets every core.

    OpenVINO's default pins each process's streams to the first cores of the machine, without regard to other
    processes: two Dask workers of one inference thread each both ran on CPU 0 (the calling thread is pinned
    during every ``infer``), so 2 workers embedded at 1.1x of 1 on 2 cores.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return not threads or threads >= cores


class OnnxRuntimeRunner:
    """The same dequantised graph in onnxruntime (``Session.run`` is thread-safe)."""

    def __init__(self, graph: Path, settings: InferenceSettings, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self.description = f"onnxruntime {ort.__version__} fp32"

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        return list(self._session.run(None, {self._input: batch}))


class PlanarBgrRunner:
    """A runner of a 1x3xHxW float BGR graph that takes 1xHxWx3 uint8 RGB, converting in numpy (onnxruntime)."""

    def __init__(self, inner: GraphRunner) -> None:
        self._inner = inner
        self.description = inner.description

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        return self._inner.run(planar_bgr(batch))


def load_graph(
    path: Path, sha256: str, dynamic_dims: Sequence[int], settings: InferenceSettings, threads: int = 0, rgb_u8_input: bool = False,
) -> GraphRunner:
    """The model file ``path`` (already sha256-checked) ready to run on the configured engine.

    ``rgb_u8_input``: the graph takes 1x3xHxW float BGR and the runner is given 1xHxWx3 uint8 RGB (a photo).
    """
    graph = dequantised_graph(path, sha256, dynamic_dims, settings)
    engine = resolve_engine(settings)
    if engine == "openvino":
        with _OPENVINO_FIRST_CALL:
            runner: GraphRunner = OpenVinoRunner(rgb_u8_graph(graph) if rgb_u8_input else graph, settings, threads)
    else:
        runner = OnnxRuntimeRunner(graph, settings, threads)
        if rgb_u8_input:
            runner = PlanarBgrRunner(runner)
    log.debug("%s on %s", path.name, runner.description)
    return runner
