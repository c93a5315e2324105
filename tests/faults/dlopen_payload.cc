// The library dlopen_test loads and unloads again and again. Its
// constructor allocates through malloc, operator new and the standard
// containers, and keeps everything in globals; its destructor frees it all.
// So every load costs the allocator memory and every unload must give it
// back, while the dynamic loader allocates and frees its own structures
// around both.
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

// About 200 KiB per load: a leak of one load's payload is far above the
// allowance dlopen_test grants the loader's own caches.
constexpr size_t kMallocBytes = 96 * 1024;
constexpr int kStrings = 64;

struct Payload {
  void* raw = nullptr;         // malloc
  int* array = nullptr;        // new[]
  std::string* text = nullptr;  // new, with a heap buffer of its own
  std::vector<std::string> strings;
  std::vector<char> bytes;
};

Payload* g_payload = nullptr;

__attribute__((constructor)) void LoadPayload() {
  g_payload = new Payload;
  g_payload->raw = malloc(kMallocBytes);
  if (g_payload->raw != nullptr) memset(g_payload->raw, 0x5a, kMallocBytes);
  g_payload->array = new int[4096];
  for (int i = 0; i < 4096; ++i) g_payload->array[i] = i;
  g_payload->text = new std::string(3000, 't');
  for (int i = 0; i < kStrings; ++i) {
    g_payload->strings.emplace_back(100 + 7 * i, static_cast<char>('a' + i % 26));
  }
  g_payload->bytes.resize(64 * 1024, 'b');
}

__attribute__((destructor)) void UnloadPayload() {
  free(g_payload->raw);
  delete[] g_payload->array;
  delete g_payload->text;
  delete g_payload;
  g_payload = nullptr;
}

}  // namespace

// For the test: the blocks of the current load (nullptr where one is
// missing), and whether their contents are what the constructor wrote.
extern "C" __attribute__((visibility("default"))) int faults_payload_blocks(void** out, int n) {
  if (g_payload == nullptr || n < 5) return 0;
  out[0] = g_payload->raw;
  out[1] = g_payload->array;
  out[2] = g_payload->text;
  out[3] = g_payload->strings.data();
  out[4] = g_payload->bytes.data();
  return 5;
}

extern "C" __attribute__((visibility("default"))) int faults_payload_intact() {
  if (g_payload == nullptr || g_payload->raw == nullptr) return 0;
  const auto* raw = static_cast<const unsigned char*>(g_payload->raw);
  for (size_t i = 0; i < kMallocBytes; i += 4096) {
    if (raw[i] != 0x5a) return 0;
  }
  for (int i = 0; i < 4096; i += 64) {
    if (g_payload->array[i] != i) return 0;
  }
  if (*g_payload->text != std::string(3000, 't')) return 0;
  if (g_payload->strings.size() != kStrings) return 0;
  for (int i = 0; i < kStrings; ++i) {
    const std::string& s = g_payload->strings[i];
    if (s.size() != static_cast<size_t>(100 + 7 * i) || s[0] != 'a' + i % 26) return 0;
  }
  return g_payload->bytes.size() == 64 * 1024 && g_payload->bytes.back() == 'b' ? 1 : 0;
}
