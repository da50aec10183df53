# The two commands of the README. Both create .venv and install the pinned stack when needed.
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_CONFIG := configs/demo/fd_dinov2-vits14_vit-t14-6l_demo.py
DEMO_WORK_DIR := work_dirs/demo

.PHONY: setup demo test finetune-digits

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

## finetune-digits: fetch scikit-learn's digits as an image folder and fine-tune a tiny FDViT classifier on CPU
DIGITS_CONFIG := configs/demo/finetune_fdvit-t8-4l_digits.py
DIGITS_WORK_DIR := work_dirs/finetune_digits
finetune-digits: setup
	$(PY) scripts/fetch_digits.py
	OMP_NUM_THREADS=1 $(PY) tools/train.py $(DIGITS_CONFIG) --work-dir $(DIGITS_WORK_DIR)
	OMP_NUM_THREADS=1 $(PY) tools/test.py $(DIGITS_CONFIG) $$(cat $(DIGITS_WORK_DIR)/last_checkpoint) --work-dir $(DIGITS_WORK_DIR)
