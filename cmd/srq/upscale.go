package main

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/srquant/srq"
	"github.com/srquant/srq/img"
	"github.com/srquant/srq/onnx"
	"github.com/srquant/srq/ort"
	"github.com/srquant/srq/verify"
)

func upscaleFlags(fs *pflag.FlagSet) func(*app, []string) error {
	model := fs.String("model", "", "ONNX SR model, FP32 or quantized (required)")
	tile := fs.Int("tile", 0, "tile side in LR pixels (0: whole image at once); bounds memory on large images. Exact (up to float rounding) for plain CNNs; a network that pools over the whole image (RCAN, IMDN) sees each tile's own statistics, and srq warns with the difference measured on a crop")
	overlap := fs.Int("overlap", 16, "LR pixels of context around each tile")
	hr := fs.Bool("hr", false, "IN is ground truth: downscale it bicubically by the model's scale, upscale, and print PSNR-Y against it (and bicubic's)")
	threads := fs.Int("threads", 0, "intra-op threads (0: ONNX Runtime's default)")
	quality := fs.Int("quality", img.DefaultJPEGQuality, "JPEG quality of OUT, 1..100 (only for a .jpg/.jpeg OUT)")
	ep := fs.String("ep", "cpu", "execution provider: cpu, cuda or tensorrt")
	var pf probeFlags
	pf.register(fs, "")
	return func(a *app, args []string) error {
		if err := wantArgs(args, 2, "IN and OUT image paths"); err != nil {
			return err
		}
		in, out := args[0], args[1]
		if *model == "" {
			return fmt.Errorf("--model is required")
		}
		if *tile < 0 || *overlap < 0 {
			return fmt.Errorf("--tile and --overlap must not be negative")
		}
		for _, p := range []string{in, *model} {
			if onnx.SameFile(p, out) {
				return fmt.Errorf("%s: output path is the same file as an input; refusing to overwrite it", out)
			}
		}
		// OUT's extension chooses the format; a name that asks for one srq
		// cannot write fails here, before the model runs.
		format, err := img.FormatOf(out)
		if err != nil {
			return err
		}
		switch {
		case *quality < 1 || *quality > 100:
			return fmt.Errorf("--quality %d: want 1..100", *quality)
		case fs.Changed("quality") && format != img.JPEG:
			return fmt.Errorf("--quality sets JPEG quality, but %s is written as %s", out, format)
		}
		po, err := pf.options()
		if err != nil {
			return err
		}
		src, err := img.Read(in)
		if err != nil {
			return err
		}
		_, data, err := srq.LoadModel(*model)
		if err != nil {
			return err
		}
		m, err := a.openSR(data, *model, ort.Options{EP: *ep, Threads: *threads}, po)
		if err != nil {
			return err
		}
		defer m.Session.Close()

		lr, gt := src, (*img.Image)(nil)
		if *hr {
			gt = img.Crop(src, 0, 0, src.W-src.W%m.Scale, src.H-src.H%m.Scale)
			if gt.W == 0 || gt.H == 0 {
				return fmt.Errorf("%s: %dx%d is smaller than the scale %d", in, src.W, src.H, m.Scale)
			}
			lr = img.ResizeBicubic(gt, gt.W/m.Scale, gt.H/m.Scale)
		}
		// A network that pools over the whole image cannot be tiled
		// exactly: say so, with the difference measured on a crop.
		check, err := m.CheckTiling(a.ctx, lr, *tile, *overlap)
		if err != nil {
			return fmt.Errorf("%s: %w", in, err)
		}
		if check != nil {
			fmt.Fprintf(a.stderr, "warning: %s: --tile %d: %s\n", *model, *tile, check)
		}
		t0 := time.Now()
		sr, err := m.Upscale(a.ctx, lr, *tile, *overlap)
		if err != nil {
			return fmt.Errorf("%s: %w", in, err)
		}
		took := time.Since(t0)
		if err := img.Write(out, sr, img.WriteOptions{Quality: *quality}); err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "%s: %dx%d -> %dx%d (x%d, input range 0..%g) in %s, wrote %s\n",
			in, lr.W, lr.H, sr.W, sr.H, m.Scale, m.Range, took.Round(time.Millisecond), out)
		if gt != nil {
			psnr, err := verify.PSNRY(sr, gt, m.Scale)
			if err != nil {
				return err
			}
			bic, err := verify.PSNRY(img.ResizeBicubic(lr, gt.W, gt.H), gt, m.Scale)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "PSNR-Y vs %s: model %.2f dB, bicubic %.2f dB (%+.2f dB)\n", in, psnr, bic, psnr-bic)
		}
		return nil
	}
}
