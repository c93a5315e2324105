"""cc_fuzz_binary: a libFuzzer binary of the allocator, built by Bazel.

Bazel 4's C++ rules here use the autoconfigured GCC toolchain, and GCC has no
libFuzzer; switching the whole toolchain to clang for one target (with
--repo_env=CC) would rebuild everything on every switch. So this rule runs
clang++ itself, as ordinary Bazel actions: one compile action per
translation unit and one link, over exactly the sources of the `deps` (found
by an aspect, so the list never goes stale) and the fuzzer's own `srcs`, with
the allocator's flags (allocator/copts.bzl). Outputs are cached and rebuilt
when a source changes like any other target.

libFuzzer's runtime is linked by hand (--whole-archive libclang_rt.fuzzer):
-fsanitize=fuzzer would also link UBSan's standalone runtime, whose
.preinit_array function calls malloc before libc has set `environ`, so the
allocator would start with default options and ignore RSEQMALLOC_CACHE.
Not AddressSanitizer: it would replace malloc. `ubsan = True` adds
-fsanitize=undefined with the minimal runtime (no start-up code either).
"""

load("//allocator:copts.bzl", "ALLOCATOR_COPTS")

_SourcesInfo = provider(
    doc = "Source files of a target and of its transitive deps.",
    fields = {"files": "depset of source Files"},
)

def _collect_impl(target, ctx):
    own = []
    for attr in ("srcs", "hdrs", "textual_hdrs"):
        for f in getattr(ctx.rule.files, attr, []):
            # Main-repository sources only: no generated files, no externals.
            if f.is_source and f.owner.workspace_name == "":
                own.append(f)
    deps = [d[_SourcesInfo].files for d in getattr(ctx.rule.attr, "deps", []) if _SourcesInfo in d]
    return [_SourcesInfo(files = depset(own, transitive = deps))]

_collect = aspect(implementation = _collect_impl, attr_aspects = ["deps"])

_COMMON = ["-std=c++20", "-O1", "-g", "-I.", "-Wall", "-Wextra", "-Werror"]

_UBSAN_COVERAGE = [
    # Clang refuses the minimal runtime next to -fsanitize=fuzzer-no-link, so
    # name the coverage that flag stands for. Every report is fatal, so
    # libFuzzer keeps the input that caused it.
    "-fsanitize-coverage=inline-8bit-counters,indirect-calls,trace-cmp,pc-table",
    "-fsanitize=undefined",
    "-fsanitize-minimal-runtime",
    "-fno-sanitize-recover=all",
]

def _cc_fuzz_binary_impl(ctx):
    lib = depset(transitive = [d[_SourcesInfo].files for d in ctx.attr.deps]).to_list()
    own = ctx.files.srcs
    headers = [f for f in lib + own if f.extension == "h"]
    sanitize = _UBSAN_COVERAGE if ctx.attr.ubsan else ["-fsanitize=fuzzer-no-link"]
    objects = []
    for src in lib + own:
        if src.extension != "cc":
            continue
        flags = _COMMON + sanitize
        if src in own:
            flags = flags + ctx.attr.copts
        else:
            flags = flags + ALLOCATOR_COPTS
        obj = ctx.actions.declare_file("_objs/%s/%s.o" % (ctx.label.name, src.short_path.replace("/", "_")))
        ctx.actions.run_shell(
            outputs = [obj],
            inputs = [src] + headers,
            command = '"$1" "${@:4}" -c "$2" -o "$3"',
            arguments = [ctx.attr.compiler, src.path, obj.path] + flags,
            mnemonic = "FuzzCompile",
            progress_message = "Compiling %s for %s" % (src.short_path, ctx.label.name),
            use_default_shell_env = True,
        )
        objects.append(obj)
    out = ctx.actions.declare_file(ctx.label.name)
    link_extra = ["-fsanitize=undefined", "-fsanitize-minimal-runtime"] if ctx.attr.ubsan else []
    ctx.actions.run_shell(
        outputs = [out],
        inputs = objects,
        command = """
set -e
cxx="$1"; out="$2"; shift 2
runtime="$("$cxx" -print-resource-dir)/lib/linux/libclang_rt.fuzzer-x86_64.a"
[ -f "$runtime" ] || { echo "no $runtime (tools/setup.sh installs libclang-rt-14-dev)" >&2; exit 1; }
"$cxx" "$@" -Wl,--whole-archive "$runtime" -Wl,--no-whole-archive -o "$out" -lpthread
""",
        arguments = [ctx.attr.compiler, out.path] + [o.path for o in objects] + link_extra,
        mnemonic = "FuzzLink",
        progress_message = "Linking %s" % ctx.label.name,
        use_default_shell_env = True,
    )
    return [DefaultInfo(executable = out, files = depset([out]))]

cc_fuzz_binary = rule(
    implementation = _cc_fuzz_binary_impl,
    executable = True,
    doc = "A libFuzzer binary of `srcs` and every source of `deps`, built with clang++.",
    attrs = {
        "srcs": attr.label_list(allow_files = [".cc", ".h"]),
        "deps": attr.label_list(aspects = [_collect]),
        "copts": attr.string_list(doc = "Extra flags for `srcs` (the library gets ALLOCATOR_COPTS)."),
        "ubsan": attr.bool(default = False),
        "compiler": attr.string(default = "clang++-14"),
    },
)
