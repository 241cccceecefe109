package srq_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/srquant/srq"
	"github.com/srquant/srq/quant"
	"github.com/srquant/srq/verify"
)

// Quantize EDSR x2 to W4A4 with the dual-region quantizer, calibrated on a
// folder of photos, and write the deploy model.
func ExampleQuantize() {
	if err := srq.Init(""); err != nil { // ONNX Runtime: $SRQ_ORT_LIB, .ort/ or a system library folder
		log.Fatal(err)
	}
	imgs, err := srq.ListImages("testdata/images")
	if err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "srq-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	cfg := quant.DefaultConfig()
	cfg.Bits, cfg.Method = quant.Bits{W: 4, A: 4}, quant.Dual
	cfg.Patches, cfg.PatchSize = 8, 32 // a quick example; the default is 64 of 64
	res, err := srq.Quantize(context.Background(), srq.QuantizeOptions{
		Model:  "testdata/models/edsr_x2.onnx",
		Images: imgs,
		Out:    filepath.Join(dir, "edsr_x2_w4a4.onnx"),
		Config: cfg,
	})
	if err != nil {
		log.Fatal(err)
	}
	forms := map[string]int{}
	for _, l := range res.Layers {
		forms[l.Form]++
	}
	fmt.Printf("x%d, %d of %d convs quantized\n", res.Scale, res.ConvsInt8, res.Convs)
	fmt.Printf("%d conv inputs on their own 4-bit dual-region quantizer, %d on one 8-bit grid\n", len(res.Layers), forms["shared-grid"])
	// Output:
	// x2, 36 of 37 convs quantized
	// 34 conv inputs on their own 4-bit dual-region quantizer, 34 on one 8-bit grid
}

// Verify a quantized model against its FP32 original and gate a pipeline
// on the result.
func ExampleVerify() {
	if err := srq.Init(""); err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "srq-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	imgs, err := srq.ListImages("testdata/images")
	if err != nil {
		log.Fatal(err)
	}
	cfg := quant.DefaultConfig() // W8A8
	cfg.Patches, cfg.PatchSize = 8, 32
	q := filepath.Join(dir, "edsr_x2_w8a8.onnx")
	if _, err := srq.Quantize(context.Background(), srq.QuantizeOptions{Model: "testdata/models/edsr_x2.onnx", Images: imgs, Out: q, Config: cfg}); err != nil {
		log.Fatal(err)
	}

	vcfg := verify.DefaultConfig() // srq verify's defaults
	// Ground truth: the image is downscaled to make the LR input. A quick
	// example; the default 10 runs at 256x256 are for latency numbers.
	vcfg.HR, vcfg.Size, vcfg.Runs = true, 32, 1
	rep, err := srq.Verify(context.Background(), srq.VerifyOptions{
		Model:     "testdata/models/edsr_x2.onnx",
		Quantized: q,
		Images:    []string{"testdata/images/chelsea.png"},
		Config:    vcfg,
	})
	if err != nil {
		log.Fatal(err)
	}
	maxDrop := 0.2 // dB of PSNR-Y against the ground truth
	fmt.Println("int8 convs:", rep.Int8Conv.Int8, "of", rep.Int8Conv.Total)
	fmt.Println("gate:", rep.Check(verify.Gates{MaxDrop: &maxDrop}))
	// Output:
	// int8 convs: 36 of 37
	// gate: <nil>
}

// Inspect a model without running it, or with ONNX Runtime to detect its
// scale and input range.
func ExampleInspect() {
	if err := srq.Init(""); err != nil {
		log.Fatal(err)
	}
	in, err := srq.Inspect(context.Background(), "testdata/models/edsr_x2.onnx", srq.InspectOptions{Probe: true})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d convs, x%d, input 0..%g\n", in.Convs, in.Scale, in.InputRange)
	// Output:
	// 38 convs, x2, input 0..255
}
