package ortconv

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/srquant/srq/grad"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/ort/orttest"
)

// BenchmarkConvBackward is the measurement of grad's doc.go: the backward
// pass (dX and dW) of an EDSR body Conv, 64→64, 3×3, pad 1, on a batch of
// 16 patches of 48², in Go (grad.GoConv) and as ONNX graphs in ORT (dW both
// ways, and each gradient alone), all on GOMAXPROCS threads. It logs (-v)
// the max |Go − ORT| of each gradient.
func BenchmarkConvBackward(b *testing.B) {
	orttest.Require(b)
	threads := grad.NewTape().Workers
	xs, ws := []int{16, 64, 48, 48}, []int{64, 64, 3, 3}
	o := grad.ConvOpts{Pads: [4]int{1, 1, 1, 1}}
	ys, err := grad.ConvOutputShape(xs, ws, o)
	require.NoError(b, err)
	rng := rand.New(rand.NewPCG(21, 22))
	x, w, dy := randn(rng, size(xs), 1), randn(rng, size(ws), 0.05), randn(rng, size(ys), 1)
	goK := grad.GoConv{Workers: threads}
	dx, dw := make([]float32, len(x)), make([]float32, len(w))
	goBackward := func() {
		clear(dx)
		clear(dw)
		_, err := goK.BackwardData(dy, w, xs, ws, o, dx)
		require.NoError(b, err)
		_, err = goK.BackwardWeight(x, dy, xs, ws, o, dw)
		require.NoError(b, err)
	}
	goBackward()
	b.Run("go", func(b *testing.B) {
		for b.Loop() {
			goBackward()
		}
	})
	for _, v := range []struct {
		dx bool
		dw DW
	}{{true, DWSwappedConv}, {true, DWTaps}, {true, DWNone}, {false, DWSwappedConv}, {false, DWTaps}} {
		model, err := BackwardModel(xs, ws, o, v.dx, v.dw)
		require.NoError(b, err)
		s, err := ort.NewSession(model, "conv_backward", ort.Options{Threads: threads})
		require.NoError(b, err)
		b.Cleanup(func() { _ = s.Close() })
		var feeds []*ort.Tensor
		if v.dw != DWNone {
			feeds = append(feeds, tensor(xs, x))
		}
		if v.dx {
			feeds = append(feeds, tensor(ws, w))
		}
		feeds = append(feeds, tensor(ys, dy))
		res, err := s.Run(feeds...)
		require.NoError(b, err)
		name := "ort"
		if v.dx {
			name += "-dX"
			d, sc := maxDiff(dx, res[0].Data)
			b.Logf("threads %d, ORT %s: max |Go − ORT| dX %.3g (of max %.3g)", threads, ort.Version(), d, sc)
		}
		if v.dw != DWNone {
			name += map[DW]string{DWTaps: "-dW-taps", DWSwappedConv: "-dW-conv"}[v.dw]
			d, sc := maxDiff(dw, res[len(res)-1].Data)
			b.Logf("threads %d, ORT %s: max |Go − ORT| %s %.3g (of max %.3g)", threads, ort.Version(), name, d, sc)
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				res, err = s.RunReuse(b.Context(), res, feeds...)
				require.NoError(b, err)
			}
		})
	}
}

// maxDiff returns the largest |a − b| and the largest |a|.
func maxDiff(a, b []float32) (diff, scale float64) {
	for i := range a {
		diff = math.Max(diff, math.Abs(float64(a[i])-float64(b[i])))
		scale = math.Max(scale, math.Abs(float64(a[i])))
	}
	return diff, scale
}

// TestModelErrors: the builders refuse what they cannot write.
func TestModelErrors(t *testing.T) {
	_, err := BackwardModel([]int{1, 4, 6, 6}, []int{4, 2, 3, 3}, grad.ConvOpts{Group: 2}, true, DWSwappedConv)
	require.ErrorContains(t, err, "group 2")
	_, err = BackwardModel([]int{1, 4, 6, 6}, []int{4, 4, 3, 3}, grad.ConvOpts{}, false, DWNone)
	require.ErrorContains(t, err, "no output")
	_, err = ForwardModel([]int{1, 4, 2, 2}, []int{4, 4, 3, 3}, grad.ConvOpts{})
	require.Error(t, err)
}
