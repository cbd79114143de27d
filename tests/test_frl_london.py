"""FRL London loader: layout, label conventions, old column names."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.data.frl_london import load_frl_london, read_london_info
from bench.errors import DataError


def test_real_london_manifest(london):
    m = load_frl_london(london)
    t = m.table
    assert len(t) == 204
    assert t["subject_id"].nunique() == 102
    assert (t.groupby("subject_id").size() == 2).all()
    assert set(t["label_source"]) == {"self-reported"}
    # self-reported counts (metrics-reference §6.3, counted from london_info.csv)
    per_subject = t.drop_duplicates("subject_id")
    assert per_subject["face_gender"].value_counts().to_dict() == {"male": 53, "female": 49}
    assert per_subject["face_eth"].value_counts().to_dict() == {
        "white": 69, "black": 13, "west_asian": 10, "east_asian": 9, "east_asian/white": 1,
    }
    # NA age stays missing, never 0
    assert per_subject["face_age"].isna().sum() == 2
    assert (per_subject["face_age"].dropna() > 0).all()
    assert t["subject_id"].str.fullmatch(r"\d{3}").all()


def test_old_column_name_and_x_ids(tmp_path):
    csv = tmp_path / "london_info.csv"
    csv.write_text("face_id,face_age,face_sex,face_eth\nX001,24,female,white\nX012,NA,male,east_asian/white\n")
    info = read_london_info(csv)
    assert list(info.index) == ["001", "012"]
    assert info.loc["012", "face_eth"] == "east_asian/white"
    assert pd.isna(info.loc["012", "face_age"])
    assert info.loc["001", "face_gender"] == "female"


@pytest.mark.parametrize(
    "content,msg",
    [
        ("face_id,face_age,face_eth\n001,20,white\n", r"missing column\(s\) \['face_gender'\]"),
        ("face_id,face_age,face_gender,face_eth\nabc,20,male,white\n", "line 2: face_id 'abc'"),
        ("face_id,face_age,face_gender,face_eth\n001,twenty,male,white\n", "line 2: face_age 'twenty'"),
        ("face_id,face_age,face_gender,face_eth\n001,20,male,white\n001,21,male,white\n", "duplicate face_id"),
    ],
)
def test_bad_info_csv(tmp_path, content, msg):
    csv = tmp_path / "london_info.csv"
    csv.write_text(content)
    with pytest.raises(DataError, match=msg):
        read_london_info(csv)


def test_missing_root_names_the_setting(tmp_path):
    with pytest.raises(DataError, match="FVBENCH_DATA_DIR"):
        load_frl_london(tmp_path / "absent")


def test_image_without_info_row_keeps_missing_labels(tmp_path):
    (tmp_path / "neutral_front").mkdir()
    (tmp_path / "smiling_front").mkdir()
    for name in ("neutral_front/001_03.jpg", "smiling_front/001_08.jpg", "neutral_front/002_03.jpg"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "london_info.csv").write_text("face_id,face_age,face_gender,face_eth\n001,30,male,black\n")
    m = load_frl_london(tmp_path)
    labels = m.group_labels()
    assert labels["face_eth"].tolist() == ["black", "missing", "black"]
