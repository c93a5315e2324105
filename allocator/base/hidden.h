// Marks a global of the allocator as the library's own, for the compiler.
//
// The library is built -fPIC, and a plain `extern` declaration tells the
// compiler the variable may live in another module: it loads the address
// from the GOT (which the linker turns into an lea, the version script
// keeping the symbol local) and then reads at offsets from it. Declared
// hidden, the address is known at link time: a field is read RIP-relative
// in one instruction, and the address of a field far into the variable is
// one lea (the GOT way, a load and then an add, or 32-bit offsets).
// -fvisibility=hidden does not do this: it marks definitions, not
// declarations.
//
// Not every hit-path global is marked: the hit paths read g_cpu_slab's
// three fields through one lea, and as three RIP-relative loads they ran
// 4% slower in `pair` of 16-1024 B (docs/design.md, "Hidden globals").
#ifndef ALLOCATOR_BASE_HIDDEN_H_
#define ALLOCATOR_BASE_HIDDEN_H_

#define RSEQMALLOC_HIDDEN __attribute__((visibility("hidden")))

#endif  // ALLOCATOR_BASE_HIDDEN_H_
