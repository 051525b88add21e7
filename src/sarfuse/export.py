"""``sarfuse export``: a pretrained network, its normalisation and a linear probe as one ONNX
graph, so that a trained model runs without sarfuse (onnxruntime, QGIS's Deepness plugin).

The graph takes the raw bands a probe's features were made from, stacked in one input
``(B, C, H, W)``: S1 VV and VH in dB, then the S2 bands as reflectance x 10000, in the order
its metadata ``input_bands`` lists. Inside it does what mapping does tile by tile: clip and
standardise the bands, run the network, append the raw bands and spectral indices the probe
was trained with, apply the probe and a softmax. The output is ``(B, K, H, W)`` class
probabilities. What mapping does around the graph stays outside: reading and resampling the
files, converting linear S1 to dB, and marking nodata pixels (the graph treats every pixel as
valid).

Exportable: linear probes on ``pretrained``, ``pretrained+raw`` or ``raw`` features. A random
forest has no tensor form here, a ``random`` network is a baseline without weights worth
keeping, and a ``supervised`` probe does not keep its network.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from sarfuse import __version__
from sarfuse.contract import DataContract
from sarfuse.data.bands import S1_BANDS, canonical_bands
from sarfuse.data.indices import compute_indices, required_bands
from sarfuse.data.schemes import ClassScheme
from sarfuse.errors import SarfuseError
from sarfuse.io_utils import atomic_path
from sarfuse.mapping.config import EXPORT_TILING, MapConfig

EXPORTABLE = ("pretrained", "pretrained+raw", "raw")
OPSET = 17
INPUT, OUTPUT = "bands", "probabilities"
PIXEL_CM = 1000  # every band is read on the 10 m grid (Deepness wants centimetres per pixel)


@dataclass(frozen=True)
class InputLayout:
    """The graph's input channels, and which of them feed the network and the indices."""

    s1: tuple[str, ...]  # S1 bands of the input (dB), first
    s2: tuple[str, ...]  # S2 bands of the input (reflectance x 10000), after S1
    s1_net: tuple[str, ...]  # the contract's bands, normalised for the network / raw features
    s2_net: tuple[str, ...]
    indices: tuple[str, ...]

    @property
    def names(self) -> list[str]:
        return [f"S1 {b}" for b in self.s1] + [f"S2 {b}" for b in self.s2]


def input_layout(contract: DataContract, indices: tuple[str, ...]) -> InputLayout:
    """The bands a probe's features read, as :class:`sarfuse.data.dataset.PatchDataset` reads
    them: the contract's bands, plus the S2 bands only its indices need."""
    s1_net = canonical_bands(contract.s1_bands, "s1")
    s2_net = canonical_bands(contract.s2_bands, "s2")
    needed = required_bands(indices)
    s1 = S1_BANDS if s1_net or needed["s1"] else ()  # S1 is always read as VV, VH
    s2 = s2_net + tuple(b for b in needed["s2"] if b not in s2_net)
    return InputLayout(s1, s2, s1_net, s2_net, tuple(indices))


class ProbeGraph(nn.Module):
    """Raw bands -> normalisation -> network features (+ raw bands, indices) -> probabilities."""

    def __init__(
        self, layout: InputLayout, contract: DataContract, kind: str, net, probe: nn.Module
    ) -> None:
        super().__init__()
        self.layout, self.kind, self.probe = layout, kind, probe
        self.norm = contract.normaliser()
        self.net = None if net is None else net.model.eval()
        self.probe_kind = None if net is None else net.probe
        self.s1_pick = [layout.s1.index(b) for b in layout.s1_net]

    def forward(self, bands: Tensor) -> Tensor:
        lay = self.layout
        s1, s2 = bands[:, : len(lay.s1)], bands[:, len(lay.s1) :]
        s1n = self.norm.apply_s1(s1[:, self.s1_pick], lay.s1_net) if lay.s1_net else None
        s2n = self.norm.apply_s2(s2[:, : len(lay.s2_net)], lay.s2_net) if lay.s2_net else None
        parts = []
        if self.net is not None:
            parts.append(self.net.probe(s1n, s2n, self.probe_kind))
        if self.kind in ("raw", "pretrained+raw"):
            parts += [x for x in (s1n, s2n) if x is not None]
        if lay.indices:  # computed on (C, B, H, W): bands first, as for one image
            first = {
                k: x.transpose(0, 1) if n else None
                for k, x, n in (("s1", s1, lay.s1), ("s2", s2, lay.s2))
            }
            planes = compute_indices(lay.indices, **first, s2_bands=lay.s2)
            parts.append(planes.transpose(0, 1))
        return self.probe(torch.cat(parts, 1)).softmax(1)


def _check_exportable(probe_path: Path, clf, meta: dict) -> None:
    from sarfuse.mapping.probe import CLASSIFIERS

    if not CLASSIFIERS[clf.kind].onnx:
        onnx = "|".join(n for n, k in CLASSIFIERS.items() if k.onnx)
        raise SarfuseError(
            probe_path,
            f"a {CLASSIFIERS[clf.kind].title} cannot be exported to ONNX (it has no tensor form "
            f"here); train the probe with --classifier {onnx}",
        )
    if meta["features"] not in EXPORTABLE:
        raise SarfuseError(
            probe_path,
            f"a probe on {meta['features']} features cannot be exported (exportable: "
            f"{', '.join(EXPORTABLE)})",
        )


def build_graph(probe_dir: str | Path, checkpoint: str | Path | None = None):
    """The probe's graph, its input layout, class scheme and probe metadata."""
    from sarfuse.mapping.probe import load_classifier
    from sarfuse.mapping.scene import load_mapper

    probe_path = Path(probe_dir)
    probe_path = probe_path / "probe.pt" if probe_path.is_dir() else probe_path
    clf, meta = load_classifier(probe_path)  # checked before the network is loaded
    _check_exportable(probe_path, clf, meta)
    clf, meta, maker = load_mapper(probe_path, checkpoint, "cpu")
    contract = DataContract.from_dict(meta["contract"])
    layout = input_layout(contract, tuple(meta["indices"]))
    graph = ProbeGraph(layout, contract, meta["features"], maker.net, clf.eval())
    return graph.eval(), layout, ClassScheme.from_json(meta["scheme"]), meta


def deepness_metadata(
    layout: InputLayout, scheme: ClassScheme, meta: dict, tiling: MapConfig
) -> dict[str, str]:
    """ONNX metadata: the keys QGIS's Deepness plugin reads (JSON values), and the inputs."""
    values = {
        "model_type": "Segmentor",
        "class_names": {str(i): n for i, n in enumerate(scheme.names)},
        "resolution": PIXEL_CM,
        "tile_size": tiling.tile,
        "tiles_overlap": round(100 * tiling.overlap / tiling.tile),  # Deepness: % of the tile
        "input_bands": layout.names,
        "input_units": {"S1": "dB", "S2": "reflectance x 10000"},
        "class_colors": {str(i): c.color for i, c in enumerate(scheme.classes)},
        "features": meta["features"],
        "indices": list(layout.indices),
        "producer": f"sarfuse {__version__}",
    }
    return {k: json.dumps(v) for k, v in values.items()}


def export_onnx(
    probe_dir: str | Path,
    out: str | Path,
    checkpoint: str | Path | None = None,
    tiling: MapConfig = EXPORT_TILING,
) -> dict:
    """Write the probe (and its network) as ``out`` (ONNX, a fixed ``tiling.tile`` square
    input; ``tiling.overlap`` is the overlap suggested to the software running it)."""
    try:
        import onnx
    except ImportError:
        raise SarfuseError(None, "export needs onnx: pip install 'sarfuse[export]'") from None
    graph, layout, scheme, meta = build_graph(probe_dir, checkpoint)
    example = torch.zeros(1, len(layout.names), tiling.tile, tiling.tile)
    with atomic_path(out, suffix=".onnx") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notes
        torch.onnx.export(
            graph, (example,), str(tmp), dynamo=False, opset_version=OPSET,
            input_names=[INPUT], output_names=[OUTPUT],
            dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
        )  # fmt: skip
        model = onnx.load(str(tmp))
        for key, value in deepness_metadata(layout, scheme, meta, tiling).items():
            model.metadata_props.add(key=key, value=value)
        model.doc_string = (
            f"sarfuse: {meta['features']} features + linear probe. Input '{INPUT}': raw bands "
            f"in the order of metadata input_bands; output '{OUTPUT}': (B, K, H, W)."
        )
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))
    return {"path": str(out), "inputs": layout.names, "classes": list(scheme.names)}
