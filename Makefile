# Two commands set everything up on a fresh Debian machine:
#   make demo   run the example training job end to end on the local provider
#   make test   run the whole test suite
#   make live PROVIDERS="aws runpod lyceum"   smoke tests on the real clouds (rents
#               machines with your credentials; see README, Live smoke tests)
# Each installs what it needs: Debian packages when missing, then a .venv.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEBIAN_PACKAGES := openssh-server openssh-client rsync python3-venv
DEMO_DIR ?= out/demo
# most tests wait on sshd, moto or a job rather than on the CPU: 4 workers on 2 cores
TEST_WORKERS ?= 4
# A Python with torch that every local Unix user can run: the multi-node tests start
# torchrun as the sshd fixture's users, who cannot reach .venv's interpreter when it
# lives under a private directory (such as /root). Built from Debian's python3, outside
# the repository, world-readable; the tests find it through TRAINCTL_TEST_NODE_PYTHON.
NODE_BASE_PYTHON ?= /usr/bin/python3
NODE_VENV ?= /opt/trainctl-test/node-python
# the CPU build, from local disk on these machines; an unpinned torch would pull a
# multi-GB CUDA build
NODE_TORCH ?= torch==2.13.0
# the live suite: the providers it rents on, and the longest one check may take
PROVIDERS ?= aws runpod lyceum
LIVE_TIMEOUT ?= 2400

.PHONY: demo test lint bench live live-fake live-estimate system-packages node-python clean

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

$(NODE_VENV)/.installed: | system-packages
	rm -rf $(NODE_VENV)
	install -d -m 755 $(dir $(NODE_VENV))
	$(NODE_BASE_PYTHON) -m venv $(NODE_VENV)
	$(NODE_VENV)/bin/python -m pip install -q '$(NODE_TORCH)'
	chmod -R a+rX $(NODE_VENV)
	touch $@

node-python: $(NODE_VENV)/.installed

demo: system-packages $(VENV)/.demo-installed
	rm -rf $(DEMO_DIR)
	cd examples && PATH="$(CURDIR)/$(BIN):$$PATH" trainctl run --provider local \
		--workdir . --output checkpoints --output-dir "$(CURDIR)/$(DEMO_DIR)" \
		-- python train.py --epochs 8
	@echo "checkpoints landed in $(CURDIR)/$(DEMO_DIR)/checkpoints:"
	@ls -1 "$(DEMO_DIR)/checkpoints"

test: system-packages $(VENV)/.test-installed $(NODE_VENV)/.installed
	$(BIN)/ruff check src tests bench examples
	TRAINCTL_TEST_NODE_PYTHON=$(NODE_VENV)/bin/python $(BIN)/python -m pytest -n $(TEST_WORKERS)

live: $(VENV)/.test-installed
	$(BIN)/python -m pytest --confcutdir tests/live tests/live -v --live "$(PROVIDERS)" \
		-o timeout=$(LIVE_TIMEOUT) -o timeout_func_only=true

live-fake: system-packages $(VENV)/.test-installed
	$(BIN)/python tests/live_stand.py $(PROVIDERS) -- -v

live-estimate: $(VENV)/.test-installed
	$(BIN)/python tests/live/estimate.py $(PROVIDERS)

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
