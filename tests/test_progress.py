"""Progress bars (issue #10): the extraction bar counts images embedded (cache hits and
failures included) and reaches the total; it is silent with progress=False."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.acquisition.base import Acquisition
from bench.data.manifest import Manifest
from bench.models.cache import EmbeddingCache
from bench.models.extraction import extract_embeddings


class _Aligner:
    def acquire_file(self, path: Path) -> Acquisition:
        data = Path(path).read_bytes()
        if data == b"noface":
            return Acquisition(chip=None, fta_reason="no_face_detected", n_faces=0)
        return Acquisition(chip=np.frombuffer(data, dtype=np.uint8).copy(), fta_reason=None, n_faces=1)


class _Model:
    name = "fake"
    embedding_dim = 4

    def __init__(self) -> None:
        self.aligner = _Aligner()
        self.batches: list[int] = []

    def embed(self, chips):
        self.batches.append(len(chips))
        return np.stack([np.ones(4, np.float32) * (1 + float(c[0])) for c in chips])


def _manifest(root: Path, n: int) -> Manifest:
    rows = []
    for i in range(n):
        p = root / f"{i}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"noface" if i == 3 else bytes([i]))
        rows.append({"image_id": str(i), "path": f"{i}.bin", "subject_id": str(i // 2), "label_source": "annotated", "g": "a"})
    return Manifest(pd.DataFrame(rows), root, ("g",), "fake")


def test_extraction_bar_counts_every_image_and_is_silent_when_off(tmp_path, capsys):
    manifest = _manifest(tmp_path / "imgs", 70)
    model = _Model()
    ext = extract_embeddings(manifest, model, EmbeddingCache(tmp_path / "c", "k"), batch_size=32, progress=True)
    err = capsys.readouterr().err
    assert "fake images embedded" in err and "70/70" in err
    assert model.batches == [31, 32, 6]  # image 3 failed to acquire: embedded in batches, counted all the same
    assert ext.fta_reason[3] == "no_face_detected"
    again = extract_embeddings(manifest, _Model(), EmbeddingCache(tmp_path / "c", "k"), progress=False)
    assert capsys.readouterr().err == ""
    assert again.cache_hits == 70
