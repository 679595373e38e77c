// Catch2 main for the petal test binaries.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
