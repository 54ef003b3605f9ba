// avxvnni.cpp's kernels compiled a second time, AVX2 only, with vpdpbusd emulated exactly (see there): the
// AVX-VNNI path's tests on any AVX2 CPU (impl="avxvnni_emulated").
#define TCLIP_VNNI_EMULATED
#include "x86/avxvnni.cpp"
