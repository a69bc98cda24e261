// decode_image(): format sniffing, EXIF orientation and the alpha rule shared by the decoders.
#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>
#include <sys/stat.h>
#include <vector>

#include "irreid/error.h"
#include "irreid/image.h"

namespace irreid {
namespace {

std::vector<uint8_t> read_file(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        if (errno == EACCES) throw ImageDecodeError(path + ": permission denied; make it readable (chmod +r)");
        throw ImageDecodeError(path + ": no such file; check the path");
    }
    if (S_ISDIR(st.st_mode)) throw ImageDecodeError(path + ": is a folder, not an image");
    if (st.st_size == 0) throw ImageDecodeError(path + ": empty file (0 bytes); remove it or replace it with the real image");
    std::ifstream f(path, std::ios::binary);
    if (!f) throw ImageDecodeError(path + ": permission denied; make it readable (chmod +r)");
    std::vector<uint8_t> bytes(static_cast<size_t>(st.st_size));
    f.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (static_cast<size_t>(f.gcount()) != bytes.size()) throw ImageDecodeError(path + ": cannot read the whole file; re-copy it");
    return bytes;
}

uint32_t read_u32(const uint8_t* p, bool le) {
    return le ? (uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24)
              : (uint32_t(p[3]) | uint32_t(p[2]) << 8 | uint32_t(p[1]) << 16 | uint32_t(p[0]) << 24);
}

uint16_t read_u16(const uint8_t* p, bool le) { return le ? uint16_t(p[0] | p[1] << 8) : uint16_t(p[1] | p[0] << 8); }

}  // namespace

int exif_orientation(const uint8_t* data, size_t size) {
    if (size >= 6 && std::memcmp(data, "Exif\0\0", 6) == 0) data += 6, size -= 6;
    if (size < 8) return 1;
    bool le;
    if (std::memcmp(data, "II*\0", 4) == 0) {
        le = true;
    } else if (std::memcmp(data, "MM\0*", 4) == 0) {
        le = false;
    } else {
        return 1;
    }
    const uint32_t ifd = read_u32(data + 4, le);
    if (ifd + 2 > size) return 1;
    const uint16_t count = read_u16(data + ifd, le);
    for (uint32_t i = 0; i < count; ++i) {
        const size_t e = ifd + 2 + 12 * static_cast<size_t>(i);
        if (e + 12 > size) return 1;
        if (read_u16(data + e, le) != 0x0112) continue;
        const uint16_t type = read_u16(data + e + 2, le);
        int v = type == 3 ? read_u16(data + e + 8, le) : (type == 4 ? static_cast<int>(read_u32(data + e + 8, le)) : 1);
        return v >= 1 && v <= 8 ? v : 1;
    }
    return 1;
}

ImageRGB8 apply_orientation(const ImageRGB8& in, int orientation) {
    if (orientation < 2 || orientation > 8) return in;
    const int w = in.width, h = in.height;
    const bool swap = orientation >= 5;  // TRANSPOSE, ROTATE_270, TRANSVERSE, ROTATE_90 swap the axes
    ImageRGB8 out{swap ? h : w, swap ? w : h, std::vector<uint8_t>(in.pixels.size())};
    for (int oy = 0; oy < out.height; ++oy) {
        for (int ox = 0; ox < out.width; ++ox) {
            int sx = ox, sy = oy;
            switch (orientation) {
                case 2: sx = w - 1 - ox; break;                      // FLIP_LEFT_RIGHT
                case 3: sx = w - 1 - ox, sy = h - 1 - oy; break;     // ROTATE_180
                case 4: sy = h - 1 - oy; break;                      // FLIP_TOP_BOTTOM
                case 5: sx = oy, sy = ox; break;                     // TRANSPOSE
                case 6: sx = oy, sy = h - 1 - ox; break;             // ROTATE_270 (90 clockwise)
                case 7: sx = w - 1 - oy, sy = h - 1 - ox; break;     // TRANSVERSE
                default: sx = w - 1 - oy, sy = ox; break;            // 8: ROTATE_90 (counter-clockwise)
            }
            const uint8_t* p = &in.pixels[(static_cast<size_t>(sy) * w + sx) * 3];
            uint8_t* q = &out.pixels[(static_cast<size_t>(oy) * out.width + ox) * 3];
            q[0] = p[0], q[1] = p[1], q[2] = p[2];
        }
    }
    return out;
}

uint8_t composite_on_black(uint8_t value, uint8_t alpha) {
    // ImagingAlphaComposite's integer path with dst = (0, 0, 0, 255): blend = 255 * (255 - a),
    // outa255 = 255 * 255, coef1 = a * 128 (7 precision bits).
    if (alpha == 0) return 0;
    constexpr uint32_t kBits = 7;
    const uint32_t coef1 = uint32_t(alpha) * 255u * 255u * (1u << kBits) / (255u * 255u);
    const uint32_t tmp = value * coef1 + (0x80u << kBits);
    return static_cast<uint8_t>(((((tmp >> 8) + tmp) >> 8)) >> kBits);
}

ImageRGB8 decode_image(const std::string& path, int64_t max_pixels) {
    const std::vector<uint8_t> bytes = read_file(path);
    static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (bytes.size() >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF) return decode_jpeg(bytes, path, max_pixels);
    if (bytes.size() >= 8 && std::memcmp(bytes.data(), kPng, 8) == 0) return decode_png(bytes, path, max_pixels);
    throw ImageDecodeError(path + ": not a JPEG or PNG (the native runtime reads those two); convert it, or use the Python runtime");
}

}  // namespace irreid
