# qdesk: `make run` serves on http://127.0.0.1:8080, `make check` runs every test.
# Both install what is missing first (scripts/deps). See README.md.

BUILD := build
SAN   := build-san
GUEST := $(BUILD)/guest

.PHONY: all build san fuzz deps guest run check golden-regen clean

all: build

deps:
	@scripts/deps

$(BUILD)/build.ninja:
	meson setup $(BUILD)

build: $(BUILD)/build.ninja www/vendor/novnc.js
	@ninja -C $(BUILD)

# The viewer's noVNC: its pinned npm package bundled into one ES module exporting RFB.
www/vendor/novnc.js: package-lock.json www/src/novnc-entry.js
	@test -x node_modules/.bin/esbuild || { echo "make: run 'make deps' (npm ci) first" >&2; exit 1; }
	node_modules/.bin/esbuild www/src/novnc-entry.js --bundle --format=esm --minify \
	    --legal-comments=eof --log-level=warning --outfile=$@ \
	    --banner:js='/* noVNC, MPL-2.0, https://github.com/novnc/noVNC: @novnc/novnc from npm */'

# The unit tests again, under AddressSanitizer and UndefinedBehaviorSanitizer.
$(SAN)/build.ninja:
	meson setup $(SAN) -Dbuildtype=debug -Db_sanitize=address,undefined -Db_lundef=false

san: $(SAN)/build.ninja
	@ninja -C $(SAN)

# libFuzzer targets for every parser that sees network input (clang).
FUZZ := build-fuzz
$(FUZZ)/build.ninja:
	CC=clang meson setup $(FUZZ) -Dfuzz=true -Dbuildtype=debugoptimized \
	    -Dc_args=-fsanitize=fuzzer-no-link \
	    -Db_sanitize=address,undefined -Db_lundef=false

fuzz: $(FUZZ)/build.ninja
	@ninja -C $(FUZZ)

# The demo guest, built from Debian packages (guest/README.md), and its catalogue
# entries: the live ISO, a disk image of it, and its kernel booted directly (the
# uncompressed kernel: its PVH entry starts ~3 s sooner under TCG than the bzImage).
GUEST_SRC := $(wildcard guest/* guest/boot/*)

$(GUEST)/demo.iso: $(GUEST_SRC)
	guest/build $(GUEST)
	@grep -qF -- "append = $$(cat $(GUEST)/append.txt)" machines/demo-kernel.conf || \
	    { echo "make: machines/demo-kernel.conf must say: append = $$(cat $(GUEST)/append.txt)" >&2; exit 1; }

machines/demo.iso: $(GUEST)/demo.iso
	cp $< $@

machines/demo-disk.qcow2: $(GUEST)/demo.iso
	qemu-img convert -O qcow2 $< $@.tmp && mv $@.tmp $@

machines/demo-kernel.vmlinux: $(GUEST)/demo.iso
	cp $(GUEST)/vmlinux $@

machines/demo-kernel.initrd: $(GUEST)/demo.iso
	cp $(GUEST)/initrd.img $@

guest: machines/demo.iso machines/demo-disk.qcow2 machines/demo-kernel.vmlinux \
       machines/demo-kernel.initrd

run: deps build guest
	./$(BUILD)/qdesk serve

check: deps build san fuzz guest
	@tests/run

# Rewrite tests/qemu-args/*.args|.err and tests/kubevirt/*.vmi.json|.err from the code; review the diff before committing.
golden-regen: build
	QDESK_REGENERATE=1 $(BUILD)/tests/golden tests/qemu-args
	QDESK_REGENERATE=1 $(BUILD)/tests/golden --kubevirt tests/kubevirt

clean:
	rm -rf $(BUILD) $(SAN) $(FUZZ)
