# shellcheck shell=bash
# llama.cpp's build flags per platform, sourced by setup.sh and install.sh so a development
# checkout and a service install build llama-cpp-python the same way. Sets CMAKE_ARGS unless
# the caller already did.
#
# x86: -march=native can pick AMX instructions that crash (SIGILL) in worker threads on some
# CPUs, so name the instruction sets instead.
if [[ -z ${CMAKE_ARGS:-} ]]; then
  case "${LLAMA_MACHINE:-$(uname -m)}" in
    x86_64)
      if grep -qw avx2 /proc/cpuinfo; then
        CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
      else
        CMAKE_ARGS="-DGGML_NATIVE=OFF"
      fi ;;
    aarch64)
      # A Jetson (JetPack) builds for its GPU; a Pi keeps llama.cpp's defaults.
      if [[ -e /etc/nv_tegra_release ]] || command -v nvcc >/dev/null 2>&1 || [[ ${LLAMA_JETSON:-0} == 1 ]]; then
        CMAKE_ARGS="-DGGML_CUDA=on"
      fi ;;
  esac
fi
export CMAKE_ARGS="${CMAKE_ARGS:-}"
