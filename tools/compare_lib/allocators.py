"""The allocators tools/compare runs under, and each one's own environment.

An allocator is a known name (glibc, the Debian peers, rseqmalloc) or
NAME=/path/to/lib.so. `--env NAME:VAR=VALUE` (repeatable) gives one
allocator a variable that only its runs see. It is a separate option, not
part of the allocator list, because values such as MALLOC_CONF
(`narenas:2,dirty_decay_ms:0`) and GLIBC_TUNABLES (`a=1:b=2`) contain the
commas and colons any in-list syntax would have to split on; NAME cannot
contain ':', so the first ':' and the first '=' after it are unambiguous.
"""

import os
import re

LIBDIR = "/usr/lib/x86_64-linux-gnu"

# name -> (label, preload path or None for glibc, Debian package, file-name
# prefix the workload must report in malloc_libs to prove the preload worked).
# Only gperftools' tcmalloc is packaged for Debian, so it is always labelled
# as such; Google's tcmalloc is a different allocator.
PEERS = {
    "glibc": ("glibc", None, "libc6", None),
    "jemalloc": ("jemalloc", LIBDIR + "/libjemalloc.so.2", "libjemalloc2", "libjemalloc"),
    "tcmalloc": ("tcmalloc (gperftools)", LIBDIR + "/libtcmalloc_minimal.so.4",
                 "libtcmalloc-minimal4", "libtcmalloc"),
    "mimalloc": ("mimalloc", LIBDIR + "/libmimalloc.so.2", "libmimalloc2.0", "libmimalloc"),
}
OURS = "rseqmalloc"
ALL_ALLOCATORS = list(PEERS) + [OURS]

# Allocator names end up in table headers, CSV cells and log file names.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*\Z")
_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

ENV_SYNTAX = "NAME:VAR=VALUE"
ENV_EXAMPLE = "tcmalloc-google:GLIBC_TUNABLES=glibc.pthread.rseq=0"


class SpecError(ValueError):
    """A bad --allocators or --env value; the message is one line."""


class Allocator:
    def __init__(self, name, label, path, expect, peer):
        self.name = name
        self.label = label
        self.path = path        # None: no preload (glibc)
        self.expect = expect    # malloc_libs must contain a file starting so
        self.peer = peer        # peers set the "best peer" reference
        self.problem = None     # why it cannot run, when it cannot
        self.env = {}           # this allocator's own variables (--env)

    def check(self):
        if self.path is not None and not os.path.isfile(self.path):
            self.problem = self.problem or "library not found: " + self.path
        return self.problem is None

    def environment(self, base, extra=None, preload=None):
        """The environment of one run: BASE without any LD_PRELOAD, then
        EXTRA (the program's own variables), then this allocator's
        variables, then LD_PRELOAD (PRELOAD, default: the library)."""
        env = dict(base)
        env.pop("LD_PRELOAD", None)
        env.update(extra or {})
        env.update(self.env)
        preload = preload or self.path
        if preload:
            env["LD_PRELOAD"] = preload
        return env

    def env_text(self):
        return " ".join("%s=%s" % kv for kv in self.env.items())


def make_allocator(spec, ours_path, ours_problem):
    """spec: a known name, or NAME=/path/to/lib.so for anything else."""
    if "=" in spec:
        name, path = spec.split("=", 1)
        base = os.path.basename(path).split(".so")[0]
        return Allocator(name, name, os.path.abspath(path), base, peer=False)
    if spec == OURS:
        a = Allocator(OURS, OURS, ours_path, "librseqmalloc", peer=False)
        a.problem = ours_problem
        return a
    if spec in PEERS:
        label, path, _, expect = PEERS[spec]
        return Allocator(spec, label, path, expect, peer=True)
    raise SpecError("unknown allocator '%s' (known: %s, or NAME=/path/lib.so)"
                    % (spec, ", ".join(ALL_ALLOCATORS)))


def check_specs(specs):
    """Refuses malformed, clashing or repeated entries of --allocators."""
    seen = set()
    for spec in specs:
        if "=" in spec:
            name, path = spec.split("=", 1)
            if not name:
                raise SpecError("--allocators: '%s' has no name before '='" % spec)
            if not _NAME.match(name):
                raise SpecError("--allocators: bad name '%s' (letters, digits, '.', '_', '+', "
                                "'-'; no ':' or spaces)" % name)
            if name in ALL_ALLOCATORS:
                raise SpecError("--allocators: '%s' is a known allocator's name; give the "
                                "library another name" % spec)
            if not path:
                raise SpecError("--allocators: '%s' has no library path after '='" % spec)
        else:
            name = spec
            make_allocator(spec, None, None)  # raises for an unknown name
        if name in seen:
            raise SpecError("--allocators: '%s' is listed twice" % name)
        seen.add(name)


def parse_env(options, names):
    """--env values -> {allocator name: {VAR: VALUE}}, in the order given."""
    result = {}
    for text in options:
        name, sep, assignment = text.partition(":")
        var, eq, value = assignment.partition("=")
        if not sep or not eq or not name:
            raise SpecError("bad --env '%s': expected %s (e.g. %s)"
                            % (text, ENV_SYNTAX, ENV_EXAMPLE))
        if name not in names:
            raise SpecError("bad --env '%s': no allocator '%s' in --allocators (%s)"
                            % (text, name, ", ".join(names)))
        if not _VAR.match(var):
            raise SpecError("bad --env '%s': '%s' is not a variable name" % (text, var))
        if var == "LD_PRELOAD":
            raise SpecError("bad --env '%s': LD_PRELOAD is the allocator's library; give it "
                            "as NAME=/path/lib.so in --allocators" % text)
        own = result.setdefault(name, {})
        if var in own:
            raise SpecError("bad --env '%s': %s is already set for %s" % (text, var, name))
        own[var] = value
    return result


def spec_name(spec):
    return spec.split("=", 1)[0]


def make_allocators(specs, env_options, ours_path, ours_problem):
    """The Allocator objects of a checked --allocators list, each with its
    --env variables."""
    check_specs(specs)
    env = parse_env(env_options, [spec_name(s) for s in specs])
    allocators = [make_allocator(s, ours_path, ours_problem) for s in specs]
    for a in allocators:
        a.env = env.get(a.name, {})
    return allocators
