# Two commands set everything up on a fresh Debian machine:
#   make demo   run the example training job end to end on the local provider
#   make test   run the whole test suite
# Each installs what it needs: Debian packages when missing, then a .venv.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEBIAN_PACKAGES := openssh-server openssh-client rsync
DEMO_DIR ?= out/demo
# most tests wait on sshd, moto or a job rather than on the CPU: 4 workers on 2 cores
TEST_WORKERS ?= 4

.PHONY: demo test lint bench system-packages clean

system-packages:
	@missing=""; \
	for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		$$sudo apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.demo-installed: $(BIN)/python pyproject.toml examples/requirements.txt
	$(BIN)/pip install -q -e . -r examples/requirements.txt
	touch $@

$(VENV)/.test-installed: $(BIN)/python pyproject.toml examples/requirements.txt
	$(BIN)/pip install -q -e '.[test]' -r examples/requirements.txt
	touch $@

demo: system-packages $(VENV)/.demo-installed
	rm -rf $(DEMO_DIR)
	cd examples && PATH="$(CURDIR)/$(BIN):$$PATH" trainctl run --provider local \
		--workdir . --output checkpoints --output-dir "$(CURDIR)/$(DEMO_DIR)" \
		-- python train.py --epochs 8
	@echo "checkpoints landed in $(CURDIR)/$(DEMO_DIR)/checkpoints:"
	@ls -1 "$(DEMO_DIR)/checkpoints"

test: system-packages $(VENV)/.test-installed
	$(BIN)/ruff check src tests bench examples
	$(BIN)/python -m pytest -n $(TEST_WORKERS)

bench: system-packages $(VENV)/.test-installed
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/compare.py
	$(BIN)/python bench/ssh_warm_command.py
	$(BIN)/python bench/ssh_follow_latency.py
	$(BIN)/python bench/ssh_resync.py
	$(BIN)/python bench/checkpoint_sync.py
	$(BIN)/python bench/aws_ssm.py
	$(BIN)/python bench/lyceum_create.py

clean:
	rm -rf $(VENV) out build *.egg-info
