// Catch2 main of the multi-process tests: every rank joins the process group, runs the same
// test cases in the same order (so their collectives pair up), and leaves it. Launched by
// ctest through mpirun (tests/distributed/CMakeLists.txt); mpirun's exit status is non-zero
// when any rank fails.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <petal/distributed.h>

#include <cstdio>

int main(int argc, char** argv) {
  try {
    petal::distributed::init();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "petal_distributed_tests: %s\n", e.what());
    return 1;
  }
  const int failed = Catch::Session().run(argc, argv);
  petal::distributed::finalize();
  return failed ? 1 : 0;
}
