#!/usr/bin/env python3
"""Builds petal's corpus of bad inputs (tests/test_bad_inputs.cpp runs it at test time).

usage: make_corpus.py OUT_DIR   (a new or empty folder)

Writes every case into OUT_DIR and OUT_DIR/manifest.json, which says for each case what
petal must do with it. Only the Python standard library is used; the JPEG and PNG files
are assembled byte by byte here, so the corpus documents exactly what each file holds:

  images   ("kind": "image")   decoded with read_image(path, 3, max_pixels)
    "expect": "ok"             decodes to "shape", with the listed [y, x, channel, value] pixels
    "expect": "error"          throws, the message naming the file and holding "contains"
    "expect": "deterministic"  mutated files: an error or a success, identical on every decode
  datasets ("kind": "folder")  opened with ImageFolder(path)
    "expect": "ok"             "size" samples, "classes", a warning holding "warning"
    "expect": "error"          throws, the message holding "contains"
  weights  ("kind": "safetensors")  loaded with load_safetensors(path), then checked for
                               non-finite values as petal's weight loaders do
"""
import json
import os
import random
import struct
import sys
import zlib

# ------------------------------------------------------------------ JPEG, by hand
# A baseline grayscale JPEG whose 8x8 blocks carry only a DC coefficient: with every
# quantizer 8, block value q decodes to the constant 128 + q (exact with libjpeg's
# accurate integer IDCT), so the expected pixels are known without a JPEG encoder.

DC_BITS = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]  # Annex K.3 luminance DC
DC_VALS = list(range(12))


def canonical_codes(bits, vals):
    codes, code, k = {}, 0, 0
    for length in range(1, 17):
        for _ in range(bits[length - 1]):
            codes[vals[k]] = (code, length)
            code += 1
            k += 1
        code <<= 1
    return codes


def segment(marker, payload):
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def jpeg_headers(width, height, dqt_len_delta=0, components=1):
    out = b"\xff\xd8"
    dqt = bytes([0x00]) + bytes([8] * 64)
    out += bytes([0xFF, 0xDB]) + struct.pack(">H", len(dqt) + 2 + dqt_len_delta) + dqt
    comps = b"".join(bytes([i + 1, 0x11, 0]) for i in range(components))
    out += segment(0xC0, struct.pack(">BHHB", 8, height, width, components) + comps)
    out += segment(0xC4, bytes([0x00]) + bytes(DC_BITS) + bytes(DC_VALS))
    out += segment(0xC4, bytes([0x10]) + bytes([1] + [0] * 15) + bytes([0x00]))  # AC: EOB only
    scan = b"".join(bytes([i + 1, 0x00]) for i in range(components))
    out += segment(0xDA, bytes([components]) + scan + bytes([0, 63, 0]))
    return out


def jpeg_scan(block_values, components=1):
    """block_values: per block, in raster order; a tuple of one value per component when
    components > 1 (the scan interleaves them, one predictor per component)."""
    codes = canonical_codes(DC_BITS, DC_VALS)
    bits, prev = [], [0] * components
    units = []
    for b in block_values:
        units += [(k, v) for k, v in enumerate(b if components > 1 else [b])]
    for k, q in units:
        diff, prev[k] = q - prev[k], q
        cat = abs(diff).bit_length()
        code, length = codes[cat]
        bits += [(code >> (length - 1 - i)) & 1 for i in range(length)]
        mag = diff if diff >= 0 else diff + (1 << cat) - 1
        bits += [(mag >> (cat - 1 - i)) & 1 for i in range(cat)]
        bits.append(0)  # EOB, the AC table's only (1-bit) code
    bits += [1] * (-len(bits) % 8)
    out = bytearray()
    for i in range(0, len(bits), 8):
        byte = int("".join(map(str, bits[i:i + 8])), 2)
        out.append(byte)
        if byte == 0xFF:
            out.append(0x00)  # byte stuffing
    return bytes(out)


def jpeg(width, height, block_values):
    return jpeg_headers(width, height) + jpeg_scan(block_values) + b"\xff\xd9"


# ------------------------------------------------------------------ PNG

def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(width, height, color_type, rows=None, idat=None):
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
    if idat is None:
        raw = b"".join(b"\x00" + bytes(r) for r in rows)
        idat = zlib.compress(raw)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)) +
            png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")), channels


def bmp_header(width, height):
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40, 0, 0, 14 + 40) + info


# ------------------------------------------------------------------ safetensors

def safetensors(tensors):
    """tensors: name -> (shape, list of float32 values)."""
    header, data = {}, b""
    for name, (shape, values) in tensors.items():
        blob = struct.pack("<%df" % len(values), *values)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    if os.path.exists(out) and os.listdir(out):
        sys.exit("make_corpus.py: %s is not empty; give a new or empty folder" % out)
    os.makedirs(out, exist_ok=True)
    cases = []

    def write(name, data):
        path = os.path.join(out, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        return name

    def image(name, data, expect, why, **kw):
        cases.append(dict(kind="image", file=write(name, data), expect=expect, why=why, **kw))

    # ---- JPEG
    blocks = [-100, -20, 40, 110]  # 16x16: blocks in raster order
    good = jpeg(16, 16, blocks)
    pixels = [[y, x, c, 128 + blocks[(y // 8) * 2 + x // 8]] for y in (0, 7, 8, 15) for x in (0, 9) for c in (0, 2)]
    image("jpeg/good_gray.jpg", good, "ok", "a valid DC-only grayscale JPEG, decoded to RGB", shape=[16, 16, 3],
          pixels=pixels)
    cmyk_blocks = [(-100, 20, 90, 100), (0, 0, 0, 127), (60, -128, 10, -50), (127, 127, 127, 0)]
    cmyk = jpeg_headers(16, 16, components=4) + jpeg_scan(cmyk_blocks, components=4) + b"\xff\xd9"
    cmyk_pixels = []
    for y, x in ((0, 0), (0, 8), (8, 0), (15, 15)):
        vals = [128 + v for v in cmyk_blocks[(y // 8) * 2 + x // 8]]
        for c in range(3):
            cmyk_pixels.append([y, x, c, (vals[c] * vals[3] + 127) // 255])
    image("jpeg/good_cmyk.jpg", cmyk, "ok",
          "a 4-component (CMYK, no Adobe marker) JPEG: RGB = channel * K / 255, the inverted-ink convention",
          shape=[16, 16, 3], pixels=cmyk_pixels)
    image("jpeg/truncated_half.jpg", good[:len(good) // 2], "error", "cut inside the Huffman tables",
          contains=["JPEG"])
    image("jpeg/truncated_scan.jpg", good[:-3], "error",
          "the last scan byte and EOI missing: libjpeg-turbo warns (premature end), petal refuses", contains=["JPEG"])
    image("jpeg/no_eoi.jpg", good[:-2], "error", "every scan byte present but no EOI marker",
          contains=["JPEG"])
    image("jpeg/only_soi.jpg", b"\xff\xd8\xff", "error", "a JPEG signature and nothing else", contains=["JPEG"])
    image("jpeg/zero_width.jpg", jpeg(0, 16, blocks), "error", "SOF says width 0", contains=["JPEG"])
    image("jpeg/bad_dqt_length.jpg", jpeg_headers(16, 16, dqt_len_delta=40) + jpeg_scan(blocks) + b"\xff\xd9",
          "error", "DQT segment length runs into the next segments", contains=["JPEG"])
    image("jpeg/bomb_26000.jpg", jpeg_headers(26000, 26000) + b"\x00" * 2000 + b"\xff\xd9", "error",
          "a 2 KB decompression bomb: the header says 26000x26000", contains=["26000x26000", "limit"])
    image("jpeg/over_small_limit.jpg", good, "error", "a valid 16x16 JPEG over a 100-pixel limit",
          contains=["16x16", "limit"], max_pixels=100)
    rng = random.Random(10)
    for i in range(120):
        data = bytearray(good)
        how = rng.choice(["flip", "flip", "truncate", "insert", "ff"])
        if how == "flip":
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(2, len(data))] ^= 1 << rng.randrange(8)
        elif how == "truncate":
            data = data[:rng.randrange(3, len(data))]
        elif how == "insert":
            p = rng.randrange(2, len(data))
            data[p:p] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        else:
            data[rng.randrange(2, len(data))] = 0xFF
        image("jpeg/mutated_%03d.jpg" % i, bytes(data), "deterministic", "seeded mutation (%s) of good_gray.jpg" % how)

    # ---- PNG
    rows = [[(7 * x + 13 * y + 50 * c) % 256 for x in range(5) for c in range(3)] for y in range(4)]
    good_png, _ = png(5, 4, 2, rows=rows)
    image("png/good_rgb.png", good_png, "ok", "a valid 5x4 RGB PNG", shape=[4, 5, 3],
          pixels=[[y, x, c, rows[y][x * 3 + c]] for y in range(4) for x in (0, 4) for c in range(3)])
    image("png/truncated.png", good_png[:len(good_png) - 20], "error", "cut inside IDAT", contains=["corrupt"])
    bomb, _ = png(12000, 12000, 2, idat=zlib.compress(b"\x00" * 1000))
    image("png/bomb_12000.png", bomb, "error", "IHDR says 12000x12000 (144 M pixels)",
          contains=["12000x12000", "limit"])
    big, _ = png(20000, 20000, 6, idat=zlib.compress(b"\x00" * 100))
    image("png/stb_limit_20000_rgba.png", big, "error",
          "20000x20000 RGBA with the pixel limit lifted: over stb_image's own 1 GiB limit",
          contains=["20000x20000", "stb_image"], max_pixels=0)
    wide, _ = png((1 << 24) + 1, 1, 0, idat=zlib.compress(b"\x00" * 100))
    image("png/stb_limit_wide.png", wide, "error", "a side longer than stb_image's 2^24",
          contains=["16777217x1", "stb_image"])
    image("png/not_an_image.png", b"this is not an image at all\n", "error", "text with a .png name",
          contains=["not an image"])
    image("png/empty.png", b"", "error", "0 bytes", contains=["empty"])
    # Found by tests/fuzz: inputs that reached stb_image's own bugs.
    image("jpeg/fill_byte_before_soi.jpg", b"\xff" + good, "error",
          "0xFF before SOI: stb took it for a JPEG and overran a Huffman table; stb no longer decodes JPEG",
          contains=["not an image"])
    idat_bomb = good_png[:33] + struct.pack(">I", 0x7FFFFFF0) + b"IDAT" + good_png[41:]
    image("png/idat_claims_2gb.png", idat_bomb, "error",
          "a 100-byte PNG whose IDAT length says 2 GB: stb allocated it before reading", contains=["claims"])
    image("pnm/width_overflow.ppm", b"P6\n5555555555 4\n255\n" + b"\x00" * 60, "error",
          "a PPM width of 10 digits overflows stb's int parser", contains=["corrupt PNM", "10 digits"])
    image("pnm/zero_height.ppm", b"P6\n2 0\n255\n" + b"\x00" * 6, "error",
          "a PPM 2 pixels wide and 0 high: stb returned an empty image", contains=["2x0"])
    image("pnm/sixteen_bit.pgm", b"P5\n4 4\n65535\n" + b"\x44" * 32, "error",
          "a 16-bit PGM: stb 2.27 reads past its buffer converting it to 8 bits", contains=["8-bit PNM only"])
    image("pnm/good.ppm", b"P6\n# a comment\n2 1\n255\n" + bytes([10, 20, 30, 40, 50, 60]), "ok",
          "a valid 2x1 binary PPM with a comment", shape=[1, 2, 3], pixels=[[0, 0, 0, 10], [0, 1, 2, 60]])
    image("bmp/bomb_30000.bmp", bmp_header(30000, 30000), "error", "BMP header says 30000x30000",
          contains=["30000x30000", "limit"])

    # ---- datasets
    def folder(name, expect, why, **kw):
        cases.append(dict(kind="folder", file=name, expect=expect, why=why, **kw))

    def put_png(rel, seed):
        write(rel, png(3, 3, 2, rows=[[(seed * 31 + i) % 256 for i in range(9)] for _ in range(3)])[0])

    put_png("ds_loop/daisy/a.png", 1)
    put_png("ds_loop/roses/b.png", 2)
    put_png("ds_loop/roses/c.png", 3)
    os.symlink("..", os.path.join(out, "ds_loop/daisy/loop"))
    folder("ds_loop", "ok", "daisy/loop -> .. must not turn every image into a daisy", size=3,
           classes=["daisy", "roses"], counts=[1, 2], warning="symlink cycle")
    put_png("ds_self/daisy/a.png", 1)
    put_png("ds_self/tulips/b.png", 2)
    os.symlink(".", os.path.join(out, "ds_self/daisy/self"))
    folder("ds_self", "ok", "daisy/self -> . must not duplicate the class", size=2, classes=["daisy", "tulips"],
           counts=[1, 1], warning="symlink cycle")
    put_png("ds_hardlink/daisy/a.png", 1)
    os.link(os.path.join(out, "ds_hardlink/daisy/a.png"), os.path.join(out, "ds_hardlink/daisy/b.png"))
    put_png("ds_hardlink/roses/c.png", 2)
    folder("ds_hardlink", "ok", "one file under two names in a class counts once", size=2,
           classes=["daisy", "roses"], counts=[1, 1], warning="counted once")
    put_png("ds_two_labels/daisy/a.png", 1)
    os.makedirs(os.path.join(out, "ds_two_labels/roses"))
    os.link(os.path.join(out, "ds_two_labels/daisy/a.png"), os.path.join(out, "ds_two_labels/roses/a.png"))
    folder("ds_two_labels", "error", "one file in two classes", contains=["two labels"])
    put_png("ds_one_class/daisy/a.png", 1)
    put_png("ds_one_class/daisy/b.png", 2)
    folder("ds_one_class", "error", "a single class trains to loss 0 and learns nothing",
           contains=["1 class folder", "at least 2"])
    os.symlink("ds_root_loop", os.path.join(out, "ds_root_loop"))
    folder("ds_root_loop", "error", "the data dir is a symlink to itself", contains=["symbolic links"])

    # ---- weights
    def weights(name, tensors, expect, why, **kw):
        cases.append(dict(kind="safetensors", file=write(name, safetensors(tensors)), expect=expect, why=why, **kw))

    weights("weights/nan.safetensors", {"ok": ([2], [1.0, 2.0]), "blocks.0.norm1.weight": ([3], [1.0, float("nan"), 0.5])},
            "error", "a NaN weight", contains=["blocks.0.norm1.weight", "non-finite"])
    weights("weights/inf.safetensors", {"head.bias": ([2], [float("-inf"), 0.0])}, "error", "an infinite weight",
            contains=["head.bias", "non-finite"])
    weights("weights/finite.safetensors", {"a": ([2, 2], [1.0, -2.0, 3.5, 0.0])}, "ok", "finite weights")

    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump({"cases": cases}, f, indent=1)
    print("wrote %d cases to %s" % (len(cases), out))


if __name__ == "__main__":
    main()
