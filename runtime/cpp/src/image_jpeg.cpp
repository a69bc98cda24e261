// JPEG decoding with libjpeg-turbo, configured as Pillow's JpegDecode.c is by default:
// ISLOW IDCT, fancy upsampling, YCbCr -> RGB by the library, Adobe CMYK inverted.
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <jpeglib.h>
#include <jerror.h>

#include "irreid/error.h"
#include "irreid/image.h"

namespace irreid {
namespace {

// libjpeg reports errors through callbacks; longjmp back to the decode function (its C++ locals are
// all constructed before setjmp, so none is skipped).
struct JpegErrorManager {
    jpeg_error_mgr pub;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
    bool truncated;
};

void on_error(j_common_ptr cinfo) {
    auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
    (*cinfo->err->format_message)(cinfo, err->message);
    std::longjmp(err->jump, 1);
}

// Pillow refuses truncated files (ImageFile.LOAD_TRUNCATED_IMAGES = False); libjpeg only warns.
void on_message(j_common_ptr cinfo, int level) {
    auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
        err->truncated = true;
        std::snprintf(err->message, sizeof(err->message), "premature end of JPEG data");
        std::longjmp(err->jump, 1);
    }
}

int orientation_from_markers(const jpeg_decompress_struct& cinfo) {
    for (jpeg_saved_marker_ptr m = cinfo.marker_list; m != nullptr; m = m->next) {
        if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 && std::memcmp(m->data, "Exif\0\0", 6) == 0)
            return exif_orientation(m->data, m->data_length);  // Pillow reads the first Exif APP1 only
    }
    return 1;
}

// Pillow's cmyk2rgb: MULDIV255 rounding, no colour management.
uint8_t cmyk_channel(int c, int k) {
    const int nk = 255 - k;
    const int tmp = c * nk + 128;
    const int v = nk - (((tmp >> 8) + tmp) >> 8);
    return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

void to_rgb_row(const uint8_t* row, int components, bool adobe_inverted, int width, uint8_t* out) {
    for (int x = 0; x < width; ++x) {
        const uint8_t* p = row + static_cast<size_t>(x) * components;
        uint8_t* q = out + static_cast<size_t>(x) * 3;
        if (components == 1) {
            q[0] = q[1] = q[2] = p[0];
        } else if (components == 3) {
            q[0] = p[0], q[1] = p[1], q[2] = p[2];
        } else {  // CMYK; Adobe writes it inverted (Pillow's rawmode "CMYK;I")
            int c[4];
            for (int i = 0; i < 4; ++i) c[i] = adobe_inverted ? 255 - p[i] : p[i];
            for (int i = 0; i < 3; ++i) q[i] = cmyk_channel(c[i], c[3]);
        }
    }
}

}  // namespace

// Everything the decode mutates lives on the heap behind a pointer set before setjmp, so a longjmp
// leaves no non-volatile local in an indeterminate state.
struct JpegState {
    jpeg_decompress_struct cinfo;
    JpegErrorManager err;
    ImageRGB8 out;
    std::vector<uint8_t> row;
    std::string failure;
    int orientation = 1;
};

ImageRGB8 decode_jpeg(const std::vector<uint8_t>& bytes, const std::string& name, int64_t max_pixels) {
    const auto st = std::make_unique<JpegState>();
    jpeg_decompress_struct& cinfo = st->cinfo;
    JpegErrorManager& err = st->err;
    std::memset(&cinfo, 0, sizeof(cinfo));
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = on_error;
    err.pub.emit_message = on_message;
    err.truncated = false;
    err.message[0] = '\0';
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        if (err.truncated) throw ImageDecodeError(name + ": truncated image (" + err.message + "); re-copy or remove the file");
        throw ImageDecodeError(name + ": cannot decode (" + err.message + "); re-copy or remove the file");
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, bytes.data(), static_cast<unsigned long>(bytes.size()));
    jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xFFFF);
    jpeg_read_header(&cinfo, TRUE);
    if (static_cast<int64_t>(cinfo.image_width) * cinfo.image_height > max_pixels) {
        st->failure = name + ": refused as a decompression bomb (more than " + std::to_string(max_pixels) +
                      " pixels); crop or downscale it, or raise max_pixels";
    } else {
        st->orientation = orientation_from_markers(cinfo);
        const bool cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
        cinfo.out_color_space = cinfo.jpeg_color_space == JCS_GRAYSCALE ? JCS_GRAYSCALE : (cmyk ? JCS_CMYK : JCS_RGB);
        cinfo.dct_method = JDCT_ISLOW;
        cinfo.do_fancy_upsampling = TRUE;
        jpeg_start_decompress(&cinfo);
        const int w = static_cast<int>(cinfo.output_width), h = static_cast<int>(cinfo.output_height);
        const int comps = cinfo.output_components;
        st->out.width = w, st->out.height = h;
        st->out.pixels.resize(static_cast<size_t>(w) * h * 3);
        st->row.resize(static_cast<size_t>(w) * comps);
        while (cinfo.output_scanline < cinfo.output_height) {
            JSAMPROW rows[1] = {st->row.data()};
            const size_t y = cinfo.output_scanline;
            jpeg_read_scanlines(&cinfo, rows, 1);
            to_rgb_row(st->row.data(), comps, cmyk && cinfo.saw_Adobe_marker, w, &st->out.pixels[y * w * 3]);
        }
        jpeg_finish_decompress(&cinfo);
    }
    jpeg_destroy_decompress(&cinfo);
    if (!st->failure.empty()) throw ImageDecodeError(st->failure);
    return apply_orientation(st->out, st->orientation);
}

}  // namespace irreid
