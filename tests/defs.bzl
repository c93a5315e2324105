"""Whole-allocator test macros: one Bazel target per environment variant.

tcmalloc re-runs its whole-allocator tests under a matrix of environments; we
do the same, one target per variant so a failure names its environment:

  NAME                   rseqmalloc, default environment
  NAME_glibc_rseq_off    rseqmalloc, glibc does not register rseq (we do)
  NAME_cpu / _cid / _thread / _none   rseqmalloc, RSEQMALLOC_CACHE forced
  NAME_checked_sized_free   RSEQMALLOC_CHECK_SIZED_FREE=1
  NAME_no_background_thread RSEQMALLOC_BACKGROUND_THREAD=0 (every other
                         variant but _none may start the maintenance thread)
  NAME_huge_pages        RSEQMALLOC_HUGE_PAGES=1 (off by default)
  NAME_glibc             glibc's malloc, to prove the expectations are glibc's

The test sources are compiled once per allocator (a library with alwayslink)
and every variant links that library, so every variant costs one compile.
"""

load("@rules_cc//cc:defs.bzl", "cc_library", "cc_test")

# Cache modes RSEQMALLOC_CACHE accepts; each gets a NAME_<mode> target.
_CACHE_MODES = ["cpu", "cid", "thread", "none"]

# Tests call malloc(0), free(malloc(n)) and huge sizes on purpose: keep the
# compiler from folding or deleting those calls.
_TEST_COPTS = [
    "-fno-builtin",
    "-fno-allocation-dce",
    "-Wno-alloc-size-larger-than",
]

def _variants(name):
    """Returns [(target name, env dict)] for every rseqmalloc variant."""
    out = [
        (name, {}),
        (name + "_glibc_rseq_off", {"GLIBC_TUNABLES": "glibc.pthread.rseq=0"}),
    ]
    for mode in _CACHE_MODES:
        out.append((name + "_" + mode, {"RSEQMALLOC_CACHE": mode}))
    out.append((name + "_checked_sized_free", {"RSEQMALLOC_CHECK_SIZED_FREE": "1"}))
    out.append((name + "_no_background_thread", {"RSEQMALLOC_BACKGROUND_THREAD": "0"}))
    out.append((name + "_huge_pages", {"RSEQMALLOC_HUGE_PAGES": "1"}))
    return out

def allocator_test(
        name,
        srcs,
        deps = [],
        glibc = True,
        env = {},
        copts = [],
        size = "medium",
        tags = [],
        **kwargs):
    """Declares the variant matrix of one whole-allocator GoogleTest test.

    Args:
      name: base target name.
      srcs: test sources (GoogleTest; main comes from gtest_main).
      deps: extra dependencies, shared by every variant.
      glibc: also declare NAME_glibc, linked against glibc's malloc. Sources
        see RSEQMALLOC_TEST_GLIBC=1 there and must skip what is ours alone.
      env: extra environment for every variant.
      copts: extra compiler options.
      size: Bazel test size of every variant.
      tags: tags of every variant.
      **kwargs: passed to every cc_test.
    """
    lib = name + "_objs"
    cc_library(
        name = lib,
        testonly = True,
        srcs = srcs,
        copts = _TEST_COPTS + copts,
        deps = deps + [
            "//:rseqmalloc",
            "//allocator/api:header",
            "//tests/util",
            "@googletest//:gtest_main",
        ],
        alwayslink = True,
    )
    all_tests = []
    for test_name, test_env in _variants(name):
        merged = dict(env)
        merged.update(test_env)
        cc_test(
            name = test_name,
            env = merged,
            linkstatic = True,
            size = size,
            tags = tags,
            deps = [":" + lib],
            **kwargs
        )
        all_tests.append(":" + test_name)

    if glibc:
        glibc_lib = name + "_glibc_objs"
        cc_library(
            name = glibc_lib,
            testonly = True,
            srcs = srcs,
            copts = _TEST_COPTS + copts,
            defines = ["RSEQMALLOC_TEST_GLIBC=1"],
            deps = deps + [
                "//tests/util",
                "@googletest//:gtest_main",
            ],
            alwayslink = True,
        )
        cc_test(
            name = name + "_glibc",
            env = env,
            linkstatic = True,
            size = size,
            tags = tags,
            deps = [":" + glibc_lib],
            **kwargs
        )
        all_tests.append(":" + name + "_glibc")

    native.test_suite(name = name + "_all", tests = all_tests, tags = tags)

def preload_test(name, script, data = [], size = "medium", tags = []):
    """Runs SCRIPT under LD_PRELOAD of librseqmalloc.so, default and thread mode.

    The script gets the library's path as $1 and compares the program's output
    with and without the preload itself.
    """
    tests = []
    for suffix, cache in [("", ""), ("_thread", "thread")]:
        cc_env = {"RSEQMALLOC_CACHE": cache} if cache else {}
        sh_name = name + suffix
        native.sh_test(
            name = sh_name,
            srcs = [script],
            args = ["$(location //:librseqmalloc.so)"],
            data = data + [
                "//:librseqmalloc.so",
                "//tests/preload:preload_lib.sh",
            ],
            env = cc_env,
            size = size,
            tags = tags,
        )
        tests.append(":" + sh_name)
    native.test_suite(name = name + "_all", tests = tests, tags = tags)

# Every environment a real program is run in by preload_test_all_modes:
# (target suffix, environment). The glibc_rseq_off variant keeps the default
# cache mode, so rseqmalloc registers its own rseq area per thread.
_PRELOAD_MODES = {
    "default": ("", {}),
    "cpu": ("_cpu", {"RSEQMALLOC_CACHE": "cpu"}),
    "cid": ("_cid", {"RSEQMALLOC_CACHE": "cid"}),
    "thread": ("_thread", {"RSEQMALLOC_CACHE": "thread"}),
    "none": ("_none", {"RSEQMALLOC_CACHE": "none"}),
    "glibc_rseq_off": ("_glibc_rseq_off", {"GLIBC_TUNABLES": "glibc.pthread.rseq=0"}),
}

def preload_test_all_modes(
        name,
        script,
        data = [],
        modes = ["default", "cpu", "cid", "thread", "none", "glibc_rseq_off"],
        size = "medium",
        tags = []):
    """Runs a preload_lib.sh script under LD_PRELOAD once per cache mode.

    One sh_test per mode (NAME, NAME_cpu, NAME_cid, NAME_thread, NAME_none,
    NAME_glibc_rseq_off) and a test_suite NAME_all. SCRIPT may live in any
    package: //tests/programs:run_script.sh runs it from its own runfiles
    folder, where it finds preload_lib.sh beside it or in //tests/preload.

    Args:
      name: base target name.
      script: label of the test script; it gets the library's path as $1.
      data: extra runfiles, shared by every variant.
      modes: subset of the keys of _PRELOAD_MODES to declare.
      size: Bazel test size of every variant.
      tags: tags of every variant.
    """
    tests = []
    for mode in modes:
        suffix, env = _PRELOAD_MODES[mode]
        native.sh_test(
            name = name + suffix,
            srcs = ["//tests/programs:run_script.sh"],
            args = [
                "$(location %s)" % script,
                "$(location //:librseqmalloc.so)",
            ],
            data = data + [
                script,
                "//:librseqmalloc.so",
                "//tests/preload:preload_lib.sh",
            ],
            env = env,
            size = size,
            tags = tags,
        )
        tests.append(":" + name + suffix)
    native.test_suite(name = name + "_all", tests = tests, tags = tags)
