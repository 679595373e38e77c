// petal::set_num_threads / get_num_threads and the OpenMP wait policy petal starts with.
// The ctests openmp_default_wait_policy_is_passive / openmp_wait_policy_from_environment run
// this case with a controlled environment and PETAL_EXPECT_WAIT_POLICY set (they also check
// libgomp's own report, OMP_DISPLAY_ENV, for the spin count).
#include <cstdlib>
#include <string>

#include "testing.h"

using namespace petal;
using petal::testing::check_close;
using petal::testing::random_input;

TEST_CASE("set_num_threads and the OpenMP wait policy", "[threads]") {
  const int before = get_num_threads();
  REQUIRE(before >= 1);
  const std::string policy = openmp_wait_policy();
  if (const char* want = std::getenv("PETAL_EXPECT_WAIT_POLICY")) CHECK(policy == want);
  const char* env = std::getenv("OMP_WAIT_POLICY");
  if (policy == "passive (petal's default)") {
    REQUIRE(env != nullptr);  // petal set it before libgomp started
    CHECK(std::string(env) == "PASSIVE");
  } else if (env != nullptr) {
    CHECK(policy == std::string("OMP_WAIT_POLICY=") + env);  // the user's setting, untouched
  } else {
    CHECK(policy.rfind("GOMP_SPINCOUNT=", 0) == 0);
  }
  // results agree at 1 and 2 threads (OpenBLAS may split the GEMM's k differently: f32 tolerance)
  Tensor x = random_input({257, 129}, 7).to(DType::f32);
  Tensor w = random_input({129, 65}, 8).to(DType::f32);
  set_num_threads(1);
  CHECK(get_num_threads() == 1);
  Tensor s1 = softmax(matmul(x, w), -1), r1 = sum(x, {1});
  set_num_threads(2);
  CHECK(get_num_threads() == 2);
  Tensor s2 = softmax(matmul(x, w), -1), r2 = sum(x, {1});
  check_close(s2, s1.to(DType::f64), -1, "softmax(matmul) at 1 and 2 threads");
  check_close(r2, r1.to(DType::f64), -1, "row sums at 1 and 2 threads");
  CHECK_THROWS_WITH(set_num_threads(0), Catch::Contains("set_num_threads") && Catch::Contains("0"));
  set_num_threads(before);
  CHECK(get_num_threads() == before);
}
