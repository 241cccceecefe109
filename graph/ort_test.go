package graph

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	ort "github.com/yalue/onnxruntime_go"
	"google.golang.org/protobuf/proto"

	srqort "github.com/srquant/srq/ort"
)

// ortErr says why ORT is unavailable (nil when TestMain initialized it).
// ORT is used here only to judge written models, loaded directly; the
// project's ORT wrapper (srqort) only finds the library, as everywhere.
var ortErr error

func TestMain(m *testing.M) {
	if lib, err := srqort.FindLibrary(""); err != nil {
		ortErr = fmt.Errorf("ONNX Runtime library not found (run `make setup`): %w", err)
	} else {
		ort.SetSharedLibraryPath(lib)
		ortErr = ort.InitializeEnvironment()
	}
	code := m.Run()
	if ortErr == nil {
		_ = ort.DestroyEnvironment()
	}
	os.Exit(code)
}

// runSR runs an SR model (input "input", output "output") on one NCHW image
// with a single thread, so that two runs of equal graphs are bit-comparable.
func runSR(t *testing.T, model []byte, in []float32, c, h, w, scale int64) []float32 {
	t.Helper()
	opts, err := ort.NewSessionOptions()
	require.NoError(t, err)
	defer opts.Destroy()
	require.NoError(t, opts.SetIntraOpNumThreads(1))
	require.NoError(t, opts.SetInterOpNumThreads(1))
	sess, err := ort.NewDynamicAdvancedSessionWithONNXData(model, []string{"input"}, []string{"output"}, opts)
	require.NoError(t, err, "ORT rejected the model")
	defer sess.Destroy()

	x, err := ort.NewTensor(ort.NewShape(1, c, h, w), in)
	require.NoError(t, err)
	defer x.Destroy()
	y, err := ort.NewEmptyTensor[float32](ort.NewShape(1, c, h*scale, w*scale))
	require.NoError(t, err)
	defer y.Destroy()
	require.NoError(t, sess.Run([]ort.Value{x}, []ort.Value{y}))
	return append([]float32(nil), y.GetData()...)
}

// TestORTRewrittenEDSRBitIdentical: ORT must load what ToModel writes and
// compute exactly what the original computes, both for a plain round trip
// and after edits that keep the function (Identity inserted after every
// Relu, nodes shuffled and re-sorted, a dead branch added and removed).
func TestORTRewrittenEDSRBitIdentical(t *testing.T) {
	if ortErr != nil {
		t.Skipf("skipping ORT check: %v", ortErr)
	}
	path := filepath.Join(sharedModels, "edsr_x2.onnx")
	m := loadModel(t, path)
	origBytes, err := os.ReadFile(path)
	require.NoError(t, err)

	rng := rand.New(rand.NewPCG(1, 2))
	in := make([]float32, 3*16*16)
	for i := range in {
		in[i] = float32(rng.IntN(256))
	}
	want := runSR(t, origBytes, in, 3, 16, 16, 2)

	g := mustGraph(t, m)
	edited := g.Clone()
	relus := 0
	for _, n := range edited.Nodes {
		if n.OpType != "Relu" {
			continue
		}
		out := n.Outputs[0]
		id := &Node{Name: edited.UniqueName(n.Name + "/id"), OpType: "Identity",
			Inputs: []string{out}, Outputs: []string{edited.UniqueName(out + "_id")}}
		edited.AddNode(id)
		edited.ReplaceUses(out, id.Outputs[0], id)
		relus++
	}
	dead := &Node{Name: "dead", OpType: "Neg", Inputs: []string{"input"}, Outputs: []string{edited.UniqueName("dead")}}
	edited.AddNode(dead)
	for i, j := 0, len(edited.Nodes)-1; i < j; i, j = i+1, j-1 {
		edited.Nodes[i], edited.Nodes[j] = edited.Nodes[j], edited.Nodes[i]
	}
	edited.Invalidate()
	require.NoError(t, edited.TopoSort())
	assert.Equal(t, 1, edited.RemoveDead())
	require.Equal(t, 16, relus)

	// Negative control: one changed weight must show, or the comparison is dead.
	perturbed := g.Clone()
	w := perturbed.Initializers()[len(perturbed.Initializers())-1]
	w.Data[len(w.Data)-1] ^= 0x40

	for _, tc := range []struct {
		name    string
		g       *Graph
		changed bool
	}{{"round trip", g, false}, {"edited", edited, false}, {"perturbed weight", perturbed, true}} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := tc.g.ToModel()
			require.NoError(t, err)
			b, err := proto.Marshal(out)
			require.NoError(t, err)
			got := runSR(t, b, in, 3, 16, 16, 2)
			require.Len(t, got, len(want))
			diff := 0
			for i := range want {
				if got[i] != want[i] {
					diff++
				}
			}
			if tc.changed {
				assert.NotZero(t, diff, "a changed weight must change the output")
			} else {
				assert.Zero(t, diff, "%d of %d outputs differ", diff, len(want))
			}
		})
	}
}

// TestORTLoadsLibonnxModels: every ONNX backend test model that ORT loads as
// shipped, ORT must also load after FromModel -> ToModel -> Marshal.
//
// Known gap (not in this package): onnx.proto is proto3 without `optional`,
// so an AttributeProto whose i or f is 0 (Concat axis=0, keepdims=0, per-
// channel DequantizeLinear axis=0, LeakyRelu alpha=0) loses the value on the
// wire, and ONNX shape inference in ORT then applies the attribute's default.
// While the schema has that gap, models with such attributes are counted and
// listed instead of failing the test; once it is fixed they are checked too.
func TestORTLoadsLibonnxModels(t *testing.T) {
	if ortErr != nil {
		t.Skipf("skipping ORT check: %v", ortErr)
	}
	if testing.Short() {
		t.Skip("loads ~2000 ORT sessions (3 s); skipped with -short")
	}
	paths, err := filepath.Glob(filepath.Join(libonnxData, "*", "*", "model.onnx"))
	require.NoError(t, err)
	if len(paths) == 0 {
		t.Skipf("no models under %s (install Debian's libonnx-testdata)", libonnxData)
	}
	opts, err := ort.NewSessionOptions()
	require.NoError(t, err)
	defer opts.Destroy()
	require.NoError(t, opts.SetLogSeverityLevel(ort.LoggingLevelFatal))
	require.NoError(t, opts.SetIntraOpNumThreads(1))
	load := func(b []byte) error {
		s, err := ort.NewDynamicAdvancedSessionWithONNXData(b, nil, nil, opts)
		if err == nil {
			_ = s.Destroy()
		}
		return err
	}
	loaded, origRejected := 0, 0
	for _, path := range paths {
		name, _ := filepath.Rel(libonnxData, filepath.Dir(path))
		orig, err := os.ReadFile(path)
		require.NoError(t, err)
		if load(orig) != nil {
			origRejected++ // ops or opsets this ORT build lacks
			continue
		}
		m := loadModel(t, path)
		g := mustGraph(t, m)
		out, err := g.ToModel()
		require.NoError(t, err, name)
		b, err := proto.Marshal(out)
		require.NoError(t, err, name)
		err = load(b)
		switch {
		case err == nil:
			loaded++
		default:
			t.Errorf("%s: ORT loads the original but not the rewritten model: %v", name, err)
		}
	}
	t.Logf("ORT loads %d rewritten models; %d originals rejected by ORT itself", loaded, origRejected)
	assert.Greater(t, loaded, len(paths)/2)
}
