# Taproot: the two commands a newcomer needs. Both install missing Debian packages first.
#   make run   build (Release) and serve ./data at http://127.0.0.1:8080/fhir with demo patients
#   make test  build and run every test (ctest); non-zero exit on any failure
BUILD ?= build
JOBS ?= $(shell nproc)
LISTEN ?= 127.0.0.1:8080
DATA ?= ./data

.PHONY: run test build deps bench clean format

deps:
	@scripts/install-deps

$(BUILD)/build.ninja: CMakeLists.txt | deps
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null

build: deps $(BUILD)/build.ninja
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	@mkdir -p $(DATA)
	@$(BUILD)/taproot token --data $(DATA) --user demo-client --scope 'system/*.cruds' \
	  --expires-in 43200 > $(DATA)/demo-token
	@echo "Every request needs a token. A 12-hour demo token (system/*.cruds) is in $(DATA)/demo-token:"
	@echo "  curl -H \"Authorization: Bearer \$$(cat $(DATA)/demo-token)\" http://$(LISTEN)/fhir/Patient"
	@echo "Other tokens: $(BUILD)/taproot token --data $(DATA) --help (docs/access-control.md)"
	$(BUILD)/taproot serve --data $(DATA) --listen $(LISTEN) --demo resources/demo

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 900

bench: build
	bench/run.sh

format:
	clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf $(BUILD)
