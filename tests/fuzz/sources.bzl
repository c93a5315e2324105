"""Collects the source files of a C++ library and of everything it depends on.

The fuzz test compiles the allocator with clang++ outside Bazel's C++ rules,
so it needs the allocator's sources as plain runfiles: declaring them through
this rule (instead of listing files by hand) keeps the list complete as files
are added, and makes the test rerun whenever one of them changes.
"""

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

def _cc_sources_impl(ctx):
    files = depset(transitive = [d[_SourcesInfo].files for d in ctx.attr.deps])
    return [DefaultInfo(files = files, runfiles = ctx.runfiles(transitive_files = files))]

cc_sources = rule(
    implementation = _cc_sources_impl,
    doc = "The .cc/.h files of `deps` and their transitive deps, as runfiles.",
    attrs = {"deps": attr.label_list(aspects = [_collect])},
)
