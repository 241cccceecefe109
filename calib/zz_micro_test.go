package calib

import (
	"math"
	"math/rand/v2"
	"testing"
)

func microData() []float32 {
	r := rand.New(rand.NewPCG(9, 10))
	return relu(r, 1<<20, 1)
}

func BenchmarkMicroScan(b *testing.B) {
	x := microData()
	for b.Loop() {
		for i := 0; i < len(x); i += chunkSize {
			scanChunk(x[i : i+chunkSize])
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(x)), "ns/el")
}

func scanNoZero(x []float32) (float32, float32, float64, float64) {
	mn, mx := float32(math.Inf(1)), float32(math.Inf(-1))
	var sum, sumSq float64
	for _, v := range x {
		mn = min(mn, v)
		mx = max(mx, v)
		f := float64(v)
		sum += f
		sumSq += f * f
	}
	return mn, mx, sum, sumSq
}

func BenchmarkMicroScanNoZero(b *testing.B) {
	x := microData()
	for b.Loop() {
		scanNoZero(x)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(x)), "ns/el")
}

func scanIf(x []float32) (float32, float32) {
	mn, mx := float32(math.Inf(1)), float32(math.Inf(-1))
	for _, v := range x {
		if v < mn {
			mn = v
		}
		if v > mx {
			mx = v
		}
	}
	return mn, mx
}

func BenchmarkMicroMinMaxIf(b *testing.B) {
	x := microData()
	for b.Loop() {
		scanIf(x)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(x)), "ns/el")
}

func scanBuiltin(x []float32) (float32, float32) {
	mn, mx := float32(math.Inf(1)), float32(math.Inf(-1))
	for _, v := range x {
		mn = min(mn, v)
		mx = max(mx, v)
	}
	return mn, mx
}

func BenchmarkMicroMinMaxBuiltin(b *testing.B) {
	x := microData()
	for b.Loop() {
		scanBuiltin(x)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(x)), "ns/el")
}

func BenchmarkMicroBin(b *testing.B) {
	x := microData()
	counts := make([]int64, 2048)
	s := NewStats(2048)
	s.Add(x)
	inv := math.Ldexp(1, -s.exp)
	for b.Loop() {
		binInto(counts, x, inv, s.base, false)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(x)), "ns/el")
}

func bin2(counts []int64, x []float32, inv float64, base int64) {
	n := uint64(len(counts) / 2)
	c0, c1 := counts[:n], counts[n:]
	i := 0
	for ; i+1 < len(x); i += 2 {
		j0 := uint64(int64(math.Floor(float64(x[i])*inv)) - base)
		j1 := uint64(int64(math.Floor(float64(x[i+1])*inv)) - base)
		if j0 < n {
			c0[j0]++
		}
		if j1 < n {
			c1[j1]++
		}
	}
}

func BenchmarkMicroBin2(b *testing.B) {
	x := microData()
	counts := make([]int64, 4096)
	s := NewStats(2048)
	s.Add(x)
	inv := math.Ldexp(1, -s.exp)
	for b.Loop() {
		bin2(counts, x, inv, s.base)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(x)), "ns/el")
}
