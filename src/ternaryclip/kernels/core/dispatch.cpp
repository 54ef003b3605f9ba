// The dispatch tables of this build and their selection (see dispatch.h).
#include "core/dispatch.h"

#include <array>

#include "core/attention_int8.h"
#include "core/checked.h"
#include "core/cpu_features.h"
#include "core/ops.h"

namespace tclip {

namespace {

bool always() { return true; }

// The portable reference: every op but the prepared layouts, on any CPU.
const KernelTable ref_table = {
    .name = "ref",
    .float_ok = always,
    .gemm_ok = always,
    .quantize_rows = ref::quantize_rows,
    .int_dot = ref::int_dot,
    .gemm_fast = ref::gemm_fast,
    .gemm_exact = ref::gemm_exact,
    .layer_norm = ops_generic::layer_norm,
    .gelu = ops_generic::gelu,
    .quick_gelu = ops_generic::quick_gelu,
    .attention = ops_generic::attention,
};

// Narrowest first; a null entry falls back to the nearest narrower table that has it.  Each architecture's
// tables come from its own folder (x86/tables.cpp, arm/tables.cpp).
const std::array kTables = {
    &ref_table,
#if defined(TCLIP_X86_TABLES)
    &avx2_table,
    &avxvnni_emulated_table,  // right after avx2: what it does not have is avx2's
    &avxvnni_table,
    &avx512_table,
    &amx_table,
#endif
#if defined(TCLIP_NEON_TABLES)
    &neon_table,
    &neon_dotprod_table,
    &neon_i8mm_table,
#endif
};
constexpr size_t kCount = kTables.size();

template <class F>
void inherit(F& entry, F narrower) {
    if (entry == nullptr) entry = narrower;
}

// kTables with every null entry (but the prepared-layout ones) filled from the narrower tables.
const std::array<KernelTable, kCount>& resolved() {
    static const auto tables = [] {
        std::array<KernelTable, kCount> out{};
        for (size_t i = 0; i < kCount; ++i) {
            out[i] = *kTables[i];
            if (i == 0) continue;
            const KernelTable& prev = out[i - 1];
            inherit(out[i].quantize_rows, prev.quantize_rows);
            inherit(out[i].int_dot, prev.int_dot);
            inherit(out[i].gemm_fast, prev.gemm_fast);
            inherit(out[i].gemm_exact, prev.gemm_exact);
            inherit(out[i].layer_norm, prev.layer_norm);
            inherit(out[i].gelu, prev.gelu);
            inherit(out[i].quick_gelu, prev.quick_gelu);
            inherit(out[i].attention, prev.attention);
        }
        return out;
    }();
    return tables;
}

bool has_own(const KernelTable& t, Op op) {
    switch (op) {
        case Op::quantize:
            return t.quantize_rows != nullptr;
        case Op::int_dot:
            return t.int_dot != nullptr;
        case Op::gemm_fast:
            return t.gemm_fast != nullptr;
        case Op::gemm_exact:
            return t.gemm_exact != nullptr;
        case Op::float_ops:
            return t.layer_norm != nullptr;
    }
    return false;
}

// The table that really runs `op` for table i: i itself, or the nearest narrower one with the entry.
size_t owner_of(size_t i, Op op) {
    while (i > 0 && !has_own(*kTables[i], op)) --i;
    return i;
}

bool usable(size_t i, Op op, const TernaryWeights* w) {
    const KernelTable& t = *kTables[i];
    const bool cpu = op == Op::float_ops ? t.float_ok() : t.gemm_ok();
    const bool ternary = op != Op::float_ops && op != Op::quantize;
    return cpu && (!ternary || w == nullptr || t.supports == nullptr || t.supports(*w));
}

[[noreturn]] void unknown_impl(const std::string& impl) {
    std::string names;
    for (const auto* t : kTables) names += std::string(names.empty() ? "" : ", ") + "'" + t->name + "'";
    throw std::invalid_argument("impl must be 'auto' or one of " + names + ", got '" + impl + "'");
}

}  // namespace

const KernelTable& pick(const std::string& impl, Op op, const TernaryWeights* w) {
    const auto& tables = resolved();
    if (impl == "auto") {
        for (size_t i = kCount; i-- > 1;)
            if (kTables[i]->automatic && has_own(*kTables[i], op) && usable(i, op, w)) return tables[i];
        return tables[0];
    }
    for (size_t i = 0; i < kCount; ++i) {
        if (impl != kTables[i]->name) continue;
        const size_t runs = owner_of(i, op);
        require(usable(runs, op, w),
                "impl='" + impl + "' is not available on this CPU, for this group size or this operation");
        return tables[runs];
    }
    unknown_impl(impl);
}

const KernelTable* pick_bf16(const std::string& impl, const TernaryWeights& w) {
    const auto& tables = resolved();
    for (size_t i = kCount; i-- > 0;) {
        if (impl != "auto" && impl != kTables[i]->name) continue;
        // the one bf16 GEMM (AMX's) needs AMX-BF16 besides the AMX-INT8 of its table's gemm_ok
        if (kTables[i]->gemm_bf16_prepared != nullptr && cpu_features().amx_bf16 && usable(i, Op::gemm_fast, &w))
            return &tables[i];
        if (impl != "auto") return nullptr;
    }
    if (impl != "auto") unknown_impl(impl);
    return nullptr;
}

const char* fast_attention_name(const std::string& impl, bool int8) {
    const KernelTable& table = pick(impl, Op::float_ops);
    const CpuFeatures& cpu = cpu_features();
    // the int8 attentions fall back to their table's float32 one (attention_int8_avx512.cpp, _avx2.cpp)
    if (int8 && table.attention_int8 == ops_avx512vnni::attention_int8)
        return cpu.avx512_vnni ? "avx512_int8" : "float32";
    if (int8 && table.attention_int8 == ops_avx2int8::attention_int8) return cpu.avx2 ? "avx2_int8" : "float32";
    // the bf16 attentions fall back in this order (attention_amx.cpp, attention_avx512bf16.cpp)
    if (table.attention_fast == ops_amx::attention_bf16 && cpu.amx_bf16) return "amx_bf16";
    const bool avx512_bf16_path =
        table.attention_fast == ops_amx::attention_bf16 || table.attention_fast == ops_avx512bf16::attention_bf16;
    return avx512_bf16_path && cpu.avx512_bf16 ? "avx512_bf16" : "float32";
}

std::vector<std::string> impl_names() {
    std::vector<std::string> names;
    for (const auto* t : kTables) names.emplace_back(t->name);
    return names;
}

std::vector<std::string> test_impl_names() {
    std::vector<std::string> names;
    for (const auto* t : kTables)
        if (!t->automatic) names.emplace_back(t->name);
    return names;
}

}  // namespace tclip
