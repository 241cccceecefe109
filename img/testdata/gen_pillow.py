#!/usr/bin/python3
"""Regenerates the Pillow reference fixtures used by img's tests.

Run from img/testdata with Debian's python3-pil (Pillow 9.4):
    /usr/bin/python3 gen_pillow.py
src.png is a deterministic pseudo-random 41x29 RGB image (plus smooth ramps,
so both noise and edges are covered); resize_WxH.png are
src.resize((W, H), Image.BICUBIC) for down-, up- and one-axis-only sizes.
The bmp_* files hold the same 13x7 picture (bmp_ref.png) in the BMP
variants img decodes.
"""
import random
from PIL import Image

random.seed(7)
W, H = 41, 29
im = Image.new("RGB", (W, H))
px = im.load()
for y in range(H):
    for x in range(W):
        if x < 20:
            px[x, y] = (random.randrange(256), random.randrange(256), random.randrange(256))
        else:
            px[x, y] = ((x * 12) % 256, (y * 9) % 256, 255 if (x + y) % 7 == 0 else 0)
im.save("src.png")
for w, h in [(20, 14), (13, 9), (7, 5), (1, 1), (82, 58), (100, 31), (41, 10), (17, 29), (57, 40)]:
    im.resize((w, h), Image.BICUBIC).save(f"resize_{w}x{h}.png")

small = im.crop((3, 4, 16, 11))  # 13x7: odd width exercises row padding
small.save("bmp_ref.png")
small.save("bmp_24.bmp")
small.convert("RGBA").save("bmp_32.bmp")
pal = small.quantize(colors=50)
pal.convert("RGB").save("bmp_8_ref.png")
pal.save("bmp_8.bmp")
gray = small.convert("L")
gray.save("bmp_8gray.bmp")
gray.convert("RGB").save("bmp_8gray_ref.png")
