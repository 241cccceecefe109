// Package expected is the one table of the numbers srq's tests hold it to
// and its README publishes. Tests gate at a number here plus a margin
// stated here; TestREADME checks the README's W8A8 table against this
// table, so a claim cannot drift from what is measured.
//
// Every number was measured, by the command in its doc comment, on the
// machine Machine names, with ORT 1.24.1's CPU build. srq's output is
// deterministic for a seed, whatever the thread count
// (TestQuantizeDeterministicAcrossThreads), so a number moves only when
// srq's numerics or ORT's kernels change. When a change moves one on purpose,
// re-measure and update it here (and in the README), never in a test.
package expected

// Machine is where the numbers were measured (lscpu's model name and the
// int8 dot-product extensions ORT's kernels use there).
const Machine = "AMD EPYC, 2 cores, AVX512-VNNI, no AMX; ONNX Runtime 1.24.1 CPU"

// Margins a gate allows beyond a measured number: room for another CPU's
// float rounding in calibration and for ORT's int8 kernels on another
// instruction set, not for a change in what srq does.
const (
	// DropMargin is how much lower than measured a PSNR-Y change against
	// ground truth (Δ, quantized minus FP32) may come out, in dB.
	DropMargin = 0.02
	// PSNRMargin is how much lower than measured a PSNR-Y against the FP32
	// output may come out, in dB.
	PSNRMargin = 1.0
	// SimulateAgreement is how far apart, in dB of PSNR-Y against ground
	// truth, the int8 encoding and the simulate (float fake-quant)
	// encoding of the same quantizers may be: the README says the int8
	// graph reproduces the quantizers within 0.01 dB.
	SimulateAgreement = 0.05
	// READMERounding is how far the README's three-decimal numbers may be
	// from the four-decimal measurements here.
	READMERounding = 0.0006
)

// TestPatches and TestPatchSize are the calibration of the shared-model
// test (TestQuantizeSharedModels): fewer and smaller patches than srq
// quantize's default 64 of 64, so that six models quantize in a minute.
// Its numbers (Model.Test) belong to this setting, not to the README's.
const (
	TestPatches   = 16
	TestPatchSize = 48
)

// Model is one model of ../shared/models and what srq's default W8A8
// quantization of it measures. To add one (span_x4, craft_x4 and
// realesr_animevideo_x4 are next, once they quantize without losing
// accuracy), append it to Shared with Test measured by the commands below
// and Graph as TestQuantizeSharedModels reports it (its failure message
// prints the maps it found); give it a README row and a README entry, or
// leave README nil. Every test that reads Shared then covers it.
type Model struct {
	// File is the model's file name in ../shared/models, without .onnx.
	File string
	// Name is how the README's tables name it.
	Name string
	// README is its row of the README's W8A8 table, measured with the
	// README's setting: srq's defaults, calibrated on ../shared/images:
	//
	//	srq quantize --model M --calib ../shared/images --threads 2 --speed-check 0 --out q.onnx
	//	srq verify --model M --quantized q.onnx --images ../shared/data/SET --hr --runs 1 --size 32 --threads 2 --json r.json
	//
	// for SET in Set5, Set14 and B100. Nil: the README has no row.
	README *Claim
	// Test is what TestQuantizeSharedModels measures, with the same
	// commands and --patches TestPatches --patch-size TestPatchSize, on
	// Set5 only.
	Test Measured
	// Graph is the graph ORT optimises Test's model into: what proves
	// that the speed rewrites the README names took effect.
	Graph Graph
	// Slow marks a model the shared-model test runs only when asked
	// (SRQ_SLOW=1): minutes on 2 cores.
	Slow bool
	// VsFP32Only: the model is judged against its FP32 output, not by its
	// change against the ground truth. A GAN's output is sharper than the
	// ground truth on purpose and scores below bicubic; quantization noise
	// can move its PSNR either way.
	VsFP32Only bool
}

// Claim is a README row: PSNR-Y change against ground truth, quantized
// minus FP32, in dB (negative: a loss), and int8 coverage.
type Claim struct {
	Set5, Set14, B100 float64
	// Set5VsFP32 is the PSNR-Y of the quantized output against the FP32
	// output on Set5, dB.
	Set5VsFP32 float64
	Int8Convs  int
	Convs      int
}

// Measured is a quantized model's accuracy on Set5: PSNR-Y change against
// ground truth (quantized minus FP32, dB) and PSNR-Y against the FP32
// output (dB), with its int8 coverage (srq verify's int8_conv, read from
// ORT's optimized graph); and the FP32 model's own PSNR-Y on Set5, which
// ../shared/README.md gives to two decimals.
type Measured struct {
	Set5       float64
	Set5VsFP32 float64
	Int8Convs  int
	Convs      int
	Set5FP32   float64
}

// FP32Tolerance is how far the FP32 model's PSNR-Y on Set5 may come out
// from Measured.Set5FP32, in dB: float kernels round differently on
// another CPU.
const FP32Tolerance = 0.01

// Graph is what the graph ORT optimises a quantized model into must show
// (orttest.Summarize), compared whole: Ops, the count of every op type
// (domain dropped; an op type not listed must be absent, DepthToSpace and
// ReduceMean among them); Float, the float ops, each counted by the op
// type of a node that reads a DequantizeLinear output (a float island not
// listed fails); and ImageConvOut, the output channels of the int8 Conv
// that writes the image (16: passes.WidenImageConv padded it; 0: the image
// comes from another op).
type Graph struct {
	Ops          map[string]int
	Float        map[string]int
	ImageConvOut int
}

// Shared lists the shared models srq's tests quantize. In each Graph, what
// proves a rewrite of the README: no DepthToSpace (absent from Ops), the
// pixel shuffle runs as channels-last Reshape/Transpose on uint8
// (passes.PixelShuffleNHWC); ImageConvOut 16, the image Conv padded to 16
// output channels (passes.WidenImageConv); the Transpose count, the
// residual stream kept channels-last; QLinearConv, the int8 Convs.
var Shared = []Model{
	{
		File: "edsr_x2", Name: "EDSR x2",
		README: &Claim{Set5: -0.0492, Set14: -0.0305, B100: -0.0272, Set5VsFP32: 54.8522, Int8Convs: 36, Convs: 37},
		Test:   Measured{Set5: -0.0541, Set5VsFP32: 54.8193, Int8Convs: 36, Convs: 37, Set5FP32: 37.2826},
		// The float Conv is the head copy of the precise long skip; the
		// float Add, Sub and Transpose close the long skip and make the
		// upsampler's two-part input.
		Graph: Graph{
			Ops: map[string]int{"Add": 2, "Concat": 2, "Conv": 1, "DequantizeLinear": 4, "Gather": 1, "Mul": 2, "Pad": 1, "QLinearAdd": 16, "QLinearConv": 36,
				"QuantizeLinear": 4, "Reshape": 2, "Shape": 1, "Slice": 2, "Sub": 2, "Transpose": 5},
			Float:        map[string]int{"Add": 1, "Sub": 1, "Transpose": 1},
			ImageConvOut: 16,
		},
	},
	{
		File: "edsr_x4", Name: "EDSR x4",
		README: &Claim{Set5: -0.0104, Set14: -0.0206, B100: -0.0122, Set5VsFP32: 52.4380, Int8Convs: 37, Convs: 38},
		Test:   Measured{Set5: -0.0095, Set5VsFP32: 52.3193, Int8Convs: 37, Convs: 38, Set5FP32: 31.2763},
		// As EDSR x2, with two pixel shuffles.
		Graph: Graph{
			Ops: map[string]int{"Add": 2, "Concat": 3, "Conv": 1, "DequantizeLinear": 4, "Gather": 2, "Mul": 3, "Pad": 1, "QLinearAdd": 16, "QLinearConv": 37,
				"QuantizeLinear": 4, "Reshape": 4, "Shape": 2, "Slice": 3, "Sub": 2, "Transpose": 6},
			Float:        map[string]int{"Add": 1, "Sub": 1, "Transpose": 1},
			ImageConvOut: 16,
		},
	},
	{
		File: "srresnet_x4", Name: "SRResNet x4",
		README: &Claim{Set5: -0.0398, Set14: -0.0271, B100: -0.0227, Set5VsFP32: 50.8056, Int8Convs: 37, Convs: 37},
		Test:   Measured{Set5: -0.0400, Set5VsFP32: 50.6763, Int8Convs: 37, Convs: 37, Set5FP32: 31.2617},
		// One int8 chain from the input's Q to the output's DQ: LeakyReLU
		// and the bilinear global skip (Resize) on uint8, no float op. The
		// image Conv feeds the skip's Add, so it is not widened.
		Graph: Graph{
			Ops: map[string]int{"Concat": 2, "DequantizeLinear": 1, "Gather": 2, "Mul": 2, "QLinearAdd": 17, "QLinearConv": 37, "QLinearLeakyRelu": 4,
				"QuantizeLinear": 1, "Reshape": 4, "Resize": 1, "Shape": 2, "Slice": 2, "Transpose": 4},
			Float:        map[string]int{},
			ImageConvOut: 0,
		},
	},
	{
		File: "rcan_x4", Name: "RCAN x4",
		README: &Claim{Set5: -0.0426, Set14: -0.0330, B100: -0.0220, Set5VsFP32: 50.4736, Int8Convs: 137, Convs: 138},
		Test:   Measured{Set5: -0.0477, Set5VsFP32: 50.4606, Int8Convs: 137, Convs: 138, Set5FP32: 30.1017},
		// Channel attention (GlobalAveragePool, Sigmoid, the gating Mul)
		// on uint8 in all 32 blocks; the float ops close the global and
		// group long skips. The residual stream is not channels-last: ORT
		// transposes each gating Mul's output to NCHW for the block's
		// QLinearAdd and the sum back to NHWC for the next Conv, most of
		// the 62 Transposes (a speed loss recorded here, not a rewrite).
		Graph: Graph{
			Ops: map[string]int{"Add": 3, "Concat": 3, "Conv": 1, "DequantizeLinear": 6, "Gather": 2, "Mul": 3, "Pad": 1, "QLinearAdd": 35, "QLinearConv": 137,
				"QLinearGlobalAveragePool": 32, "QLinearMul": 32, "QLinearSigmoid": 32, "QuantizeLinear": 6, "Reshape": 4, "Shape": 2, "Slice": 3, "Sub": 2, "Transpose": 62},
			Float:        map[string]int{"Add": 2, "Sub": 1, "Transpose": 2},
			ImageConvOut: 16,
		},
	},
	{
		File: "imdn_x4", Name: "IMDN x4",
		README: &Claim{Set5: -0.1888, Set14: -0.1777, B100: -0.1025, Set5VsFP32: 44.3906, Int8Convs: 46, Convs: 47},
		Test:   Measured{Set5: -0.2412, Set5VsFP32: 44.1442, Int8Convs: 46, Convs: 47, Set5FP32: 32.2074},
		// The contrast attention's spatial means run as
		// QLinearGlobalAveragePool on uint8, 12 of them, and no ReduceMean
		// is left (passes.SpatialMean); the 18 channel-distillation Splits
		// read uint8 codes (not in Float). Float: the attention's x − mean
		// and square root, and the long skip's Add with its two-part
		// input. The image comes from the last pixel shuffle.
		Graph: Graph{
			Ops: map[string]int{"Add": 1, "Concat": 2, "Conv": 1, "DequantizeLinear": 22, "Gather": 1, "Mul": 2, "QLinearAdd": 12, "QLinearConcat": 7,
				"QLinearConv": 46, "QLinearGlobalAveragePool": 12, "QLinearLeakyRelu": 19, "QLinearMul": 12, "QLinearSigmoid": 6, "QuantizeLinear": 16,
				"Reshape": 2, "Shape": 1, "Slice": 1, "Split": 18, "Sqrt": 6, "Sub": 7, "Transpose": 5},
			Float:        map[string]int{"Add": 1, "Sqrt": 6, "Sub": 7, "Transpose": 1},
			ImageConvOut: 0,
		},
	},
	{
		File: "carn_m_x4", Name: "CARN-M x4",
		README: &Claim{Set5: -0.0202, Set14: -0.0350, B100: -0.0243, Set5VsFP32: 49.8328, Int8Convs: 43, Convs: 43},
		Test:   Measured{Set5: -0.0301, Set5VsFP32: 49.7092, Int8Convs: 43, Convs: 43, Set5FP32: 31.8854},
		// Every Conv int8, grouped ones included; the upsampler's
		// Conv → ReLU → pixel shuffle stays channels-last (4 Transposes in
		// all). The nine float QuantizeLinear are requantizations: ORT
		// drops each block's ReLU after its QLinearAdd and leaves a DQ → Q
		// from the Add's grid to the ReLU's.
		Graph: Graph{
			Ops: map[string]int{"Add": 1, "Concat": 2, "DequantizeLinear": 10, "Gather": 2, "Mul": 2, "Pad": 1, "QLinearAdd": 9, "QLinearConcat": 12,
				"QLinearConv": 43, "QuantizeLinear": 10, "Reshape": 4, "Shape": 2, "Slice": 3, "Sub": 1, "Transpose": 4},
			Float:        map[string]int{"QuantizeLinear": 9},
			ImageConvOut: 16,
		},
	},
	{
		File: "span_x4", Name: "SPAN x4",
		Test: Measured{Set5: -0.7546, Set5VsFP32: 39.0054, Int8Convs: 25, Convs: 25, Set5FP32: 31.7383},
		// conv_cat reads its Concat's four parts through Convs of their own
		// (passes.SplitConcatConv: 22 Convs become 25, three QLinearAdds);
		// SiLU and the attention's gate on uint8 (QLinearSigmoid,
		// QLinearMul); float: the gate's σ − 0.5 (a Sub by a constant).
		Graph: Graph{
			Ops: map[string]int{"Add": 1, "Concat": 1, "DequantizeLinear": 7, "Gather": 1, "Mul": 1, "Pad": 1, "QLinearAdd": 9, "QLinearConv": 25,
				"QLinearMul": 18, "QLinearSigmoid": 18, "QuantizeLinear": 7, "Reshape": 2, "Shape": 1, "Slice": 1, "Split": 1, "Sub": 7, "Transpose": 4},
			Float:        map[string]int{"Sub": 6},
			ImageConvOut: 0,
		},
	},
	{
		File: "realesr_animevideo_x4", Name: "Real-ESRGAN compact x4",
		Test: Measured{Set5: 0.0539, Set5VsFP32: 43.8382, Int8Convs: 18, Convs: 18, Set5FP32: 28.2319},
		// Every Conv int8; the per-channel PRelus run in float between a
		// DequantizeLinear and a QuantizeLinear (ORT has no int8 PRelu).
		Graph: Graph{
			Ops: map[string]int{"Concat": 1, "DequantizeLinear": 18, "Gather": 1, "Mul": 1, "PRelu": 17, "QLinearAdd": 1, "QLinearConv": 18,
				"QuantizeLinear": 18, "Reshape": 2, "Resize": 1, "Shape": 1, "Slice": 1, "Transpose": 3},
			Float:        map[string]int{"PRelu": 17},
			ImageConvOut: 0,
		},
		VsFP32Only: true,
	},
	{
		File: "craft_x4", Name: "CRAFT x4",
		Test: Measured{Set5: -0.1449, Set5VsFP32: 46.5980, Int8Convs: 113, Convs: 114, Set5FP32: 32.4171},
		// The window transformer: every Conv but the long skip's float head
		// copy in int8; all 144 MatMuls on int8 kernels (attention·V as
		// QLinearMatMul, Q·Kᵀ and the linear layers as MatMulIntegerToFloat
		// with a float output); q, k, v and the windows sliced on uint8;
		// gates on uint8; LayerNorms, Softmax, GELU (BiasGelu where ORT
		// fuses it) and the Adds of the residual stream each norm reads
		// float; the last residual group's Conv, whose output carries a
		// massive channel, written as three Convs over runs of its
		// channels that meet in a float Concat.
		Graph: Graph{
			Ops: map[string]int{"Add": 174, "BiasGelu": 16, "Clip": 16, "Concat": 277, "Conv": 1, "DequantizeLinear": 197, "Div": 181, "Erf": 24,
				"Gather": 265, "LayerNormalization": 32, "MatMulIntegerToFloat": 104, "MaxPool": 3, "Mod": 4, "Mul": 133, "NhwcMaxPool": 5, "Pad": 1,
				"Pow": 17, "QLinearAdd": 42, "QLinearConcat": 152, "QLinearConv": 113, "QLinearMatMul": 40, "QLinearMul": 24, "QuantizeLinear": 236,
				"ReduceMean": 34, "ReduceSum": 16, "Reshape": 292, "Shape": 123, "Slice": 420, "Softmax": 40, "Split": 16, "Sqrt": 33, "Sub": 21,
				"Transpose": 316, "Unsqueeze": 394},
			Float: map[string]int{"Add": 19, "Concat": 1, "Div": 40, "LayerNormalization": 7, "Mul": 56, "QuantizeLinear": 11, "ReduceMean": 8,
				"ReduceSum": 16, "Shape": 16, "Sub": 9, "Transpose": 4},
			ImageConvOut: 0,
		},
		Slow: true,
	},
}

// Lookup returns the entry of Shared for file (without .onnx), or false.
func Lookup(file string) (Model, bool) {
	for _, m := range Shared {
		if m.File == file {
			return m, true
		}
	}
	return Model{}, false
}

// Bundled is what the tests measure on the bundled EDSR x2
// (testdata/models/edsr_x2.onnx) with their small calibrations: PSNR-Y
// against the FP32 output, in dB. Each field names the test and setting
// that measured it (go test -v -run TEST ./PKG logs the value); each is
// gated at its value minus PSNRMargin.
type BundledPSNR struct {
	// W8A8 and W8A8LongSkipInt8: quant's TestQuantizeEDSR, its
	// smallConfig (8 patches of 32×32 from testdata/images, seed 1, 2
	// threads), on the 96×96 crop of chelsea.png at (150, 60); the second
	// with --long-skip int8.
	W8A8, W8A8LongSkipInt8 float64
	// W4A4 is quant's TestQuantizeLowBit by activation method (same
	// calibration and crop); W4A4DualStrict with strict accounting,
	// W4A4DualSimulate with the simulate encoding.
	W4A4                             map[string]float64
	W4A4DualStrict, W4A4DualSimulate float64
	// W6A6Dual and W6A6DualSimulate: quant's TestQuantizeTwoBranch, the
	// int8 encoding (most Convs two-branch) and the simulate one.
	W6A6Dual, W6A6DualSimulate float64
	// ESA is quant's TestQuantizeESA: the synthetic enhanced-spatial-
	// attention network, W8A8, smallConfig, on a 64×64 crop of chelsea.
	ESA float64
	// VerifyFixture is cmd/srq's TestVerifyCLI: W8A8 on 4 patches of
	// 24×24 from chelsea and rocket, verified on two 20×17 LR crops.
	VerifyFixture float64
}

// Bundled holds the measurements of BundledPSNR.
var Bundled = BundledPSNR{
	W8A8: 56.37, W8A8LongSkipInt8: 53.67,
	W4A4:           map[string]float64{"minmax": 38.99, "percentile": 39.83, "mse": 32.33, "dual": 44.73},
	W4A4DualStrict: 40.94, W4A4DualSimulate: 44.76,
	W6A6Dual: 54.63, W6A6DualSimulate: 54.69,
	ESA:           55.36,
	VerifyFixture: 58.00,
}
