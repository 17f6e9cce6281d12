// Element loads/stores for one instruction-set build (included once per LRK_ISA namespace, no
// include guard). With F16C (the AVX2 build) float16 converts in hardware; otherwise the portable
// bit conversions of common.h are used.
namespace lrk {
namespace LRK_ISA {

template <typename T>
struct Cv : Conv<T> {};

#if defined(LRK_F16C)  // set by the AVX2 build (pragma targets do not define __F16C__)
template <>
struct Cv<Half> {
  static float load(Half v) { return _cvtsh_ss(v.bits); }
  static Half store(float v) { return Half{static_cast<uint16_t>(_cvtss_sh(v, _MM_FROUND_TO_NEAREST_INT))}; }
};
#endif

}  // namespace LRK_ISA
}  // namespace lrk
