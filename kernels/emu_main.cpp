// Driver for the GPU-faithful emulation: runs one kernel of the module linked beside it.
//   usage: emu KERNEL GRID BLOCK ARG...
//   ARG:   b:PATH:NBYTES:OFFSET  a buffer, read from PATH into an exactly sized heap block
//                         that starts OFFSET bytes past a 64-byte boundary, as the caller's
//                         buffer does (so alignment tests take the same path), and written back
//                         after the launch; AddressSanitizer sees every byte past either end.
//          i32:V, i64:V, u32:V, u64:V, f32:V, f64:V  a scalar.
#include <sanitizer/asan_interface.h>
#include <sched.h>
#include <stdlib.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

struct fj_kernel_entry {
  const char* name;
  void (*launch)(unsigned int, unsigned int, void**);
};
extern "C" const fj_kernel_entry fj_kernel_table[];

union fj_scalar {
  int i32;
  long long i64;
  unsigned u32;
  unsigned long long u64;
  float f32;
  double f64;
};

// Every thread of the launch on the CPU the program started on (where the scheduler placed
// it): the threads take turns at the barriers anyway, and on one CPU they spare the kernel the
// cross-CPU TLB flushes that AddressSanitizer's maps and unmaps of each thread's memory cost.
// Launches of 256 threads took 1.6 to 2.7 times less CPU time on two cores; the results are the
// same.
static void fj_emu_stay_on_this_cpu() {
  const int cpu = sched_getcpu();
  if (cpu < 0) return;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  sched_setaffinity(0, sizeof one, &one);  // a refusal leaves the threads free to move
}

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s KERNEL GRID BLOCK ARG...\n", argv[0]);
    return 2;
  }
  const fj_kernel_entry* entry = nullptr;
  for (const fj_kernel_entry* e = fj_kernel_table; e->name; ++e)
    if (std::strcmp(e->name, argv[1]) == 0) entry = e;
  if (!entry) {
    std::fprintf(stderr, "no kernel named %s in this module\n", argv[1]);
    return 2;
  }
  const unsigned grid = (unsigned)std::strtoul(argv[2], nullptr, 10);
  const unsigned block = (unsigned)std::strtoul(argv[3], nullptr, 10);
  const int nargs = argc - 4;
  std::vector<void*> params(nargs);
  std::vector<fj_scalar> scalars(nargs);
  std::vector<void*> buffers(nargs, nullptr), blocks(nargs, nullptr);
  std::vector<size_t> sizes(nargs, 0), offsets(nargs, 0);
  std::vector<std::string> paths(nargs);
  for (int k = 0; k < nargs; ++k) {
    std::string arg = argv[4 + k];
    const size_t colon = arg.find(':');
    const std::string kind = arg.substr(0, colon), rest = arg.substr(colon + 1);
    if (kind == "b") {
      const size_t sep2 = rest.rfind(':'), sep = rest.rfind(':', sep2 - 1);
      paths[k] = rest.substr(0, sep);
      sizes[k] = std::strtoull(rest.substr(sep + 1, sep2 - sep - 1).c_str(), nullptr, 10);
      offsets[k] = std::strtoull(rest.substr(sep2 + 1).c_str(), nullptr, 10) % 64;
      if (posix_memalign(&blocks[k], 64, offsets[k] + sizes[k]) != 0) {
        std::fprintf(stderr, "cannot allocate %zu bytes\n", sizes[k]);
        return 2;
      }
      ASAN_POISON_MEMORY_REGION(blocks[k], offsets[k]);  // the bytes before the buffer
      buffers[k] = (char*)blocks[k] + offsets[k];
      FILE* f = std::fopen(paths[k].c_str(), "rb");
      if (!f || std::fread(buffers[k], 1, sizes[k], f) != sizes[k]) {
        std::fprintf(stderr, "cannot read %s\n", paths[k].c_str());
        return 2;
      }
      std::fclose(f);
      params[k] = &buffers[k];
    } else {
      fj_scalar& s = scalars[k];
      if (kind == "i32") s.i32 = (int)std::strtol(rest.c_str(), nullptr, 10);
      else if (kind == "i64") s.i64 = std::strtoll(rest.c_str(), nullptr, 10);
      else if (kind == "u32") s.u32 = (unsigned)std::strtoul(rest.c_str(), nullptr, 10);
      else if (kind == "u64") s.u64 = std::strtoull(rest.c_str(), nullptr, 10);
      else if (kind == "f32") s.f32 = std::strtof(rest.c_str(), nullptr);
      else if (kind == "f64") s.f64 = std::strtod(rest.c_str(), nullptr);
      else {
        std::fprintf(stderr, "bad argument %s\n", arg.c_str());
        return 2;
      }
      params[k] = &s;
    }
  }
  fj_emu_stay_on_this_cpu();
  entry->launch(grid, block, params.data());
  for (int k = 0; k < nargs; ++k) {
    if (paths[k].empty()) continue;
    FILE* f = std::fopen(paths[k].c_str(), "wb");
    if (!f || std::fwrite(buffers[k], 1, sizes[k], f) != sizes[k]) {
      std::fprintf(stderr, "cannot write %s\n", paths[k].c_str());
      return 2;
    }
    std::fclose(f);
    ASAN_UNPOISON_MEMORY_REGION(blocks[k], offsets[k]);
    std::free(blocks[k]);
  }
  return 0;
}
