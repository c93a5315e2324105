"""Compiler flags every allocator translation unit is built with."""

# The compiler must not turn our own code into calls of malloc (e.g. malloc +
# memset -> calloc, which would recurse into us), TLS must be initial-exec
# (no __tls_get_addr, which may allocate), and the library must not need
# exceptions except where operator new throws.
ALLOCATOR_COPTS = [
    "-fno-builtin-malloc",
    "-fno-builtin-calloc",
    "-fno-builtin-realloc",
    "-fno-builtin-free",
    "-ftls-model=initial-exec",
    "-fPIC",
    # The fast paths are a few dozen instructions: a frame pointer is a
    # measurable share of them (.bazelrc turns it on for everything else).
    "-fomit-frame-pointer",
]
