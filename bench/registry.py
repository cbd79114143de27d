"""The factories a config may name: the only objects ``_target_`` can build.

A config (a file in ``configs/``, a command-line override, a config someone else
wrote) is untrusted input: it must not be able to import or call arbitrary code,
and a module path prefix (``bench.*``) is no boundary, since functions inside
``bench`` write files too (e.g. ``bench.models.weights._write_atomic``). So every
``_target_`` must be a key of :data:`FACTORIES`, spelled exactly as below; anything
else is refused before any import (:func:`check_target`), with the valid names and
a "did you mean".

Adding a factory (a model, detector, dataset loader or transform): add one line
``"bench.<module>.<Name>": "<kind>",`` to :data:`FACTORIES`. The module is imported
only when a config names it (so torch or onnxruntime load only for the models in
use), and the object it yields must be a class or function defined in ``bench``.
A factory listed here may be built by *any* config: list only constructors whose
arguments cannot make them write outside the cache or execute code.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any, Callable

from bench.errors import ConfigError

__all__ = ["FACTORIES", "KINDS", "check_target", "resolve_factory", "valid_targets"]

#: Kinds of factory, in the order the error message lists them.
KINDS = ("dataset", "model", "aligner", "transform", "scenario")

#: ``_target_`` value -> kind. The single list of what configs may instantiate.
FACTORIES: dict[str, str] = {
    # datasets (configs/dataset/)
    "bench.data.frl_london.load_frl_london": "dataset",
    "bench.data.rfw.load_rfw": "dataset",
    "bench.data.bfw.load_bfw": "dataset",
    "bench.data.fhibe.load_fhibe": "dataset",
    "bench.data.cfd.load_cfd": "dataset",
    "bench.data.ccv2.load_ccv2": "dataset",
    "bench.synthetic.generator.SyntheticPopulation": "dataset",
    "bench.data.user_dataset.load_csv_manifest": "dataset",
    "bench.data.user_dataset.load_folder_dataset": "dataset",
    # models / embedders (configs/model/)
    "bench.models.dlib_resnet.DlibResNet": "model",
    "bench.models.facenet.FaceNet": "model",
    "bench.models.onnx_arcface.OnnxArcFace": "model",
    "bench.models.sface.SFace": "model",
    # detectors / aligners (model.embedder.aligner)
    "bench.acquisition.mtcnn_align.MtcnnArcFaceAligner": "aligner",
    "bench.acquisition.mtcnn_align.MtcnnFaceNetAligner": "aligner",
    "bench.acquisition.oracle_landmarks.OracleEyesAligner": "aligner",
    "bench.acquisition.alignment.ArcFaceAligner": "aligner",
    "bench.acquisition.alignment.DlibChipAligner": "aligner",
    "bench.acquisition.alignment.MarginCropAligner": "aligner",
    "bench.acquisition.detectors.DlibHogDetector": "aligner",
    "bench.acquisition.detectors.DlibMmodDetector": "aligner",
    "bench.acquisition.detectors.MtcnnDetector": "aligner",
    "bench.acquisition.detectors.YuNetDetector": "aligner",
    # acquisition-condition transforms (configs/transforms/)
    "bench.acquisition.transforms.Exposure": "transform",
    "bench.acquisition.transforms.Gamma": "transform",
    "bench.acquisition.transforms.GaussianBlur": "transform",
    "bench.acquisition.transforms.Resolution": "transform",
    "bench.acquisition.transforms.JpegQuality": "transform",
    "bench.acquisition.transforms.GaussianNoise": "transform",
    "bench.acquisition.transforms.OcclusionBand": "transform",
    "bench.acquisition.transforms.Contrast": "transform",
    # deployment scenarios (configs/scenario/; issue #14)
    "bench.protocol.scenario.Scenario": "scenario",
}


def valid_targets() -> list[str]:
    """Every registered ``_target_``, grouped by kind (as listed in error messages)."""
    order = {k: i for i, k in enumerate(KINDS)}
    return sorted(FACTORIES, key=lambda t: (order.get(FACTORIES[t], len(KINDS)), t))


def check_target(target: Any, where: str = "<root>") -> str:
    """Return ``target`` if it is a registered factory name; refuse it otherwise.

    Nothing is imported: the check is a dictionary look-up on the exact string.

    Raises
    ------
    ConfigError
        ``<where>._target_ 'x' is not a factory a config may name; did you mean 'y'?
        valid: [...]`` for anything not in :data:`FACTORIES` (including non-strings).
    """
    if isinstance(target, str) and target in FACTORIES:
        return target
    close = difflib.get_close_matches(str(target), list(FACTORIES), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(
        f"{where}._target_ {target!r} is not a factory a config may name{hint} "
        f"valid _target_ values (bench/registry.py): {valid_targets()}"
    )


def resolve_factory(target: str, where: str = "<root>") -> Callable[..., Any]:
    """Import the registered factory ``target`` and return it.

    Raises
    ------
    ConfigError
        If ``target`` is not registered (before any import), or the registered name
        does not resolve to a callable defined in the ``bench`` package (a broken
        registry entry, or a dependency that is not installed).
    """
    check_target(target, where)
    module_name, _, attr = target.rpartition(".")
    try:
        module = importlib.import_module(module_name)
        obj = getattr(module, attr)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"{where}._target_ {target!r}: cannot load the registered factory: {err}") from err
    defined_in = getattr(obj, "__module__", "") or ""
    if not callable(obj) or not (defined_in == "bench" or defined_in.startswith("bench.")):
        raise ConfigError(f"{where}._target_ {target!r}: registry entry does not name a class or function defined in bench")
    return obj
