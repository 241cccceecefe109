// Package img reads and writes images as planar float tensors and resizes them
// with the bicubic filter the SR literature uses to make LR inputs.
package img

// Image is a planar (CHW) float image with values in 0..1, the layout ONNX SR
// models take (after scaling to the model's input range).
type Image struct {
	C, H, W int
	Pix     []float32 // len C*H*W, channel-major
}

// New returns a zeroed image of the given size.
func New(c, h, w int) *Image {
	return &Image{C: c, H: h, W: w, Pix: make([]float32, c*h*w)}
}
