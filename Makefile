# FaceSearch: `make demo` and `make test` set everything up on first use.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

MLFLOW_DB ?= data/mlflow/mlflow.db

.PHONY: setup demo test bench reindex schedule mlflow-ui prefect-ui clean

setup: $(STAMP)

$(STAMP): requirements/lock.txt pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements/lock.txt
	# facenet-pytorch pins torch<2.3/numpy<2/Pillow<10.3, which cannot be installed together here:
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps facenet-pytorch==2.6.0
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	@# Debian's chromium drives the browser test (Playwright never downloads a browser here).
	@command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
		|| echo "warning: chromium could not be installed; the browser test will be skipped"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/facesearch demo

# The store/CLI/pipeline/reliability tests run twice: on Milvus Lite, then against a real Milvus 2.3.5
# standalone that the second session starts on 127.0.0.1 (tests/conftest.py --milvus-server) and stops.
SERVER_TESTS := tests/integration/test_store.py tests/integration/test_cli_index_search.py \
	tests/integration/test_pipeline.py tests/integration/test_reliability.py tests/integration/test_store_server.py \
	tests/integration/test_promotion_safety.py
# ... less the tests that prove nothing more on a server: the DVC pipeline's own wiring (the end-to-end flow in
# test_pipeline writes the same sweep to the server), a data check that never calls Milvus, a dial to a dead port
SERVER_SKIP := --deselect tests/integration/test_pipeline.py::test_dvc_repro_runs_the_stages_and_leaves_status_clean \
	--deselect tests/integration/test_pipeline.py::test_nan_embeddings_fail_the_embeddings_suite \
	--deselect tests/integration/test_reliability.py::test_unreachable_milvus_is_a_clear_error_after_bounded_retries

# The two sessions run at once, each in its own temp dir: the server session mostly waits on Milvus (index
# builds, loads, restarts), so on 2 cores both end sooner together than one after the other. The server
# session's output follows the Lite session's; either failing fails make test.
test: $(STAMP)
	@tmp=$$(mktemp -d -t facesearch-test-XXXXXX); \
	$(BIN)/python -m pytest --basetemp=$$tmp/server --milvus-server $(SERVER_TESTS) $(SERVER_SKIP) $(PYTEST_ARGS) \
		> $$tmp/server.log 2>&1 & server=$$!; trap 'kill $$server 2>/dev/null' INT TERM; \
	$(BIN)/python -m pytest --basetemp=$$tmp/lite $(PYTEST_ARGS); lite=$$?; \
	wait $$server; srv=$$?; \
	echo "== the Milvus server session (ran beside the one above; log $$tmp/server.log):"; cat $$tmp/server.log; \
	echo "== make test: Lite session exit $$lite, server session exit $$srv"; \
	[ $$lite -eq 0 ] && [ $$srv -eq 0 ] && rm -rf $$tmp

# ~19 min on 2 cores: ingest vs the naive loops, search at 10k/100k (Lite, standalone, faiss, numpy),
# 1M on Lite/faiss/numpy. The Lite server mode and 1M on the standalone (20 min alone) are in bench/README.md.
bench: $(STAMP)
	$(BIN)/python bench/bench_ingest.py --out bench/results/ingest.json
	$(BIN)/python bench/bench_scale.py --copies 64 --shard-images 32 --out bench/results/scale.json
	$(BIN)/python bench/bench_default_store.py --faces 100000 --out bench/results/default_store.json
	$(BIN)/python bench/bench_stub_search.py --faces 100000 --out bench/results/stub_search.json
	$(BIN)/python bench/bench_search.py --sizes 10000 100000 --dim 128 --backends lite standalone faiss numpy \
		--out bench/results/search.json
	$(BIN)/python bench/bench_search.py --sizes 1000000 --dim 128 --backends lite faiss numpy --timeout-s 900 \
		--latency-queries 100 --lite-as-limit-gb 12 --rss-cap-gb 12 --out bench/results/search_1m.json
	$(BIN)/python bench/bench_index_types.py --sizes 100000 --out bench/results/index_types.json
	$(BIN)/python bench/bench_index_types.py --sizes 1000000 --merge --out bench/results/index_types.json
	$(BIN)/python bench/summary.py

reindex: $(STAMP)
	$(BIN)/facesearch reindex

schedule: $(STAMP)  ## serve the re-index flow on schedule.cron; starts a local Prefect server if PREFECT_API_URL is unset
	$(BIN)/python -m flows.serve

mlflow-ui: $(STAMP)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow ui --backend-store-uri sqlite:///$(MLFLOW_DB) --host 127.0.0.1 --port 5000 --workers 1

prefect-ui: $(STAMP)
	$(BIN)/prefect server start --host 127.0.0.1 --port 4200

clean:
	rm -rf data/milvus .pytest_cache test-output
