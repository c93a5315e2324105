"""cc_static_archive: one .a holding every object a cc_library needs.

Bazel 4 has no rule for a self-contained static library: each cc_library
makes its own archive. This rule walks the CcInfo linking context of its
deps, takes each library's PIC archive (usable in PIE programs and in
shared objects alike), and merges them with an `ar` MRI script.
"""

def _archive_of(lib):
    # Prefer PIC: Debian's gcc links PIE by default.
    for f in [lib.pic_static_library, lib.static_library]:
        if f != None:
            return f
    return None

def _cc_static_archive_impl(ctx):
    archives = []
    seen = {}
    for dep in ctx.attr.deps:
        for linker_input in dep[CcInfo].linking_context.linker_inputs.to_list():
            for lib in linker_input.libraries:
                f = _archive_of(lib)
                if f == None:
                    # Objects given without an archive.
                    for o in (lib.pic_objects or lib.objects or []):
                        if o.path not in seen:
                            seen[o.path] = True
                            archives.append(o)
                    continue
                if f.path not in seen:
                    seen[f.path] = True
                    archives.append(f)
    out = ctx.actions.declare_file(ctx.attr.out)
    script_lines = ["create " + out.path]
    for f in archives:
        if f.extension == "o":
            script_lines.append("addmod " + f.path)
        else:
            script_lines.append("addlib " + f.path)
    script_lines += ["save", "end", ""]
    script = ctx.actions.declare_file(ctx.label.name + ".mri")
    ctx.actions.write(script, "\n".join(script_lines))
    ctx.actions.run_shell(
        inputs = archives + [script],
        outputs = [out],
        command = "rm -f '%s' && ar -M < '%s' && ranlib '%s'" % (out.path, script.path, out.path),
        mnemonic = "MergeArchives",
        progress_message = "Merging %d archives into %s" % (len(archives), out.short_path),
    )
    # runfiles too: tests take the archive as data.
    return [DefaultInfo(files = depset([out]), runfiles = ctx.runfiles(files = [out]))]

cc_static_archive = rule(
    implementation = _cc_static_archive_impl,
    attrs = {
        "deps": attr.label_list(providers = [CcInfo]),
        "out": attr.string(mandatory = True),
    },
)

def _cc_public_headers_impl(ctx):
    headers = []
    for dep in ctx.attr.deps:
        headers += dep[CcInfo].compilation_context.direct_public_headers
    return [DefaultInfo(files = depset(headers), runfiles = ctx.runfiles(files = headers))]

# The public headers of cc_library targets as files, for data and install.
cc_public_headers = rule(
    implementation = _cc_public_headers_impl,
    attrs = {"deps": attr.label_list(providers = [CcInfo])},
)
