package grad

import (
	"fmt"
	"slices"
)

// Layout ops: the ones an exported graph uses to move values around
// (PixelShuffle written as Reshape/Transpose, a crop as Slice). Reshape
// shares nothing with its input but copies it, so that ops keep owning
// their outputs' Data.

// Reshape is ONNX Reshape to a fully known shape (the caller resolves 0
// and −1).
func (t *Tape) Reshape(x *Var, shape []int) (*Var, error) {
	if err := checkVars("Reshape", x); err != nil {
		return nil, err
	}
	n, err := numel(shape)
	if err != nil {
		return nil, err
	}
	if n != len(x.Data) {
		return nil, fmt.Errorf("grad: Reshape of %v (%d values) to %v", x.Shape, len(x.Data), shape)
	}
	y := out(slices.Clone(shape), x)
	copy(y.Data, x.Data)
	t.recordElementwise(x, y, nil)
	return y, nil
}

// Transpose is ONNX Transpose by perm (output axis i is input axis
// perm[i]).
func (t *Tape) Transpose(x *Var, perm []int) (*Var, error) {
	if err := checkVars("Transpose", x); err != nil {
		return nil, err
	}
	r := len(x.Shape)
	if len(perm) != r {
		return nil, fmt.Errorf("grad: Transpose of rank %d with perm %v", r, perm)
	}
	seen := make([]bool, r)
	shape := make([]int, r)
	for i, p := range perm {
		if p < 0 || p >= r || seen[p] {
			return nil, fmt.Errorf("grad: Transpose perm %v is not a permutation of %d axes", perm, r)
		}
		seen[p] = true
		shape[i] = x.Shape[p]
	}
	in := rowStrides(x.Shape)
	step := make([]int, r)
	for a, p := range perm {
		step[a] = in[p]
	}
	src := stridedIndex(shape, 0, step)
	return t.gather(x, shape, src, 0), nil
}

// Slice is ONNX Slice with resolved starts, ends and steps per axis (ends
// exclusive, already clamped; steps positive).
func (t *Tape) Slice(x *Var, starts, ends, steps []int) (*Var, error) {
	if err := checkVars("Slice", x); err != nil {
		return nil, err
	}
	r := len(x.Shape)
	if len(starts) != r || len(ends) != r || len(steps) != r {
		return nil, fmt.Errorf("grad: Slice of rank %d with %d starts, %d ends, %d steps", r, len(starts), len(ends), len(steps))
	}
	shape := make([]int, r)
	for a := range r {
		if steps[a] < 1 || starts[a] < 0 || ends[a] > x.Shape[a] {
			return nil, fmt.Errorf("grad: Slice [%d:%d:%d] of axis %d (size %d)", starts[a], ends[a], steps[a], a, x.Shape[a])
		}
		shape[a] = max(0, (ends[a]-starts[a]+steps[a]-1)/steps[a])
	}
	in := rowStrides(x.Shape)
	base, step := 0, make([]int, r)
	for a := range r {
		base += starts[a] * in[a]
		step[a] = steps[a] * in[a]
	}
	src := stridedIndex(shape, base, step)
	return t.gather(x, shape, src, 0), nil
}

// stridedIndex returns, for every element of shape in row-major order, the
// input offset base + Σ idx[a]·step[a]: the index map of a Transpose or a
// Slice.
func stridedIndex(shape []int, base int, step []int) []int32 {
	n, _ := numel(shape)
	src := make([]int32, n)
	idx := make([]int, len(shape))
	for i := range src {
		off := base
		for a, k := range idx {
			off += k * step[a]
		}
		src[i] = int32(off)
		for a := len(shape) - 1; a >= 0; a-- {
			idx[a]++
			if idx[a] < shape[a] {
				break
			}
			idx[a] = 0
		}
	}
	return src
}

func rowStrides(shape []int) []int {
	s := make([]int, len(shape))
	acc := 1
	for a := len(shape) - 1; a >= 0; a-- {
		s[a] = acc
		acc *= shape[a]
	}
	return s
}
