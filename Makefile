# The two commands of the README. Both create .venv and install the pinned stack when needed.
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_CONFIG := configs/demo/fd_dinov2-vits14_vit-t14-6l_demo.py
DEMO_WORK_DIR := work_dirs/demo

.PHONY: setup demo test

setup:
	bash scripts/setup_env.sh

## demo: fetch real photos + the DINOv2 ViT-S/14 teacher, distil it into a small ViT on CPU, export the student
demo: setup
	$(PY) scripts/fetch_demo_data.py
	$(PY) tools/train.py $(DEMO_CONFIG) --work-dir $(DEMO_WORK_DIR)
	$(PY) tools/model_converters/fd_to_backbone.py $(DEMO_WORK_DIR) $(DEMO_WORK_DIR)/student_backbone.pth

## test: the whole test suite on CPU
test: setup
	$(PY) -m pytest tests -q -p no:cacheprovider
