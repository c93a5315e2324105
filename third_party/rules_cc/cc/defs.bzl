"""Re-exports Bazel's native C++ rules under the names rules_cc gives them.

Debian's bazel-rules-cc is too new for Bazel 4.2.3, and Bazel would otherwise
download rules_cc; this tiny local repository keeps the build offline.
"""

cc_binary = native.cc_binary
cc_library = native.cc_library
cc_test = native.cc_test
cc_import = native.cc_import
cc_proto_library = native.cc_proto_library
cc_toolchain = native.cc_toolchain
cc_toolchain_suite = native.cc_toolchain_suite
