// IEEE 754 binary16 -> binary32, portable (the index stores float16; ranking runs in float32).
#pragma once

#include <cstdint>

namespace irreid {

float half_to_float(uint16_t h);

// A 65536-entry table, built once: the fast path for converting whole index rows.
const float* half_table();

uint16_t float_to_half(float f);  // round to nearest even; for tests and for writing indexes

}  // namespace irreid
