// PNG decoding with libpng, producing what Pillow's PngImagePlugin + runtime.preprocess.to_rgb give:
// 16-bit grey -> per-image min-max stretch (numpy rint), other 16-bit -> high byte (Pillow's
// "RGB;16B" unpackers), palette -> RGB (RGBA composited on black when it has tRNS), grey/RGB tRNS
// ignored (Pillow's convert("RGB") ignores it too), gamma and sBIT ignored.
#include <png.h>

#include <algorithm>
#include <cmath>
#include <csetjmp>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "irreid/error.h"
#include "irreid/image.h"

namespace irreid {
namespace {

struct PngReader {
    const std::vector<uint8_t>* bytes = nullptr;
    size_t pos = 0;
    std::string message;
};

void read_bytes(png_structp png, png_bytep out, png_size_t n) {
    auto* r = static_cast<PngReader*>(png_get_io_ptr(png));
    if (r->pos + n > r->bytes->size()) {
        r->message = "image file is truncated";
        png_error(png, "truncated");
    }
    std::memcpy(out, r->bytes->data() + r->pos, n);
    r->pos += n;
}

void on_error(png_structp png, png_const_charp msg) {
    auto* r = static_cast<PngReader*>(png_get_error_ptr(png));
    if (r->message.empty()) r->message = msg;
    png_longjmp(png, 1);
}

void on_warning(png_structp, png_const_charp) {}

struct PngState {
    png_structp png = nullptr;
    png_infop info = nullptr;
    PngReader reader;
    std::vector<uint8_t> raw;     // decoded rows after the libpng transforms
    std::vector<png_bytep> rows;
    int width = 0, height = 0, channels = 0, bit_depth = 0, color_type = 0;
    int orientation = 1;
    std::string failure;
    ~PngState() { png_destroy_read_struct(&png, &info, nullptr); }
};

int exif_from_png(png_structp png, png_infop info) {
#ifdef PNG_eXIf_SUPPORTED
    png_uint_32 n = 0;
    png_bytep exif = nullptr;
    if (png_get_eXIf_1(png, info, &n, &exif) != 0 && exif != nullptr) return exif_orientation(exif, n);
#else
    (void)png, (void)info;
#endif
    return 1;
}

// Sets the transforms, then reads every row (interlacing handled by libpng).
void read_pixels(PngState& s) {
    png_structp png = s.png;
    png_infop info = s.info;
    const bool palette = s.color_type == PNG_COLOR_TYPE_PALETTE;
    const bool grey16 = s.color_type == PNG_COLOR_TYPE_GRAY && s.bit_depth == 16;
    if (palette) {
        png_set_palette_to_rgb(png);
        if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
    }
    if (s.color_type == PNG_COLOR_TYPE_GRAY && s.bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (grey16) {
        png_set_swap(png);  // host order for the uint16 read below (little-endian hosts)
    } else if (s.bit_depth == 16) {
        png_set_strip_16(png);
    }
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    s.channels = png_get_channels(png, info);
    const size_t rowbytes = png_get_rowbytes(png, info);
    s.raw.resize(rowbytes * s.height);
    s.rows.resize(s.height);
    for (int y = 0; y < s.height; ++y) s.rows[y] = s.raw.data() + rowbytes * y;
    png_read_image(png, s.rows.data());
    png_read_end(png, info);
}

// runtime.preprocess._high_depth_to_u8: (a - lo) * (255 / (hi - lo)), numpy rint (ties to even).
void stretch16(const PngState& s, ImageRGB8& out) {
    const auto* v = reinterpret_cast<const uint16_t*>(s.raw.data());
    const size_t n = static_cast<size_t>(s.width) * s.height;
    const auto [lo_it, hi_it] = std::minmax_element(v, v + n);
    const double lo = *lo_it, hi = *hi_it;
    const double scale = hi > lo ? 255.0 / (hi - lo) : 0.0;
    for (size_t i = 0; i < n; ++i) {
        const double r = std::nearbyint((v[i] - lo) * scale);
        const auto g = static_cast<uint8_t>(std::clamp(r, 0.0, 255.0));
        out.pixels[3 * i] = out.pixels[3 * i + 1] = out.pixels[3 * i + 2] = g;
    }
}

ImageRGB8 to_rgb(const PngState& s) {
    ImageRGB8 out{s.width, s.height, std::vector<uint8_t>(static_cast<size_t>(s.width) * s.height * 3)};
    if (s.color_type == PNG_COLOR_TYPE_GRAY && s.bit_depth == 16) {
        stretch16(s, out);
        return out;
    }
    const size_t n = static_cast<size_t>(s.width) * s.height;
    const int c = s.channels;
    for (size_t i = 0; i < n; ++i) {
        const uint8_t* p = &s.raw[i * c];
        uint8_t* q = &out.pixels[i * 3];
        switch (c) {
            case 1: q[0] = q[1] = q[2] = p[0]; break;
            case 2: q[0] = q[1] = q[2] = composite_on_black(p[0], p[1]); break;
            case 3: q[0] = p[0], q[1] = p[1], q[2] = p[2]; break;
            default:
                for (int k = 0; k < 3; ++k) q[k] = composite_on_black(p[k], p[3]);
        }
    }
    return out;
}

}  // namespace

ImageRGB8 decode_png(const std::vector<uint8_t>& bytes, const std::string& name, int64_t max_pixels) {
    const auto st = std::make_unique<PngState>();
    st->reader.bytes = &bytes;
    st->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &st->reader, on_error, on_warning);
    if (st->png == nullptr) throw ImageDecodeError(name + ": cannot decode (libpng could not start)");
    st->info = png_create_info_struct(st->png);
    if (st->info == nullptr) throw ImageDecodeError(name + ": cannot decode (libpng could not start)");
    png_set_read_fn(st->png, &st->reader, read_bytes);
    if (setjmp(png_jmpbuf(st->png))) {
        const std::string& m = st->reader.message;
        if (m.find("truncated") != std::string::npos || m.find("Not enough") != std::string::npos)
            throw ImageDecodeError(name + ": truncated image (" + m + "); re-copy or remove the file");
        throw ImageDecodeError(name + ": cannot decode (" + m + "); re-copy or remove the file");
    }
    png_read_info(st->png, st->info);
    st->width = static_cast<int>(png_get_image_width(st->png, st->info));
    st->height = static_cast<int>(png_get_image_height(st->png, st->info));
    st->bit_depth = png_get_bit_depth(st->png, st->info);
    st->color_type = png_get_color_type(st->png, st->info);
    if (static_cast<int64_t>(st->width) * st->height > max_pixels) {
        st->failure = name + ": refused as a decompression bomb (more than " + std::to_string(max_pixels) +
                      " pixels); crop or downscale it, or raise max_pixels";
    } else {
        read_pixels(*st);
        st->orientation = exif_from_png(st->png, st->info);
    }
    if (!st->failure.empty()) throw ImageDecodeError(st->failure);
    return apply_orientation(to_rgb(*st), st->orientation);
}

}  // namespace irreid
