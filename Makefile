# The two commands: `make demo` and `make test`. Both install what is missing first.
.PHONY: setup demo test lint typecheck unit bench clean image image-test image-bundle

VENV := .venv/bin
DEMO_SECONDS ?=
DEMO_DIR ?=

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/vaka-demo $(if $(DEMO_SECONDS),--seconds $(DEMO_SECONDS)) $(if $(DEMO_DIR),--dir $(DEMO_DIR))

lint: setup
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/lint-imports --no-cache
	$(VENV)/python scripts/sizes.py
	$(VENV)/python scripts/check_migrations.py
	$(VENV)/python scripts/wire_contract.py

typecheck: setup
	$(VENV)/mypy

# The TV window's tests get a process each: OpenCV's Qt GUI is bound to one display for the life
# of a process, and other suites' process-wide state has kept it from starting.
WINDOW_TESTS := tests/test_tv_screen.py tests/test_tv_window.py tests/test_tv_enrol_screen.py tests/test_tv_privacy.py
unit: setup
	$(VENV)/pytest -q --durations=40 $(addprefix --ignore=,$(WINDOW_TESTS))
	$(foreach t,$(WINDOW_TESTS),$(VENV)/pytest -q $(t) &&) true

test: lint typecheck unit

bench: setup
	$(VENV)/python bench/fleet.py
	$(VENV)/python bench/tv_call.py --quick

# The unit's OS image (image/, docs/image.md): `make image VARIANT=nightcam SITE=dir` (root).
VARIANT ?= amd64
SITE ?=
image: setup
	bash image/build.sh $(VARIANT) $(if $(SITE),--site $(SITE)) $(if $(VERSION),--version $(VERSION)) --disk

# A signed update bundle of a built image's root (image/bundle.sh, docs/image.md "Updates"):
# `make image-bundle VARIANT=tv VERSION=2026.12.1 CERT=signer.pem KEY=signer.key`. The key stays
# off every unit and out of this repository.
VERSION ?=
CERT ?=
KEY ?=
image-bundle:
	bash image/bundle.sh image/build/$(VARIANT)/root.ext4 image/build/$(VARIANT)/vaka-$(VARIANT)-$(VERSION).raucb \
	  --cert $(CERT) --key $(KEY) --version $(VERSION) --compatible vaka-$(VARIANT)

# Builds the amd64 variant from Debian's packages and checks it offline (slow, root, network);
# not part of `make test`.
image-test: setup
	@command -v qemu-system-x86_64 >/dev/null && [ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] && \
	  command -v grub-mkstandalone >/dev/null && [ -d /usr/lib/grub/x86_64-efi ] && \
	  command -v mcopy >/dev/null || { \
	  echo "image-test: installing qemu-system-x86 ovmf grub-efi-amd64-bin grub-common mtools"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	  --no-install-recommends qemu-system-x86 ovmf grub-efi-amd64-bin grub-common mtools >/dev/null; }
	VAKA_IMAGE_TEST=1 $(VENV)/pytest -v -s tests/test_image.py tests/test_image_units.py \
	  tests/test_image_tv.py tests/test_image_rauc.py tests/test_image_rauc_update.py

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache .vaka-demo
