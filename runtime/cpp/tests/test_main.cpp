// doctest's runner (https://github.com/doctest/doctest/blob/master/doc/markdown/main.md): ctest runs one
// test case per process (doctest_discover_tests), or run ./irreid_rt_tests for all, --help for options.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
