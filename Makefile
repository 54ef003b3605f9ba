# One command each: `make quickstart` (set up + run the offline demo), `make test` (set up + run the tests).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test test-fast quickstart clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install torch==2.14.1 torchvision==0.29.1
	$(VENV)/bin/pip install -e ".[all]"
	touch $(STAMP)

setup: $(STAMP)

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

# Until the bundled teacher lands, the demo is the whole pipeline on random ViT-B/32 weights:
# ternarize, pack, run the torch-free runtime and compare it with open_clip fp32 (out/quickstart/).
quickstart: setup
	mkdir -p out/quickstart
	$(VENV)/bin/ternaryclip stats --open-clip ViT-B-32 --scope all --embedding
	$(VENV)/bin/ternaryclip bench --arch ViT-B-32 --batch 1,8 --repeats 3 \
		--json out/quickstart/bench.json --plot out/quickstart/bench.png

clean:
	rm -rf $(VENV) build out src/*.egg-info
