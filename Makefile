# srq: two commands on a fresh machine — `make demo` and `make test`.
GO      ?= go
BIN     := bin/srq
OUT     := out
MODEL   := testdata/models/edsr_x2.onnx
IMAGES  := testdata/images
export CGO_ENABLED := 1

.PHONY: all setup setup-gpu build demo test test-short vet bench fuzz proto clean

all: build

# setup fetches ONNX Runtime 1.24.1 (CPU, linux x64) into .ort/ once.
setup:
	@scripts/setup-ort.sh .ort

# setup-gpu fetches a CUDA 13 / TensorRT build of ONNX Runtime 1.29 into
# .ort-gpu/ (about 400 MB of npm packages): SRQ_ORT_LIB=.ort-gpu/libonnxruntime.so srq verify --ep cuda ...
setup-gpu:
	@scripts/setup-ort-gpu.sh .ort-gpu

build:
	$(GO) build -buildvcs=auto -o $(BIN) ./cmd/srq

# demo: set up, build, and run the main job on the bundled model and images:
# quantize EDSR x2 to W8A8, verify it against ground truth, upscale a photo.
# It verifies on the images it calibrated on (all there are here), so its
# PSNR shows that the pipeline works, not how the model generalises.
demo: setup build
	@mkdir -p $(OUT)
	$(BIN) inspect $(MODEL)
	$(BIN) quantize --model $(MODEL) --calib $(IMAGES) --out $(OUT)/edsr_x2_w8a8.onnx
	$(BIN) verify --model $(MODEL) --quantized $(OUT)/edsr_x2_w8a8.onnx --images $(IMAGES) --hr --size 128 --json $(OUT)/verify.json
	$(BIN) upscale --model $(OUT)/edsr_x2_w8a8.onnx --hr $(IMAGES)/chelsea.png $(OUT)/chelsea_x2_w8a8.png

# bench: every model in ../shared/models x {minmax, percentile, mse, dual} x {W8A8, W6A6, W4A4}, plus variant and tuning rows -> BENCHMARKS.md (about an hour on 2 cores).
bench: setup build
	@mkdir -p $(OUT)
	$(BIN) bench --out BENCHMARKS.md --json $(OUT)/bench.json

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'))" || { gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'); echo "gofmt: files above need formatting"; exit 1; }

# 20 minutes per package rather than go test's 10: cmd/srq takes about 3 on
# an idle 2-core machine and measured 9 with the machine shared three ways.
test: setup vet
	$(GO) test -count=1 -timeout 20m ./...

test-short: setup
	$(GO) test -short ./...

# fuzz runs the model-loader fuzzer; FUZZTIME=5m for a long run.
FUZZTIME ?= 60s
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzLoad -fuzztime $(FUZZTIME) ./onnx

# proto regenerates onnx/onnx.pb.go from onnx/onnx.proto (needs protoc).
proto:
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" $(GO) generate ./onnx

clean:
	rm -rf bin $(OUT)
