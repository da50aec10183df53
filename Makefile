# The two commands of the README. Both create .venv and install the pinned stack when needed.
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_CONFIG := configs/demo/fd_dinov2-vits14_fdvit-t14-6l_demo.py
DEMO_WORK_DIR := work_dirs/demo

.PHONY: setup demo test test-fast docs finetune-digits dense-demo reproduce

setup:
	bash scripts/setup_env.sh

## demo: fetch real photos + the DINOv2 ViT-S/14 teacher, distil it into a small ViT on CPU, export the student
## (--resume: a rerun continues an interrupted demo, or finds it finished)
demo: setup
	$(PY) scripts/fetch_demo_data.py
	$(PY) tools/train.py $(DEMO_CONFIG) --work-dir $(DEMO_WORK_DIR) --resume
	$(PY) tools/model_converters/fd_to_backbone.py $(DEMO_WORK_DIR) $(DEMO_WORK_DIR)/student_backbone.pth --overwrite

## reproduce: FD's claims at laptop scale on real data (docs/en/user_guides/reproduction.md): Fashion-MNIST (Debian's
## package) + the real DINOv2 ViT-S/14; writes work_dirs/reproduce/REPORT.md. An interrupted run continues.
reproduce: setup
	$(PY) scripts/fetch_demo_data.py
	$(PY) scripts/fetch_fashion_mnist.py
	$(PY) tools/reproduce.py --work-dir work_dirs/reproduce

## test: the whole test suite on CPU, in three steps: the tests in parallel workers (pytest-xdist), then the
## linters (tests/test_code_style.py), then the docs (tests/docs: Sphinx and the commands the pages give)
## test-fast: the unit tests only (no `slow` marker: nothing that trains, launches processes, builds an
## environment, compiles or runs Sphinx or a linter), in parallel workers; a few minutes
## TEST_WORKERS: the number of workers (`auto`: one per CPU core). --dist loadgroup: the files marked
## xdist_group (those whose module-scoped fixture is a run or an environment) each go to one worker whole
TEST_WORKERS ?= auto
PYTEST := $(PY) -m pytest -q -p no:cacheprovider
XDIST = -n $(TEST_WORKERS) --dist loadgroup
LINT_TESTS := tests/test_code_style.py
DOCS_TESTS := tests/docs
test: setup
	$(PYTEST) tests $(XDIST) --ignore=$(LINT_TESTS) --ignore=$(DOCS_TESTS)
	$(PYTEST) $(LINT_TESTS)
	$(PYTEST) $(DOCS_TESTS) $(XDIST)

test-fast: setup
	$(PYTEST) tests $(XDIST) -m 'not slow'

## docs: build the documentation (docs/en, Sphinx + myst-parser) with warnings as errors into docs/en/_build/html
docs: setup
	$(PY) -m sphinx -W --keep-going -b html docs/en docs/en/_build/html

## finetune-digits: fetch scikit-learn's digits as an image folder and fine-tune a tiny FDViT classifier on CPU
DIGITS_CONFIG := configs/demo/finetune_fdvit-t8-4l_digits.py
DIGITS_WORK_DIR := work_dirs/finetune_digits
finetune-digits: setup
	$(PY) scripts/fetch_digits.py
	OMP_NUM_THREADS=1 $(PY) tools/train.py $(DIGITS_CONFIG) --work-dir $(DIGITS_WORK_DIR) --resume
	OMP_NUM_THREADS=1 $(PY) tools/test.py $(DIGITS_CONFIG) $$(cat $(DIGITS_WORK_DIR)/last_checkpoint) --work-dir $(DIGITS_WORK_DIR)

## dense-demo: the demo's distilled student as a backbone for Mask R-CNN, UperNet and depth on small real data
## (fetched by scripts/fetch_dense_data.py), each trained briefly on CPU and scored with the library's metric
DENSE_WORK_DIR := work_dirs/dense_demo
DENSE_DEMOS := mask_rcnn:configs/demo/mask-rcnn_fdvit-t14-6l_labelme-coco.py \
	upernet:configs/demo/upernet_fdvit-t14-6l_labelme-ade.py \
	depth:configs/demo/depth_fdvit-t14-6l_middlebury-nyu.py
dense-demo: setup $(DEMO_WORK_DIR)/student_backbone.pth
	$(PY) scripts/fetch_dense_data.py
	set -e; for demo in $(DENSE_DEMOS); do \
		name=$${demo%%:*}; config=$${demo#*:}; work_dir=$(DENSE_WORK_DIR)/$$name; \
		$(PY) tools/train.py $$config --work-dir $$work_dir --resume; \
		$(PY) tools/test.py $$config $$(cat $$work_dir/last_checkpoint) --work-dir $$work_dir; \
	done

$(DEMO_WORK_DIR)/student_backbone.pth:
	$(MAKE) demo
